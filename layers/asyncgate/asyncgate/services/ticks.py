"""The background use cases: one poll tick, and the sweeper that re-arms lost ticks.

Every execution ends. A tick that fails inside the gateway (any exception: a bug, a model removed from
the catalog, a table that refuses the write) is counted on the execution and retried after a backoff;
a tick that dies without a word (its function timed out) is found overdue by the sweeper and counted
the same way. Past MAX_FAILED_TICKS in a row the execution is given up: failed INTERNAL_ERROR, refunded,
its webhook sent. Any transition (a tick that completes, a cancel) ends the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate.domain.execution import Execution, claimed_for_dispatch, rearmed, retried_after_failure
from asyncgate.domain.status import Status
from asyncgate.observability import logger, metrics
from asyncgate.scheduling import TickMessage
from asyncgate.services.deps import Deps
from asyncgate.services.lifecycle import commit, dispatch, give_up, step
from asyncgate.store.executions import StaleWrite

# Re-arms per sweeper run, so one run's work (and its burst of ticks) stays bounded.
SWEEP_LIMIT = 200
# A chained hop that arrives this close to its due time is processed rather than sent on again.
EARLY_TOLERANCE = timedelta(seconds=1)
# Failed ticks in a row after which the execution is given up (INTERNAL_ERROR).
MAX_FAILED_TICKS = 5
# The wait before a failed tick is tried again: doubled at each failure (5, 10, 20, 40 s; time-scaled).
FAILED_TICK_BACKOFF_SECONDS = 5.0
# With more due ticks than this waiting on the poll queue, an overdue execution is late because the
# consumers are behind, not because its tick failed: its re-arm is then not counted as a failure.
BACKLOG_TICKS = 100


class TickOutcome(StrEnum):
    PROCESSED = "processed"
    STALE = "stale"  # duplicate, superseded or for a finished execution: dropped
    LOST_RACE = "lost_race"  # another writer moved the execution first; its own tick carries on
    CHAINED = "chained"  # the wait is longer than one SQS delay: sent on towards its due time
    HANDED_BACK = "handed_back"  # no time left in this invocation: sent again, for another one at once
    FAILED = "failed"  # the tick failed inside the gateway: counted, and tried again after a backoff
    GAVE_UP = "gave_up"  # too many failed ticks in a row: the execution ended INTERNAL_ERROR


def process_tick(deps: Deps, message: TickMessage) -> TickOutcome:
    """One tick. A failure inside it is counted on the execution (and the tick retried later, or the
    execution given up); only a failure to count it raises, so that SQS delivers the message again."""
    logger.append_keys(execution_id=message.execution_id)
    # The tick id this tick holds: the message's, then the claim's once it claims a dispatch.
    held = [message.tick_id]
    try:
        return _run_tick(deps, message, held)
    except Exception:
        logger.exception("tick failed")
        metrics.add_metric(name="TickFailures", unit=MetricUnit.Count, value=1)
        return _after_failure(deps, message.execution_id, held[-1])


def _run_tick(deps: Deps, message: TickMessage, held: list[str]) -> TickOutcome:
    execution = deps.executions.get(message.execution_id)
    if execution is None or execution.terminal or execution.tick_id != message.tick_id:
        metrics.add_metric(name="StaleTicks", unit=MetricUnit.Count, value=1)
        return TickOutcome.STALE
    now = deps.clock()
    if message.due_at > now + EARLY_TOLERANCE:
        deps.scheduler.send(message, now=now)
        return TickOutcome.CHAINED
    try:
        spec = deps.spec(execution.model)
        if execution.status is Status.QUEUED and execution.dispatch_started_at is None:
            # Claim first: of two copies of this tick, only one can win the write, so the provider is
            # called once.
            claimed = claimed_for_dispatch(execution, now=now)
            deps.executions.update(execution, claimed)
            held.append(claimed.tick_id)
            dispatch(deps, claimed, spec, now=now)
        else:
            commit(deps, execution, step(deps, execution, spec, now=now), now=now)
    except StaleWrite:
        return TickOutcome.LOST_RACE
    return TickOutcome.PROCESSED


def _after_failure(deps: Deps, execution_id: str, tick_id: str) -> TickOutcome:
    """Count the failed tick on its execution (if it is still the execution's current tick) and arm the
    next try after a backoff, or give the execution up past the bound."""
    execution = deps.executions.get(execution_id)
    if execution is None or execution.terminal or execution.tick_id != tick_id:
        return TickOutcome.STALE
    now = deps.clock()
    try:
        if _last_chance(execution):
            give_up(deps, execution, now=now, reason=f"{MAX_FAILED_TICKS} ticks in a row failed")
            return TickOutcome.GAVE_UP
        backoff = FAILED_TICK_BACKOFF_SECONDS * 2**execution.failed_ticks
        commit(
            deps, execution, retried_after_failure(execution, now=now, at=now + deps.scaled(backoff)), now=now
        )
    except StaleWrite:
        return TickOutcome.LOST_RACE  # it moved meanwhile: whoever moved it carries on
    return TickOutcome.FAILED


def hand_back(deps: Deps, message: TickMessage) -> TickOutcome:
    """A tick this invocation has no time left for, sent again as it is, due now: another invocation
    takes it at once (failing it instead would hide it for the queue's whole visibility timeout)."""
    deps.scheduler.send(message, now=deps.clock())
    return TickOutcome.HANDED_BACK


@dataclass(frozen=True)
class SweepReport:
    overdue: int
    rearmed: int
    given_up: int = 0


def sweep(deps: Deps) -> SweepReport:
    """Give every live execution whose tick is overdue (a lost message, a crashed tick) a new one; give
    up an execution whose ticks kept failing."""
    now = deps.clock()
    cutoff = now - timedelta(seconds=deps.settings.sweep_grace_seconds)
    overdue = deps.executions.overdue(cutoff, limit=SWEEP_LIMIT)
    if not overdue:
        return SweepReport(overdue=0, rearmed=0)
    tick_lost = deps.scheduler.backlog() < BACKLOG_TICKS
    rearmed = given_up = 0
    for execution_id in overdue:
        try:
            outcome = _rearm_if_still_overdue(deps, execution_id, cutoff=cutoff, now=now, tick_lost=tick_lost)
        except Exception:
            # One bad item must not starve the rest of this run; the next run retries it.
            logger.exception("could not re-arm", extra={"overdueExecutionId": execution_id})
            continue
        rearmed += outcome is TickOutcome.PROCESSED
        given_up += outcome is TickOutcome.GAVE_UP
    if rearmed:
        metrics.add_metric(name="TicksRearmed", unit=MetricUnit.Count, value=rearmed)
        logger.warning("re-armed overdue executions", extra={"rearmed": rearmed, "overdue": len(overdue)})
    return SweepReport(overdue=len(overdue), rearmed=rearmed, given_up=given_up)


def _rearm_if_still_overdue(
    deps: Deps, execution_id: str, *, cutoff: datetime, now: datetime, tick_lost: bool
) -> TickOutcome:
    # The due index is eventually consistent: trust only a consistent read of the item itself.
    execution = deps.executions.get(execution_id)
    if not _overdue(execution, cutoff):
        return TickOutcome.STALE
    assert execution is not None
    try:
        if tick_lost and _last_chance(execution):
            give_up(deps, execution, now=now, reason=f"{MAX_FAILED_TICKS} ticks in a row were lost")
            return TickOutcome.GAVE_UP
        commit(deps, execution, rearmed(execution, now=now, tick_lost=tick_lost), now=now)
    except StaleWrite:
        return TickOutcome.STALE  # it moved meanwhile, so it is not stuck
    return TickOutcome.PROCESSED


def _last_chance(execution: Execution) -> bool:
    """Whether one more failed tick makes MAX_FAILED_TICKS in a row."""
    return execution.failed_ticks + 1 >= MAX_FAILED_TICKS


def _overdue(execution: Execution | None, cutoff: datetime) -> bool:
    return (
        execution is not None
        and not execution.terminal
        and execution.next_poll_at is not None
        and execution.next_poll_at < cutoff
    )
