"""EventBridge schedule: re-arm live executions whose poll tick is overdue, so none is ever stuck."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.observability import logger, metrics, tracer
from asyncgate.services.deps import default_deps
from asyncgate.services.ticks import sweep


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    report = sweep(default_deps())
    return {"overdue": report.overdue, "rearmed": report.rearmed}
