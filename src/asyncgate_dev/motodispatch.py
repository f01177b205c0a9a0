"""moto's server (moto 5.2.5) finding a request's backend once per host, patched in place.

Written as it would be offered to moto:

    moto_server: remember the backend found for a host

    `DomainDispatcherApplication.get_backend_for_host` runs for every request, under the dispatcher's
    lock: it lists moto's package directory (`list_of_moto_modules`: `os.listdir` and an `isdir` per
    service) and then tries every service's URL patterns against the host. The answer depends on the
    host alone (the directory and the patterns do not change while the server runs), so it is now
    kept per host, and a busy server no longer serializes its requests on a directory listing.

`install()` is idempotent; `asyncgate_dev.motofix.install()` calls it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_MARK = "_asyncgate_backend_by_host"
_originals: dict[str, Callable[..., Any]] = {}


def install() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication  # noqa: PLC0415

    with _lock:
        if getattr(DomainDispatcherApplication, _MARK, False):
            return
        _originals["get_backend_for_host"] = DomainDispatcherApplication.get_backend_for_host
        setattr(DomainDispatcherApplication, "get_backend_for_host", _get_backend_for_host)  # noqa: B010
        setattr(DomainDispatcherApplication, _MARK, True)


def _get_backend_for_host(dispatcher: Any, host: str | None) -> Any:
    # Called under the dispatcher's own lock.
    known: dict[str | None, Any] = dispatcher.__dict__.setdefault(_MARK, {})
    if host not in known:
        known[host] = _originals["get_backend_for_host"](dispatcher, host)
    return known[host]
