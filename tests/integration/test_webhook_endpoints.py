"""Tenant webhook endpoints and the tenant signing secret, through the webhooks function's handler."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import pytest
import standardwebhooks
from botocore.awsrequest import AWSResponse, HTTPHeaders

from asyncgate import aws
from asyncgate.delivery.tasks import Delivery, DeliveryTask
from asyncgate.domain.webhooks import ROTATION_OVERLAP, WebhookEndpoint, new_endpoint_id, new_webhook_secret
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import SubmitCommand, submit
from asyncgate.services.notify import attempt
from asyncgate.services.webhooks import CreateEndpoint, create_endpoint
from asyncgate.settings import get_settings
from asyncgate.store.keys import ALL_SCOPES, Principal
from asyncgate.store.webhooks import MAX_ENDPOINTS_PER_TENANT
from asyncgate_dev.receiver import Received, WebhookReceiver
from tests.integration.driver import KEY_A, KEY_A_READ_ONLY, KEY_B, Gateway

TERMINAL = ["execution.succeeded", "execution.failed", "execution.cancelled"]


def _error(answer: Any) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"}, "nothing but the envelope at the top level"
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]  # type: ignore[no-any-return]


def _create(
    gateway: Gateway, url: str = "https://hooks.example.com/in", key: str = KEY_A, **body: Any
) -> dict[str, Any]:
    answer = gateway.call("webhooks_create", body={"url": url, **body}, key=key)
    assert answer.status == 201, answer.body
    created: dict[str, Any] = answer.json()
    return created


def _list(gateway: Gateway, key: str = KEY_A) -> list[dict[str, Any]]:
    answer = gateway.call("webhooks_list", key=key)
    assert answer.status == 200, answer.body
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _accepts(secret: str) -> None:
    """The reference Standard Webhooks package takes the secret and verifies what it signs."""
    webhook = standardwebhooks.Webhook(secret)
    assert len(webhook._whsecret) == 24
    moment = datetime.now(UTC)
    payload = '{"type":"execution.succeeded"}'
    signature = webhook.sign("msg_1", moment, payload)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }
    assert webhook.verify(payload, headers) == json.loads(payload)


def test_create_list_delete(gateway: Gateway) -> None:
    created = _create(gateway)
    assert set(created) == {"id", "url", "events", "createdAt", "secret"}
    assert re.fullmatch(r"wh_[0-9a-f]{24}", created["id"])
    assert created["url"] == "https://hooks.example.com/in"
    assert created["events"] == TERMINAL, "the three terminal events by default"
    assert created["secret"].startswith("whsec_")
    _accepts(created["secret"])

    described = _create(
        gateway, "https://hooks.example.com/all", events=["execution.progress"], description="progress feed"
    )
    assert described["description"] == "progress feed"
    assert described["secret"] != created["secret"], "each endpoint has its own secret"

    listed = {item["id"]: item for item in _list(gateway)}
    assert listed == {
        created["id"]: {key: created[key] for key in ("id", "url", "events", "createdAt")},
        described["id"]: {key: described[key] for key in ("id", "url", "events", "description", "createdAt")},
    }, "listed without secrets"

    deleted = gateway.call("webhooks_delete", endpoint_id=created["id"])
    assert deleted.status == 204
    assert deleted.body == b""
    again = gateway.call("webhooks_delete", endpoint_id=created["id"])
    assert again.status == 404
    assert _error(again)["code"] == "NOT_FOUND"
    assert [item["id"] for item in _list(gateway)] == [described["id"]]


def test_endpoints_are_per_tenant(gateway: Gateway) -> None:
    created = _create(gateway)
    assert _list(gateway, key=KEY_B) == []
    foreign = gateway.call("webhooks_delete", endpoint_id=created["id"], key=KEY_B)
    assert foreign.status == 404
    assert _error(foreign)["code"] == "NOT_FOUND"
    assert [item["id"] for item in _list(gateway)] == [created["id"]], "still there"


@pytest.mark.parametrize("endpoint_id", ["secret", "wh_nope", "not-an-id", "WH_0123456789ABCDEF01234567"])
def test_delete_of_malformed_ids_is_404(gateway: Gateway, endpoint_id: str) -> None:
    answer = gateway.call("webhooks_delete", endpoint_id=endpoint_id)
    assert answer.status == 404
    assert _error(answer)["code"] == "NOT_FOUND"


def test_the_tenant_secret_is_stable_and_per_tenant(gateway: Gateway) -> None:
    first = gateway.call("webhooks_secret")
    assert first.status == 200
    assert set(first.json()) == {"secret"}
    secret = first.json()["secret"]
    _accepts(secret)
    assert [gateway.call("webhooks_secret").json()["secret"] for _ in range(3)] == [secret] * 3
    # DELETE /v1/webhooks/secret is a delete of an endpoint id that names nothing, not of the secret.
    assert gateway.call("webhooks_delete", endpoint_id="secret").status == 404
    assert gateway.call("webhooks_secret").json()["secret"] == secret
    other = gateway.call("webhooks_secret", key=KEY_B).json()["secret"]
    _accepts(other)
    assert other != secret


def test_a_seeded_secret_is_the_one_served(gateway: Gateway) -> None:
    seeded = new_webhook_secret()
    default_deps().webhooks.put_secret("tenant-a", seeded)
    assert gateway.call("webhooks_secret").json() == {"secret": seeded}


def test_a_lost_race_to_create_the_secret_answers_the_winners(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = default_deps().webhooks
    winner = new_webhook_secret()
    read = store.get_secret
    calls: list[str] = []

    def first_read_misses(tenant: str) -> str | None:
        calls.append(tenant)
        if len(calls) == 1:
            store.put_secret(tenant, winner)  # another container got there between our read and write
            return None
        return read(tenant)

    monkeypatch.setattr(store, "get_secret", first_read_misses)
    assert store.get_or_create_secret("tenant-a") == winner
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("operation", "endpoint_id", "body"),
    [
        ("webhooks_list", None, None),
        ("webhooks_create", None, {"url": "https://hooks.example.com/in"}),
        ("webhooks_delete", "wh_0123456789abcdef01234567", None),
        ("webhooks_secret", None, None),
        ("webhooks_rotate", "wh_0123456789abcdef01234567", None),
    ],
)
def test_every_route_needs_the_webhook_manage_scope(
    gateway: Gateway, operation: str, endpoint_id: str | None, body: Any
) -> None:
    forbidden = gateway.call(operation, endpoint_id=endpoint_id, body=body, key=KEY_A_READ_ONLY)
    assert forbidden.status == 403
    error = _error(forbidden)
    assert error["code"] == "FORBIDDEN"
    assert error["details"] == {"requiredScope": "webhook:manage"}
    for key in (None, "not-a-key"):
        unauthorized = gateway.call(operation, endpoint_id=endpoint_id, body=body, key=key)
        assert unauthorized.status == 401
        assert _error(unauthorized)["code"] == "UNAUTHORIZED"
    assert _list(gateway) == [], "nothing was created"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": ""},
        {"url": 7},
        {"url": "https://hooks.example.com/" + "x" * 2030},
        {"url": "https://hooks.example.com/in", "events": []},
        {"url": "https://hooks.example.com/in", "events": None},
        {"url": "https://hooks.example.com/in", "events": ["execution.done"]},
        {"url": "https://hooks.example.com/in", "events": "execution.failed"},
        {"url": "https://hooks.example.com/in", "events": ["execution.failed", "execution.failed"]},
        {"url": "https://hooks.example.com/in", "description": "d" * 257},
        {"url": "https://hooks.example.com/in", "secret": "whsec_mine"},
        [{"url": "https://hooks.example.com/in"}],
    ],
)
def test_bad_bodies_are_422(gateway: Gateway, body: Any) -> None:
    answer = gateway.call("webhooks_create", body=body)
    assert answer.status == 422, answer.body
    error = _error(answer)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["errors"]
    assert all({"field", "message"} <= set(item) for item in error["details"]["errors"])


@pytest.mark.parametrize(("raw", "content_type"), [(b"{not json", "application/json"), (b"{}", "text/plain")])
def test_malformed_requests_are_422(gateway: Gateway, raw: bytes, content_type: str) -> None:
    answer = gateway.call("webhooks_create", raw_body=raw, headers={"content-type": content_type})
    assert answer.status == 422
    assert _error(answer)["code"] == "VALIDATION_ERROR"


def test_the_longest_url_and_description_are_accepted(gateway: Gateway) -> None:
    url = "https://hooks.example.com/" + "x" * (2048 - len("https://hooks.example.com/"))
    created = _create(gateway, url, description="d" * 256, events=["execution.running", "execution.progress"])
    assert (created["url"], created["events"]) == (url, ["execution.running", "execution.progress"])


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/in",
        "https://10.1.2.3/in",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/in",
        "https://printer.local/in",
        "http://127.0.0.1:9/hook",
        "ftp://hooks.example.com/in",
        "https://user:pass@hooks.example.com/in",
    ],
)
def test_urls_asyncgate_must_not_call_are_400(gateway: Gateway, url: str) -> None:
    answer = gateway.call("webhooks_create", body={"url": url})
    assert answer.status == 400
    error = _error(answer)
    assert error["code"] == "INVALID_WEBHOOK_URL"
    assert error["details"] == {"url": url}
    assert _list(gateway) == []


def test_loopback_http_only_where_the_settings_allow_it(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gateway.call("webhooks_create", body={"url": "http://127.0.0.1:9/hook"}).status == 400
    monkeypatch.setenv("ALLOW_LOOPBACK_WEBHOOKS", "true")
    get_settings.cache_clear()
    default_deps.cache_clear()
    assert _create(gateway, "http://127.0.0.1:9/hook")["url"] == "http://127.0.0.1:9/hook"
    assert _create(gateway, "http://localhost:8080/hook")["url"] == "http://localhost:8080/hook"
    private = gateway.call("webhooks_create", body={"url": "http://10.0.0.1/hook"})
    assert private.status == 400, "only loopback is let through, never a private address"
    submitted = gateway.submit(sim={"durationSeconds": 5}, webhook={"url": "http://127.0.0.1:9/hook"})
    assert submitted.status == 202, "submit's webhook.url goes through the same check"


def test_a_tenant_has_at_most_20_endpoints(gateway: Gateway) -> None:
    ids = [
        _create(gateway, f"https://hooks.example.com/{index}")["id"]
        for index in range(MAX_ENDPOINTS_PER_TENANT)
    ]
    refused = gateway.call("webhooks_create", body={"url": "https://hooks.example.com/21"})
    assert refused.status == 422
    error = _error(refused)
    assert error["code"] == "VALIDATION_ERROR"
    assert "at most 20" in error["details"]["errors"][0]["message"]
    assert len(_list(gateway)) == MAX_ENDPOINTS_PER_TENANT
    assert _create(gateway, key=KEY_B)["url"], "the bound is per tenant"

    assert gateway.call("webhooks_delete", endpoint_id=ids[0]).status == 204
    assert _create(gateway, "https://hooks.example.com/again")["url"], "a deleted endpoint frees its place"
    assert gateway.call("webhooks_create", body={"url": "https://hooks.example.com/22"}).status == 422


def test_subscribed_endpoints_by_event_type(gateway: Gateway) -> None:
    terminal = _create(gateway, "https://hooks.example.com/terminal")
    progress = _create(gateway, "https://hooks.example.com/progress", events=["execution.progress"])
    both = _create(
        gateway, "https://hooks.example.com/both", events=["execution.failed", "execution.running"]
    )
    _create(gateway, "https://hooks.example.com/other-tenant", key=KEY_B)
    store = default_deps().webhooks
    disabled = WebhookEndpoint(
        endpoint_id=new_endpoint_id(),
        tenant="tenant-a",
        url="https://hooks.example.com/disabled",
        events=("execution.failed", "execution.progress"),
        description=None,
        secret=new_webhook_secret(),
        created_at=datetime.now(UTC),
        disabled=True,
    )
    store.create(disabled)

    def subscribed(event_type: Any) -> set[str]:
        return {endpoint.endpoint_id for endpoint in store.subscribed("tenant-a", event_type)}

    assert subscribed("execution.succeeded") == {terminal["id"]}
    assert subscribed("execution.failed") == {terminal["id"], both["id"]}
    assert subscribed("execution.cancelled") == {terminal["id"]}
    assert subscribed("execution.running") == {both["id"]}
    assert subscribed("execution.progress") == {progress["id"]}
    assert store.subscribed("tenant-nobody", "execution.failed") == []
    [found] = store.subscribed("tenant-a", "execution.progress")
    assert found.secret == progress["secret"], "delivery gets each endpoint's own secret"
    assert found.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z") == progress["createdAt"]
    assert disabled.endpoint_id in {item["id"] for item in _list(gateway)}, "listed, but not delivered to"


def test_list_reads_every_page(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = {_create(gateway, f"https://hooks.example.com/{index}")["id"] for index in range(5)}
    client = default_deps().webhooks._client
    paginate = client.get_paginator("query").paginate
    pages: list[int] = []

    class SmallPages:
        def paginate(self, **arguments: Any) -> Any:
            for page in paginate(**arguments, PaginationConfig={"PageSize": 2}):
                pages.append(len(page["Items"]))
                yield page

    monkeypatch.setattr(client, "get_paginator", lambda _: SmallPages())
    assert {item["id"] for item in _list(gateway)} == ids
    assert len(pages) >= 3, "five endpoints in pages of two"


@pytest.fixture
def loopback_receiver(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    monkeypatch.setenv("ALLOW_LOOPBACK_WEBHOOKS", "true")
    get_settings.cache_clear()
    default_deps.cache_clear()
    with WebhookReceiver() as receiver:
        yield receiver


def _deliver_to(endpoint_id: str, url: str, receiver: WebhookReceiver) -> Received:
    """One attempt of an event to the tenant endpoint, as the notify and deliver functions make it."""
    body = json.dumps({"type": "execution.failed"})
    delivery = Delivery(
        webhook_id="msg_rotation",
        tenant="tenant-a",
        execution_id="0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a10",
        event_type="execution.failed",
        destination=endpoint_id,
        url=url,
        body=body,
    )
    seen = len(receiver.received)
    assert attempt(default_deps(), DeliveryTask(delivery=delivery, attempt=1)).delivered
    return receiver.wait_for(seen + 1)[-1]


def _verifies(secret: str, received: Received) -> bool:
    try:
        standardwebhooks.Webhook(secret).verify(received.body, received.headers)
    except standardwebhooks.WebhookVerificationError:
        return False
    return True


def test_rotation_signs_with_both_secrets_for_24_hours(
    gateway: Gateway, loopback_receiver: WebhookReceiver
) -> None:
    created = _create(gateway, loopback_receiver.url)
    rotated = gateway.call("webhooks_rotate", endpoint_id=created["id"])
    assert rotated.status == 200, rotated.body
    answer = rotated.json()
    assert set(answer) == {"id", "url", "events", "createdAt", "secret"}
    assert {key: answer[key] for key in ("id", "url", "events", "createdAt")} == {
        key: created[key] for key in ("id", "url", "events", "createdAt")
    }
    new, old = answer["secret"], created["secret"]
    assert new != old
    _accepts(new)
    assert all("secret" not in item for item in _list(gateway)), "shown only in the rotation's answer"

    received = _deliver_to(created["id"], loopback_receiver.url, loopback_receiver)
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    assert _verifies(old, received), "a receiver still on the old secret accepts"
    assert _verifies(new, received), "a receiver already on the new secret accepts"
    assert not _verifies(new_webhook_secret(), received)

    stored = default_deps().webhooks.get("tenant-a", created["id"])
    assert stored is not None
    assert (stored.secret, stored.previous_secret) == (new, old)
    assert stored.previous_secret_expires_at is not None
    expected_expiry = datetime.now(UTC) + ROTATION_OVERLAP
    assert abs(stored.previous_secret_expires_at - expected_expiry) < timedelta(minutes=1)


def test_after_24_hours_only_the_new_secret_signs(
    gateway: Gateway, loopback_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = _create(gateway, loopback_receiver.url)
    deps = default_deps()
    # Rotated a little over a day ago: the overlap is over for a delivery now.
    monkeypatch.setattr(deps, "clock", lambda: datetime.now(UTC) - ROTATION_OVERLAP - timedelta(minutes=1))
    new = gateway.call("webhooks_rotate", endpoint_id=created["id"]).json()["secret"]
    monkeypatch.setattr(deps, "clock", lambda: datetime.now(UTC))
    received = _deliver_to(created["id"], loopback_receiver.url, loopback_receiver)
    assert len(received.headers["webhook-signature"].split(" ")) == 1
    assert _verifies(new, received)
    assert not _verifies(created["secret"], received), "the old secret no longer signs"


def test_a_second_rotation_keeps_only_the_secret_it_replaces(
    gateway: Gateway, loopback_receiver: WebhookReceiver
) -> None:
    created = _create(gateway, loopback_receiver.url)
    first = gateway.call("webhooks_rotate", endpoint_id=created["id"]).json()["secret"]
    second = gateway.call("webhooks_rotate", endpoint_id=created["id"]).json()["secret"]
    received = _deliver_to(created["id"], loopback_receiver.url, loopback_receiver)
    assert [_verifies(secret, received) for secret in (created["secret"], first, second)] == [
        False,
        True,
        True,
    ]


@pytest.mark.parametrize("endpoint_id", ["wh_0123456789abcdef01234567", "secret", "not-an-id"])
def test_rotating_an_unknown_endpoint_is_404(gateway: Gateway, endpoint_id: str) -> None:
    answer = gateway.call("webhooks_rotate", endpoint_id=endpoint_id)
    assert answer.status == 404
    assert _error(answer)["code"] == "NOT_FOUND"


def test_rotating_another_tenants_endpoint_is_404_and_changes_nothing(gateway: Gateway) -> None:
    created = _create(gateway)
    foreign = gateway.call("webhooks_rotate", endpoint_id=created["id"], key=KEY_B)
    assert foreign.status == 404
    assert _error(foreign)["code"] == "NOT_FOUND"
    stored = default_deps().webhooks.get("tenant-a", created["id"])
    assert stored is not None
    assert (stored.secret, stored.previous_secret) == (created["secret"], None)


class TransactionConflicts:
    """DynamoDB's rule that moto (which runs one call at a time) never has to apply: a transaction that
    touches an item another transaction is writing at that moment is cancelled with TransactionConflict,
    nothing written. Each transaction is held `hold_seconds` so that concurrent ones meet; the first
    `forced` transactions are cancelled whatever else runs."""

    _BEFORE = "before-call.dynamodb.TransactWriteItems"
    _AFTER = "after-call.dynamodb.TransactWriteItems"

    def __init__(self, *, forced: int = 0, hold_seconds: float = 0.0) -> None:
        self.forced = forced
        self.hold_seconds = hold_seconds
        self.cancelled = 0
        self._writing: set[str] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> TransactionConflicts:
        events = aws.dynamodb().meta.events
        # A before-call handler may answer in the service's stead; botocore's stubs say handlers return None.
        events.register(self._BEFORE, self._before)  # type: ignore[arg-type]
        events.register(self._AFTER, self._after)
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        events = aws.dynamodb().meta.events
        events.unregister(self._BEFORE, self._before)  # type: ignore[arg-type]
        events.unregister(self._AFTER, self._after)

    @staticmethod
    def _item_id(operation: dict[str, Any]) -> str:
        (kind, body), *_ = operation.items()
        key = body["Key"] if kind != "Put" else {name: body["Item"][name] for name in ("pk", "sk")}
        return json.dumps([body["TableName"], key], sort_keys=True)

    def _before(
        self, params: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        items = [self._item_id(operation) for operation in json.loads(params["body"])["TransactItems"]]
        with self._lock:
            conflicting = [self.forced > 0 or item in self._writing for item in items]
            if not any(conflicting):
                self._writing.update(items)
            else:
                self.forced = max(0, self.forced - 1)
                self.cancelled += 1
        if any(conflicting):
            reasons = [{"Code": "TransactionConflict" if hit else "None"} for hit in conflicting]
            return AWSResponse("", 400, HTTPHeaders(), None), {
                "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                "CancellationReasons": reasons,
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        context["writing"] = items
        time.sleep(self.hold_seconds)  # the transaction in progress, for others to run into
        return None

    def _after(self, context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self._writing.difference_update(context.pop("writing", []))


def test_create_and_delete_are_retried_after_a_transaction_conflict(gateway: Gateway) -> None:
    with TransactionConflicts(forced=1) as conflicts:
        created = gateway.call("webhooks_create", body={"url": "https://hooks.example.com/in"})
    assert created.status == 201, created.body
    assert conflicts.cancelled == 1
    with TransactionConflicts(forced=1) as conflicts:
        deleted = gateway.call("webhooks_delete", endpoint_id=created.json()["id"])
    assert deleted.status == 204, deleted.body
    assert conflicts.cancelled == 1
    assert _list(gateway) == []


def test_endpoint_creates_racing_submits_on_one_tenant_all_succeed(gateway: Gateway) -> None:
    """Submits and endpoint creates on one tenant at once: both write the tenant item in a transaction,
    so some collide; every one of them still succeeds, and both counters are exact."""
    principal = Principal(tenant="tenant-a", scopes=ALL_SCOPES)
    job = SubmitCommand(model="sim-image", input={}, metadata={}, webhook_url=None, webhook_events=None)
    endpoint = CreateEndpoint(
        url="https://hooks.example.com/in", events=["execution.succeeded"], description=None
    )
    calls: list[Callable[[], Any]] = [
        *(lambda: submit(default_deps(), principal, job) for _ in range(4)),
        *(lambda: create_endpoint(default_deps(), principal, endpoint) for _ in range(4)),
    ]
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with TransactionConflicts(hold_seconds=0.005) as conflicts, ThreadPoolExecutor(len(calls)) as pool:
        outcomes = [future.exception() for future in [pool.submit(run, call) for call in calls]]
    assert outcomes == [None] * len(calls)
    assert conflicts.cancelled > 0, "the race happened"
    assert len(_list(gateway)) == 4
    account = default_deps().accounts.get("tenant-a")
    assert account is not None
    assert account.live_executions == 4
