"""Which webhook events a state change emits, and the identities and schedule of their deliveries."""

from __future__ import annotations

import hashlib
import math

from asyncgate.domain.execution import TERMINAL_EVENTS, EventType, Execution
from asyncgate.domain.status import Status

# 1 first attempt by the notify function + 4 retries by the state machine.
MAX_ATTEMPTS = 5
# The retry gaps the state machine waits (minutes 2, 4, 8, 16), each jittered by at most +-25 %.
RETRY_GAPS_SECONDS = (120, 240, 480, 960)
RETRY_JITTER = 0.25
# Progress events: at most one per this many percentage points.
PROGRESS_STEP = 10.0

_EVENT_FOR_STATUS: dict[Status, EventType] = {
    Status.RUNNING: "execution.running",
    Status.SUCCEEDED: "execution.succeeded",
    Status.FAILED: "execution.failed",
    Status.CANCELLED: "execution.cancelled",
}
TERMINAL_EVENT_TYPES = frozenset(TERMINAL_EVENTS)


def _progress_step(progress: float | None) -> int:
    return -1 if progress is None else math.floor(progress / PROGRESS_STEP)


def events_for(old: Execution | None, new: Execution) -> list[EventType]:
    """The events a write from `old` to `new` emits: one for a status with an event of its own, or a
    progress event when a running execution crosses a 10 % step. Nothing for bookkeeping writes."""
    if old is None or old.status is not new.status:
        event = _EVENT_FOR_STATUS.get(new.status)
        return [event] if event else []
    if new.status is Status.RUNNING and _progress_step(new.progress) > _progress_step(old.progress):
        return ["execution.progress"]
    return []


def terminal_event(execution: Execution) -> EventType | None:
    """The event the execution's terminal status emitted, None while it is live."""
    event = _EVENT_FOR_STATUS.get(execution.status)
    return event if event in TERMINAL_EVENT_TYPES else None


def webhook_id(execution: Execution, event_type: EventType, destination: str) -> str:
    """Stable for one event at one destination: every retry, and every redelivery of the stream record
    that emitted it, carries the same id (the version names the write that emitted the event)."""
    seed = f"{execution.execution_id}|{event_type}|{execution.version}|{destination}"
    return "msg_" + hashlib.sha256(seed.encode()).hexdigest()[:32]


def jitter_window(gap_seconds: int) -> tuple[int, int]:
    """The [low, high] a jittered gap falls in."""
    return math.floor(gap_seconds * (1 - RETRY_JITTER)), math.ceil(gap_seconds * (1 + RETRY_JITTER))
