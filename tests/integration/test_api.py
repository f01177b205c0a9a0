"""The HTTP contract: auth, the error envelope, validation, listing, isolation, long poll, events/."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from asyncgate.services import executions as executions_service
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import LONG_POLL_INTERVAL_SECONDS
from asyncgate.services.lifecycle import commit, step
from asyncgate.services.tenants import create_tenant, issue_key
from asyncgate.store.keys import ALL_SCOPES
from asyncgate_dev.apigw import read_response
from asyncgate_dev.handlers import load_event, load_handler
from asyncgate_dev.lambda_runtime import LambdaContext
from tests.integration.driver import KEY_A_READ_ONLY, KEY_B, Gateway

UNKNOWN_ID = "6a4fd5b2-0c1e-4c55-9d1b-0d4a3e0f9e11"


def _error(answer: Any) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"}, "nothing but the envelope at the top level"
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("function", ["submit", "list_executions", "models"])
def test_no_key_and_unknown_key_are_401(gateway: Gateway, function: str) -> None:
    for key in (None, "not-a-key"):
        answer = gateway.call(function, key=key, body={"model": "sim-video"})
        assert answer.status == 401
        assert _error(answer)["code"] == "UNAUTHORIZED"


def test_bearer_authorization_is_accepted(gateway: Gateway) -> None:
    answer = gateway.call("models", key=None, headers={"Authorization": "Bearer key-tenant-a"})
    assert answer.status == 200


def test_a_key_without_the_scope_is_403(gateway: Gateway) -> None:
    answer = gateway.submit(key=KEY_A_READ_ONLY)
    assert answer.status == 403
    assert _error(answer)["code"] == "FORBIDDEN"
    assert gateway.call("list_executions", key=KEY_A_READ_ONLY).status == 200
    assert gateway.call("cancel", execution_id=UNKNOWN_ID, key=KEY_A_READ_ONLY).status == 403


def test_models_lists_the_catalog(gateway: Gateway) -> None:
    answer = gateway.call("models")
    # Whole numbers are written as the contract writes them, not as 20.0.
    assert b'"expectedDurationSeconds":20,"maxDurationSeconds":600,"price":{"credits":10,' in answer.body
    items = {item["model"]: item for item in answer.json()["items"]}
    assert items["sim-video"].pop("inputSchema") == default_deps().spec("sim-video").input_schema
    assert items["sim-video"] == {
        "model": "sim-video",
        "provider": "sim",
        "async": True,
        "cancel": True,
        "expectedDurationSeconds": 20,
        "maxDurationSeconds": 600,
        "price": {"credits": 10, "base": 10, "perInput": []},
    }
    assert items["sim-chat"]["async"] is False


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "no-such-model"}, 400, "UNKNOWN_MODEL"),
        ({"model": "sim-chat"}, 400, "ASYNC_NOT_SUPPORTED"),
        ({}, 422, "VALIDATION_ERROR"),
        ({"model": 7}, 422, "VALIDATION_ERROR"),
        ({"model": "sim-video", "input": "not an object"}, 422, "VALIDATION_ERROR"),
        ({"model": "sim-video", "metadata": {f"k{i}": "v" for i in range(17)}}, 422, "VALIDATION_ERROR"),
        ({"model": "sim-video", "metadata": {"k": "v" * 513}}, 422, "VALIDATION_ERROR"),
        ({"model": "sim-video", "metadata": {"k": 1}}, 422, "VALIDATION_ERROR"),
        (
            {"model": "sim-video", "webhook": {"url": "https://e.example/h", "events": ["nope"]}},
            422,
            "VALIDATION_ERROR",
        ),
        ({"model": "sim-video", "surprise": True}, 422, "VALIDATION_ERROR"),
        (
            {"model": "sim-video", "webhook": {"url": "http://169.254.169.254/latest"}},
            400,
            "INVALID_WEBHOOK_URL",
        ),
        ({"model": "sim-video", "webhook": {"url": "https://10.1.2.3/hook"}}, 400, "INVALID_WEBHOOK_URL"),
    ],
)
def test_bad_submits_get_the_envelope(gateway: Gateway, body: dict[str, Any], status: int, code: str) -> None:
    answer = gateway.call("submit", body=body)
    assert answer.status == status
    error = _error(answer)
    assert error["code"] == code
    if code == "VALIDATION_ERROR":
        assert error["details"]["errors"], "each failing field is listed"
        assert all({"field", "message"} <= set(item) for item in error["details"]["errors"])


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b"{not json", "application/json", 422),
        (b"[1, 2]", "application/json", 422),
        (b"", "application/json", 422),
        (b'{"model": "sim-video"}', "text/plain", 422),
        (b"\xff\xfe", "application/json", 422),
        (b'{"model": "sim-video", "metadata": {"a": "\\ud800"}}', "application/json", 422),
        (b'{"model": "sim-video", "input": {"x": NaN}}', "application/json", 422),
        (b'{"model": "sim-video", "input": {"x": [Infinity]}}', "application/json", 422),
        (b'{"model": "sim-video", "input": {"x": 1e400}}', "application/json", 422),
        (
            b'{"model": "sim-video", "input": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}",
            "application/json",
            422,
        ),
        (
            json.dumps({"model": "sim-video", "input": {"pad": "x" * (256 * 1024)}}).encode(),
            "application/json",
            413,
        ),
    ],
)
def test_malformed_bodies_are_4xx_never_5xx(
    gateway: Gateway, raw: bytes, content_type: str, status: int
) -> None:
    answer = gateway.call("submit", raw_body=raw, headers={"content-type": content_type})
    assert answer.status == status
    assert _error(answer)["code"] == ("PAYLOAD_TOO_LARGE" if status == 413 else "VALIDATION_ERROR")


def test_a_webhook_is_recorded_on_the_execution(gateway: Gateway) -> None:
    answer = gateway.submit(sim={"durationSeconds": 5}, webhook={"url": "https://example.com/hook"})
    assert answer.status == 202
    assert answer.json()["webhook"] == {"configured": True, "url": "https://example.com/hook"}
    execution = gateway.status(answer.json()["executionId"])
    assert execution["webhook"] == {
        "configured": True,
        "url": "https://example.com/hook",
        "state": "pending",
        "attempts": [],
    }


def test_a_large_non_ascii_input_is_stored_and_read_back(gateway: Gateway) -> None:
    text = "é" * 120_000  # 240 KB of UTF-8, within the 256 KiB body limit
    answer = gateway.submit(
        model="sim-image", sim={"durationSeconds": 30}, metadata={"lang": "fr"}, input_extra=text
    )
    assert answer.status == 202, answer.body[:200]
    execution = gateway.status(answer.json()["executionId"])
    assert execution["metadata"] == {"lang": "fr"}


def test_status_of_unknown_malformed_and_foreign_ids_is_the_same_404(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 5}).json()["executionId"]
    answers = [
        gateway.call("status", execution_id=execution_id, key=KEY_B),
        gateway.call("status", execution_id=UNKNOWN_ID, key=KEY_B),
        gateway.call("status", execution_id="not-a-uuid%00", key=KEY_B),
    ]
    assert [answer.status for answer in answers] == [404, 404, 404]
    assert {_error(answer)["code"] for answer in answers} == {"EXECUTION_NOT_FOUND"}
    assert not any(execution_id.encode() in answer.body for answer in answers[1:])


def test_list_is_newest_first_paginated_filtered_and_tenant_scoped(gateway: Gateway) -> None:
    ids = [gateway.submit(sim={"durationSeconds": 30}).json()["executionId"] for _ in range(5)]
    queued = gateway.submit(model="sim-image", sim={"durationSeconds": 30}).json()["executionId"]
    gateway.submit(key=KEY_B, sim={"durationSeconds": 30})

    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        page = gateway.call("list_executions", query=f"limit=2{cursor}").json()
        assert len(page["items"]) <= 2
        seen.extend(item["executionId"] for item in page["items"])
        if not page["nextCursor"]:
            break
        cursor = f"&cursor={page['nextCursor']}"
    assert seen == [queued, *reversed(ids)], "newest first, every item once, only the caller's"

    by_model = gateway.call("list_executions", query="model=sim-image").json()
    assert [item["executionId"] for item in by_model["items"]] == [queued]
    by_status = gateway.call("list_executions", query="status=queued").json()
    assert [item["executionId"] for item in by_status["items"]] == [queued]
    assert by_status["nextCursor"] is None
    other = gateway.call("list_executions", key=KEY_B).json()
    assert len(other["items"]) == 1
    assert other["items"][0]["executionId"] not in {queued, *ids}


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=ten", "status=done", "cursor=bm9wZQ", "cursor=%%%", "color=red"]
)
def test_bad_list_queries_are_422(gateway: Gateway, query: str) -> None:
    answer = gateway.call("list_executions", query=query)
    assert answer.status == 422
    assert _error(answer)["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("query", ["waitSeconds=21", "waitSeconds=-1", "waitSeconds=soon"])
def test_bad_wait_seconds_are_422(gateway: Gateway, query: str) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 5}).json()["executionId"]
    answer = gateway.call("status", execution_id=execution_id, query=query)
    assert answer.status == 422


@dataclass
class LongPollClock:
    """The long poll's monotonic clock and sleep, virtual: each pause is recorded and moves the clock
    on, then `on_pause(count)` lets the world move while the request waits."""

    now: float = field(default_factory=time.monotonic)
    pauses: list[float] = field(default_factory=list)
    on_pause: Callable[[int], None] = lambda count: None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds
        self.on_pause(len(self.pauses))


@pytest.fixture
def long_poll_clock(monkeypatch: pytest.MonkeyPatch) -> LongPollClock:
    clock = LongPollClock()
    monkeypatch.setattr(executions_service, "time", clock)
    return clock


def test_long_poll_returns_when_the_execution_changes(
    gateway: Gateway, long_poll_clock: LongPollClock
) -> None:
    deps = default_deps()
    execution_id = gateway.submit(sim={"durationSeconds": 30}).json()["executionId"]

    def poll_during_third_pause(count: int) -> None:
        if count == 3:  # a poll tick records the job's progress while the request waits
            running = deps.executions.get(execution_id)
            assert running is not None
            now = deps.clock()
            commit(deps, running, step(deps, running, deps.spec(running.model), now=now), now=now)

    long_poll_clock.on_pause = poll_during_third_pause
    answer = gateway.call("status", execution_id=execution_id, query="waitSeconds=15")
    assert answer.status == 200
    assert (answer.json()["status"], answer.json()["pollCount"]) == ("running", 1)
    assert answer.json()["progress"] is not None
    assert long_poll_clock.pauses == [LONG_POLL_INTERVAL_SECONDS] * 3, "answered on the change"


def test_long_poll_on_a_terminal_execution_answers_at_once(
    gateway: Gateway, long_poll_clock: LongPollClock
) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 0.2}).json()["executionId"]
    gateway.run_to_end(execution_id)
    answer = gateway.call("status", execution_id=execution_id, query="waitSeconds=20")
    assert answer.status == 200
    assert answer.json()["status"] == "succeeded"
    assert long_poll_clock.pauses == []


def test_long_poll_gives_up_after_wait_seconds(gateway: Gateway, long_poll_clock: LongPollClock) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 30}).json()["executionId"]
    answer = gateway.call("status", execution_id=execution_id, query="waitSeconds=1")
    assert long_poll_clock.pauses == [LONG_POLL_INTERVAL_SECONDS] * 2, "it gave up after its 1 s"
    assert answer.json()["status"] == "running"
    assert "retry-after" in answer.headers


def test_unexpected_errors_are_500_without_internals(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(default_deps().executions, "get", explode)
    answer = gateway.call("status", execution_id=UNKNOWN_ID)
    assert answer.status == 500
    error = _error(answer)
    assert error["code"] == "INTERNAL_ERROR"
    assert b"secret internal detail" not in answer.body
    assert b"Traceback" not in answer.body


def test_unknown_routes_are_404_not_found(gateway: Gateway) -> None:
    handler = load_handler("not_found").lambda_handler
    answer = read_response(handler(load_event("not_found"), LambdaContext(function_name="not_found")))
    assert answer.status == 404
    assert _error(answer)["code"] == "NOT_FOUND"


def test_every_events_file_drives_its_handler(gateway: Gateway) -> None:
    """The files `sam local invoke -e events/<fn>.json` uses, against the same handlers."""
    deps = default_deps()
    create_tenant(deps, "dev", credits=100)
    issue_key(deps, "dev", ALL_SCOPES, api_key="dev-key")
    context = LambdaContext(timeout_seconds=gateway.poll_tick_timeout)
    expected_status = {
        "submit": 202,
        "models": 200,
        "account": 200,
        "list_executions": 200,
        "status": 404,
        "cancel": 404,
        "not_found": 404,
        "webhook_redeliver": 404,
        # A callback for an execution that does not exist, as for any refused one.
        "callbacks": 401,
    }
    for name, status in expected_status.items():
        answer = read_response(load_handler(name).lambda_handler(load_event(name), context))
        assert answer.status == status, (name, answer.body)
    delete = read_response(load_handler("cancel").lambda_handler(load_event("cancel_delete"), context))
    assert delete.status == 404
    webhooks = load_handler("webhooks").lambda_handler
    for name, status in {
        "webhooks_create": 201,
        "webhooks_list": 200,
        "webhooks_secret": 200,
        "webhooks_delete": 404,
        "webhooks_rotate": 404,
    }.items():
        answer = read_response(webhooks(load_event(name), context))
        assert answer.status == status, (name, answer.body)
    assert load_handler("poll_tick").lambda_handler(load_event("poll_tick"), context) == {
        "batchItemFailures": []
    }
    assert load_handler("sweeper").lambda_handler(load_event("sweeper"), context) == {
        "overdue": 0,
        "rearmed": 0,
        "givenUp": 0,
        "webhooksHandedOff": 0,
    }
    assert load_handler("sweeper").lambda_handler(load_event("sweeper_audit"), context) == {
        "tenants": 3,
        "drifts": 0,
        "skippedBusy": 0,
    }
