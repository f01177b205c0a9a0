"""The sharded listing at the store level, where one shard can be made long and sparse."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from asyncgate.domain.execution import advance, new_execution
from asyncgate.domain.status import Event, Status
from asyncgate.services.deps import default_deps
from asyncgate.services.tenants import create_tenant
from asyncgate.store.items import LIST_SHARDS, shard_of
from asyncgate_dev.handlers import load_handler
from tests.integration.driver import Gateway


def _ids_in_shard(shard: int, count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        candidate = str(uuid.uuid4())
        if shard_of(candidate, LIST_SHARDS) == shard:
            ids.append(candidate)
    return ids


def test_a_sparse_filter_over_a_long_shard_skips_nothing(aws_stack: Any) -> None:
    """One shard holds more than a request reads of it; the only match sits at the read boundary."""
    deps = default_deps()
    create_tenant(deps, "tenant-a", credits=10_000)
    spec = deps.spec("sim-video")
    start = deps.clock() - timedelta(hours=1)
    ids = _ids_in_shard(0, 130)
    created = []
    for index, execution_id in enumerate(ids):
        moment = start + timedelta(seconds=index)
        execution = new_execution(
            execution_id=execution_id, tenant="tenant-a", spec=spec, input={}, metadata={}, webhook_url=None,
            webhook_events=None, now=moment, first_tick_at=moment, dispatching=False,
            reserved_credits=spec.price_of({}),
        )  # fmt: skip
        deps.executions.create(execution, now=moment)
        created.append(execution)
    # Newest first, position 99 is the last item of a shard's 4-page (4 x 25) read budget.
    target = created[len(created) - 1 - 99]
    running = advance(target, Event.DISPATCHED, now=start, retention=deps.retention)
    deps.executions.update(target, running)
    deps.executions.update(
        running, advance(running, Event.PROVIDER_SUCCEEDED, now=start, retention=deps.retention)
    )

    found: list[str] = []
    cursor = None
    for _ in range(20):
        page = deps.executions.list_for_tenant(
            "tenant-a", status=Status.SUCCEEDED, model=None, limit=2, cursor=cursor
        )
        found.extend(item.execution_id for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert found == [target.execution_id]

    everything: list[str] = []
    cursor = None
    for _ in range(20):
        page = deps.executions.list_for_tenant("tenant-a", status=None, model=None, limit=100, cursor=cursor)
        everything.extend(item.execution_id for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert everything == [execution.execution_id for execution in reversed(created)]


def test_a_page_is_bounded_in_bytes_and_the_cursor_goes_on_where_it_stopped(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of big executions is cut before it would pass its byte budget (a Lambda answer holds 6 MB),
    and following the cursors still lists every execution once."""
    ids = {
        gateway.submit(sim={"durationSeconds": 30}, metadata={"pad": "x" * 500}).json()["executionId"]
        for _ in range(7)
    }
    one_view = len(json.dumps(gateway.status(next(iter(ids)))))
    monkeypatch.setattr(load_handler("list_executions"), "MAX_PAGE_BYTES", int(one_view * 2.5))
    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        page = gateway.call("list_executions", query=f"limit=100{cursor}").json()
        assert len(page["items"]) <= 3
        seen.extend(item["executionId"] for item in page["items"])
        if page["nextCursor"] is None:
            break
        cursor = f"&cursor={page['nextCursor']}"
    assert sorted(seen) == sorted(ids), "every execution once, none twice"
