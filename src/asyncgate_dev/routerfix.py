"""Powertools' event handler keeps the event it is resolving, and its Lambda context, on the `BaseRouter`
class: one per process, which is right in Lambda, where a process serves one request at a time. The
local stack serves many at once, from threads of one process, so two requests in flight could read each
other's event (a submit routed or authenticated with another request's path, headers or body).

`install()` keeps that state per thread instead: the handler code is unchanged, and every request sees
only its own event, as it would in its own Lambda execution environment.
"""

from __future__ import annotations

import threading
from abc import ABCMeta
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

_state = threading.local()
# The class-level attributes Powertools assigns on every resolve (api_gateway.py: `BaseRouter.x = ...`).
PER_REQUEST = ("current_event", "lambda_context")


def _per_thread(name: str) -> property:
    def read(_: Any) -> Any:
        try:
            return getattr(_state, name)
        except AttributeError:
            raise AttributeError(name) from None

    def write(_: Any, value: Any) -> None:
        setattr(_state, name, value)

    return property(read, write)


class _PerThreadRouter(ABCMeta):
    """BaseRouter's metaclass here: `BaseRouter.current_event = ...` and its reads go to this thread's."""

    current_event = _per_thread("current_event")
    lambda_context = _per_thread("lambda_context")


def install() -> None:
    """Idempotent; before any request is served."""
    if type(BaseRouter) is _PerThreadRouter:
        return
    for name in PER_REQUEST:
        # Reads through an instance (`self.current_event`) find these in the class; reads and writes
        # through the class itself find the metaclass's.
        setattr(BaseRouter, name, _per_thread(name))
    BaseRouter.__class__ = _PerThreadRouter  # type: ignore[method-assign,assignment]  # a metaclass swap
