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
}


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
    provider_request_id: str | None = None
    result: Result | None = None
    error: ExecutionError | None = None
    poll_count: int = 0
    consecutive_errors: int = 0
    cost: Cost | None = None
    # The credits reserved at submit (the model's price then): held until the terminal transition
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
        reserved_credits=spec.price.credits,
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


def rearmed(execution: Execution, *, now: datetime) -> Execution:
    """A live execution given a tick due now (its own was lost, or a provider called back): the new id
    retires any message left."""
    return _bookkeeping(execution, now, tick_id=new_tick_id(), next_poll_at=now)


def called_back_early(execution: Execution, *, now: datetime) -> Execution:
    """A queued execution whose provider called back before its dispatch was recorded: the dispatch,
    when it records, plans its first poll at once instead of waiting for a callback already spent."""
    return _bookkeeping(execution, now, early_callback=True)


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
        # What succeeded costs what was reserved for it at submit; nothing else is charged.
        update["cost"] = Cost(credits=execution.reserved_credits if status is Status.SUCCEEDED else 0)
        if status is Status.SUCCEEDED:
            update["progress"] = 100.0
    if status is Status.FAILED:
        code = FAILURE_CODES[event]
        failure = failure or Failure()
        update["error"] = ExecutionError(
            code=code,
            message=failure.message or _FAILURE_MESSAGES[code],
            provider_status=failure.provider_status,
            provider_body=failure.provider_body,
        )
    return execution.model_copy(update=update)
