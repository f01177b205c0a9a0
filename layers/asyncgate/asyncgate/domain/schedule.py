"""When to poll the provider next: pure functions of what we know about the job.

- First poll: a quarter of the model's expected duration, so a progress report arrives early enough
  to plan the rest.
- With progress p: the remaining time estimated as elapsed * (100 - p) / p.
- Without progress: straight to the expected end of the job, then, once it is overdue, a backoff that
  grows with the overtime (about a third of it between polls), so the completion lag stays a bounded
  fraction of the job's length however long it overruns.
- Transient provider errors: their own short exponential backoff.
Every delay has +-20 % jitter where it is a guess (not where it is an estimate from progress), and a cap.
SQS delays at most 900 s a message, so longer waits are chained hop by hop.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

MAX_SQS_DELAY_SECONDS = 900
MIN_DELAY_SECONDS = 1.0
JITTER = 0.2  # +-20 %
OVERTIME_FRACTION = 0.35
ERROR_BASE_SECONDS = 2.0
ERROR_CAP_SECONDS = 60.0
LONGEST_GAP_SECONDS = 300.0


@dataclass(frozen=True)
class PollPlan:
    """The model's timing facts the schedule needs."""

    expected_seconds: float
    max_seconds: float

    @property
    def cap_seconds(self) -> float:
        """The longest gap between two polls: half the expected duration, between 5 s and 5 min, so a
        wrong estimate (non-linear progress, a job far longer than expected) costs at most that."""
        return min(LONGEST_GAP_SECONDS, max(5.0, self.expected_seconds / 2))


def _jitter(delay: float, rng: random.Random) -> float:
    return delay * rng.uniform(1 - JITTER, 1 + JITTER)


def _clamp(delay: float, cap: float) -> float:
    return max(MIN_DELAY_SECONDS, min(delay, cap))


def first_poll_delay(plan: PollPlan) -> float:
    return _clamp(plan.expected_seconds / 4, plan.cap_seconds)


def queued_poll_delay(plan: PollPlan, *, position: int) -> float:
    """A job waiting in the provider's queue at `position` (0: next) starts no sooner than the jobs
    ahead of it: a first-poll delay for each, capped like every gap."""
    return _clamp(first_poll_delay(plan) * (1 + position), plan.cap_seconds)


def eta_seconds(plan: PollPlan, *, elapsed: float, progress: float | None) -> float | None:
    """How long the job still has to run, by its progress rate when it reports progress, else by the
    model's expected duration; None once it has run past that (nothing left to estimate from)."""
    if progress is not None and 0 < progress < 100:
        return elapsed * (100 - progress) / progress
    if progress is not None and progress >= 100:
        return 0.0
    left = plan.expected_seconds - elapsed
    return left if left >= 0 else None


def next_poll_delay(plan: PollPlan, *, elapsed: float, progress: float | None, rng: random.Random) -> float:
    """Delay before the next poll of a job that has been running for `elapsed` seconds."""
    if progress is not None and 0 < progress < 100:
        remaining = eta_seconds(plan, elapsed=elapsed, progress=progress)
        assert remaining is not None
        return _clamp(remaining, plan.cap_seconds)
    if progress is not None and progress >= 100:
        # Done computing but not yet reported done (e.g. uploading outputs): look again soon.
        return MIN_DELAY_SECONDS
    until_expected_end = plan.expected_seconds - elapsed
    if until_expected_end >= MIN_DELAY_SECONDS:
        return _clamp(until_expected_end, plan.cap_seconds)
    overtime = max(0.0, -until_expected_end)
    floor = max(MIN_DELAY_SECONDS, plan.expected_seconds / 10)
    return _clamp(_jitter(max(floor, overtime * OVERTIME_FRACTION), rng), plan.cap_seconds)


def error_retry_delay(consecutive_errors: int, rng: random.Random) -> float:
    """Backoff after the n-th consecutive transient provider error (n >= 1)."""
    exponent = max(0, consecutive_errors - 1)
    return _clamp(_jitter(ERROR_BASE_SECONDS * 2**exponent, rng), ERROR_CAP_SECONDS)


def sqs_hop_seconds(remaining: float) -> int:
    """The DelaySeconds of the next message towards a wait of `remaining` seconds (whole seconds)."""
    if remaining <= 0:
        return 0
    return min(MAX_SQS_DELAY_SECONDS, math.ceil(remaining))
