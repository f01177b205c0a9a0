"""EventBridge schedules: every minute, re-arm live executions whose poll tick is overdue, so none is
ever stuck, and hand the webhook deliveries Step Functions did not take to it again; every few minutes
(`{"task": "audit"}`), check the live-execution counters."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.observability import logger, metrics, tracer
from asyncgate.services.audit import audit_live_counters
from asyncgate.services.deps import default_deps
from asyncgate.services.notify import hand_off_parked
from asyncgate.services.ticks import sweep


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    if event.get("task") == "audit":
        audit = audit_live_counters(default_deps())
        return {"tenants": audit.tenants, "drifts": len(audit.drifts), "skippedBusy": audit.skipped_busy}
    report = sweep(default_deps())
    handed_off = hand_off_parked(default_deps())
    return {
        "overdue": report.overdue,
        "rearmed": report.rearmed,
        "givenUp": report.given_up,
        "webhooksHandedOff": handed_off,
    }
