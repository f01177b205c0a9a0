"""The background use cases: one poll tick, and the sweeper that re-arms lost ticks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate.domain.execution import claimed_for_dispatch, rearmed
from asyncgate.domain.status import Status
from asyncgate.observability import logger, metrics
from asyncgate.scheduling import TickMessage
from asyncgate.services.deps import Deps
from asyncgate.services.lifecycle import commit, dispatch, step
from asyncgate.store.executions import StaleWrite

# Re-arms per sweeper run, so one run's work (and its burst of ticks) stays bounded.
SWEEP_LIMIT = 200
# A chained hop that arrives this close to its due time is processed rather than sent on again.
EARLY_TOLERANCE = timedelta(seconds=1)


class TickOutcome(StrEnum):
    PROCESSED = "processed"
    STALE = "stale"  # duplicate, superseded or for a finished execution: dropped
    LOST_RACE = "lost_race"  # another writer moved the execution first; its own tick carries on
    CHAINED = "chained"  # the wait is longer than one SQS delay: sent on towards its due time
    HANDED_BACK = "handed_back"  # no time left in this invocation: sent again, for another one at once


def process_tick(deps: Deps, message: TickMessage) -> TickOutcome:
    logger.append_keys(execution_id=message.execution_id)
    execution = deps.executions.get(message.execution_id)
    if execution is None or execution.terminal or execution.tick_id != message.tick_id:
        metrics.add_metric(name="StaleTicks", unit=MetricUnit.Count, value=1)
        return TickOutcome.STALE
    now = deps.clock()
    if message.due_at > now + EARLY_TOLERANCE:
        deps.scheduler.send(message, now=now)
        return TickOutcome.CHAINED
    spec = deps.spec(execution.model)
    try:
        if execution.status is Status.QUEUED and execution.dispatch_started_at is None:
            # Claim first: of two copies of this tick, only one can win the write, so the provider is
            # called once.
            claimed = claimed_for_dispatch(execution, now=now)
            deps.executions.update(execution, claimed)
            dispatch(deps, claimed, spec, now=now)
        else:
            commit(deps, execution, step(deps, execution, spec, now=now), now=now)
    except StaleWrite:
        return TickOutcome.LOST_RACE
    return TickOutcome.PROCESSED


def hand_back(deps: Deps, message: TickMessage) -> TickOutcome:
    """A tick this invocation has no time left for, sent again as it is, due now: another invocation
    takes it at once (failing it instead would hide it for the queue's whole visibility timeout)."""
    deps.scheduler.send(message, now=deps.clock())
    return TickOutcome.HANDED_BACK


@dataclass(frozen=True)
class SweepReport:
    overdue: int
    rearmed: int


def sweep(deps: Deps) -> SweepReport:
    """Give every live execution whose tick is overdue (a lost message, a crashed tick) a new one."""
    now = deps.clock()
    cutoff = now - timedelta(seconds=deps.settings.sweep_grace_seconds)
    overdue = deps.executions.overdue(cutoff, limit=SWEEP_LIMIT)
    rearmed = 0
    for execution_id in overdue:
        try:
            rearmed += _rearm_if_still_overdue(deps, execution_id, cutoff=cutoff, now=now)
        except Exception:
            # One bad item must not starve the rest of this run; the next run retries it.
            logger.exception("could not re-arm", extra={"overdueExecutionId": execution_id})
    if rearmed:
        metrics.add_metric(name="TicksRearmed", unit=MetricUnit.Count, value=rearmed)
        logger.warning("re-armed overdue executions", extra={"rearmed": rearmed, "overdue": len(overdue)})
    return SweepReport(overdue=len(overdue), rearmed=rearmed)


def _rearm_if_still_overdue(deps: Deps, execution_id: str, *, cutoff: datetime, now: datetime) -> bool:
    # The due index is eventually consistent: trust only a consistent read of the item itself.
    execution = deps.executions.get(execution_id)
    if (
        execution is None
        or execution.terminal
        or execution.next_poll_at is None
        or execution.next_poll_at >= cutoff
    ):
        return False
    try:
        commit(deps, execution, rearmed(execution, now=now), now=now)
    except StaleWrite:
        return False  # it moved meanwhile, so it is not stuck
    return True
