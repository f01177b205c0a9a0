"""The client-facing use cases: submit, read (with long poll), list, cancel."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate.domain.accounts import Account
from asyncgate.domain.catalog import ModelSpec, Number
from asyncgate.domain.execution import EventType, Execution, advance, new_execution, new_tick_id
from asyncgate.domain.idempotency import (
    IDEMPOTENCY_WINDOW,
    IdempotencyRecord,
    SubmitReceipt,
    fingerprint,
    key_hash,
)
from asyncgate.domain.schedule import first_poll_delay, next_poll_delay
from asyncgate.domain.status import Event, Status
from asyncgate.errors import (
    AsyncgateError,
    AsyncNotSupported,
    ExecutionNotCancellable,
    ExecutionNotFound,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InsufficientCredits,
    PayloadTooLarge,
    ProviderSubmitFailed,
    QueueLimitExceeded,
    UnknownModel,
    ValidationFailed,
)
from asyncgate.observability import logger, metrics
from asyncgate.providers.registry import ProviderNotConfigured, check_configured
from asyncgate.services.deps import Deps
from asyncgate.services.lifecycle import arm_tick, commit, dispatch, lost_dispatch_failed
from asyncgate.services.webhooks import checked_webhook_url
from asyncgate.store.accounts import AccountRefused
from asyncgate.store.executions import (
    IdempotencyKeyTaken,
    InvalidCursor,
    Page,
    StaleWrite,
    cursor_after,
)
from asyncgate.store.items import stored_bytes
from asyncgate.store.keys import Principal

# How often a long poll re-reads the execution while it waits for a change.
LONG_POLL_INTERVAL_SECONDS = 0.5
# How long a retried Idempotency-Key waits for the first request's answer before it answers 409.
IN_FLIGHT_WAIT_SECONDS = 5.0
IDEMPOTENT_REPLAYED = "Idempotent-Replayed"
# Cancel re-reads and retries when its conditional write loses a race with a tick.
CANCEL_ATTEMPTS = 3
# The most an input may take as the execution stores it (its item holds 400 KB in all, and the result,
# the error and the bookkeeping need room beside it). A JSON body re-serialized can grow (`1e5` is stored
# as `100000.0`), so the stored form is what is measured, not the request's 256 KiB.
MAX_INPUT_BYTES = 240 * 1024


@dataclass(frozen=True)
class SubmitCommand:
    model: str
    input: dict[str, object]
    metadata: dict[str, str]
    webhook_url: str | None
    webhook_events: list[EventType] | None
    idempotency_key: str | None = None
    # Where providers reach this API: the base of the callback URLs handed to them.
    callback_base: str | None = None

    def fingerprint(self) -> str:
        """What the request asks for, whatever its key or the host it came in on: the same key must
        come with the same request."""
        request = asdict(self)
        del request["idempotency_key"], request["callback_base"]
        return fingerprint(request)


@dataclass(frozen=True)
class SubmitOutcome:
    receipt: SubmitReceipt
    # True when this is the first answer again, for a retried Idempotency-Key.
    replayed: bool


@dataclass(frozen=True)
class CancelOutcome:
    previous_status: Status
    execution: Execution


def submit(deps: Deps, principal: Principal, command: SubmitCommand) -> SubmitOutcome:
    """Accept a job: the execution, its reservation on the tenant's account (queue limit and credits)
    and its idempotency record are one transaction, then the job is dispatched (inline) or its first
    tick sent. A retried key answers the first answer again."""
    spec = deps.spec(command.model)
    try:
        check_configured(spec.provider)
    except ProviderNotConfigured as missing:
        raise UnknownModel(
            f"model {spec.model!r} is not available: its provider {spec.provider!r} has no API key "
            f"configured ({missing.key_variable})",
            details={"model": spec.model, "provider": spec.provider},
        ) from None
    if not spec.is_async:
        raise AsyncNotSupported(
            f"model {spec.model!r} is sync-only at its provider and cannot run as an async execution",
            details={"model": spec.model},
        )
    if errors := spec.input_errors(dict(command.input)):
        raise ValidationFailed(f"input does not match the schema of {spec.model}", errors)
    if (size := stored_bytes(command.input)) > MAX_INPUT_BYTES:
        raise PayloadTooLarge(
            f"input takes {size} bytes as stored, over {MAX_INPUT_BYTES}",
            details={"limit": MAX_INPUT_BYTES, "field": "input"},
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
        # The price of this input (per image, per second...), held until the job settles.
        reserved_credits=spec.price_of(command.input),
        callback_base=command.callback_base,
    )
    record = None
    if command.idempotency_key is not None:
        record = IdempotencyRecord(
            tenant=principal.tenant,
            key_hash=key_hash(command.idempotency_key),
            fingerprint=command.fingerprint(),
            execution_id=execution_id,
            created_at=now,
            expires_at=now + IDEMPOTENCY_WINDOW,
            # A queued dispatch's answer is known now; an inline one's only after the provider answers.
            receipt=None if inline else SubmitReceipt.of(queued),
        )
    try:
        deps.executions.create(
            queued, now=now, idempotency=deps.idempotency.put_operation(record) if record else None
        )
    except IdempotencyKeyTaken:
        assert record is not None
        return _replay(deps, record)
    except AccountRefused as refused:
        raise _refusal(deps, refused.account, spec, queued.reserved_credits) from None
    metrics.add_metric(name="Submits", unit=MetricUnit.Count, value=1)
    if not inline:
        arm_tick(deps, queued, now=now)
        return _answer(SubmitReceipt.of(queued), replayed=False)
    receipt = SubmitReceipt.of(dispatch(deps, queued, spec, now=now))
    if record is not None:
        deps.idempotency.complete(record, receipt)
    return _answer(receipt, replayed=False)


def _answer(receipt: SubmitReceipt, *, replayed: bool) -> SubmitOutcome:
    """The submit's answer from its receipt; the same receipt always gives the same answer."""
    error = receipt.error
    if error is not None:
        raise ProviderSubmitFailed(
            "the provider refused the job",
            details={
                "executionId": receipt.execution_id,
                "providerStatus": error.provider_status,
                "providerBody": error.provider_body,
            },
            headers={IDEMPOTENT_REPLAYED: "true"} if replayed else None,
        )
    return SubmitOutcome(receipt=receipt, replayed=replayed)


def _replay(deps: Deps, attempt: IdempotencyRecord) -> SubmitOutcome:
    """Answer a request whose key an earlier request holds: that request's answer, once it has one.

    While the first request is still dispatching inline, wait for its answer a few seconds; then answer
    409 IDEMPOTENCY_KEY_IN_USE (retry later). A first request that died without answering is recovered
    once it is surely gone: its answer is rebuilt from its execution and kept for every later retry.
    """
    give_up_at = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
    pause = 0.05
    while True:
        record = deps.idempotency.get(attempt.tenant, attempt.key_hash, now=deps.clock())
        if record is None:
            # Expired and taken over in the instant between our write and this read.
            raise IdempotencyKeyInUse(
                "another request with this Idempotency-Key is in flight", headers={"Retry-After": "1"}
            )
        if record.fingerprint != attempt.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request body",
                details={"executionId": record.execution_id},
            )
        if record.receipt is not None:
            metrics.add_metric(name="IdempotentReplays", unit=MetricUnit.Count, value=1)
            return _answer(_current(deps, record.receipt), replayed=True)
        age = (deps.clock() - record.created_at).total_seconds()
        if age > deps.settings.idempotency_in_flight_seconds:
            execution = deps.executions.get(record.execution_id)
            if execution is not None:
                execution = _settled_dispatch(deps, execution)
                deps.idempotency.complete(record, SubmitReceipt.recovered(execution))
                continue  # read back whichever answer was recorded first
        if time.monotonic() >= give_up_at:
            raise IdempotencyKeyInUse(
                "a request with this Idempotency-Key is still in flight; retry shortly",
                details={"executionId": record.execution_id},
                headers={"Retry-After": "1"},
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _current(deps: Deps, receipt: SubmitReceipt) -> SubmitReceipt:
    """The receipt a replay answers with. An answer of `queued` said the job was not dispatched yet, so
    its replay says where the execution is now (running with its provider id, or failed, ...); any other
    answer was final and is answered again as it was."""
    if receipt.status is not Status.QUEUED:
        return receipt
    execution = deps.executions.get(receipt.execution_id)
    if execution is None:
        return receipt
    return receipt.model_copy(
        update={"status": execution.status, "provider_request_id": execution.provider_request_id}
    )


def _settled_dispatch(deps: Deps, execution: Execution) -> Execution:
    """The execution of a first request that died before answering (only an inline dispatch's request
    records its answer after the provider's), its dispatch's fate settled: one still unrecorded past the
    in-flight window (longer than the submit function can run) is surely lost, so the execution fails
    now (as the sweeper would fail it later), and the request's answer is the failed submit, not
    `queued`."""
    now = deps.clock()
    lost = (
        execution.status is Status.QUEUED
        and execution.dispatch_started_at is not None
        and (now - execution.dispatch_started_at).total_seconds()
        > deps.settings.idempotency_in_flight_seconds
    )
    if not lost:
        return execution
    try:
        return commit(deps, execution, lost_dispatch_failed(deps, execution, now=now), now=now)
    except StaleWrite:
        return deps.executions.get(execution.execution_id) or execution


def _refusal(deps: Deps, account: Account | None, spec: ModelSpec, price: Number) -> AsyncgateError:
    if account is None:
        return InsufficientCredits(
            "this tenant has no credit account", details={"required": price, "available": 0}
        )
    if account.live_executions >= account.queue_limit:
        # A slot frees when a live execution finishes: about when a job like this one is first polled.
        retry_after = min(
            60, max(1, math.ceil(deps.scaled(first_poll_delay(spec.poll_plan)).total_seconds()))
        )
        return QueueLimitExceeded(
            f"the tenant already has {account.live_executions} live executions (queueLimit "
            f"{account.queue_limit})",
            details={"queueLimit": account.queue_limit, "liveExecutions": account.live_executions},
            headers={"Retry-After": str(retry_after)},
        )
    return InsufficientCredits(
        f"the balance ({account.credits} credits) does not cover the price of {spec.model} ({price})",
        details={"required": price, "available": account.credits},
    )


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
    """The status answer's Retry-After: when something may have changed. Polling alone, that is the
    next tick (whose delay already weighs progress and the provider's queue). While the provider calls
    back, the job may end long before the safety-net tick: the job's estimated end while it is ahead,
    then the cadence polling alone would keep."""
    if execution.terminal:
        return None
    if execution.next_poll_at is None:
        return 1
    now = deps.clock()
    until = (execution.next_poll_at - now).total_seconds()
    if execution.awaits_callbacks:
        until = min(until, _expected_change(deps, execution, now))
    return max(1, math.ceil(until))


def _expected_change(deps: Deps, execution: Execution, now: datetime) -> float:
    if execution.eta_seconds is not None:
        left = (execution.updated_at + timedelta(seconds=execution.eta_seconds) - now).total_seconds()
        if left >= 1:
            return left
    started = execution.started_at or execution.created_at
    plan = deps.spec(execution.model).poll_plan
    return next_poll_delay(
        plan, elapsed=(now - started).total_seconds(), progress=execution.progress, rng=deps.rng
    )


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


def within_bytes(page: Page, sizes: list[int], max_bytes: int) -> Page:
    """The page cut where its items' answer sizes (`sizes`, in order) would pass `max_bytes` (a Lambda
    answer holds 6 MB), with a cursor that goes on right after the last item kept; at least one item."""
    used = 0
    for count, size in enumerate(sizes):
        used += size
        if count and used > max_bytes:
            return Page(items=page.items[:count], next_cursor=cursor_after(page.items[count - 1]))
    return page


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
        # The provider's cancel is called by a tick due at once, so this request never waits on it.
        after = advance(
            execution,
            Event.CANCEL,
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
