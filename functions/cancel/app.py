"""POST /v1/executions/{executionId}/cancel and DELETE /v1/executions/{executionId}."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.api.http import authenticate, build_resolver, json_response
from asyncgate.api.models import CancelAnswer, ExecutionView
from asyncgate.domain.status import Status
from asyncgate.observability import logger, metrics, tracer
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
        execution=ExecutionView.of(outcome.execution),
    )
    return json_response(200, answer)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
