"""The client-facing use cases: submit, read (with long poll), list, cancel."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate.domain.execution import EventType, Execution, advance, new_execution, new_tick_id
from asyncgate.domain.status import Event, Status
from asyncgate.errors import (
    AsyncNotSupported,
    ExecutionNotCancellable,
    ExecutionNotFound,
    ProviderSubmitFailed,
    ValidationFailed,
)
from asyncgate.observability import logger, metrics
from asyncgate.services.deps import Deps
from asyncgate.services.lifecycle import arm_tick, commit, dispatch
from asyncgate.services.webhooks import checked_webhook_url
from asyncgate.store.executions import InvalidCursor, Page, StaleWrite
from asyncgate.store.keys import Principal

# How often a long poll re-reads the execution while it waits for a change.
LONG_POLL_INTERVAL_SECONDS = 0.5
# Cancel re-reads and retries when its conditional write loses a race with a tick.
CANCEL_ATTEMPTS = 3


@dataclass(frozen=True)
class SubmitCommand:
    model: str
    input: dict[str, object]
    metadata: dict[str, str]
    webhook_url: str | None
    webhook_events: list[EventType] | None


@dataclass(frozen=True)
class CancelOutcome:
    previous_status: Status
    execution: Execution


def submit(deps: Deps, principal: Principal, command: SubmitCommand) -> Execution:
    spec = deps.spec(command.model)
    if not spec.is_async:
        raise AsyncNotSupported(
            f"model {spec.model!r} is sync-only at its provider and cannot run as an async execution",
            details={"model": spec.model},
        )
    if command.webhook_url is not None:
        checked_webhook_url(deps, command.webhook_url)
    now = deps.clock()
    execution_id = str(uuid.uuid4())
    logger.append_keys(execution_id=execution_id)
    inline = spec.dispatch == "inline"
    queued = new_execution(
        execution_id=execution_id,
        tenant=principal.tenant,
        spec=spec,
        input=dict(command.input),
        metadata=command.metadata,
        webhook_url=command.webhook_url,
        webhook_events=command.webhook_events,
        now=now,
        # Queued: the dispatch tick is due at once. Inline: due now too, so that if this function dies
        # before recording the dispatch, the sweeper finds the execution and fails it (never re-submits).
        first_tick_at=now,
        dispatching=inline,
    )
    deps.executions.create(queued)
    metrics.add_metric(name="Submits", unit=MetricUnit.Count, value=1)
    if not inline:
        arm_tick(deps, queued, now=now)
        return queued
    current = dispatch(deps, queued, spec, now=now)
    error = current.error
    if current.status is Status.FAILED and error and error.code == "PROVIDER_SUBMIT_FAILED":
        raise ProviderSubmitFailed(
            "the provider refused the job",
            details={
                "executionId": execution_id,
                "providerStatus": error.provider_status,
                "providerBody": error.provider_body,
            },
        )
    return current


def _parse_id(execution_id: str) -> str:
    try:
        return str(uuid.UUID(execution_id))
    except ValueError:
        # A malformed id names nothing: answer as for any id that does not exist.
        raise ExecutionNotFound(f"execution {execution_id!r} not found") from None


def _visible(execution: Execution | None, principal: Principal, now: datetime) -> bool:
    if execution is None or execution.tenant != principal.tenant:
        return False
    # TTL deletes lazily: an item past its cleanup time is already gone as far as clients can tell.
    return execution.cleanup_after is None or execution.cleanup_after > now


def get_owned(deps: Deps, principal: Principal, execution_id: str) -> Execution:
    execution_id = _parse_id(execution_id)
    logger.append_keys(execution_id=execution_id)
    execution = deps.executions.get(execution_id)
    if execution is None or not _visible(execution, principal, deps.clock()):
        raise ExecutionNotFound(f"execution {execution_id!r} not found")
    return execution


def wait_for_change(
    deps: Deps, principal: Principal, execution_id: str, *, wait_seconds: int, deadline: float
) -> Execution:
    """The execution, held until its status or progress changes, `wait_seconds` pass, or the
    monotonic `deadline` (the function's own time limit) comes near."""
    execution = get_owned(deps, principal, execution_id)
    until = min(time.monotonic() + wait_seconds, deadline)
    while not execution.terminal and (left := until - time.monotonic()) > 0:
        time.sleep(min(LONG_POLL_INTERVAL_SECONDS, left))
        current = get_owned(deps, principal, execution.execution_id)
        if (current.status, current.progress) != (execution.status, execution.progress):
            return current
        execution = current
    return execution


def retry_after_seconds(deps: Deps, execution: Execution) -> int | None:
    """The status answer's Retry-After: when the next tick is due, from the same schedule."""
    if execution.terminal:
        return None
    if execution.next_poll_at is None:
        return 1
    return max(1, math.ceil((execution.next_poll_at - deps.clock()).total_seconds()))


def list_executions(
    deps: Deps,
    principal: Principal,
    *,
    status: Status | None,
    model: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    try:
        page = deps.executions.list_for_tenant(
            principal.tenant, status=status, model=model, limit=limit, cursor=cursor
        )
    except InvalidCursor as error:
        raise ValidationFailed("invalid cursor", [{"field": "cursor", "message": str(error)}]) from error
    now = deps.clock()
    return Page(
        items=[item for item in page.items if _visible(item, principal, now)], next_cursor=page.next_cursor
    )


def cancel(deps: Deps, principal: Principal, execution_id: str) -> CancelOutcome:
    for _ in range(CANCEL_ATTEMPTS):
        execution = get_owned(deps, principal, execution_id)
        if execution.terminal:
            raise ExecutionNotCancellable(
                f"execution is already {execution.status.value}", details={"status": execution.status.value}
            )
        if execution.status is Status.CANCEL_REQUESTED:
            # Asked before: answer as the first time did.
            return CancelOutcome(previous_status=Status.RUNNING, execution=execution)
        now = deps.clock()
        spec = deps.spec(execution.model)
        # The provider's cancel is called by a tick due at once, so this request never waits on it.
        after = advance(
            execution,
            Event.CANCEL,
            spec=spec,
            now=now,
            retention=deps.retention,
            next_poll_at=now,
            tick_id=new_tick_id(),
        )
        try:
            commit(deps, execution, after, now=now)
        except StaleWrite:
            continue  # a tick moved it meanwhile: look again
        metrics.add_metric(name="Cancels", unit=MetricUnit.Count, value=1)
        return CancelOutcome(previous_status=execution.status, execution=after)
    raise RuntimeError(f"cancel of {execution_id} kept losing races")
