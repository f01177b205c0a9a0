"""POST /v1/executions: accept a job and answer at once with its id."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.api.http import authenticate, build_resolver, json_response, parse_body
from asyncgate.api.models import SubmitAccepted, SubmitRequest, execution_path
from asyncgate.observability import logger, metrics, tracer
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import SubmitCommand, submit
from asyncgate.store.keys import Scope

app = build_resolver()


@app.post("/v1/executions")
def submit_execution() -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.EXECUTION_WRITE)
    request = parse_body(app, SubmitRequest)
    execution = submit(
        deps,
        principal,
        SubmitCommand(
            model=request.model,
            input=request.input,
            metadata=request.metadata,
            webhook_url=request.webhook.url if request.webhook else None,
            webhook_events=request.webhook.events if request.webhook else None,
        ),
    )
    return json_response(
        202, SubmitAccepted.of(execution), {"Location": execution_path(execution.execution_id)}
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
