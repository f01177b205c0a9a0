"""The execution as the domain knows it, and the pure functions that move it through its lifecycle."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from asyncgate.domain.catalog import ModelSpec, Number
from asyncgate.domain.status import FAILURE_CODES, Event, Status, next_status

EventType = Literal[
    "execution.succeeded",
    "execution.failed",
    "execution.cancelled",
    "execution.running",
    "execution.progress",
]
TERMINAL_EVENTS: tuple[EventType, ...] = ("execution.succeeded", "execution.failed", "execution.cancelled")

_FAILURE_MESSAGES = {
    "PROVIDER_SUBMIT_FAILED": "the provider refused the job",
    "PROVIDER_FAILED": "the provider reported failure",
    "PROVIDER_RESPONSE_INCOMPLETE": "the provider reported completion without the expected output",
    "EXECUTION_TIMEOUT": "the execution ran past the model's maxDurationSeconds",
    "PROVIDER_UNREACHABLE": "the provider could not be reached within the error budget",
    "INTERNAL_ERROR": "the gateway could not finish the execution after repeated internal failures",
}
# error.message is bounded (a provider's error text can be any size; the item holds 400 KB in all).
MAX_ERROR_MESSAGE = 1024


class OutputRef(BaseModel):
    # The provider's URL, as it last gave it (a copied output is read from the results bucket instead).
    url: str
    content_type: str | None = None
    # The object key in the results bucket once the output is copied there; None until then.
    stored_key: str | None = None
    # Bytes copied.
    size: int | None = None
    # Why the last copy failed (bounded, never the URL's query string); None once copied.
    copy_error: str | None = None
    # The copy failed for good (too large, a source asyncgate must not fetch): never tried again.
    copy_refused: bool = False

    @property
    def stored(self) -> bool:
        return self.stored_key is not None


class Result(BaseModel):
    outputs: list[OutputRef] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict)


class ExecutionError(BaseModel):
    code: str
    message: str
    provider_status: int | None = None
    provider_body: str | None = None


class Failure(BaseModel):
    """What went wrong, before the status machine decides whether it fails the execution."""

    message: str | None = None
    provider_status: int | None = None
    provider_body: str | None = None


class Cost(BaseModel):
    credits: Number


class WebhookAttempt(BaseModel):
    at: datetime
    status_code: int | None = None
    error: str | None = None


WebhookState = Literal["none", "pending", "delivered", "failed"]


class WebhookConfig(BaseModel):
    url: str | None = None
    events: list[EventType] = Field(default_factory=lambda: list(TERMINAL_EVENTS))
    state: WebhookState = "none"
    attempts: list[WebhookAttempt] = Field(default_factory=list)


class Execution(BaseModel):
    execution_id: str
    tenant: str
    model: str
    provider: str
    provider_model: str
    status: Status
    # Bumped by every write; each write is conditional on the version it read.
    version: int = 1
    input: dict[str, Any] = Field(default_factory=dict)
    progress: float | None = None
    # The job's place in the provider's queue, while the provider says it waits in one.
    queue_position: int | None = None
    # Seconds the job still has to run, as estimated at the last poll (progress rate, else the model's
    # expected duration); None when there is nothing to estimate from, or once terminal.
    eta_seconds: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime
    # The provider's own id of the job (what its logs and dashboard show).
    provider_request_id: str | None = None
    # What the adapter needs to find the job again (poll, cancel, callbacks) when that is more than the
    # provider's id (fal: the app's root with it); None when the id is enough.
    provider_job_ref: str | None = None
    result: Result | None = None
    error: ExecutionError | None = None
    poll_count: int = 0
    consecutive_errors: int = 0
    # Ticks in a row that failed inside the gateway (an exception, a lost tick the sweeper re-armed);
    # reset by every tick that completes. Past a bound the execution ends INTERNAL_ERROR.
    failed_ticks: int = 0
    cost: Cost | None = None
    # The credits reserved at submit (the price of its input then): held until the terminal transition
    # settles the cost from them and gives back the rest.
    reserved_credits: Number = 0
    metadata: dict[str, str] = Field(default_factory=dict)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    cleanup_after: datetime | None = None
    # When the next poll tick is due; None once terminal. The sweeper re-arms what is overdue.
    next_poll_at: datetime | None = None
    # Identifies the one poll-tick message the execution is waiting for; any other is stale.
    tick_id: str = Field(default_factory=lambda: new_tick_id())
    # The provider's cancel was called (so a cancel_requested tick does not call it again).
    cancel_sent: bool = False
    # When a dispatch to the provider began. A queued execution that has one and is still queued lost
    # its dispatch's outcome (a crash, a timeout): it is never submitted again, the job may exist.
    dispatch_started_at: datetime | None = None
    # Where providers reach this API (as the submit came in, or the configured public URL): the base of
    # the callback URL handed to a provider that calls back.
    callback_base: str | None = None
    # The provider was given a callback URL: polling is then only the safety net for a lost callback.
    awaits_callbacks: bool = False
    # A callback arrived before the dispatch was recorded (a very fast job): poll at once after it.
    early_callback: bool = False
    # Extra ticks taken, after the provider said done, to copy outputs that did not fit in one tick.
    copy_rounds: int = 0

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @property
    def job_ref(self) -> str | None:
        """How the provider's adapter names the job in its calls."""
        return self.provider_job_ref or self.provider_request_id


def new_tick_id() -> str:
    return uuid.uuid4().hex


def new_execution(
    *,
    execution_id: str,
    tenant: str,
    spec: ModelSpec,
    input: dict[str, Any],
    metadata: dict[str, str],
    webhook_url: str | None,
    webhook_events: list[EventType] | None,
    now: datetime,
    first_tick_at: datetime,
    dispatching: bool,
    reserved_credits: Number,
    callback_base: str | None = None,
) -> Execution:
    webhook = WebhookConfig(
        url=webhook_url,
        events=webhook_events or list(TERMINAL_EVENTS),
        state="pending" if webhook_url else "none",
    )
    return Execution(
        execution_id=execution_id,
        tenant=tenant,
        model=spec.model,
        provider=spec.provider,
        provider_model=spec.provider_model,
        status=Status.QUEUED,
        input=input,
        created_at=now,
        updated_at=now,
        metadata=metadata,
        webhook=webhook,
        next_poll_at=first_tick_at,
        dispatch_started_at=now if dispatching else None,
        reserved_credits=reserved_credits,
        callback_base=callback_base,
    )


def _bookkeeping(execution: Execution, now: datetime, **changes: Any) -> Execution:
    """A write that changes no status: the version still moves, so it is conditional like any other."""
    return execution.model_copy(update={**changes, "version": execution.version + 1, "updated_at": now})


def claimed_for_dispatch(execution: Execution, *, now: datetime) -> Execution:
    """The queued execution claimed by one tick before it calls the provider: a new tick id makes every
    other copy of the tick stale, so the provider is called once. Due now, so that if the dispatch never
    records its outcome the sweeper finds it (and fails it rather than submitting again)."""
    return _bookkeeping(execution, now, dispatch_started_at=now, tick_id=new_tick_id(), next_poll_at=now)


def rearmed(execution: Execution, *, now: datetime, tick_lost: bool = False) -> Execution:
    """A live execution given a tick due now (a provider called back, or its own tick was lost): the
    new id retires any message left. A lost tick counts as a failed one (its handler may have died)."""
    failed = execution.failed_ticks + 1 if tick_lost else execution.failed_ticks
    return _bookkeeping(execution, now, tick_id=new_tick_id(), next_poll_at=now, failed_ticks=failed)


def retried_after_failure(execution: Execution, *, now: datetime, at: datetime) -> Execution:
    """A live execution whose tick failed inside the gateway: one more failed tick counted, and a new
    tick due `at` (a backoff), which retires the failed one."""
    return _bookkeeping(
        execution, now, failed_ticks=execution.failed_ticks + 1, tick_id=new_tick_id(), next_poll_at=at
    )


def called_back_early(execution: Execution, *, now: datetime) -> Execution:
    """A queued execution whose provider called back before its dispatch was recorded: the dispatch,
    when it records, plans its first poll at once instead of waiting for a callback already spent."""
    return _bookkeeping(execution, now, early_callback=True)


def charged_for(status: Status, event: Event) -> bool:
    """What succeeded costs what was reserved for it at submit; so does a cancelled execution whose
    provider had already finished the job (it is cancelled with its result: the provider billed for it).
    Nothing else is charged."""
    return status is Status.SUCCEEDED or (status is Status.CANCELLED and event is Event.PROVIDER_SUCCEEDED)


def advance(
    execution: Execution,
    event: Event,
    *,
    now: datetime,
    retention: timedelta,
    failure: Failure | None = None,
    **changes: Any,
) -> Execution:
    """The execution after `event`: status from the status machine, plus the bookkeeping every
    transition shares (version, timestamps, terminal fields, error, cost).

    Raises IllegalTransition when the event does not apply (e.g. anything on a terminal execution).
    """
    status = next_status(execution.status, event)
    update: dict[str, Any] = {
        # A transition is progress: whatever run of failed ticks came before it is over.
        "failed_ticks": 0,
        **changes,
        "status": status,
        "version": execution.version + 1,
        "updated_at": now,
    }
    if status.terminal:
        update |= {
            "completed_at": now,
            "cleanup_after": now + retention,
            "next_poll_at": None,
            "queue_position": None,
            "eta_seconds": None,
        }
        charged = charged_for(status, event)
        update["cost"] = Cost(credits=execution.reserved_credits if charged else 0)
        if status is Status.SUCCEEDED:
            update["progress"] = 100.0
        if status is Status.CANCELLED and not charged:
            # A result on a cancelled execution says the provider finished (and billed) the job.
            update["result"] = None
    if status is Status.FAILED:
        code = FAILURE_CODES[event]
        failure = failure or Failure()
        update["error"] = ExecutionError(
            code=code,
            message=(failure.message or _FAILURE_MESSAGES[code])[:MAX_ERROR_MESSAGE],
            provider_status=failure.provider_status,
            provider_body=failure.provider_body,
        )
    return execution.model_copy(update=update)
