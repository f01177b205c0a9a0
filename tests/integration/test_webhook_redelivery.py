"""POST /v1/executions/{executionId}/webhook-redeliver through its handler: the same notify code path
(first attempt at once, the rest handed to the retry state machine: the real one on moto, run by the
local stack's runner with the real deliver handler), on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook

from asyncgate import aws
from asyncgate.store.executions import ExecutionStore
from asyncgate_dev.receiver import WebhookReceiver, always
from asyncgate_dev.template import Stack
from tests.faults import failing
from tests.integration.driver import KEY_A_READ_ONLY, KEY_B, Gateway
from tests.integration.test_notify import RetryChains, notify_stream, terminal_write


@pytest.fixture
def chains(gateway: Gateway, aws_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> RetryChains:
    return RetryChains.on_loopback(aws_stack, monkeypatch)


@pytest.fixture
def receiver(chains: RetryChains) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(always(500)) as started:
        yield started


def _error(answer: Any) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"}
    return body["error"]  # type: ignore[no-any-return]


def _failed_execution(gateway: Gateway, url: str, chains: RetryChains) -> str:
    """An execution that failed at the provider and whose webhook then failed all five attempts."""
    change = terminal_write(gateway, url, outcome="fail")
    # The stream record of the terminal write, through the notify function.
    assert notify_stream(change) == []
    assert [outcome.error for outcome in chains.run().values()] == ["WebhookNotDelivered"]
    execution_id = change[1].execution_id
    assert gateway.status(execution_id)["webhook"]["state"] == "failed"
    return execution_id


def test_a_failed_webhook_is_redelivered_with_a_fresh_schedule(
    gateway: Gateway, receiver: WebhookReceiver, chains: RetryChains
) -> None:
    execution_id = _failed_execution(gateway, receiver.url, chains)
    [original] = chains.started()
    assert len(receiver.received) == 5

    answer = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert answer.status == 202, answer.body
    execution = answer.json()
    assert (execution["executionId"], execution["status"]) == (execution_id, "failed")
    assert execution["webhook"]["state"] == "pending", "its first attempt failed: retries are due"
    assert [a["statusCode"] for a in execution["webhook"]["attempts"]] == [500] * 6
    started = chains.started()
    assert set(started) == {original, f"{original}-r1"}, "a retry chain of its own"
    chain = started[f"{original}-r1"]
    assert (chain.attempt, chain.delivery.redelivery) == (1, 1)

    again = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert again.status == 409, "pending, not failed: one redelivery at a time"
    assert _error(again) == {
        "code": "WEBHOOK_NOT_FAILED",
        "message": "only a failed webhook is redelivered",
        "details": {"state": "pending"},
    }

    assert list(chains.run()) == [f"{original}-r1"]
    assert gateway.status(execution_id)["webhook"]["state"] == "failed", "the fresh schedule ran out"
    assert len(receiver.received) == 10

    receiver.responder = always(200)
    delivered = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert delivered.status == 202
    assert delivered.json()["webhook"]["state"] == "delivered"
    assert f"{original}-r2" not in chains.started(), "delivered at once: no retry chain"
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
    gateway: Gateway, receiver: WebhookReceiver, chains: RetryChains
) -> None:
    change = terminal_write(gateway, receiver.url)
    execution_id = change[1].execution_id
    pending = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert pending.status == 409
    error = _error(pending)
    assert (error["code"], error["details"]) == ("WEBHOOK_NOT_FAILED", {"state": "pending"})
    assert receiver.received == [], "nothing was sent"

    receiver.responder = always(200)
    assert notify_stream(change) == []
    delivered = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert delivered.status == 409
    assert _error(delivered)["details"] == {"state": "delivered"}
    assert len(receiver.received) == 1, "only the event's own delivery"
    assert chains.started() == {}


def test_no_webhook_url_is_400(gateway: Gateway, chains: RetryChains) -> None:
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
    gateway: Gateway, receiver: WebhookReceiver, chains: RetryChains
) -> None:
    execution_id = _failed_execution(gateway, receiver.url, chains)
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


def test_a_redelivery_whose_first_attempt_cannot_be_recorded_still_gets_its_retry_chain(
    gateway: Gateway, receiver: WebhookReceiver, chains: RetryChains, monkeypatch: pytest.MonkeyPatch
) -> None:
    execution_id = _failed_execution(gateway, receiver.url, chains)
    [original] = chains.started()
    recorded = ExecutionStore.record_webhook_attempt

    def unavailable(*_: Any, **__: Any) -> None:
        raise RuntimeError("the table is unavailable")

    monkeypatch.setattr(ExecutionStore, "record_webhook_attempt", unavailable)
    answer = gateway.call("webhook_redeliver", execution_id=execution_id)
    monkeypatch.setattr(ExecutionStore, "record_webhook_attempt", recorded)
    assert answer.status == 202, answer.body
    assert answer.json()["webhook"]["state"] == "pending"
    assert chains.started()[f"{original}-r1"].attempt == 1, "counted as made and failed: retried"

    receiver.responder = always(200)
    assert [outcome.status for outcome in chains.run().values()] == ["SUCCEEDED"]
    assert gateway.status(execution_id)["webhook"]["state"] == "delivered", "never left pending"


def test_a_redelivery_whose_retries_cannot_be_scheduled_leaves_the_webhook_failed(
    gateway: Gateway, receiver: WebhookReceiver, chains: RetryChains
) -> None:
    """Step Functions refuses the retry chain: the webhook turns failed again (never pending with nothing
    to end it), so the redelivery can be asked for again."""
    execution_id = _failed_execution(gateway, receiver.url, chains)
    with failing(aws.stepfunctions(), "StartExecution", code="ServiceUnavailable"):
        answer = gateway.call("webhook_redeliver", execution_id=execution_id)
    assert answer.status == 500
    webhook = gateway.status(execution_id)["webhook"]
    assert webhook["state"] == "failed"
    assert webhook["attempts"][-1]["error"] == "the redelivery's retries could not be scheduled"
    assert gateway.call("webhook_redeliver", execution_id=execution_id).status == 202, "asked again"
