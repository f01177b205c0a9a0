"""The time an invocation has left, for the calls made on its behalf.

A handler states once how long its work may take (`within`: the submit function's 29 s, a poll tick's
budget); the provider calls and output copies made inside read what is left (`seconds_left`) and size
their timeouts to it, so no call outlives the invocation that waits for it. Without a stated budget
(tests, scripts) every call keeps its own default.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("asyncgate_deadline", default=None)


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Everything inside has at most `seconds` from now (or what an enclosing budget leaves)."""
    deadline = time.monotonic() + max(0.0, seconds)
    enclosing = _deadline.get()
    token = _deadline.set(deadline if enclosing is None else min(deadline, enclosing))
    try:
        yield
    finally:
        _deadline.reset(token)


def seconds_left(default: float) -> float:
    """`default`, or less when the budget in force ends sooner (never negative)."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return max(0.0, min(default, deadline - time.monotonic()))
