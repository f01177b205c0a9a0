"""A template's state machine on a moto server: StartExecution through plain boto3 runs the definition
file, its Lambda task calling the stack's function (here a recording fake) and its dynamodb:updateItem
task writing to the stack's table on the emulator."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from asyncgate_dev.awsenv import use_dummy_aws_env
from asyncgate_dev.stepfunctions import StateMachineRunner, start_state_machine_runner
from asyncgate_dev.template import Stack, TemplateError, load_template, provision

FIXTURES = Path(__file__).parents[1] / "fixtures" / "statemachine"
# The definition's 30 s Wait and 20 s / 40 s retry intervals become 30, 20 and 40 ms.
TIME_SCALE = 0.001


class DeliveryError(Exception):
    pass


class RecordingFunction:
    """Stands in for a FunctionRuntime: records each event, answers per URL from `answers`."""

    def __init__(self, answers: dict[str, list[Any]]) -> None:
        self.answers = answers
        self.events: list[tuple[dict[str, Any], float]] = []
        self._lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            self.events.append((event, time.monotonic()))
            script = self.answers[event["url"]]
            answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    use_dummy_aws_env()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    yield endpoint
    server.stop()


@pytest.fixture
def stack(moto_endpoint: str) -> Stack:
    template = load_template(FIXTURES / "template.yaml")
    return provision(
        template,
        boto3.client("dynamodb"),
        boto3.client("sqs"),
        stepfunctions=boto3.client("stepfunctions"),
        base_dir=FIXTURES,
        # moto's backends outlive one server: a fresh prefix keeps the names unique.
        name_prefix=f"sm{secrets.token_hex(4)}",
    )


@pytest.fixture
def deliver() -> RecordingFunction:
    return RecordingFunction(
        {
            "https://ok.example": [{"status": 204, "headers": {"x": "y"}}],
            "https://down.example": [DeliveryError("connection refused")],
            "https://rejects.example": [{"status": 410}],
        }
    )


@pytest.fixture
def runner(stack: Stack, deliver: RecordingFunction) -> Iterator[StateMachineRunner]:
    stopping = threading.Event()
    threads: list[threading.Thread] = []

    def spawn(target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        threads.append(thread)

    started = start_state_machine_runner(
        stack, {"DeliverFunction": deliver}, stopping, spawn, time_scale=TIME_SCALE
    )
    assert started is not None
    yield started
    stopping.set()
    for thread in threads:
        thread.join(timeout=2)
        assert not thread.is_alive(), "the poller stops with the stack"


def start(stack: Stack, payload: dict[str, Any]) -> str:
    """What a handler does: plain boto3, the ARN from its environment, a unique execution name."""
    arn = stack.function_environment("StarterFunction")["DELIVERY_STATE_MACHINE_ARN"]
    return str(
        boto3.client("stepfunctions").start_execution(
            stateMachineArn=arn, name=f"delivery-{secrets.token_hex(8)}", input=json.dumps(payload)
        )["executionArn"]
    )


def test_provision_creates_the_state_machine_with_substitutions(stack: Stack) -> None:
    (machine,) = stack.state_machines()
    function_arn = stack.get_att("DeliverFunction", "Arn")
    assert function_arn == f"arn:aws:lambda:us-east-1:123456789012:function:{stack.ref('DeliverFunction')}"
    assert machine.logical_id == "DeliveryStateMachine"
    assert machine.arn == stack.ref("DeliveryStateMachine")
    assert machine.arn.startswith("arn:aws:states:us-east-1:123456789012:stateMachine:")
    assert machine.definition["States"]["Deliver"]["Resource"] == function_arn
    described = boto3.client("stepfunctions").describe_state_machine(stateMachineArn=machine.arn)
    assert json.loads(described["definition"]) == machine.definition
    assert stack.function_for_arn(function_arn) == "DeliverFunction"
    assert stack.function_for_arn(function_arn + ":live") == "DeliverFunction"
    assert stack.function_for_arn(stack.ref("DeliverFunction")) == "DeliverFunction"
    with pytest.raises(TemplateError, match="no function"):
        stack.function_for_arn("arn:aws:lambda:us-east-1:123456789012:function:other")


def test_provision_without_a_stepfunctions_client_skips_state_machines(moto_endpoint: str) -> None:
    template = load_template(FIXTURES / "template.yaml")
    stack = provision(template, boto3.client("dynamodb"), boto3.client("sqs"), base_dir=FIXTURES)
    assert stack.state_machines() == []
    assert stack.ref("DeliverFunction") == "asyncgate-DeliverFunction"


def test_a_started_execution_runs_the_definition_and_moto_reports_its_outcome(
    stack: Stack, runner: StateMachineRunner, deliver: RecordingFunction
) -> None:
    client = boto3.client("stepfunctions")
    started = time.monotonic()
    execution_arn = start(stack, {"url": "https://ok.example", "delaySeconds": 30})

    assert runner.wait(execution_arn, timeout=5).status == "SUCCEEDED"
    ((event, called),) = deliver.events
    assert event == {"url": "https://ok.example", "attempt": 0}
    assert called - started >= 0.03, "the 30 s Wait, scaled"
    described = client.describe_execution(executionArn=execution_arn)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"url": "https://ok.example", "status": 204}
    assert (
        client.list_executions(stateMachineArn=stack.ref("DeliveryStateMachine"), statusFilter="RUNNING")[
            "executions"
        ]
        == []
    )


def test_further_executions_run_too_with_retries_and_failures(
    stack: Stack, runner: StateMachineRunner, deliver: RecordingFunction
) -> None:
    client = boto3.client("stepfunctions")
    arns = [
        start(stack, {"url": url, "delaySeconds": 0})
        for url in ("https://ok.example", "https://down.example", "https://rejects.example")
    ]
    outcomes = [runner.wait(arn, timeout=5) for arn in arns]
    assert [outcome.status for outcome in outcomes] == ["SUCCEEDED", "FAILED", "FAILED"]

    down = client.describe_execution(executionArn=arns[1])
    assert down["status"] == "FAILED"
    assert down["error"] == "DeliveryError", "the handler's exception class, caught, then a Fail state"
    assert json.loads(down["cause"])["errorMessage"] == "connection refused"
    tries = [(event, at) for event, at in deliver.events if event["url"] == "https://down.example"]
    assert [event["attempt"] for event, _ in tries] == [0, 1, 2], "MaxAttempts 2: three tries"
    assert tries[2][1] - tries[1][1] >= 0.04, "the second retry waits 40 s scaled (BackoffRate 2)"

    rejected = client.describe_execution(executionArn=arns[2])
    assert (rejected["status"], rejected["error"]) == ("FAILED", "Webhook.Rejected")

    # The undeliverable one was counted in the stack's table (dynamodb:updateItem), the others not.
    table = stack.ref("FailuresTable")
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    assert items == [
        {"pk": {"S": "https://down.example"}, "failures": {"N": "1"}, "lastError": {"S": "DeliveryError"}}
    ]


def test_stop_execution_ends_a_waiting_execution(stack: Stack, runner: StateMachineRunner) -> None:
    client = boto3.client("stepfunctions")
    execution_arn = start(stack, {"url": "https://ok.example", "delaySeconds": 100_000})
    deadline = time.monotonic() + 5
    while execution_arn not in runner.active():
        assert time.monotonic() < deadline, "the runner picks the execution up"
        time.sleep(0.02)
    client.stop_execution(executionArn=execution_arn)
    assert runner.wait(execution_arn, timeout=2).status == "ABORTED"
    assert client.describe_execution(executionArn=execution_arn)["status"] == "ABORTED"


def test_unsupported_definitions_are_refused_at_startup(stack: Stack) -> None:
    (machine,) = stack.state_machines()
    broken = type(machine)(machine.logical_id, machine.arn, {**machine.definition, "StartAt": "Nope"})
    with pytest.raises(TemplateError, match="DeliveryStateMachine: StartAt 'Nope'"):
        StateMachineRunner(boto3.client("stepfunctions"), [broken], lambda function, payload: None)


def test_a_listing_whose_page_token_expired_starts_again(stack: Stack) -> None:
    """moto refuses a page token once the execution it names has ended (InvalidToken): the runner lists
    again rather than skip a poll (or stop executions it did not see)."""
    (machine,) = stack.state_machines()
    client = boto3.client("stepfunctions")
    runner = StateMachineRunner(client, [machine], lambda function, payload: None)
    running: list[dict[str, Any]] = [
        {"executionArn": f"{machine.arn}:{n}", "stateMachineArn": machine.arn, "name": f"e{n}"}
        for n in range(3)
    ]
    for execution in running:
        execution.update(status="RUNNING", startDate=time.time())
    with Stubber(client) as stubber:
        stubber.add_response("list_executions", {"executions": running[:1], "nextToken": "t1"})
        stubber.add_client_error("list_executions", service_error_code="InvalidToken", http_status_code=400)
        stubber.add_response("list_executions", {"executions": running[1:]})
        assert runner._running(machine.arn) == [execution["executionArn"] for execution in running[1:]]
        stubber.assert_no_pending_responses()
