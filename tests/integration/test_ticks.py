"""The poll queue under SQS's real behaviour: duplicates, late messages, lost messages, bad messages."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from asyncgate.domain.execution import new_execution
from asyncgate.services.deps import default_deps
from asyncgate.settings import get_settings
from asyncgate_dev.handlers import load_event, load_handler
from asyncgate_dev.lambda_runtime import LambdaContext, sqs_event
from asyncgate_dev.simprovider import SimProviderServer
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
        event, LambdaContext(function_name="poll_tick", timeout_seconds=gateway.poll_tick_timeout)
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


def _sweep_at(monkeypatch: pytest.MonkeyPatch, now: datetime) -> dict[str, int]:
    """One sweeper run, its clock at `now`."""
    with monkeypatch.context() as frozen:
        frozen.setattr(default_deps(), "clock", lambda: now)
        report: dict[str, int] = load_handler("sweeper").lambda_handler(
            load_event("sweeper"), LambdaContext(function_name="sweeper")
        )
    return report


def _grace_ends(execution_id: str) -> datetime:
    """Until when the sweeper leaves the execution's next tick alone (it may still come)."""
    stored = default_deps().executions.get(execution_id)
    assert stored is not None
    assert stored.next_poll_at is not None
    return stored.next_poll_at + timedelta(seconds=get_settings().sweep_grace_seconds)


def test_the_sweeper_rearms_a_lost_tick(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 1}).json()["executionId"]
    _receive_tick(gateway)  # the message is lost: received and deleted, never processed
    assert gateway.pending_ticks() == 0
    grace_ends = _grace_ends(execution_id)
    assert _sweep_at(monkeypatch, grace_ends)["rearmed"] == 0, "overdue by no more than the grace"
    assert gateway.pending_ticks() == 0
    report = _sweep_at(monkeypatch, grace_ends + timedelta(milliseconds=1))
    assert report == {"overdue": 1, "rearmed": 1, "givenUp": 0, "webhooksHandedOff": 0}
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


def test_a_duplicate_dispatch_tick_submits_to_the_provider_once(
    gateway: Gateway, sim_server: SimProviderServer
) -> None:
    jobs_before = sim_server.job_count
    execution_id = gateway.submit(model="sim-image", sim={"durationSeconds": 20}).json()["executionId"]
    tick = _receive_tick(gateway)
    assert _deliver(gateway, tick, _copy(tick, "-dup")) == {"batchItemFailures": []}
    assert sim_server.job_count == jobs_before + 1, "one provider job, whatever SQS redelivers"
    assert gateway.status(execution_id)["status"] == "running"
    assert gateway.pending_ticks() == 1


def test_a_dispatch_killed_before_it_recorded_its_outcome_is_failed_not_resubmitted(
    gateway: Gateway, sim_server: SimProviderServer
) -> None:
    """A function killed between the provider's submit and the write (nothing of it ran after the
    submit): the job may exist, so the sweeper's tick fails the execution instead of submitting a
    second one."""
    deps = default_deps()
    spec = deps.spec("sim-image")
    long_ago = deps.clock() - timedelta(minutes=2)  # overdue, but within sim-image's maxDurationSeconds
    stuck = new_execution(
        execution_id=str(uuid.uuid4()), tenant="tenant-a", spec=spec, input={}, metadata={},
        webhook_url=None, webhook_events=None, now=long_ago, first_tick_at=long_ago, dispatching=True,
        reserved_credits=spec.price_of({}),
    )  # fmt: skip
    deps.executions.create(stuck, now=long_ago)
    jobs_before = sim_server.job_count
    sweeper = load_handler("sweeper").lambda_handler
    assert sweeper(load_event("sweeper"), LambdaContext(function_name="sweeper")) == {
        "overdue": 1,
        "rearmed": 1,
        "givenUp": 0,
        "webhooksHandedOff": 0,
    }
    done = gateway.run_to_end(stuck.execution_id)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "PROVIDER_SUBMIT_FAILED"
    assert sim_server.job_count == jobs_before


def test_the_sweeper_leaves_executions_that_moved_on_alone(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 30}).json()["executionId"]
    # When the sweeper would take the first tick for lost, had it not come.
    lost_at = _grace_ends(execution_id) + timedelta(milliseconds=1)
    # The tick arrives late but arrives: the execution is no longer overdue.
    before = gateway.drain_until(execution_id, lambda execution: execution["pollCount"] == 1)
    assert _sweep_at(monkeypatch, lost_at)["rearmed"] == 0
    assert gateway.status(execution_id)["updatedAt"] == before["updatedAt"]


def test_a_failed_tick_send_is_answered_202_and_recovered_by_the_sweeper(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler = default_deps().scheduler

    def unavailable(*_: Any, **__: Any) -> None:
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessage")

    with monkeypatch.context() as patched:
        patched.setattr(scheduler, "send", unavailable)
        answer = gateway.submit(sim={"durationSeconds": 1})
    assert answer.status == 202, "the execution is written; the lost message is the sweeper's to mend"
    execution_id = answer.json()["executionId"]
    assert gateway.pending_ticks() == 0
    time.sleep(get_settings().sweep_grace_seconds + 0.5)
    sweeper = load_handler("sweeper").lambda_handler
    assert sweeper(load_event("sweeper"), LambdaContext(function_name="sweeper"))["rearmed"] == 1
    assert gateway.run_to_end(execution_id)["status"] == "succeeded"


def test_a_tick_without_time_left_is_handed_to_another_invocation_at_once(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 20}).json()["executionId"]
    tick = _receive_tick(gateway)
    event = sqs_event([tick], "arn:aws:sqs:us-east-1:123456789012:asyncgate-PollQueue")  # type: ignore[list-item]
    # 40 s left of the function's time: less than one tick's budget (a poll and a copy of outputs).
    short = LambdaContext(function_name="poll_tick", timeout_seconds=40)
    assert load_handler("poll_tick").lambda_handler(event, short) == {"batchItemFailures": []}
    assert gateway.status(execution_id)["pollCount"] == 0, "not processed here"
    again = _receive_tick(gateway, timeout=3)  # due now, not after the queue's visibility timeout
    assert json.loads(again["Body"]) == json.loads(tick["Body"])
    assert _deliver(gateway, again) == {"batchItemFailures": []}
    assert gateway.status(execution_id)["pollCount"] == 1
