"""What the adapters' callback checks share: the headers a signature needs, the replay window, the body.

Each check raises CallbackRejected with a short reason; the reason never quotes a header or the body (a
forged callback chooses them).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from asyncgate.providers.base import CallbackRejected, CallbackRequest

# How far a signed timestamp may be from our clock: older is a replay, newer a forgery or a clock fault.
# Five minutes, as Standard Webhooks and fal's and Kie's verification guides use.
TOLERANCE = timedelta(minutes=5)


def required_header(request: CallbackRequest, name: str, provider: str) -> str:
    """The header `name` (lower-case), which the provider's signature needs."""
    value = request.headers.get(name, "").strip()
    if not value:
        raise CallbackRejected(f"{provider} callback without its {name} header")
    return value


def check_timestamp(value: str, now: datetime, provider: str) -> None:
    """`value` is whole seconds since the epoch, within TOLERANCE of `now`."""
    if not (value.isascii() and value.isdigit()):
        raise CallbackRejected(f"{provider} callback timestamp is not a number of seconds")
    if abs(now.timestamp() - int(value)) > TOLERANCE.total_seconds():
        raise CallbackRejected(f"{provider} callback timestamp is outside the replay window")


def json_object(request: CallbackRequest, provider: str) -> dict[str, Any]:
    """The body as a JSON object."""
    try:
        body = json.loads(request.body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise CallbackRejected(f"{provider} callback body is not a JSON object")
    return body


def check_job(found: Any, expected: str, provider: str) -> None:
    """The job a callback names is this execution's."""
    if found != expected:
        raise CallbackRejected(f"{provider} callback is about another job")
