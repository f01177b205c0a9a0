"""POST /v1/executions/{executionId}/cancel and DELETE /v1/executions/{executionId}."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate.api.http import authenticate, build_resolver, http_handler, json_response
from asyncgate.api.models import CancelAnswer, ExecutionView
from asyncgate.domain.status import Status
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import cancel
from asyncgate.store.keys import Scope

app = build_resolver()

_MESSAGES = {
    Status.CANCELLED: "cancelled before it reached the provider",
    Status.CANCEL_REQUESTED: "cancel requested; the execution turns cancelled once the provider stops",
}


@app.post("/v1/executions/<executionId>/cancel")
@app.delete("/v1/executions/<executionId>")
def cancel_execution(executionId: str) -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.EXECUTION_CANCEL)
    outcome = cancel(deps, principal, executionId)
    status = outcome.execution.status
    answer = CancelAnswer(
        execution_id=outcome.execution.execution_id,
        cancelled=True,
        previous_status=outcome.previous_status,
        status=status,
        message=_MESSAGES.get(status, status.value),
        execution=ExecutionView.of(outcome.execution, deps.results.url_for),
    )
    return json_response(200, answer)


lambda_handler = http_handler(app)
