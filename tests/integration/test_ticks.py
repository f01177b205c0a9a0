"""The poll queue under SQS's real behaviour: duplicates, late messages, lost messages, bad messages."""

from __future__ import annotations

import json
import time
from typing import Any

from asyncgate.settings import get_settings
from asyncgate_dev.lambda_runtime import LambdaContext, sqs_event
from tests.handlers import load_event, load_handler
from tests.integration.driver import Gateway


def _receive_tick(gateway: Gateway, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = gateway.sqs.receive_message(
            QueueUrl=gateway.poll_queue_url, WaitTimeSeconds=1, AttributeNames=["All"]
        )
        if answer.get("Messages"):
            message: dict[str, Any] = answer["Messages"][0]
            gateway.sqs.delete_message(
                QueueUrl=gateway.poll_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            return message
    raise AssertionError("no tick arrived")


def _deliver(gateway: Gateway, *messages: dict[str, Any]) -> dict[str, Any]:
    event = sqs_event(list(messages), "arn:aws:sqs:us-east-1:123456789012:asyncgate-PollQueue")  # type: ignore[arg-type]
    result: dict[str, Any] = load_handler("poll_tick").lambda_handler(
        event, LambdaContext(function_name="poll_tick")
    )
    return result


def _copy(message: dict[str, Any], suffix: str) -> dict[str, Any]:
    return {**message, "MessageId": message["MessageId"] + suffix}


def test_a_duplicate_delivery_polls_once_and_keeps_one_chain(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 20}).json()["executionId"]
    tick = _receive_tick(gateway)
    result = _deliver(gateway, tick, _copy(tick, "-dup"))
    assert result == {"batchItemFailures": []}
    execution = gateway.status(execution_id)
    assert execution["pollCount"] == 1, "the second copy is recognised as stale"
    assert gateway.pending_ticks() == 1, "exactly one next tick is scheduled"


def test_a_late_message_after_a_newer_tick_changes_nothing(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 20}).json()["executionId"]
    old_tick = _receive_tick(gateway)
    _deliver(gateway, old_tick)
    newer_tick = _receive_tick(gateway)
    _deliver(gateway, newer_tick)
    before = gateway.status(execution_id)
    _deliver(gateway, _copy(old_tick, "-late"))
    after = gateway.status(execution_id)
    assert after["pollCount"] == before["pollCount"] == 2
    assert after["updatedAt"] == before["updatedAt"]
    assert gateway.pending_ticks() == 1


def test_late_tick_for_a_terminal_execution_is_a_no_op(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 0.2}).json()["executionId"]
    tick = _receive_tick(gateway)
    time.sleep(0.4)
    _deliver(gateway, tick)
    done = gateway.status(execution_id)
    assert done["status"] == "succeeded"
    _deliver(gateway, _copy(tick, "-again"))
    assert gateway.status(execution_id) == done
    assert gateway.pending_ticks() == 0


def test_an_unexpected_failure_fails_only_its_own_message(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 20}).json()["executionId"]
    good = _receive_tick(gateway)
    bad = {**good, "MessageId": "broken-1", "Body": "{not json"}
    result = _deliver(gateway, bad, good)
    assert result == {"batchItemFailures": [{"itemIdentifier": "broken-1"}]}
    assert gateway.status(execution_id)["pollCount"] == 1


def test_the_sweeper_rearms_a_lost_tick(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 1}).json()["executionId"]
    _receive_tick(gateway)  # the message is lost: received and deleted, never processed
    assert gateway.pending_ticks() == 0
    sweeper = load_handler("sweeper").lambda_handler
    assert sweeper(load_event("sweeper"), LambdaContext(function_name="sweeper"))["rearmed"] == 0, (
        "not yet overdue"
    )
    # The grace period (120 s) shrinks with TIME_SCALE like every scheduled wait.
    time.sleep(120 * get_settings().time_scale + 0.5)
    report = sweeper(load_event("sweeper"), LambdaContext(function_name="sweeper"))
    assert report == {"overdue": 1, "rearmed": 1}
    assert gateway.pending_ticks() == 1
    assert gateway.run_to_end(execution_id)["status"] == "succeeded"


def test_long_waits_are_chained_in_hops(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 20}).json()["executionId"]
    tick = _receive_tick(gateway)
    body = json.loads(tick["Body"])
    body["dueAt"] = "2999-01-01T00:00:00.000Z"
    far = {**tick, "MessageId": "far", "Body": json.dumps(body)}
    # The execution is waiting for this tick id, so a far due time means "not yet": sent on, not polled.
    _deliver(gateway, far)
    assert gateway.status(execution_id)["pollCount"] == 0
    assert gateway.pending_ticks() == 1
