"""The execution status machine of the contract, as one table.

queued -> running -> cancel_requested -> succeeded | failed | cancelled. A terminal status has no
outgoing transition, so nothing (a duplicate message, a late poll, a cancel racing completion) can
move it.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCEL_REQUESTED = "cancel_requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})


class Event(StrEnum):
    DISPATCHED = "dispatched"  # the provider accepted the job
    SUBMIT_FAILED = "submit_failed"  # the provider refused the job
    PROGRESSED = "progressed"  # the provider is still working
    PROVIDER_SUCCEEDED = "provider_succeeded"
    PROVIDER_FAILED = "provider_failed"
    PROVIDER_CANCELLED = "provider_cancelled"
    INCOMPLETE = "incomplete"  # the provider said done, the output is missing
    TIMED_OUT = "timed_out"  # past the model's maxDurationSeconds
    UNREACHABLE = "unreachable"  # poll errors past the model's error budget
    CANCEL = "cancel"  # the client asked to cancel
    # The gateway could not finish the execution after repeated internal failures (ticks that kept
    # failing, a write that can never succeed): it ends, refunded, instead of looping for ever.
    GAVE_UP = "gave_up"


# Error code written into execution.error when an event fails an execution.
FAILURE_CODES: dict[Event, str] = {
    Event.SUBMIT_FAILED: "PROVIDER_SUBMIT_FAILED",
    Event.PROVIDER_FAILED: "PROVIDER_FAILED",
    Event.PROVIDER_CANCELLED: "PROVIDER_FAILED",
    Event.INCOMPLETE: "PROVIDER_RESPONSE_INCOMPLETE",
    Event.TIMED_OUT: "EXECUTION_TIMEOUT",
    Event.UNREACHABLE: "PROVIDER_UNREACHABLE",
    Event.GAVE_UP: "INTERNAL_ERROR",
}

_FINISHING_EVENTS = (
    Event.PROVIDER_SUCCEEDED,
    Event.PROVIDER_FAILED,
    Event.PROVIDER_CANCELLED,
    Event.INCOMPLETE,
    Event.TIMED_OUT,
    Event.UNREACHABLE,
    Event.GAVE_UP,
)

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.QUEUED, Event.DISPATCHED): Status.RUNNING,
    (Status.QUEUED, Event.SUBMIT_FAILED): Status.FAILED,
    (Status.QUEUED, Event.CANCEL): Status.CANCELLED,
    (Status.QUEUED, Event.TIMED_OUT): Status.FAILED,
    (Status.QUEUED, Event.UNREACHABLE): Status.FAILED,
    (Status.QUEUED, Event.GAVE_UP): Status.FAILED,
    (Status.RUNNING, Event.PROGRESSED): Status.RUNNING,
    (Status.RUNNING, Event.PROVIDER_SUCCEEDED): Status.SUCCEEDED,
    (Status.RUNNING, Event.PROVIDER_FAILED): Status.FAILED,
    # The provider cancelled a job nobody asked to cancel: for the client that is a provider failure.
    (Status.RUNNING, Event.PROVIDER_CANCELLED): Status.FAILED,
    (Status.RUNNING, Event.INCOMPLETE): Status.FAILED,
    (Status.RUNNING, Event.TIMED_OUT): Status.FAILED,
    (Status.RUNNING, Event.UNREACHABLE): Status.FAILED,
    (Status.RUNNING, Event.GAVE_UP): Status.FAILED,
    (Status.RUNNING, Event.CANCEL): Status.CANCEL_REQUESTED,
    (Status.CANCEL_REQUESTED, Event.PROGRESSED): Status.CANCEL_REQUESTED,
    (Status.CANCEL_REQUESTED, Event.CANCEL): Status.CANCEL_REQUESTED,
    # Once cancel was asked, however the job ends it is cancelled; it is charged only when the provider
    # had finished it (execution.charged_for).
    **{(Status.CANCEL_REQUESTED, event): Status.CANCELLED for event in _FINISHING_EVENTS},
}


class IllegalTransition(Exception):
    def __init__(self, status: Status, event: Event) -> None:
        super().__init__(f"no transition from {status} on {event}")
        self.status = status
        self.event = event


def next_status(status: Status, event: Event) -> Status:
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalTransition(status, event) from None


def failure_code(status: Status, event: Event) -> str | None:
    """The execution error code when `event` fails an execution in `status`, else None."""
    if next_status(status, event) is Status.FAILED:
        return FAILURE_CODES[event]
    return None
