"""asyncgate_client against a scripted loopback HTTP server that answers as API.md's examples do."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook

from asyncgate_client import (
    ApiError,
    Client,
    Execution,
    Status,
    TransportError,
    WebhookVerificationError,
    verify_webhook,
)
from tests.fakes import Answer, FakeApi

EXECUTION_ID = "0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a10"
EXECUTION_PATH = f"/v1/executions/{EXECUTION_ID}"


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def execution(status: str = "running", progress: float | None = 42.0, **changes: Any) -> dict[str, Any]:
    """The contract's execution object example, with `changes` applied."""
    body: dict[str, Any] = {
        "executionId": EXECUTION_ID,
        "model": "sim-video",
        "status": status,
        "progress": progress,
        "createdAt": "2026-11-22T17:16:06.532Z",
        "startedAt": "2026-11-22T17:16:07.000Z",
        "completedAt": None,
        "updatedAt": "2026-11-22T17:16:09.250Z",
        "providerRequestId": "sim_7d1f",
        "result": None,
        "error": None,
        "pollCount": 3,
        "cost": None,
        "metadata": {"order": "A-17"},
        "webhook": {
            "configured": True,
            "url": "https://example.com/hook",
            "state": "pending",
            "attempts": [],
        },
        "cleanupAfter": None,
    }
    body.update(changes)
    return body


def succeeded(**changes: Any) -> dict[str, Any]:
    return execution(
        "succeeded",
        100.0,
        completedAt="2026-11-22T17:16:27.000Z",
        result={
            "outputs": [{"url": "https://cdn.example.com/fox.mp4", "contentType": "video/mp4"}],
            "raw": {},
        },
        cost={"credits": 10},
        cleanupAfter="2026-11-29T17:16:27.000Z",
        **changes,
    )


def failed() -> dict[str, Any]:
    return execution(
        "failed",
        30.0,
        completedAt="2026-11-22T17:16:12.000Z",
        error={"code": "PROVIDER_FAILED", "message": "the provider reported failure", "providerStatus": None},
        cost={"credits": 0},
    )


def accepted() -> dict[str, Any]:
    return {
        "async": True,
        "executionId": EXECUTION_ID,
        "status": "queued",
        "model": "sim-video",
        "providerRequestId": None,
        "createdAt": "2026-11-22T17:16:06.532Z",
        "statusUrl": EXECUTION_PATH,
        "cancelUrl": EXECUTION_PATH + "/cancel",
        "webhook": {"configured": False, "url": None},
    }


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    yield fake
    fake.close()


@pytest.fixture
def client(api: FakeApi) -> Iterator[Client]:
    with Client(api.url, "key-a", timeout=5.0, backoff=0.01) as c:
        yield c


@dataclass
class VirtualTime:
    """The client's clock and sleep, virtual: each pause is recorded and moves the clock on, and so does
    each answer (`per_answer` seconds, its round trip)."""

    per_answer: float = 0.0
    now: float = 0.0
    pauses: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds

    def session(self) -> requests.Session:
        """A session whose every answer takes `per_answer` of this clock's time."""
        virtual = self

        class Timed(requests.Session):
            def request(self, *args: Any, **kwargs: Any) -> requests.Response:
                response = super().request(*args, **kwargs)
                virtual.now += virtual.per_answer
                return response

        return Timed()


@pytest.fixture
def virtual() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def timed_client(api: FakeApi, virtual: VirtualTime) -> Iterator[Client]:
    """A client on virtual time."""
    with virtual.session() as session:
        yield Client(api.url, "key-a", timeout=5.0, session=session, clock=virtual.clock, sleep=virtual.sleep)


def test_models_parse_camel_case_and_async(api: FakeApi, client: Client) -> None:
    api.on(
        "GET",
        "/v1/models",
        Answer(
            body={
                "items": [
                    {
                        "model": "sim-video",
                        "provider": "sim",
                        "async": True,
                        "cancel": True,
                        "expectedDurationSeconds": 20,
                        "maxDurationSeconds": 600,
                        "price": {"credits": 10},
                        "inputSchema": {"type": "object"},
                        "addedByANewerServer": "ignored",
                    },
                    {
                        "model": "sim-chat",
                        "provider": "sim",
                        "async": False,
                        "cancel": False,
                        "expectedDurationSeconds": 1,
                        "maxDurationSeconds": 30,
                        "price": {"credits": 1},
                    },
                ]
            }
        ),
    )

    video, chat = client.models()

    assert (video.model, video.is_async, video.cancel) == ("sim-video", True, True)
    assert (video.expected_duration_seconds, video.max_duration_seconds, video.price.credits) == (20, 600, 10)
    assert chat.is_async is False
    assert (video.input_schema, chat.input_schema) == ({"type": "object"}, None)
    assert video.to_wire()["async"] is True
    assert api.seen[0].headers["x-api-key"] == "key-a"


def test_get_parses_the_execution_object_in_utc(api: FakeApi, client: Client) -> None:
    attempt = {"at": "2026-11-22T17:16:28.000Z", "statusCode": 500, "error": None}
    body = succeeded(webhook={"configured": True, "url": "https://example.com/hook", "state": "pending"})
    body["webhook"]["attempts"] = [attempt]
    api.on("GET", EXECUTION_PATH, Answer(body=body))

    found = client.get(EXECUTION_ID)

    assert found.status is Status.SUCCEEDED
    assert found.status.terminal
    assert not Status.CANCEL_REQUESTED.terminal
    assert found.created_at == datetime(2026, 11, 22, 17, 16, 6, 532000, tzinfo=UTC)
    assert found.result is not None
    assert found.result.outputs[0].content_type == "video/mp4"
    assert found.cost is not None
    assert found.cost.credits == 10
    assert found.webhook.attempts[0].status_code == 500
    assert found.to_wire()["createdAt"] == "2026-11-22T17:16:06.532Z"
    assert "waitSeconds" not in api.seen[0].query


def test_api_error_carries_the_envelope(api: FakeApi, client: Client) -> None:
    api.on(
        "POST",
        EXECUTION_PATH + "/cancel",
        Answer(409, envelope("EXECUTION_NOT_CANCELLABLE", "already succeeded", {"status": "succeeded"})),
    )

    with pytest.raises(ApiError) as caught:
        client.cancel(EXECUTION_ID)

    error = caught.value
    assert (error.status, error.code, error.message) == (
        409,
        "EXECUTION_NOT_CANCELLABLE",
        "already succeeded",
    )
    assert error.details == {"status": "succeeded"}


def test_api_error_keeps_headers_and_4xx_is_not_retried(api: FakeApi, client: Client) -> None:
    api.on(
        "POST",
        "/v1/executions",
        Answer(429, envelope("QUEUE_LIMIT_EXCEEDED", "queue full"), {"Retry-After": "5"}),
    )

    with pytest.raises(ApiError) as caught:
        client.submit("sim-video", {})

    assert caught.value.code == "QUEUE_LIMIT_EXCEEDED"
    assert caught.value.headers["retry-after"] == "5"
    assert len(api.seen) == 1


def test_a_body_that_is_not_the_envelope_is_http_status(api: FakeApi, client: Client) -> None:
    api.on("GET", "/v1/account", Answer(500, b"<html><body>Internal Server Error</body></html>"))

    with pytest.raises(ApiError) as caught:
        client.account()

    assert (caught.value.status, caught.value.code) == (500, "HTTP_500")
    assert "Internal Server Error" in caught.value.message
    assert caught.value.details == {}


def test_a_2xx_body_off_contract_is_invalid_response(api: FakeApi, client: Client) -> None:
    api.on("GET", "/v1/account", Answer(200, {"tenant": "tenant-a"}))

    with pytest.raises(ApiError) as caught:
        client.account()

    assert caught.value.code == "INVALID_RESPONSE"
    assert "credits" in caught.value.message


def test_submit_retries_a_503_with_the_same_idempotency_key(api: FakeApi, client: Client) -> None:
    api.on(
        "POST",
        "/v1/executions",
        Answer(503, envelope("SERVICE_UNAVAILABLE", "try again")),
        Answer(503, b"Service Unavailable"),
        Answer(202, accepted(), {"Location": EXECUTION_PATH}),
    )

    answer = client.submit(
        "sim-video",
        {"prompt": "a red fox"},
        webhook_url="https://example.com/hook",
        webhook_events=["execution.succeeded"],
        metadata={"order": "A-17"},
    )

    assert answer.execution_id == EXECUTION_ID
    assert answer.is_async
    assert answer.status is Status.QUEUED
    assert answer.cancel_url == EXECUTION_PATH + "/cancel"
    keys = {seen.headers["idempotency-key"] for seen in api.seen}
    assert len(api.seen) == 3
    assert len(keys) == 1
    assert uuid.UUID(keys.pop()).version == 4
    assert api.seen[0].body == {
        "model": "sim-video",
        "input": {"prompt": "a red fox"},
        "webhook": {"url": "https://example.com/hook", "events": ["execution.succeeded"]},
        "metadata": {"order": "A-17"},
    }


def test_submit_retries_while_its_first_try_is_in_flight(api: FakeApi, client: Client) -> None:
    """A retried submit can find its first try still dispatching: 409 IDEMPOTENCY_KEY_IN_USE says to
    come back after Retry-After, and the same key then gets the first try's answer."""
    in_flight = envelope("IDEMPOTENCY_KEY_IN_USE", "still in flight")
    api.on(
        "POST",
        "/v1/executions",
        Answer(409, in_flight, {"Retry-After": "0"}),
        Answer(202, accepted(), {"Location": EXECUTION_PATH, "Idempotent-Replayed": "true"}),
    )
    assert client.submit("sim-video", {}).execution_id == EXECUTION_ID
    assert len({seen.headers["idempotency-key"] for seen in api.seen}) == 1
    assert len(api.seen) == 2


def test_other_conflicts_are_not_retried(api: FakeApi, client: Client) -> None:
    api.on("POST", "/v1/executions", Answer(409, envelope("SOMETHING_ELSE", "no")))
    with pytest.raises(ApiError):
        client.submit("sim-video", {})
    assert len(api.seen) == 1


def test_submit_sends_the_callers_key_and_gives_up_after_its_retries(api: FakeApi) -> None:
    api.on("POST", "/v1/executions", Answer(503, envelope("SERVICE_UNAVAILABLE", "down")))

    with (
        Client(api.url, timeout=5.0, max_retries=2, backoff=0.01) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.submit("sim-video", {}, idempotency_key="order-A-17")

    assert caught.value.status == 503
    assert [seen.headers["idempotency-key"] for seen in api.seen] == ["order-A-17"] * 3
    assert api.seen[0].headers["x-api-key"] == "dev-key"


def test_an_unreachable_api_is_a_transport_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    with Client(url, max_retries=1, backoff=0.01) as client, pytest.raises(TransportError) as caught:
        client.get(EXECUTION_ID)

    assert isinstance(caught.value, ConnectionError)
    assert caught.value.url == url + EXECUTION_PATH
    assert caught.value.reason == "Connection refused"


def test_wait_follows_changes_and_honours_retry_after(
    api: FakeApi, timed_client: Client, virtual: VirtualTime
) -> None:
    api.on(
        "GET",
        EXECUTION_PATH,
        Answer(body=execution("running", 10.0), headers={"Retry-After": "0"}),
        Answer(body=execution("running", 10.0), headers={"Retry-After": "1"}),
        Answer(body=execution("running", 60.0), headers={"Retry-After": "0"}),
        Answer(body=succeeded()),
    )
    changes: list[Execution] = []
    virtual.per_answer = 0.25

    final = timed_client.wait(EXECUTION_ID, on_change=changes.append)

    assert final.status is Status.SUCCEEDED
    assert [(c.status, c.progress) for c in changes] == [
        (Status.RUNNING, 10.0),
        (Status.RUNNING, 60.0),
        (Status.SUCCEEDED, 100.0),
    ]
    assert [seen.query["waitSeconds"] for seen in api.seen] == ["20"] * 4
    # Retry-After: 0 asks for no pause; Retry-After: 1 for a second between asking and asking again,
    # of which the answer's own round trip took a quarter.
    assert virtual.pauses == [0.75]


def test_wait_raises_timeout_error(api: FakeApi, timed_client: Client, virtual: VirtualTime) -> None:
    api.on("GET", EXECUTION_PATH, Answer(body=execution("running", 5.0), headers={"Retry-After": "1"}))

    with pytest.raises(TimeoutError):
        timed_client.wait(EXECUTION_ID, timeout=0.5)

    # It waits out its timeout, not the whole Retry-After, asks once more, and gives up.
    assert virtual.pauses == [0.5]
    assert len(api.seen) == 2
    assert {seen.query["waitSeconds"] for seen in api.seen} == {"0"}


def test_iter_executions_follows_the_cursor(api: FakeApi, client: Client) -> None:
    first, second, third = (str(uuid.UUID(int=n)) for n in (3, 2, 1))
    api.on(
        "GET",
        "/v1/executions",
        Answer(
            body={
                "items": [execution(executionId=first), execution(executionId=second)],
                "nextCursor": "page-2",
            }
        ),
        Answer(body={"items": [execution(executionId=third)], "nextCursor": None}),
    )

    ids = [found.execution_id for found in client.iter_executions(status=Status.RUNNING, page_size=2)]

    assert ids == [first, second, third]
    assert [seen.query for seen in api.seen] == [
        {"status": "running", "limit": "2"},
        {"status": "running", "limit": "2", "cursor": "page-2"},
    ]


def test_cancel_returns_the_answer(api: FakeApi, client: Client) -> None:
    api.on(
        "POST",
        EXECUTION_PATH + "/cancel",
        Answer(
            body={
                "executionId": EXECUTION_ID,
                "cancelled": True,
                "previousStatus": "running",
                "status": "cancel_requested",
                "message": "cancel requested from the provider",
                "execution": execution("cancel_requested"),
            }
        ),
    )

    answer = client.cancel(EXECUTION_ID)

    assert answer.cancelled
    assert (answer.previous_status, answer.status) == (Status.RUNNING, Status.CANCEL_REQUESTED)
    assert answer.execution.status is Status.CANCEL_REQUESTED
    assert len(api.seen) == 1


def test_webhook_endpoints(api: FakeApi, client: Client) -> None:
    endpoint = {
        "id": "wh_1",
        "url": "https://example.com/hook",
        "events": ["execution.failed"],
        "createdAt": "2026-11-22T17:00:00.000Z",
    }
    api.on("POST", "/v1/webhooks", Answer(201, {**endpoint, "secret": "whsec_c2VjcmV0"}))
    api.on("GET", "/v1/webhooks", Answer(body={"items": [endpoint]}))
    api.on("DELETE", "/v1/webhooks/wh_1", Answer(204))
    api.on("GET", "/v1/webhooks/secret", Answer(body={"secret": "whsec_dGVuYW50"}))

    created = client.create_webhook(
        "https://example.com/hook", events=["execution.failed"], description="ops"
    )
    listed = client.webhooks()
    client.delete_webhook("wh_1")

    assert created.secret == "whsec_c2VjcmV0"
    assert api.seen[0].body == {
        "url": "https://example.com/hook",
        "events": ["execution.failed"],
        "description": "ops",
    }
    assert [(e.id, e.secret) for e in listed] == [("wh_1", None)]
    assert client.webhook_secret() == "whsec_dGVuYW50"
    assert [seen.method for seen in api.seen] == ["POST", "GET", "DELETE", "GET"]


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def signed(body: str, msg_id: str = "msg_1") -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": Webhook(SECRET).sign(msg_id, now, body),
    }


def test_verify_webhook_accepts_a_signed_delivery() -> None:
    body = json.dumps(
        {"type": "execution.succeeded", "timestamp": "2026-11-22T17:16:27.000Z", "data": succeeded()}
    )

    event = verify_webhook(signed(body), body.encode(), SECRET)

    assert event["type"] == "execution.succeeded"
    assert Execution.model_validate(event["data"]).status is Status.SUCCEEDED


def test_verify_webhook_rejects_a_tampered_or_malformed_delivery() -> None:
    body = json.dumps({"type": "execution.succeeded", "data": succeeded()})
    headers = signed(body)

    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body.replace("succeeded", "failed"), SECRET)
    with pytest.raises(WebhookVerificationError):
        verify_webhook({**headers, "Webhook-Signature": "not-a-signature"}, body, SECRET)
