"""POST /v1/executions/{executionId}/webhook-redeliver: deliver a failed webhook's terminal event again."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate.api.http import authenticate, build_resolver, http_handler, json_response
from asyncgate.api.models import ExecutionView
from asyncgate.services.deps import default_deps
from asyncgate.services.notify import redeliver
from asyncgate.store.keys import Scope

app = build_resolver()


@app.post("/v1/executions/<executionId>/webhook-redeliver")
def redeliver_webhook(executionId: str) -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.EXECUTION_WRITE)
    return json_response(202, ExecutionView.of(redeliver(deps, principal, executionId), deps.results.url_for))


lambda_handler = http_handler(app)
