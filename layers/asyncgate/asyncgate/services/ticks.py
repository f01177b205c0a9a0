"""The background use cases: one poll tick, and the sweeper that re-arms lost ticks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate.domain.execution import new_tick_id
from asyncgate.observability import logger, metrics
from asyncgate.scheduling import TickMessage
from asyncgate.services.deps import Deps
from asyncgate.services.lifecycle import commit, step
from asyncgate.store.executions import StaleWrite

# A tick is "lost" once it is this late: SQS delivery and batching delays stay well below it.
SWEEP_GRACE_SECONDS = 120.0
# Re-arms per sweeper run, so one run's work (and its burst of ticks) stays bounded.
SWEEP_LIMIT = 200
# A chained hop that arrives this close to its due time is processed rather than sent on again.
EARLY_TOLERANCE = timedelta(seconds=1)


class TickOutcome(StrEnum):
    PROCESSED = "processed"
    STALE = "stale"  # duplicate, superseded or for a finished execution: dropped
    LOST_RACE = "lost_race"  # another writer moved the execution first; its own tick carries on
    CHAINED = "chained"  # the wait is longer than one SQS delay: sent on towards its due time


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
    after = step(deps, execution, deps.spec(execution.model), now=now)
    try:
        commit(deps, execution, after, now=now)
    except StaleWrite:
        return TickOutcome.LOST_RACE
    return TickOutcome.PROCESSED


@dataclass(frozen=True)
class SweepReport:
    overdue: int
    rearmed: int


def sweep(deps: Deps) -> SweepReport:
    """Give every live execution whose tick is overdue (a lost message, a crashed tick) a new one."""
    now = deps.clock()
    overdue = deps.executions.overdue(now - deps.scaled(SWEEP_GRACE_SECONDS), limit=SWEEP_LIMIT)
    rearmed = 0
    for execution_id in overdue:
        execution = deps.executions.get(execution_id)
        if execution is None or execution.terminal:
            continue
        # A fresh tick id retires whatever message may still be out there for the old one.
        after = execution.model_copy(
            update={
                "version": execution.version + 1,
                "tick_id": new_tick_id(),
                "next_poll_at": now,
                "updated_at": now,
            }
        )
        try:
            commit(deps, execution, after, now=now)
        except StaleWrite:
            continue  # it moved meanwhile, so it is not stuck
        rearmed += 1
    if rearmed:
        metrics.add_metric(name="TicksRearmed", unit=MetricUnit.Count, value=rearmed)
        logger.warning("re-armed overdue executions", extra={"rearmed": rearmed, "overdue": len(overdue)})
    return SweepReport(overdue=len(overdue), rearmed=rearmed)
