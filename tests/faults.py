"""Faults injected into the product's own boto3 clients (botocore event hooks), for tests that must make a
real write fail, lose its answer, or be retried after it committed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

Params = dict[str, Any]


def client_error(operation: str, code: str = "ProvisionedThroughputExceededException") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)


@dataclass
class Fault:
    """How many calls it hit, and the parameters of each."""

    hits: list[Params] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, params: Params, matches: Callable[[Params], bool], times: int | None) -> bool:
        with self._lock:
            if not matches(params) or (times is not None and len(self.hits) >= times):
                return False
            self.hits.append(params)
            return True


@contextmanager
def failing(
    client: Any,
    operation: str,
    *,
    matches: Callable[[Params], bool] = lambda _: True,
    times: int | None = 1,
    code: str = "ProvisionedThroughputExceededException",
    after_commit: bool = False,
) -> Iterator[Fault]:
    """Calls of `operation` (e.g. "UpdateItem") on `client` that `matches` fail, at most `times` of them
    (None: all): with `code` before anything is sent, or, with `after_commit`, once the call has been
    carried out (its answer lost: the caller sees an error although the write happened)."""
    fault = Fault()
    service = client.meta.service_model.service_id.hyphenize()
    # The API parameters are seen before they are serialized; `context` follows the call to its answer.
    build = f"before-parameter-build.{service}.{operation}"

    def before(params: Params, **_: Any) -> None:
        if fault.take(params, matches, times):
            raise client_error(operation, code)

    def remember(params: Params, context: Any, **_: Any) -> None:
        context["asyncgate_params"] = params

    def after(context: Any, **_: Any) -> None:
        if fault.take(context.get("asyncgate_params") or {}, matches, times):
            raise client_error(operation, code)

    handlers: list[tuple[str, Callable[..., None]]] = (
        [(build, remember), (f"after-call.{service}.{operation}", after)]
        if after_commit
        else [(build, before)]
    )
    for name, handler in handlers:
        client.meta.events.register(name, handler, unique_id=f"fault-{id(fault)}-{name}")
    try:
        yield fault
    finally:
        for name, _ in handlers:
            client.meta.events.unregister(name, unique_id=f"fault-{id(fault)}-{name}")


@contextmanager
def interleaved(
    client: Any, operation: str, action: Callable[[], object], *, matches: Callable[[Params], bool]
) -> Iterator[Fault]:
    """The first call of `operation` that `matches` waits while `action` runs, then goes on: another
    writer's move lands between what the caller read and what it writes (a real race, made certain)."""
    fault = Fault()
    service = client.meta.service_model.service_id.hyphenize()
    name = f"before-parameter-build.{service}.{operation}"

    def before(params: Params, **_: Any) -> None:
        if fault.take(params, matches, 1):
            action()

    client.meta.events.register(name, before, unique_id=f"race-{id(fault)}")
    try:
        yield fault
    finally:
        client.meta.events.unregister(name, unique_id=f"race-{id(fault)}")


def updates_of(execution_id: str | None = None, *, setting: str | None = None) -> Callable[[Params], bool]:
    """Matches the UpdateItem (or a transaction's Update) of an execution's item (any execution's when
    `execution_id` is None), optionally only those that set the attribute `setting`."""

    def matches(params: Params) -> bool:
        updates = (
            [params]
            if "Key" in params
            else [item.get("Update", {}) for item in params.get("TransactItems", [])]
        )
        for update in updates:
            key = update.get("Key", {}).get("pk", {}).get("S", "")
            if not key.startswith("EXEC#") or execution_id not in (None, key.removeprefix("EXEC#")):
                continue
            names = update.get("ExpressionAttributeNames", {}).values()
            if setting is None or setting in names:
                return True
        return False

    return matches


def items_under(prefix: str) -> Callable[[Params], bool]:
    """Matches a call on an item whose partition key starts with `prefix` (e.g. "DELIVERY#")."""
    return lambda params: str(params.get("Key", {}).get("pk", {}).get("S", "")).startswith(prefix)
