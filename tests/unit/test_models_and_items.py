"""Request validation, the wire shape of an execution, and the DynamoDB item round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from asyncgate.api.models import ExecutionView, SubmitAccepted, SubmitRequest
from asyncgate.domain.catalog import load_catalog
from asyncgate.domain.clock import format_ts, parse_ts
from asyncgate.domain.execution import Execution, Failure, OutputRef, Result, advance, new_execution
from asyncgate.domain.idempotency import SubmitReceipt
from asyncgate.domain.status import Event, Status
from asyncgate.settings import DEFAULT_CATALOG
from asyncgate.store.executions import InvalidCursor, decode_cursor, encode_cursor
from asyncgate.store.items import from_item, to_item

SPEC = load_catalog(DEFAULT_CATALOG).get("sim-video")
NOW = datetime(2026, 11, 23, 12, 0, 0, 532000, tzinfo=UTC)


def _execution() -> Execution:
    assert SPEC is not None
    return new_execution(
        execution_id="0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a10",
        tenant="tenant-a",
        spec=SPEC,
        input={"prompt": "a red fox", "strength": 0.75, "seed": 7},
        metadata={"order": "A-17"},
        webhook_url="https://example.com/hook",
        webhook_events=None,
        now=NOW,
        first_tick_at=NOW + timedelta(seconds=5),
        dispatching=True,
        reserved_credits=SPEC.price_of({}),
    )


def test_submit_request_defaults_and_limits() -> None:
    request = SubmitRequest.model_validate({"model": "sim-video", "webhook": {"url": "https://e.example/h"}})
    assert request.input == {}
    assert request.webhook is not None
    assert request.webhook.events is None
    with pytest.raises(ValidationError):
        SubmitRequest.model_validate({"model": "sim-video", "metadata": {"": "empty key"}})
    with pytest.raises(ValidationError):
        SubmitRequest.model_validate({"model": ""})
    with pytest.raises(ValidationError):
        SubmitRequest.model_validate(
            {"model": "sim-video", "webhook": {"url": "https://e.example", "events": []}}
        )


def test_timestamps_are_rfc3339_utc_with_milliseconds_and_z() -> None:
    assert format_ts(NOW) == "2026-11-23T12:00:00.532Z"
    assert parse_ts("2026-11-23T12:00:00.532Z") == NOW
    with pytest.raises(ValueError, match="timezone"):
        parse_ts("2026-11-23T12:00:00")


def test_the_execution_object_has_exactly_the_contract_fields() -> None:
    view = ExecutionView.of(_execution(), lambda output: None).model_dump(mode="json", by_alias=True)
    assert set(view) == {
        "executionId", "model", "status", "progress", "createdAt", "startedAt", "completedAt", "updatedAt",
        "providerRequestId", "result", "error", "pollCount", "cost", "metadata", "webhook", "cleanupAfter",
        # Beyond API.md's example: the provider's queue position while the job waits in it (issue 7).
        "queuePosition", "etaSeconds",
    }  # fmt: skip
    assert view["webhook"] == {
        "configured": True,
        "url": "https://example.com/hook",
        "state": "pending",
        "attempts": [],
    }
    assert view["createdAt"] == "2026-11-23T12:00:00.532Z"
    accepted = SubmitAccepted.of(SubmitReceipt.of(_execution())).model_dump(mode="json", by_alias=True)
    assert accepted["async"] is True
    assert accepted["statusUrl"] == "/v1/executions/0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a10"


def test_item_round_trip_keeps_every_field() -> None:
    assert SPEC is not None
    running = advance(
        _execution(), Event.DISPATCHED, now=NOW, retention=timedelta(days=7),
        provider_request_id="sim_1", started_at=NOW, progress=42.5, queue_position=4, eta_seconds=12,
        result=Result(outputs=[OutputRef(url="https://x/1.mp4", content_type="video/mp4")], raw={"a": [1.5]}),
    )  # fmt: skip
    assert from_item(to_item(running)) == running
    failed = advance(
        running, Event.PROVIDER_FAILED, now=NOW, retention=timedelta(days=7),
        failure=Failure(message="boom", provider_status=500, provider_body="{}"),
    )  # fmt: skip
    restored = from_item(to_item(failed))
    assert restored == failed
    assert restored.status is Status.FAILED
    assert restored.error is not None
    assert restored.error.code == "PROVIDER_FAILED"
    item = to_item(failed)
    assert "dueShard" not in item, "terminal executions leave the due index"
    assert item["expiresAt"] == {"N": str(int((NOW + timedelta(days=7)).timestamp()))}


def test_terminal_bookkeeping() -> None:
    assert SPEC is not None
    running = advance(_execution(), Event.DISPATCHED, now=NOW, retention=timedelta(days=7))
    done = advance(running, Event.PROVIDER_SUCCEEDED, now=NOW, retention=timedelta(days=3))
    assert done.version == running.version + 1
    assert done.cost is not None
    assert done.cost.credits == 10
    assert done.progress == 100.0
    assert done.completed_at == NOW
    assert done.cleanup_after == NOW + timedelta(days=3)
    assert done.next_poll_at is None


@given(st.text(min_size=1, max_size=80))
def test_cursor_round_trip(position: str) -> None:
    position = position + "#id"
    assert decode_cursor(encode_cursor(position)) == position


@pytest.mark.parametrize("cursor", ["", "nope", "bm9wZQ", "eyJ2IjoyfQ", "%%%"])
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
