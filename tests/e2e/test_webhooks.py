"""Webhook deliveries end to end: the table's stream, the notify and deliver functions, the retry state
machine (its waits shrunk by the stack's time scale), and a receiver on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook

from asyncgate_dev.receiver import Received, WebhookReceiver, always, failing_first
from tests.e2e.conftest import TIME_SCALE, DevStack

pytestmark = pytest.mark.e2e
ACME = {"X-API-Key": "acme-key"}
# The whole retry schedule (2 + 4 + 8 + 16 min, +25 %) at the stack's time scale, plus slack for a
# runner busy with the other e2e tests (waits end as soon as the deliveries are in).
SCHEDULE_SECONDS = 30 * 60 * 1.25 * TIME_SCALE + 30


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as started:
        yield started


def _secret(stack: DevStack) -> str:
    secret: str = requests.get(f"{stack.url}/v1/webhooks/secret", headers=ACME, timeout=30).json()["secret"]
    return secret


def _submit(stack: DevStack, url: str, outcome: str = "succeed", events: list[str] | None = None) -> str:
    webhook: dict[str, Any] = {"url": url, **({"events": events} if events else {})}
    body = {
        "model": "sim-video",
        "input": {"sim": {"durationSeconds": 0.5, "outcome": outcome}},
        "webhook": webhook,
    }
    answer = requests.post(f"{stack.url}/v1/executions", json=body, headers=ACME, timeout=30)
    assert answer.status_code == 202, answer.text
    execution_id: str = answer.json()["executionId"]
    return execution_id


def _verified(received: Received, secret: str) -> dict[str, Any]:
    event: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return event


def _execution(stack: DevStack, execution_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(
        f"{stack.url}/v1/executions/{execution_id}", headers=ACME, timeout=30
    ).json()
    return answer


def _settle(receiver: WebhookReceiver, seconds: float) -> list[Received]:
    """What arrived once nothing more is due for `seconds`."""
    time.sleep(seconds)
    return list(receiver.received)


def test_a_signed_delivery_per_event_per_destination(dev_stack: DevStack, receiver: WebhookReceiver) -> None:
    execution_id = _submit(dev_stack, receiver.url)
    [delivery] = receiver.wait_for(1, timeout=30)
    event = _verified(delivery, _secret(dev_stack))
    assert event["type"] == "execution.succeeded"
    assert event["data"]["executionId"] == execution_id
    assert event["data"]["status"] == "succeeded"
    assert event["timestamp"].endswith("Z")
    assert len(_settle(receiver, 2)) == 1, "one delivery, not one per stream record or tick"
    webhook = _execution(dev_stack, execution_id)["webhook"]
    assert webhook["state"] == "delivered"
    assert [attempt["statusCode"] for attempt in webhook["attempts"]] == [200]


def test_a_receiver_failing_twice_gets_three_attempts_with_one_id(dev_stack: DevStack) -> None:
    with WebhookReceiver(failing_first(2)) as receiver:
        execution_id = _submit(dev_stack, receiver.url)
        deliveries = receiver.wait_for(3, timeout=SCHEDULE_SECONDS)
        assert len(_settle(receiver, 3)) == 3, "nothing more once delivered"
    assert len({delivery.headers["webhook-id"] for delivery in deliveries}) == 1
    secret = _secret(dev_stack)
    assert all(_verified(delivery, secret)["type"] == "execution.succeeded" for delivery in deliveries)
    webhook = _execution(dev_stack, execution_id)["webhook"]
    assert webhook["state"] == "delivered"
    assert [attempt["statusCode"] for attempt in webhook["attempts"]] == [503, 503, 200]


def test_a_receiver_always_failing_gets_exactly_five_attempts(dev_stack: DevStack) -> None:
    with WebhookReceiver(always(500)) as receiver:
        execution_id = _submit(dev_stack, receiver.url, outcome="fail")
        receiver.wait_for(5, timeout=SCHEDULE_SECONDS)
        assert len(_settle(receiver, 3)) == 5
    gaps = [
        later.at - earlier.at
        for earlier, later in zip(receiver.received, receiver.received[1:], strict=False)
    ]
    # 2, 4, 8, 16 min scaled, +-25 %: windows far enough apart to tell even with a runner's latency.
    assert gaps[0] < gaps[2] < gaps[3], gaps
    webhook = _execution(dev_stack, execution_id)["webhook"]
    assert webhook["state"] == "failed"
    assert [attempt["statusCode"] for attempt in webhook["attempts"]] == [500] * 5


def test_tenant_endpoints_get_only_their_events_and_410_disables(
    dev_stack: DevStack, receiver: WebhookReceiver
) -> None:
    with WebhookReceiver() as failures, WebhookReceiver(always(410)) as gone:
        created = []
        for url, events in ((failures.url, ["execution.failed"]), (gone.url, ["execution.failed"])):
            answer = requests.post(
                f"{dev_stack.url}/v1/webhooks", json={"url": url, "events": events}, headers=ACME, timeout=30
            )
            assert answer.status_code == 201
            created.append(answer.json())
        try:
            _submit(dev_stack, receiver.url, outcome="succeed")
            failed_id = _submit(dev_stack, receiver.url, outcome="fail")
            [delivery] = failures.wait_for(1, timeout=30)
            event = _verified(delivery, created[0]["secret"])
            assert (event["type"], event["data"]["executionId"]) == ("execution.failed", failed_id)
            gone.wait_for(1, timeout=30)
            _submit(dev_stack, receiver.url, outcome="fail")
            failures.wait_for(2, timeout=30)
            assert len(_settle(gone, 2)) == 1, "410 Gone disabled the endpoint: no retry, no new event"
            assert len(failures.received) == 2, "only failures reach the failure endpoint"
        finally:
            for endpoint in created:
                requests.delete(f"{dev_stack.url}/v1/webhooks/{endpoint['id']}", headers=ACME, timeout=30)


def test_running_and_progress_events_only_when_asked(dev_stack: DevStack, receiver: WebhookReceiver) -> None:
    events = ["execution.running", "execution.progress", "execution.succeeded"]
    _submit(dev_stack, receiver.url, events=events)
    receiver.wait_for(2, timeout=30)
    deliveries = _settle(receiver, 3)
    types = [json.loads(delivery.body)["type"] for delivery in deliveries]
    assert types[0] == "execution.running"
    assert types[-1] == "execution.succeeded"
    assert set(types) <= set(events)
    assert len({delivery.headers["webhook-id"] for delivery in deliveries}) == len(deliveries), (
        "one id per event"
    )


def test_a_failed_webhook_is_redelivered_on_request(dev_stack: DevStack) -> None:
    with WebhookReceiver(always(500)) as receiver:
        execution_id = _submit(dev_stack, receiver.url, outcome="fail")
        receiver.wait_for(5, timeout=SCHEDULE_SECONDS)
        assert len(_settle(receiver, 3)) == 5
        assert _execution(dev_stack, execution_id)["webhook"]["state"] == "failed"

        receiver.responder = always(200)
        answer = requests.post(
            f"{dev_stack.url}/v1/executions/{execution_id}/webhook-redeliver", headers=ACME, timeout=30
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["webhook"]["state"] == "delivered"
        deliveries = receiver.wait_for(6, timeout=30)
        assert len(_settle(receiver, 2)) == 6, "delivered: no retry chain after it"
    redelivered = deliveries[-1]
    assert redelivered.headers["webhook-id"] == deliveries[0].headers["webhook-id"], "the same event"
    event = _verified(redelivered, _secret(dev_stack))
    assert (event["type"], event["data"]["executionId"]) == ("execution.failed", execution_id)
    webhook = _execution(dev_stack, execution_id)["webhook"]
    assert webhook["state"] == "delivered"
    assert [attempt["statusCode"] for attempt in webhook["attempts"]] == [500] * 5 + [200]
