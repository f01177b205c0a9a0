"""POST /v1/executions/{executionId}/webhook-redeliver through its handler: the same notify code path
(first attempt at once, the rest handed to the retry state machine, recorded here), on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from standardwebhooks import Webhook

from asyncgate.delivery.tasks import DeliveryTask
from asyncgate.domain.status import Status
from asyncgate.services.deps import default_deps
from asyncgate.services.notify import attempt, notify
from asyncgate.settings import get_settings
from asyncgate_dev.receiver import WebhookReceiver, always
from tests.integration.driver import KEY_A_READ_ONLY, KEY_B, Gateway


@dataclass
class RecordedRetries:
    """Stands in for the retry state machine: the chains started, by name."""

    started: dict[str, DeliveryTask] = field(default_factory=dict)

    def start(self, task: DeliveryTask) -> None:
        self.started.setdefault(task.delivery.chain_name, task)


@pytest.fixture
def retries(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> RecordedRetries:
    monkeypatch.setenv("ALLOW_LOOPBACK_WEBHOOKS", "true")
    get_settings.cache_clear()
    default_deps.cache_clear()
    recorded = RecordedRetries()
    monkeypatch.setattr(default_deps(), "delivery_retries", recorded)
    return recorded


@pytest.fixture
def receiver(retries: RecordedRetries) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(always(500)) as started:
        yield started


def _error(answer: Any) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"}
    return body["error"]  # type: ignore[no-any-return]


def _run_chain(task: DeliveryTask) -> None:
    """Attempts 2 to 5, as the state machine makes them, until one is done."""
    for number in range(2, 6):
        if attempt(default_deps(), task.model_copy(update={"attempt": number})).done:
            return


def _failed_execution(gateway: Gateway, url: str, retries: RecordedRetries) -> str:
    """An execution that failed at the provider and whose webhook then failed all five attempts."""
    submitted = gateway.submit(sim={"durationSeconds": 0.2, "outcome": "fail"}, webhook={"url": url})
    assert submitted.status == 202, submitted.body
    execution_id: str = submitted.json()["executionId"]
    gateway.run_to_end(execution_id)
    deps = default_deps()
    terminal = deps.executions.get(execution_id)
    assert terminal is not None
    # The stream record of the terminal write, as the notify function gets it.
    assert notify(deps, terminal.model_copy(update={"status": Status.RUNNING}), terminal) == 1
    [chain] = retries.started.values()
    _run_chain(chain)
    assert gateway.status(execution_id)["webhook"]["state"] == "failed"
    return execution_id


def test_a_failed_webhook_is_redelivered_with_a_fresh_schedule(
    gateway: Gateway, receiver: WebhookReceiver, retries: RecordedRetries
) -> None:
    execution_id = _failed_execution(gateway, receiver.url, retries)
    [original] = retries.started
    assert len(receiver.received) == 5

    answer = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert answer.status == 202, answer.body
    execution = answer.json()
    assert (execution["executionId"], execution["status"]) == (execution_id, "failed")
    assert execution["webhook"]["state"] == "pending", "its first attempt failed: retries are due"
    assert [a["statusCode"] for a in execution["webhook"]["attempts"]] == [500] * 6
    assert set(retries.started) == {original, f"{original}-r1"}, "a retry chain of its own"
    chain = retries.started[f"{original}-r1"]
    assert (chain.attempt, chain.delivery.redelivery) == (1, 1)

    again = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert again.status == 409, "pending, not failed: one redelivery at a time"
    assert _error(again) == {
        "code": "WEBHOOK_NOT_FAILED",
        "message": "only a failed webhook is redelivered",
        "details": {"state": "pending"},
    }

    _run_chain(chain)
    assert gateway.status(execution_id)["webhook"]["state"] == "failed", "the fresh schedule ran out"
    assert len(receiver.received) == 10

    receiver.responder = always(200)
    delivered = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert delivered.status == 202
    assert delivered.json()["webhook"]["state"] == "delivered"
    assert f"{original}-r2" not in retries.started, "delivered at once: no retry chain"
    assert gateway.status(execution_id)["webhook"]["attempts"][-1]["statusCode"] == 200

    secret = gateway.call("webhooks_secret").json()["secret"]
    first, last = receiver.received[0], receiver.received[-1]
    assert {r.headers["webhook-id"] for r in receiver.received} == {original}, "receivers de-duplicate on it"
    first_event, last_event = (
        Webhook(secret).verify(first.body, first.headers),
        Webhook(secret).verify(last.body, last.headers),
    )
    assert (last_event["type"], last_event["timestamp"]) == ("execution.failed", first_event["timestamp"])
    assert last_event["data"]["executionId"] == execution_id
    assert last_event["data"]["webhook"]["state"] == "pending"
    assert json.loads(last.body)["data"]["error"]["code"] == "PROVIDER_FAILED"


def test_only_a_failed_webhook_is_redelivered(
    gateway: Gateway, receiver: WebhookReceiver, retries: RecordedRetries
) -> None:
    submitted = gateway.submit(sim={"durationSeconds": 0.2}, webhook={"url": receiver.url})
    execution_id = submitted.json()["executionId"]
    gateway.run_to_end(execution_id)
    pending = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert pending.status == 409
    error = _error(pending)
    assert (error["code"], error["details"]) == ("WEBHOOK_NOT_FAILED", {"state": "pending"})
    assert receiver.received == [], "nothing was sent"

    receiver.responder = always(200)
    deps = default_deps()
    terminal = deps.executions.get(execution_id)
    assert terminal is not None
    notify(deps, terminal.model_copy(update={"status": Status.RUNNING}), terminal)
    delivered = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert delivered.status == 409
    assert _error(delivered)["details"] == {"state": "delivered"}
    assert len(receiver.received) == 1, "only the event's own delivery"
    assert retries.started == {}


def test_no_webhook_url_is_400(gateway: Gateway, retries: RecordedRetries) -> None:
    submitted = gateway.submit(sim={"durationSeconds": 0.2})
    execution_id = submitted.json()["executionId"]
    gateway.run_to_end(execution_id)
    answer = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert answer.status == 400
    assert _error(answer)["code"] == "WEBHOOK_NOT_CONFIGURED"


@pytest.mark.parametrize("execution_id", ["0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a10", "not-a-uuid"])
def test_unknown_executions_are_404(gateway: Gateway, execution_id: str) -> None:
    answer = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert answer.status == 404
    assert _error(answer)["code"] == "EXECUTION_NOT_FOUND"


def test_another_tenants_execution_is_404_and_the_scope_is_execution_write(
    gateway: Gateway, receiver: WebhookReceiver, retries: RecordedRetries
) -> None:
    execution_id = _failed_execution(gateway, receiver.url, retries)
    foreign = gateway.call("webhook_redeliver", execution_id=execution_id, key=KEY_B)
    assert foreign.status == 404
    assert _error(foreign)["code"] == "EXECUTION_NOT_FOUND"
    forbidden = gateway.call("webhook_redeliver", execution_id=execution_id, key=KEY_A_READ_ONLY)
    assert forbidden.status == 403
    assert _error(forbidden) == {
        "code": "FORBIDDEN",
        "message": "this key lacks the execution:write scope",
        "details": {"requiredScope": "execution:write"},
    }
    assert gateway.status(execution_id)["webhook"]["state"] == "failed", "still failed, nothing sent"
    assert len(receiver.received) == 5
