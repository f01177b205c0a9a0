"""The adaptive poll schedule."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncgate.domain.schedule import (
    ERROR_CAP_SECONDS,
    MAX_SQS_DELAY_SECONDS,
    MIN_DELAY_SECONDS,
    PollPlan,
    error_retry_delay,
    eta_seconds,
    first_poll_delay,
    next_poll_delay,
    queued_poll_delay,
    sqs_hop_seconds,
)

PLAN = PollPlan(expected_seconds=20, max_seconds=600)


def test_first_poll_is_a_quarter_of_the_expected_duration() -> None:
    assert first_poll_delay(PLAN) == 5.0
    assert first_poll_delay(PollPlan(expected_seconds=2, max_seconds=30)) == MIN_DELAY_SECONDS
    assert first_poll_delay(PollPlan(expected_seconds=3600, max_seconds=7200)) == 300.0


def test_a_place_in_the_providers_queue_spaces_the_polls_out() -> None:
    # Next in line: as soon as a new job's first poll; each job ahead adds one such gap, up to the cap.
    assert queued_poll_delay(PLAN, position=0) == first_poll_delay(PLAN) == 5.0
    assert queued_poll_delay(PLAN, position=1) == 10.0
    assert queued_poll_delay(PLAN, position=50) == PLAN.cap_seconds
    short = PollPlan(expected_seconds=2, max_seconds=30)
    assert queued_poll_delay(short, position=3) == 4.0  # 1 s (the floor) for itself and each of 3 ahead
    assert queued_poll_delay(short, position=9) == short.cap_seconds == 5.0


def test_progress_drives_the_eta() -> None:
    rng = random.Random(1)
    # 5 s in, 25 % done: 15 s to go, within the cap (half the expected duration) -> 10 s.
    assert next_poll_delay(PLAN, elapsed=5, progress=25, rng=rng) == pytest.approx(10.0)
    # 15 s in, 75 % done: 5 s to go.
    assert next_poll_delay(PLAN, elapsed=15, progress=75, rng=rng) == pytest.approx(5.0)
    long_plan = PollPlan(expected_seconds=400, max_seconds=3600)
    assert next_poll_delay(long_plan, elapsed=50, progress=25, rng=rng) == pytest.approx(150.0)
    assert next_poll_delay(PLAN, elapsed=19.9, progress=99.9, rng=rng) == MIN_DELAY_SECONDS
    assert next_poll_delay(PLAN, elapsed=30, progress=100, rng=rng) == MIN_DELAY_SECONDS


def test_without_progress_it_aims_at_the_expected_end_then_backs_off_with_the_overtime() -> None:
    rng = random.Random(7)
    assert next_poll_delay(PLAN, elapsed=5, progress=None, rng=rng) == pytest.approx(10.0)  # capped
    assert next_poll_delay(PLAN, elapsed=15, progress=None, rng=rng) == pytest.approx(5.0)
    at_end = next_poll_delay(PLAN, elapsed=20, progress=None, rng=rng)
    assert 1.6 <= at_end <= 2.4  # a tenth of the expected duration, jittered
    later = [
        next_poll_delay(PLAN, elapsed=20 + overtime, progress=None, rng=rng) for overtime in (10, 20, 200)
    ]
    assert 2.8 <= later[0] <= 4.2
    assert 5.6 <= later[1] <= 8.4 or later[1] == PLAN.cap_seconds
    assert later[2] == PLAN.cap_seconds


def test_the_schedule_of_a_20s_job_without_progress_is_short() -> None:
    """Polls until a 20 s job is done: the first at 5 s, then at the expected end."""
    rng = random.Random(3)
    elapsed, polls = first_poll_delay(PLAN), 1
    while elapsed < 20:
        elapsed += next_poll_delay(PLAN, elapsed=elapsed, progress=None, rng=rng)
        polls += 1
    assert polls <= 3
    assert elapsed - 20 <= 0.15 * 20


@given(
    st.floats(min_value=1, max_value=7200),
    st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
    st.floats(min_value=0, max_value=20000),
)
def test_every_delay_is_within_bounds(expected: float, progress: float | None, elapsed: float) -> None:
    plan = PollPlan(expected_seconds=expected, max_seconds=expected * 2)
    delay = next_poll_delay(plan, elapsed=elapsed, progress=progress, rng=random.Random())
    assert MIN_DELAY_SECONDS <= delay <= plan.cap_seconds


def test_error_backoff_doubles_with_jitter_and_caps() -> None:
    rng = random.Random(3)
    first, second, third = (error_retry_delay(n, rng) for n in (1, 2, 3))
    assert 1.6 <= first <= 2.4
    assert 3.2 <= second <= 4.8
    assert 6.4 <= third <= 9.6
    assert error_retry_delay(30, rng) <= ERROR_CAP_SECONDS


@pytest.mark.parametrize(
    ("remaining", "hop"),
    [(-3, 0), (0, 0), (0.2, 1), (1.0, 1), (14.1, 15), (899.5, 900), (5000, MAX_SQS_DELAY_SECONDS)],
)
def test_sqs_hops_are_whole_seconds_up_to_900(remaining: float, hop: int) -> None:
    assert sqs_hop_seconds(remaining) == hop


def test_eta_from_progress_else_the_expected_duration() -> None:
    plan = PollPlan(expected_seconds=20, max_seconds=600)
    assert eta_seconds(plan, elapsed=10, progress=25.0) == 30.0, "a quarter done in 10 s: 30 s to go"
    assert eta_seconds(plan, elapsed=5, progress=None) == 15.0
    assert eta_seconds(plan, elapsed=5, progress=100.0) == 0.0
    assert eta_seconds(plan, elapsed=25, progress=None) is None, "overdue without progress: unknown"
