"""The live-execution counters, checked against the executions themselves.

Every counter change is in the same transaction as the transition that justifies it, so drift should
never happen; this audit proves it in production and repairs what a manual edit or a bug could leave.
It counts live executions from the sparse due index, and repairs a tenant's counter only when its
account has been quiet (no submit, no terminal transition) for longer than the index can lag, and is
still exactly as read when the repair is written: a count taken while executions move is never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate.observability import logger, metrics
from asyncgate.services.deps import Deps

# Longer than the due index ever lags behind the table.
QUIET_PERIOD = timedelta(seconds=60)


@dataclass(frozen=True)
class Drift:
    tenant: str
    counter: int
    counted: int
    repaired: bool


@dataclass
class AuditReport:
    tenants: int = 0
    drifts: list[Drift] = field(default_factory=list)
    skipped_busy: int = 0


def audit_live_counters(deps: Deps) -> AuditReport:
    started = deps.clock()
    counted = deps.executions.live_by_tenant()
    report = AuditReport()
    for tenant in deps.accounts.tenants():
        account = deps.accounts.get(tenant)
        if account is None:
            continue
        report.tenants += 1
        live = counted.get(tenant, 0)
        if live == account.live_executions:
            continue
        if account.updated_at is None or account.updated_at > started - QUIET_PERIOD:
            report.skipped_busy += 1  # moving now: the count may be a moment behind; next run sees
            continue
        repaired = deps.accounts.repair_live_count(account, live, now=deps.clock())
        drift = Drift(tenant=tenant, counter=account.live_executions, counted=live, repaired=repaired)
        report.drifts.append(drift)
        logger.error(
            "live-execution counter drift",
            extra={"driftTenant": tenant, "counter": drift.counter, "counted": live, "repaired": repaired},
        )
    metrics.add_metric(name="CounterDrifts", unit=MetricUnit.Count, value=len(report.drifts))
    return report
