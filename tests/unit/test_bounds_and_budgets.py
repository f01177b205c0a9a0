"""What keeps an execution finite: its item's size, its error text, what a cancel costs, the time its
provider calls may take, and the size of a list page."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from asyncgate import budget
from asyncgate.domain.catalog import load_catalog
from asyncgate.domain.execution import (
    MAX_ERROR_MESSAGE,
    Execution,
    Failure,
    OutputRef,
    Result,
    advance,
    new_execution,
)
from asyncgate.domain.status import Event, Status
from asyncgate.providers.base import ProviderUnavailable
from asyncgate.providers.http import DEFAULT_TIMEOUT, ProviderHttp
from asyncgate.services.executions import within_bytes
from asyncgate.services.outputs import kept_url
from asyncgate.settings import DEFAULT_CATALOG
from asyncgate.store.executions import Page, cursor_after, decode_cursor
from asyncgate.store.items import created_key, item_size, to_item

SPEC = load_catalog(DEFAULT_CATALOG).get("sim-video")
NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
RETENTION = timedelta(days=7)


def _running(execution_id: str = "0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a10") -> Execution:
    assert SPEC is not None
    queued = new_execution(
        execution_id=execution_id, tenant="t", spec=SPEC, input={"prompt": "x"}, metadata={},
        webhook_url=None, webhook_events=None, now=NOW, first_tick_at=NOW, dispatching=True,
        reserved_credits=10,
    )  # fmt: skip
    return advance(queued, Event.DISPATCHED, now=NOW, retention=RETENTION, provider_request_id="job-1")


RESULT = Result(outputs=[OutputRef(url="https://cdn.example.com/1.png")])


@pytest.mark.parametrize(
    ("event", "cost", "keeps_result"),
    [
        (Event.PROVIDER_SUCCEEDED, 10, True),  # the provider had finished: billed, so charged
        (Event.PROVIDER_CANCELLED, 0, False),
        (Event.PROVIDER_FAILED, 0, False),
        (Event.TIMED_OUT, 0, False),
        (Event.GAVE_UP, 0, False),
    ],
)
def test_a_cancelled_execution_is_charged_only_with_a_result(
    event: Event, cost: int, keeps_result: bool
) -> None:
    asked = advance(_running(), Event.CANCEL, now=NOW, retention=RETENTION)
    done = advance(asked, event, now=NOW, retention=RETENTION, result=RESULT)
    assert done.status is Status.CANCELLED
    assert done.cost is not None
    assert done.cost.credits == cost
    assert (done.result is not None) is keeps_result


def test_a_cancelled_queued_execution_is_free() -> None:
    assert SPEC is not None
    queued = new_execution(
        execution_id="e", tenant="t", spec=SPEC, input={}, metadata={}, webhook_url=None, webhook_events=None,
        now=NOW, first_tick_at=NOW, dispatching=False, reserved_credits=10,
    )  # fmt: skip
    done = advance(queued, Event.CANCEL, now=NOW, retention=RETENTION)
    assert (done.status, done.cost.credits if done.cost else None) == (Status.CANCELLED, 0)


def test_giving_up_fails_internal_error_and_refunds() -> None:
    done = advance(_running(), Event.GAVE_UP, now=NOW, retention=RETENTION, failure=Failure(message="why"))
    assert done.status is Status.FAILED
    assert done.error is not None
    assert done.error.code == "INTERNAL_ERROR"
    assert done.cost is not None
    assert done.cost.credits == 0


def test_an_error_message_is_bounded() -> None:
    failure = Failure(message="é" * 50_000)
    done = advance(_running(), Event.PROVIDER_FAILED, now=NOW, retention=RETENTION, failure=failure)
    assert done.error is not None
    assert len(done.error.message) == MAX_ERROR_MESSAGE


def test_item_size_bounds_what_dynamodb_counts() -> None:
    """Names and UTF-8 strings counted byte for byte; numbers at their longest; nesting counted."""
    item = to_item(_running())
    size = item_size(item)
    strings = sum(
        len(name.encode()) + len(value["S"].encode()) for name, value in item.items() if "S" in value
    )
    assert size >= strings
    assert item_size({"a": {"S": "é" * 10}}) == 1 + 20
    assert item_size({"n": {"N": "1"}}) == 1 + 21
    assert item_size({"l": {"L": [{"S": "ab"}, {"BOOL": True}]}}) == 1 + 3 + (1 + 2) + (1 + 1)
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + (1 + 1 + 1)


def test_a_data_url_is_kept_by_its_digest_only() -> None:
    text = base64.b64encode(b"x" * 300_000).decode()
    url = f"data:text/plain;base64,{text}"
    kept = kept_url(url)
    assert len(kept) < 200
    assert kept.startswith("data:text/plain;base64,sha256:")
    assert kept != kept_url(f"data:text/plain;base64,{text}AA"), "two results stay apart"
    assert kept_url("https://cdn.example.com/a.png?sig=1") == "https://cdn.example.com/a.png?sig=1"


def test_budgets_nest_and_never_grow() -> None:
    assert budget.seconds_left(30.0) == 30.0, "no budget: the call's own default"
    with budget.within(10):
        assert 0 < budget.seconds_left(30.0) <= 10
        with budget.within(60):
            assert budget.seconds_left(30.0) <= 10, "an inner budget cannot outlast the outer one"
        with budget.within(2):
            assert budget.seconds_left(30.0) <= 2
    assert budget.seconds_left(30.0) == 30.0


class RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[Any] = []

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.timeouts.append(kwargs["timeout"])
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        return response


def test_provider_calls_fit_in_what_the_invocation_has_left() -> None:
    session = RecordingSession()
    http = ProviderHttp("acme", "https://api.acme.example", {}, session=session)
    http.request("GET", "/jobs/1")
    with budget.within(5):
        http.request("GET", "/jobs/1")
    unbounded, bounded = session.timeouts
    assert (unbounded.connect_timeout, unbounded.read_timeout) == DEFAULT_TIMEOUT
    assert bounded.total <= 5
    assert bounded.read_timeout <= 5
    assert bounded.connect_timeout <= DEFAULT_TIMEOUT[0]


def test_no_provider_call_starts_without_time_to_finish() -> None:
    session = RecordingSession()
    http = ProviderHttp("acme", "https://api.acme.example", {}, session=session)
    with budget.within(0.5), pytest.raises(ProviderUnavailable, match="no time left"):
        http.request("POST", "/jobs", json={"prompt": "x"})
    assert session.timeouts == [], "nothing sent: a submit cut off halfway could still start a job"


def test_a_list_page_is_cut_at_its_byte_budget_with_a_cursor_after_the_last_item() -> None:
    items = [_running(f"0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a1{index}") for index in range(5)]
    page = Page(items=items, next_cursor=None)
    cut = within_bytes(page, [100, 100, 100, 100, 100], max_bytes=250)
    assert cut.items == items[:2]
    assert cut.next_cursor == cursor_after(items[1])
    assert decode_cursor(cut.next_cursor) == created_key(items[1])
    assert within_bytes(page, [100] * 5, max_bytes=500) == page, "a page that fits is left as it is"
    huge = within_bytes(page, [10_000, 1, 1, 1, 1], max_bytes=250)
    assert huge.items == items[:1], "at least one item, whatever its size"
    assert json.loads(json.dumps({"cursor": huge.next_cursor}))
