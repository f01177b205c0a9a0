"""The notify function on a stream batch, through its handler, and the retry chains it starts: the real
DeliveryRetries on moto's Step Functions, each chain then run by the local stack's runner with the real
deliver handler and the real dynamodb:updateItem tasks (its gaps shrunk to nothing)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from standardwebhooks import Webhook

from asyncgate import aws
from asyncgate.delivery.tasks import BODY_PREFIX, MAX_INLINE_TASK_BYTES, DeliveryTask
from asyncgate.delivery.transport import MAX_ERROR_TEXT
from asyncgate.domain.execution import Execution
from asyncgate.domain.status import Status
from asyncgate.services.deps import default_deps
from asyncgate.services.notify import START_RESERVE_SECONDS
from asyncgate.settings import get_settings
from asyncgate.store.items import execution_key, to_item
from asyncgate.store.webhooks import WebhookStore
from asyncgate_dev.handlers import load_event, load_handler
from asyncgate_dev.lambda_runtime import LambdaContext
from asyncgate_dev.receiver import WebhookReceiver, always
from asyncgate_dev.stepfunctions import ExecutionOutcome, StateMachineRunner
from asyncgate_dev.template import Stack
from tests.faults import failing as failing_call
from tests.faults import items_under
from tests.integration.driver import Gateway

# Retry gaps of up to 20 minutes become a millisecond.
CHAIN_TIME_SCALE = 1e-6


class RetryChains:
    """The webhook retry state machine on moto: the chains the product started, and a runner (the local
    stack's) that runs the ones still running when asked, the deliver task calling the deliver handler
    (or crashing, while `crashing` is set)."""

    def __init__(self, stack: Stack) -> None:
        (self.machine,) = stack.state_machines()
        self.client = boto3.client("stepfunctions")
        self.crashing = False
        self.runner = StateMachineRunner(
            self.client,
            [self.machine],
            self._invoke,
            function_id=stack.function_for_arn,
            time_scale=CHAIN_TIME_SCALE,
        )

    @classmethod
    def on_loopback(cls, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> RetryChains:
        """The stack's chains, its functions delivering to loopback receivers."""
        monkeypatch.setenv("ALLOW_LOOPBACK_WEBHOOKS", "true")
        get_settings.cache_clear()
        default_deps.cache_clear()
        return cls(stack)

    def started(self) -> dict[str, DeliveryTask]:
        """Every chain started so far, by name, with its input."""
        listed = self.client.list_executions(stateMachineArn=self.machine.arn)["executions"]
        return {
            execution["name"]: DeliveryTask.model_validate_json(
                self.client.describe_execution(executionArn=execution["executionArn"])["input"]
            )
            for execution in listed
        }

    def run(self) -> dict[str, ExecutionOutcome]:
        """Run every chain still running to its end; how each ended, by name."""
        running = self.client.list_executions(stateMachineArn=self.machine.arn, statusFilter="RUNNING")
        self.runner.poll_once()
        return {
            execution["name"]: self.runner.wait(execution["executionArn"], timeout=60)
            for execution in running["executions"]
        }

    def _invoke(self, function: str, payload: Any) -> Any:
        assert function == "DeliverFunction"
        if self.crashing:
            raise MemoryError("the deliver function ran out of memory")
        context = LambdaContext(function_name="deliver", timeout_seconds=30)
        return load_handler("deliver").lambda_handler(payload, context)


@pytest.fixture
def chains(gateway: Gateway, aws_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> RetryChains:
    return RetryChains.on_loopback(aws_stack, monkeypatch)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as started:
        yield started


def notify_stream(*changes: tuple[Execution, Execution], timeout_seconds: float = 60.0) -> list[str]:
    """Hand the notify function one stream batch of these (old, new) writes; the records it fails."""
    records = [
        {
            "eventID": str(index),
            "eventName": "MODIFY",
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "Keys": execution_key(new.execution_id),
                "OldImage": to_item(old),
                "NewImage": to_item(new),
                "SequenceNumber": str(1000 + index),
            },
        }
        for index, (old, new) in enumerate(changes)
    ]
    context = LambdaContext(function_name="notify", timeout_seconds=timeout_seconds)
    answer = load_handler("notify").lambda_handler({"Records": records}, context)
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


def terminal_write(gateway: Gateway, url: str, outcome: str = "succeed") -> tuple[Execution, Execution]:
    """An execution run to its end, and its terminal write as the stream shows it (old, new)."""
    submitted = gateway.submit(sim={"durationSeconds": 0.2, "outcome": outcome}, webhook={"url": url})
    assert submitted.status == 202, submitted.body
    execution_id: str = submitted.json()["executionId"]
    gateway.run_to_end(execution_id)
    terminal = default_deps().executions.get(execution_id)
    assert terminal is not None
    return terminal.model_copy(update={"status": Status.RUNNING}), terminal


def webhook_of(gateway: Gateway, execution: Execution) -> dict[str, Any]:
    webhook: dict[str, Any] = gateway.status(execution.execution_id)["webhook"]
    return webhook


def test_a_batch_delivers_what_it_can_and_hands_the_rest_to_the_retry_state_machine(
    gateway: Gateway, chains: RetryChains, receiver: WebhookReceiver
) -> None:
    with WebhookReceiver(always(500)) as failing:
        delivered = terminal_write(gateway, receiver.url)
        retried = terminal_write(gateway, failing.url)
        # Passes the URL check at submit, but no resolver takes a 64-character label.
        unresolvable = terminal_write(gateway, f"https://{'a' * 64}.example.com/hook")
        assert notify_stream(delivered, retried, unresolvable) == []
        assert (len(receiver.received), len(failing.received)) == (1, 1)

    assert webhook_of(gateway, delivered[1])["state"] == "delivered"
    [chain] = chains.started().values()
    assert (chain.delivery.execution_id, chain.attempt) == (retried[1].execution_id, 1)
    assert webhook_of(gateway, retried[1])["state"] == "pending"
    refused = webhook_of(gateway, unresolvable[1])
    assert refused["state"] == "failed", "refused for good: no retry chain"
    [attempt] = refused["attempts"]
    assert attempt["error"].startswith("refused: the host is not a valid domain name")
    assert len(attempt["error"]) <= MAX_ERROR_TEXT


def test_a_record_whose_deliveries_cannot_be_listed_is_retried_with_the_records_after_it(
    gateway: Gateway, chains: RetryChains, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, unlisted, later = (terminal_write(gateway, receiver.url) for _ in range(3))
    listed, reads = WebhookStore.subscribed, []

    def subscribed(store: WebhookStore, tenant: str, event_type: Any) -> Any:
        reads.append(tenant)
        if len(reads) == 2:  # the second record's endpoints
            raise RuntimeError("throttled")
        return listed(store, tenant, event_type)

    monkeypatch.setattr(WebhookStore, "subscribed", subscribed)
    assert notify_stream(first, unlisted, later) == ["1001", "1002"], "the stream retries from the second"
    assert len(receiver.received) == 1, "only the first record's delivery: the later one is left to the retry"
    assert webhook_of(gateway, first[1])["state"] == "delivered"


def test_an_exception_inside_an_attempt_is_a_failed_attempt_not_a_failed_record(
    gateway: Gateway, chains: RetryChains, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    change = terminal_write(gateway, receiver.url)

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("unexpected " * 100)

    monkeypatch.setattr("asyncgate.services.notify.post_webhook", broken)
    assert notify_stream(change) == [], "the stream record is done"
    [attempt] = webhook_of(gateway, change[1])["attempts"]
    assert attempt["statusCode"] is None
    assert attempt["error"].startswith("RuntimeError: unexpected unexpected")
    assert len(attempt["error"]) <= MAX_ERROR_TEXT
    assert [task.attempt for task in chains.started().values()] == [1], "retried by the state machine"


def test_a_batch_without_time_left_hands_its_deliveries_over_for_an_immediate_first_attempt(
    gateway: Gateway, chains: RetryChains, receiver: WebhookReceiver
) -> None:
    change = terminal_write(gateway, receiver.url)
    assert notify_stream(change, timeout_seconds=START_RESERVE_SECONDS) == []
    assert receiver.received == [], "no attempt started this late"
    [chain] = chains.started().values()
    assert chain.attempt == 0

    [outcome] = chains.run().values()
    assert outcome.status == "SUCCEEDED"
    assert len(receiver.received) == 1
    webhook = webhook_of(gateway, change[1])
    assert webhook["state"] == "delivered"
    assert [attempt["statusCode"] for attempt in webhook["attempts"]] == [200]


def test_a_body_too_big_for_step_functions_travels_by_reference(
    gateway: Gateway, chains: RetryChains, receiver: WebhookReceiver
) -> None:
    old, new = terminal_write(gateway, receiver.url)
    assert new.result is not None
    # The stream image carries a provider's result far past Step Functions' 256 KiB input.
    big = new.model_copy(update={"result": new.result.model_copy(update={"raw": {"log": "x" * 300_000}})})
    receiver.responder = always(503)
    assert notify_stream((old, big)) == []
    [(name, chain)] = chains.started().items()
    assert chain.delivery.body == ""
    assert chain.delivery.body_key == f"{BODY_PREFIX}tenant-a/{new.execution_id}/{name}.json"
    described = chains.client.describe_execution(
        executionArn=chains.client.list_executions(stateMachineArn=chains.machine.arn)["executions"][0][
            "executionArn"
        ]
    )
    assert len(described["input"].encode()) < MAX_INLINE_TASK_BYTES

    receiver.responder = always(200)
    assert [outcome.status for outcome in chains.run().values()] == ["SUCCEEDED"]
    first, retried = receiver.received
    assert retried.body == first.body, "the same body, read back from the results bucket"
    secret = gateway.call("webhooks_secret").json()["secret"]
    assert (
        Webhook(secret).verify(retried.body, retried.headers)["data"]["result"]["raw"]["log"] == "x" * 300_000
    )
    stored = boto3.client("s3").get_object(Bucket=get_settings().results_bucket, Key=chain.delivery.body_key)
    assert json.loads(stored["Body"].read()) == json.loads(first.body)


def test_a_deliver_function_that_keeps_crashing_ends_the_webhook_failed_not_pending(
    gateway: Gateway, chains: RetryChains
) -> None:
    with WebhookReceiver(always(500)) as failing:
        change = terminal_write(gateway, failing.url, outcome="fail")
        assert notify_stream(change) == []
        chains.crashing = True
        [outcome] = chains.run().values()
    assert (outcome.status, outcome.error) == ("FAILED", "WebhookNotDelivered")
    webhook = webhook_of(gateway, change[1])
    assert webhook["state"] == "failed"
    assert [(attempt["statusCode"], attempt["error"]) for attempt in webhook["attempts"]] == [
        (500, "HTTP 500"),
        *[(None, "the deliver function failed: MemoryError")] * 4,
    ], "recorded by the state machine itself, the function being down"


def test_a_retried_stream_record_starts_no_second_chain(gateway: Gateway, chains: RetryChains) -> None:
    with WebhookReceiver(always(500)) as failing:
        change = terminal_write(gateway, failing.url, outcome="fail")
        assert notify_stream(change) == []
        [(name, _)] = chains.started().items()
        assert [outcome.status for outcome in chains.run().values()] == ["FAILED"]
        assert len(failing.received) == 5
        # The stream hands the same record again (a retried batch): the chain's name is taken.
        assert notify_stream(change) == []
        assert len(failing.received) == 5, "no second first attempt: five in all"
    assert list(chains.started()) == [name]
    assert chains.run() == {}


def test_a_record_retried_after_its_run_died_makes_no_second_first_attempt(
    gateway: Gateway, chains: RetryChains
) -> None:
    """The first run made the attempt, then could neither start the retry chain nor park it (Step
    Functions and the table both refusing, as a run that died there): the record is retried, and the
    retry goes straight to the chain, the first attempt counted as made."""
    with WebhookReceiver(always(500)) as failing:
        change = terminal_write(gateway, failing.url, outcome="fail")
        parking = items_under("DELIVERY#")
        with (
            failing_call(aws.stepfunctions(), "StartExecution", times=None, code="ServiceUnavailable"),
            failing_call(aws.dynamodb(), "UpdateItem", matches=parking, times=None),
        ):
            assert notify_stream(change) == ["1000"], "neither handed off nor parked: the stream retries it"
        assert len(failing.received) == 1
        assert notify_stream(change) == []
        assert len(failing.received) == 1, "the retry makes no attempt of its own"
        [chain] = chains.started().values()
        assert chain.attempt == 1
        assert [outcome.error for outcome in chains.run().values()] == ["WebhookNotDelivered"]
        assert len(failing.received) == 5, "five attempts in all"
    assert webhook_of(gateway, change[1])["state"] == "failed"


def test_a_delivery_step_functions_refuses_is_parked_and_handed_off_by_the_sweeper(
    gateway: Gateway, chains: RetryChains, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step Functions down for longer than the stream retries a record: nothing fails the record, and
    nothing is lost: the delivery waits on its claim item until a sweeper round hands it off."""
    receiver.responder = always(503)
    change = terminal_write(gateway, receiver.url)
    with failing_call(aws.stepfunctions(), "StartExecution", times=None, code="ServiceUnavailable"):
        assert notify_stream(change) == [], "parked: the record is done"
        assert _sweep()["webhooksHandedOff"] == 0, "not due yet"
        monkeypatch.setattr(default_deps(), "clock", lambda: datetime.now(UTC) + timedelta(minutes=5))
        assert _sweep()["webhooksHandedOff"] == 0, "still refused: it waits another round"
    assert chains.started() == {}
    assert notify_stream(change) == [], "a retry of the record leaves the parked delivery to the sweeper"
    assert len(receiver.received) == 1
    monkeypatch.setattr(default_deps(), "clock", lambda: datetime.now(UTC) + timedelta(minutes=10))
    assert _sweep()["webhooksHandedOff"] == 1
    [chain] = chains.started().values()
    assert chain.attempt == 1
    receiver.responder = always(200)
    assert [outcome.status for outcome in chains.run().values()] == ["SUCCEEDED"]
    assert webhook_of(gateway, change[1])["state"] == "delivered"
    assert len(receiver.received) == 2
    monkeypatch.setattr(default_deps(), "clock", lambda: datetime.now(UTC) + timedelta(minutes=20))
    assert _sweep()["webhooksHandedOff"] == 0, "handed off once"


def _sweep() -> dict[str, int]:
    report: dict[str, int] = load_handler("sweeper").lambda_handler(
        load_event("sweeper"), LambdaContext(function_name="sweeper")
    )
    return report
