"""The status machine: terminal means final, and every path can end."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncgate.domain.status import (
    TERMINAL,
    TRANSITIONS,
    Event,
    IllegalTransition,
    Status,
    failure_code,
    next_status,
)

events = st.lists(st.sampled_from(list(Event)), max_size=40)


@given(events)
def test_no_sequence_of_events_moves_a_terminal_execution(sequence: list[Event]) -> None:
    status = Status.QUEUED
    became_terminal_as: Status | None = None
    for event in sequence:
        try:
            status = next_status(status, event)
        except IllegalTransition:
            assert status in TERMINAL or (status, event) not in TRANSITIONS
            continue
        if became_terminal_as is not None:
            pytest.fail(f"{became_terminal_as} moved to {status} on {event}")
        if status in TERMINAL:
            became_terminal_as = status
    assert became_terminal_as is None or status == became_terminal_as


@given(events)
def test_every_path_can_still_end_terminal(sequence: list[Event]) -> None:
    """Whatever happened so far, a timeout (which the poll tick always raises past maxDuration) ends it,
    and so does giving up (which repeated internal failures always reach)."""
    status = Status.QUEUED
    for event in sequence:
        try:
            status = next_status(status, event)
        except IllegalTransition:
            continue
    if status not in TERMINAL:
        assert next_status(status, Event.TIMED_OUT) in TERMINAL
        assert next_status(status, Event.GAVE_UP) in TERMINAL


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
@pytest.mark.parametrize("event", list(Event))
def test_terminal_statuses_have_no_outgoing_transition(terminal: Status, event: Event) -> None:
    with pytest.raises(IllegalTransition):
        next_status(terminal, event)


def test_cancel_racing_completion_ends_cancelled() -> None:
    status = next_status(Status.RUNNING, Event.CANCEL)
    assert status is Status.CANCEL_REQUESTED
    assert next_status(status, Event.PROVIDER_SUCCEEDED) is Status.CANCELLED
    assert next_status(status, Event.PROVIDER_FAILED) is Status.CANCELLED


def test_queued_cancel_is_immediate_and_cancel_requested_is_idempotent() -> None:
    assert next_status(Status.QUEUED, Event.CANCEL) is Status.CANCELLED
    assert next_status(Status.CANCEL_REQUESTED, Event.CANCEL) is Status.CANCEL_REQUESTED


@pytest.mark.parametrize(
    ("status", "event", "code"),
    [
        (Status.QUEUED, Event.SUBMIT_FAILED, "PROVIDER_SUBMIT_FAILED"),
        (Status.RUNNING, Event.PROVIDER_FAILED, "PROVIDER_FAILED"),
        (Status.RUNNING, Event.INCOMPLETE, "PROVIDER_RESPONSE_INCOMPLETE"),
        (Status.RUNNING, Event.TIMED_OUT, "EXECUTION_TIMEOUT"),
        (Status.RUNNING, Event.UNREACHABLE, "PROVIDER_UNREACHABLE"),
        (Status.QUEUED, Event.GAVE_UP, "INTERNAL_ERROR"),
        (Status.RUNNING, Event.GAVE_UP, "INTERNAL_ERROR"),
        (Status.CANCEL_REQUESTED, Event.GAVE_UP, None),
        (Status.CANCEL_REQUESTED, Event.PROVIDER_FAILED, None),
        (Status.RUNNING, Event.PROVIDER_SUCCEEDED, None),
    ],
)
def test_failure_codes(status: Status, event: Event, code: str | None) -> None:
    assert failure_code(status, event) == code


def test_every_non_terminal_status_is_reachable_from_queued() -> None:
    reachable = {Status.QUEUED}
    frontier = [Status.QUEUED]
    while frontier:
        current = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is current and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(Status)
