"""The transition code every path shares: dispatch to the provider, one poll step, and the commit
(conditional write, then the next tick). Submit, the poll tick, cancel and the sweeper all use it."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from asyncgate.domain.callbacks import callback_url, redact_callback_tokens
from asyncgate.domain.catalog import ModelSpec
from asyncgate.domain.execution import Execution, Failure, Result, advance, new_tick_id
from asyncgate.domain.schedule import (
    MIN_DELAY_SECONDS,
    error_retry_delay,
    eta_seconds,
    first_poll_delay,
    next_poll_delay,
    queued_poll_delay,
)
from asyncgate.domain.status import Event, Status
from asyncgate.observability import logger, metrics
from asyncgate.providers.base import (
    PollResult,
    Provider,
    ProviderError,
    ProviderJob,
    ProviderMalformed,
    ProviderRejected,
    ProviderState,
    ProviderUnavailable,
    truncate_body,
)
from asyncgate.scheduling import TickMessage
from asyncgate.services.deps import Deps
from asyncgate.services.outputs import out_of_time, stored_outputs
from asyncgate.store.executions import ItemTooLarge, StaleWrite

# After cancel was asked, look again soon: the provider usually confirms within seconds.
CANCEL_FOLLOW_UP_SECONDS = 2.0
# The most of a provider's raw result kept in `result.raw`, in bytes of compact JSON.
RAW_RESULT_LIMIT = 64 * 1024
# Ticks more a succeeded job may take to copy outputs that did not fit in one tick's copy budget.
COPY_ROUNDS = 4
# What a provider says of a job that is over, whatever the execution's own clock says.
FINAL_STATES = frozenset({ProviderState.SUCCEEDED, ProviderState.FAILED, ProviderState.CANCELLED})
# A dispatch whose write loses a race re-reads and records its outcome again, this many times at most.
RECORD_ATTEMPTS = 3
# Between two tries to record a dispatch whose write failed (DynamoDB throttling or unavailable).
RECORD_RETRY_SECONDS = (0.2, 0.8)


def commit(deps: Deps, before: Execution, after: Execution, *, now: datetime) -> Execution:
    """Write the transition (conditional on the version read; raises StaleWrite when it lost a race),
    then arm the tick the new state waits for; returns the execution as written. If the send fails the
    execution is left overdue, and the sweeper re-arms it: the write, not the message, is the source of
    truth. A transition too big for its item can never be written: the execution ends INTERNAL_ERROR
    instead (the write that says so only shrinks the item), rather than failing every tick for ever."""
    try:
        deps.executions.update(before, after)
    except ItemTooLarge as error:
        logger.error(
            "execution too large to write", extra={"itemBytes": error.size, "to": after.status.value}
        )
        return give_up(deps, before, now=now, reason="the execution's data grew past what can be stored")
    if after.status is not before.status:
        metrics.add_metric(
            name=f"Executions{after.status.value.title().replace('_', '')}", unit=MetricUnit.Count, value=1
        )
        logger.info("execution transition", extra={"from": before.status.value, "to": after.status.value})
    if not after.terminal and after.next_poll_at and after.tick_id != before.tick_id:
        arm_tick(deps, after, now=now)
    return after


def give_up(deps: Deps, execution: Execution, *, now: datetime, reason: str) -> Execution:
    """End a live execution that the gateway cannot finish (its ticks keep failing, its data cannot be
    written): failed INTERNAL_ERROR (cancelled when cancel was asked), refunded, its provider job cancelled
    where it can be. Needs nothing but the execution itself: not its model (it may have left the
    catalog), not its result. Raises StaleWrite when the execution moved meanwhile."""
    after = advance(
        execution,
        Event.GAVE_UP,
        now=now,
        retention=deps.retention,
        failure=Failure(message=f"{reason}; credits are refunded"),
        result=None,
    )
    deps.executions.update(execution, after)
    metrics.add_metric(name="ExecutionsGivenUp", unit=MetricUnit.Count, value=1)
    logger.error("execution given up", extra={"reason": reason, "from": execution.status.value})
    if execution.job_ref is not None:
        _cancel_quietly(deps.providers(execution.provider), execution.job_ref)
    return after


def arm_tick(deps: Deps, execution: Execution, *, now: datetime) -> None:
    """Send the tick the (already written) execution waits for. A failed send is logged, not raised:
    the execution is then overdue, and the sweeper re-arms it."""
    assert execution.next_poll_at is not None
    message = TickMessage(
        execution_id=execution.execution_id, tick_id=execution.tick_id, due_at=execution.next_poll_at
    )
    try:
        deps.scheduler.send(message, now=now)
    except (BotoCoreError, ClientError):
        metrics.add_metric(name="TickSendFailures", unit=MetricUnit.Count, value=1)
        logger.exception("tick not sent; the sweeper will re-arm the execution")


def _rescheduled(deps: Deps, now: datetime, delay_seconds: float) -> dict[str, Any]:
    return {"next_poll_at": now + deps.scaled(delay_seconds), "tick_id": new_tick_id()}


def _failure(error: ProviderError) -> Failure:
    body = redact_callback_tokens(error.body) if error.body is not None else None
    return Failure(message=str(error), provider_status=error.status, provider_body=body)


def _callback_url(deps: Deps, execution: Execution, provider: Provider) -> str | None:
    """The URL the provider calls when the job finishes, where it takes one and callbacks are on."""
    if execution.callback_base is None or not provider.accepts_callbacks:
        return None
    key = deps.callback_key()
    if key is None:
        return None
    return callback_url(execution.callback_base, key, provider.name, execution.execution_id)


def _submit_to_provider(
    deps: Deps, execution: Execution, spec: ModelSpec
) -> tuple[ProviderJob | ProviderError, bool]:
    """The provider's answer to the submit, and whether it was given a callback URL."""
    provider = deps.providers(spec.provider)
    try:
        url = _callback_url(deps, execution, provider)
    except Exception:
        # No key to make a token with (a secret that could not be read): poll the job instead.
        logger.exception("callback URL not available; the job is polled")
        url = None
    try:
        job = provider.submit(
            execution_id=execution.execution_id,
            provider_model=spec.provider_model,
            input=execution.input,
            callback_url=url,
        )
    except ProviderError as error:
        metrics.add_metric(name="ProviderSubmitErrors", unit=MetricUnit.Count, value=1)
        return error, False
    return job, url is not None


def _safety_net(deps: Deps, delay: float, *, awaits_callbacks: bool) -> float:
    """While the provider calls back, a poll is only the net for a lost callback: never sooner than it."""
    return max(delay, deps.settings.callback_safety_net_seconds) if awaits_callbacks else delay


def _first_poll_delay(deps: Deps, execution: Execution, spec: ModelSpec, *, awaits_callbacks: bool) -> float:
    if execution.early_callback:
        return MIN_DELAY_SECONDS  # the provider called back already: the job may be done
    return _safety_net(deps, first_poll_delay(spec.poll_plan), awaits_callbacks=awaits_callbacks)


def _dispatched(
    deps: Deps,
    execution: Execution,
    spec: ModelSpec,
    outcome: ProviderJob | ProviderError,
    *,
    awaits_callbacks: bool,
    now: datetime,
) -> Execution:
    if isinstance(outcome, ProviderError):
        return advance(
            execution,
            Event.SUBMIT_FAILED,
            now=now,
            retention=deps.retention,
            failure=_failure(outcome),
        )
    return advance(
        execution,
        Event.DISPATCHED,
        now=now,
        retention=deps.retention,
        provider_request_id=outcome.provider_request_id,
        provider_job_ref=outcome.reference,
        started_at=now,
        # Until a poll tells more, the job has all of its expected run ahead.
        eta_seconds=math.ceil(spec.expected_duration_seconds),
        awaits_callbacks=awaits_callbacks,
        early_callback=False,  # spent on this first poll
        **_rescheduled(
            deps, now, _first_poll_delay(deps, execution, spec, awaits_callbacks=awaits_callbacks)
        ),
    )


def dispatch(deps: Deps, execution: Execution, spec: ModelSpec, *, now: datetime) -> Execution:
    """Hand a queued execution, already marked as dispatching, to its provider and record the outcome:
    running with a first poll planned, or failed. Returns the execution as stored afterwards.

    A submit is called once and never retried: the provider may have started (and billed) the job. So
    its outcome must be recorded, or the job stopped: when the write loses a race, the execution is read
    again and the outcome recorded on top of bookkeeping (a sweeper, an early callback); when the write
    fails (DynamoDB throttling, an outage), it is tried again a few times. A job the execution does not
    end up holding (it was cancelled or failed meanwhile, or the write never succeeded) is cancelled at
    the provider, best effort, so nothing runs and bills with nobody following it; a job the re-read
    shows as the execution's own is never cancelled (a write whose answer was lost did commit).
    """
    outcome, awaits_callbacks = _submit_to_provider(deps, execution, spec)
    before = execution
    failure: Exception | None = None
    known = True  # whether the last read told where the execution stands
    for attempt in range(RECORD_ATTEMPTS):
        after = _dispatched(deps, before, spec, outcome, awaits_callbacks=awaits_callbacks, now=now)
        try:
            return commit(deps, before, after, now=now)
        except StaleWrite:
            failure = None
        except Exception as error:  # the write failed, not only lost a race: try again shortly
            failure = error
            logger.warning("dispatch not recorded; trying again", exc_info=True)
            time.sleep(RECORD_RETRY_SECONDS[min(attempt, len(RECORD_RETRY_SECONDS) - 1)])
        try:
            current = deps.executions.get(execution.execution_id)
        except Exception:
            if failure is None:
                raise
            known = False
            continue
        known = True
        if isinstance(outcome, ProviderJob) and current is not None and _holds_job(current, outcome):
            return current  # the outcome is recorded: this job is the execution's own
        if current is not None and current.status is Status.QUEUED:
            before = current  # only bookkeeping moved (or nothing): record on top of it
            continue
        _stop_orphan(deps, spec, outcome)
        return current or after
    # The outcome could not be recorded: the execution stays queued with its dispatch started (the
    # sweeper fails it, never submitting again), the job is stopped if the execution surely does not hold
    # it, and this attempt fails.
    if known:
        _stop_orphan(deps, spec, outcome)
    elif isinstance(outcome, ProviderJob):
        metrics.add_metric(name="PossibleOrphanJobs", unit=MetricUnit.Count, value=1)
        logger.error(
            "dispatch outcome unknown; the provider job may run unfollowed",
            extra={"providerRequestId": outcome.provider_request_id},
        )
    raise failure or RuntimeError(f"could not record the dispatch of {execution.execution_id}")


def _holds_job(execution: Execution, job: ProviderJob) -> bool:
    return execution.provider_request_id == job.provider_request_id and execution.job_ref == job.job_ref


def _stop_orphan(deps: Deps, spec: ModelSpec, outcome: ProviderJob | ProviderError) -> None:
    """Cancel a job the provider accepted but no execution holds (best effort: some cannot be)."""
    if not isinstance(outcome, ProviderJob):
        return
    metrics.add_metric(name="OrphanJobsCancelled", unit=MetricUnit.Count, value=1)
    logger.warning(
        "provider job not recorded; cancelling it", extra={"providerRequestId": outcome.provider_request_id}
    )
    if spec.cancel:
        _cancel_quietly(deps.providers(spec.provider), outcome.job_ref)


def lost_dispatch_failed(deps: Deps, execution: Execution, *, now: datetime) -> Execution:
    """A queued execution whose dispatch began and never recorded its outcome (a crash, a timeout), as
    it ends: failed, never submitted again (the provider may have the job; a second submit could run
    and bill it twice)."""
    return advance(
        execution,
        Event.SUBMIT_FAILED,
        now=now,
        retention=deps.retention,
        failure=Failure(message="the dispatch to the provider did not complete; it is not retried"),
    )


def step(deps: Deps, execution: Execution, spec: ModelSpec, *, now: datetime) -> Execution:
    """One tick of a live execution that is not waiting for its dispatch: call the provider and derive
    the next state (the caller commits it)."""

    def finish(event: Event, **changes: Any) -> Execution:
        return advance(execution, event, now=now, retention=deps.retention, **changes)

    if execution.status is Status.QUEUED:
        if (now - execution.created_at).total_seconds() > spec.max_duration_seconds:
            return finish(Event.TIMED_OUT)
        return lost_dispatch_failed(deps, execution, now=now)
    job_ref = execution.job_ref
    assert job_ref is not None
    provider = deps.providers(spec.provider)
    started = execution.started_at or execution.created_at
    elapsed = (now - started).total_seconds()

    if elapsed > spec.max_duration_seconds:
        return _last_look(deps, execution, spec, provider, now=now, elapsed=elapsed)

    cancel_sent = execution.cancel_sent
    try:
        if execution.status is Status.CANCEL_REQUESTED and spec.cancel and not cancel_sent:
            try:
                provider.cancel(job_ref)
            except ProviderRejected as error:
                # The provider will not cancel (it may have finished already): the poll below tells.
                logger.info("provider refused cancel", extra={"providerStatus": error.status})
            cancel_sent = True
        polled = provider.poll(job_ref)
    except (ProviderUnavailable, ProviderMalformed) as error:
        metrics.add_metric(name="ProviderPollErrors", unit=MetricUnit.Count, value=1)
        errors = execution.consecutive_errors + 1
        if errors > spec.poll_error_budget:
            return finish(Event.UNREACHABLE, failure=_failure(error), cancel_sent=cancel_sent)
        # A rate limit's Retry-After is the provider's own word on when to come back: never sooner.
        retry_after = error.retry_after if isinstance(error, ProviderUnavailable) else None
        delay = max(error_retry_delay(errors, deps.rng), retry_after or 0.0)
        return finish(
            Event.PROGRESSED,
            consecutive_errors=errors,
            cancel_sent=cancel_sent,
            **_rescheduled(deps, now, delay),
        )
    except ProviderRejected as error:
        return finish(Event.PROVIDER_FAILED, failure=_failure(error), cancel_sent=cancel_sent)

    metrics.add_metric(name="ProviderPolls", unit=MetricUnit.Count, value=1)
    polled_fields: dict[str, Any] = {
        "poll_count": execution.poll_count + 1,
        "consecutive_errors": 0,
        "cancel_sent": cancel_sent,
    }
    return _after_poll(deps, execution, spec, polled, now=now, elapsed=elapsed, fields=polled_fields)


def _last_look(
    deps: Deps, execution: Execution, spec: ModelSpec, provider: Provider, *, now: datetime, elapsed: float
) -> Execution:
    """Past its time: one last poll, so a job that did finish (just before the limit, or its callback
    lost while polls were the far safety net) keeps its result. Otherwise it times out, and its job is
    cancelled where the provider can."""
    job_ref = execution.job_ref
    assert job_ref is not None
    fields: dict[str, Any] = {"cancel_sent": execution.cancel_sent}
    try:
        polled: PollResult | None = provider.poll(job_ref)
        fields |= {"poll_count": execution.poll_count + 1, "consecutive_errors": 0}
    except ProviderError:
        polled = None
    if polled is not None and polled.state in FINAL_STATES:
        return _after_poll(deps, execution, spec, polled, now=now, elapsed=elapsed, fields=fields)
    if spec.cancel:
        _cancel_quietly(provider, job_ref)
    return advance(execution, Event.TIMED_OUT, now=now, retention=deps.retention, **fields)


def _after_poll(
    deps: Deps,
    execution: Execution,
    spec: ModelSpec,
    polled: PollResult,
    *,
    now: datetime,
    elapsed: float,
    fields: dict[str, Any],
) -> Execution:
    def finish(event: Event, **changes: Any) -> Execution:
        return advance(execution, event, now=now, retention=deps.retention, **fields, **changes)

    # An incomplete answer's outputs are not kept, so they are not copied either.
    kept = bool(polled.outputs) and not (polled.state is ProviderState.SUCCEEDED and polled.incomplete)
    result = (
        Result(
            outputs=stored_outputs(
                deps, execution, polled.outputs, final=polled.state is ProviderState.SUCCEEDED
            ),
            raw=_kept_raw(polled.raw),
        )
        if kept
        else None
    )
    match polled.state:
        case ProviderState.SUCCEEDED if polled.incomplete or not polled.outputs:
            return finish(Event.INCOMPLETE, failure=Failure(provider_body=_raw_body(polled)))
        case ProviderState.SUCCEEDED if (
            result is not None and out_of_time(result.outputs) and execution.copy_rounds < COPY_ROUNDS
        ):
            # Done at the provider, but its outputs did not all fit in this tick's copy budget: one more
            # tick each (the outputs already stored are carried), before the success is written.
            return finish(
                Event.PROGRESSED,
                progress=100.0,
                result=result,
                copy_rounds=execution.copy_rounds + 1,
                **_rescheduled(deps, now, MIN_DELAY_SECONDS),
            )
        case ProviderState.SUCCEEDED:
            return finish(Event.PROVIDER_SUCCEEDED, result=result)
        case ProviderState.FAILED:
            failure = Failure(message=polled.error_message, provider_body=_raw_body(polled))
            return finish(Event.PROVIDER_FAILED, failure=failure, result=result)
        case ProviderState.CANCELLED:
            return finish(Event.PROVIDER_CANCELLED, result=result)
    if execution.status is Status.CANCEL_REQUESTED and spec.cancel:
        delay = CANCEL_FOLLOW_UP_SECONDS
    else:
        delay = _next_delay(deps, execution, spec, polled, elapsed=elapsed)
    return finish(
        Event.PROGRESSED,
        progress=polled.progress if polled.progress is not None else execution.progress,
        queue_position=polled.queue_position if polled.state is ProviderState.PENDING else None,
        eta_seconds=_eta(spec, polled, elapsed),
        result=result or execution.result,
        **_rescheduled(deps, now, delay),
    )


def _next_delay(
    deps: Deps, execution: Execution, spec: ModelSpec, polled: PollResult, *, elapsed: float
) -> float:
    """The wait before the next poll of a live job: its place in the provider's queue while it waits
    there, else its progress and age; never less than the safety net while the provider calls back."""
    if polled.state is ProviderState.PENDING and polled.queue_position is not None:
        delay = queued_poll_delay(spec.poll_plan, position=polled.queue_position)
    else:
        delay = next_poll_delay(spec.poll_plan, elapsed=elapsed, progress=polled.progress, rng=deps.rng)
    return _safety_net(deps, delay, awaits_callbacks=execution.awaits_callbacks)


def _eta(spec: ModelSpec, polled: PollResult, elapsed: float) -> int | None:
    """Seconds left, whole: a job still in the provider's queue has all of its expected run ahead."""
    if polled.state is ProviderState.PENDING:
        return math.ceil(spec.expected_duration_seconds)
    remaining = eta_seconds(spec.poll_plan, elapsed=elapsed, progress=polled.progress)
    return None if remaining is None else math.ceil(remaining)


def _kept_raw(raw: dict[str, Any]) -> dict[str, Any]:
    """The provider's own result (its echo of our callback URL without the token), unless it is too
    big to keep beside the rest of the execution in one DynamoDB item (400 KB, the input alone may take
    256 KiB): then only a note of its size."""
    text = json.dumps(raw, separators=(",", ":"))
    size = len(text.encode("utf-8"))
    if size > RAW_RESULT_LIMIT:
        return {"truncated": True, "bytes": size}
    redacted = redact_callback_tokens(text)
    return raw if redacted == text else dict(json.loads(redacted))


def _raw_body(polled: PollResult) -> str | None:
    return truncate_body(redact_callback_tokens(json.dumps(polled.raw))) if polled.raw else None


def _cancel_quietly(provider: Provider, job_ref: str) -> None:
    """Stop a job nobody follows any more; it ends either way, so a refusal is only logged."""
    try:
        provider.cancel(job_ref)
    except ProviderError as error:
        logger.warning("provider cancel failed", extra={"providerStatus": error.status})
