"""DynamoDB Streams event source mappings on a moto server, run the way Lambda runs them."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from asyncgate_dev.awsenv import use_dummy_aws_env
from asyncgate_dev.lambda_runtime import LambdaContext
from asyncgate_dev.streams import StreamRunner, start_stream_runners
from asyncgate_dev.template import DynamoDbEventSource, FunctionSpec, Stack, load_template, provision

TEMPLATE = Path(__file__).parents[1] / "fixtures" / "streams_template.yaml"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def stack(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Stack:
    for name, value in _dummy_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    # A fresh table (and stream) per test on the shared server.
    prefix = f"t{uuid.uuid4().hex[:8]}"
    return provision(
        load_template(TEMPLATE), boto3.client("dynamodb"), boto3.client("sqs"), name_prefix=prefix
    )


def _dummy_env() -> dict[str, str]:
    environ: dict[str, str] = {}
    use_dummy_aws_env(environ)
    return environ


class Recorder:
    """A fake function: records every event, answers with what `respond` returns (or raises)."""

    def __init__(self, respond: Callable[[list[dict[str, Any]]], Any] | None = None) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.contexts: list[LambdaContext] = []
        self.respond = respond
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> Any:
        # The event must survive the trip through JSON, as it does into a real Lambda.
        event = json.loads(json.dumps(event))
        with self._lock:
            self.batches.append(event["Records"])
            self.contexts.append(context)
        return self.respond(event["Records"]) if self.respond else None

    def keys(self, batch: int) -> list[str]:
        return [record["dynamodb"]["Keys"]["pk"]["S"] for record in self.batches[batch]]

    @property
    def delivered(self) -> list[dict[str, Any]]:
        with self._lock:
            return [record for batch in self.batches for record in batch]


class Running:
    """A runner on its own thread, stopped (and checked to stop promptly) at the end of the test."""

    def __init__(self, runner: StreamRunner) -> None:
        self.runner = runner
        self.thread = threading.Thread(target=runner.run, daemon=True)
        self.thread.start()

    def stop(self) -> float:
        started = time.monotonic()
        self.runner.stopping.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        return time.monotonic() - started


@pytest.fixture
def run(stack: Stack) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(
        invoke: Recorder, source: DynamoDbEventSource | None = None, retry_delay_seconds: float = 0.01
    ) -> Running:
        source = source or stack.dynamodb_event_sources()[0]
        runner = StreamRunner(
            source=source,
            stream_arn=stack.get_att("ItemsTable", "StreamArn"),
            invoke=invoke,
            streams=boto3.client("dynamodbstreams"),
            stopping=threading.Event(),
            function_name=source.function,
            sqs=boto3.client("sqs"),
            on_failure_url=stack.ref(source.on_failure_queue) if source.on_failure_queue else None,
            poll_seconds=0.05,
            retry_delay_seconds=retry_delay_seconds,
        )
        running = Running(runner)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def put(stack: Stack, pk: str, sk: str = "EXEC", **attributes: str) -> None:
    item = {"pk": {"S": pk}, "sk": {"S": sk}} | {name: {"S": value} for name, value in attributes.items()}
    boto3.client("dynamodb").put_item(TableName=stack.ref("ItemsTable"), Item=item)


def update(stack: Stack, pk: str, sk: str = "EXEC", **attributes: str) -> None:
    names = {f"#a{index}": name for index, name in enumerate(attributes)}
    values = {f":v{index}": {"S": value} for index, value in enumerate(attributes.values())}
    boto3.client("dynamodb").update_item(
        TableName=stack.ref("ItemsTable"),
        Key={"pk": {"S": pk}, "sk": {"S": sk}},
        UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def on_failure_messages(stack: Stack) -> list[dict[str, Any]]:
    answer = boto3.client("sqs").receive_message(
        QueueUrl=stack.ref("NotifyFailuresQueue"), MaxNumberOfMessages=10, WaitTimeSeconds=0
    )
    return [json.loads(message["Body"]) for message in answer.get("Messages", [])]


# --------------------------------------------------------------------------------------------- the template


def test_the_template_declares_the_mapping_with_lambdas_defaults(stack: Stack) -> None:
    notify, plain = stack.dynamodb_event_sources()
    assert notify == DynamoDbEventSource(
        function="NotifyFunction",
        code_uri="tests/fixtures/",
        table="ItemsTable",
        starting_position="TRIM_HORIZON",
        batch_size=10,
        function_response_types=("ReportBatchItemFailures",),
        maximum_retry_attempts=2,
        filter_patterns=(
            {"eventName": ["MODIFY"], "dynamodb": {"Keys": {"sk": {"S": ["EXEC"]}}}},
            {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": [{"prefix": "notify-"}]}}}},
        ),
        on_failure_queue="NotifyFailuresQueue",
    )
    assert (plain.starting_position, plain.batch_size, plain.maximum_retry_attempts) == ("LATEST", 100, -1)
    assert (plain.filter_patterns, plain.on_failure_queue, plain.enabled) == ((), None, False)
    # provision turned the table's StreamSpecification into a stream moto records.
    stream = boto3.client("dynamodbstreams").describe_stream(
        StreamArn=stack.get_att("ItemsTable", "StreamArn")
    )
    assert stream["StreamDescription"]["StreamStatus"] == "ENABLED"
    assert stream["StreamDescription"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"


# --------------------------------------------------------------------------------------------- delivery


def test_filtered_records_arrive_in_order_shaped_as_lambda_sends_them(
    stack: Stack, run: Callable[..., Running]
) -> None:
    put(stack, "e1", status="QUEUED")  # INSERT of an execution: filtered out
    update(stack, "e1", status="RUNNING")  # MODIFY EXEC: delivered
    put(stack, "k1", sk="KEY", kind="notify-key")  # INSERT with kind notify-*: delivered
    update(stack, "k1", sk="KEY", kind="other")  # MODIFY of a non-EXEC item: filtered out
    update(stack, "e1", status="RUNNING")  # changes nothing: DynamoDB writes no record
    update(stack, "e1", status="SUCCEEDED")  # MODIFY EXEC: delivered
    boto3.client("dynamodb").delete_item(
        TableName=stack.ref("ItemsTable"), Key={"pk": {"S": "e1"}, "sk": {"S": "EXEC"}}
    )  # REMOVE: filtered out
    recorder = Recorder()
    run(recorder)
    wait_for(lambda: len(recorder.delivered) >= 3)
    time.sleep(0.3)  # nothing else may follow

    records = recorder.delivered
    assert [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in records] == [
        ("MODIFY", "e1"),
        ("INSERT", "k1"),
        ("MODIFY", "e1"),
    ]
    stream_arn = stack.get_att("ItemsTable", "StreamArn")
    for record in records:
        assert set(record) == {
            "eventID",
            "eventName",
            "eventVersion",
            "eventSource",
            "awsRegion",
            "dynamodb",
            "eventSourceARN",
        }
        assert (record["eventVersion"], record["eventSource"]) == ("1.1", "aws:dynamodb")
        assert (record["awsRegion"], record["eventSourceARN"]) == ("us-east-1", stream_arn)
        assert record["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)
        assert abs(record["dynamodb"]["ApproximateCreationDateTime"] - time.time()) < 60
        assert isinstance(record["dynamodb"]["SizeBytes"], int)
    sequence_numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequence_numbers == sorted(sequence_numbers)

    first_modify, insert, last_modify = records
    assert first_modify["dynamodb"]["Keys"] == {"pk": {"S": "e1"}, "sk": {"S": "EXEC"}}
    assert first_modify["dynamodb"]["OldImage"]["status"] == {"S": "QUEUED"}
    assert first_modify["dynamodb"]["NewImage"]["status"] == {"S": "RUNNING"}
    assert last_modify["dynamodb"]["OldImage"]["status"] == {"S": "RUNNING"}
    assert last_modify["dynamodb"]["NewImage"]["status"] == {"S": "SUCCEEDED"}
    assert "OldImage" not in insert["dynamodb"]
    assert insert["dynamodb"]["NewImage"]["kind"] == {"S": "notify-key"}
    assert recorder.contexts[0].function_name == "NotifyFunction"


def test_batches_hold_at_most_batch_size_records(stack: Stack, run: Callable[..., Running]) -> None:
    for index in range(13):
        put(stack, f"k{index:02}", sk="KEY", kind="notify-x")
    recorder = Recorder()
    run(recorder)
    wait_for(lambda: len(recorder.delivered) == 13)
    assert [len(batch) for batch in recorder.batches] == [10, 3]
    assert recorder.keys(0) + recorder.keys(1) == [f"k{index:02}" for index in range(13)]


def test_latest_skips_what_was_written_before_the_mapping_started(
    stack: Stack, run: Callable[..., Running]
) -> None:
    put(stack, "before", sk="KEY", kind="notify-x")
    source = dataclasses.replace(stack.dynamodb_event_sources()[0], starting_position="LATEST")
    recorder = Recorder()
    running = run(recorder, source)
    wait_for(lambda: running.runner.poll_once() is False)  # the shard is known and read to its end
    put(stack, "after", sk="KEY", kind="notify-x")
    wait_for(lambda: len(recorder.delivered) == 1)
    assert recorder.keys(0) == ["after"]


# --------------------------------------------------------------------------------------------- failures


def test_a_partial_batch_failure_redelivers_from_the_failed_record_only(
    stack: Stack, run: Callable[..., Running]
) -> None:
    for index in range(5):
        put(stack, f"k{index}", sk="KEY", kind="notify-x")

    def fail_k2_once(records: list[dict[str, Any]]) -> Any:
        if len(recorder.batches) > 1:
            return {"batchItemFailures": []}
        failed = next(r for r in records if r["dynamodb"]["Keys"]["pk"]["S"] == "k2")
        return {"batchItemFailures": [{"itemIdentifier": failed["dynamodb"]["SequenceNumber"]}]}

    recorder = Recorder(fail_k2_once)
    run(recorder)
    wait_for(lambda: len(recorder.batches) == 2)
    time.sleep(0.3)
    assert len(recorder.batches) == 2
    assert recorder.keys(0) == ["k0", "k1", "k2", "k3", "k4"]
    assert recorder.keys(1) == ["k2", "k3", "k4"]
    assert on_failure_messages(stack) == []


def test_an_unknown_item_identifier_fails_the_whole_batch(stack: Stack, run: Callable[..., Running]) -> None:
    for index in range(2):
        put(stack, f"k{index}", sk="KEY", kind="notify-x")
    recorder = Recorder(
        lambda records: {"batchItemFailures": [{"itemIdentifier": "nope"}]}
        if len(recorder.batches) == 1
        else None
    )
    run(recorder)
    wait_for(lambda: len(recorder.batches) == 2)
    assert recorder.keys(0) == recorder.keys(1) == ["k0", "k1"]


def test_a_batch_that_keeps_failing_ends_in_the_on_failure_queue_and_the_shard_moves_on(
    stack: Stack, run: Callable[..., Running]
) -> None:
    put(stack, "poison", sk="KEY", kind="notify-x")
    put(stack, "k1", sk="KEY", kind="notify-x")

    def crash_on_poison(records: list[dict[str, Any]]) -> Any:
        if any(r["dynamodb"]["Keys"]["pk"]["S"] == "poison" for r in records):
            raise RuntimeError("poison")
        return None

    recorder = Recorder(crash_on_poison)
    run(recorder)
    messages: list[dict[str, Any]] = []

    def discarded() -> bool:
        messages.extend(on_failure_messages(stack))
        return bool(messages)

    wait_for(discarded)

    # MaximumRetryAttempts: 2, so three invocations with the same batch.
    assert [recorder.keys(index) for index in range(len(recorder.batches))] == [["poison", "k1"]] * 3
    (message,) = messages
    failed = recorder.batches[0]
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3
    assert message["requestContext"]["functionArn"].endswith(":function:NotifyFunction")
    assert message["responseContext"]["functionError"] == "Unhandled"
    info = message["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == failed[0]["dynamodb"]["SequenceNumber"]
    assert info["endSequenceNumber"] == failed[-1]["dynamodb"]["SequenceNumber"]
    assert info["batchSize"] == 2
    assert info["streamArn"] == stack.get_att("ItemsTable", "StreamArn")
    assert info["shardId"].startswith("shardId-")

    # The discarded records are behind the mapping: the next change is delivered on its own.
    put(stack, "k2", sk="KEY", kind="notify-x")
    wait_for(lambda: len(recorder.batches) == 4)
    assert recorder.keys(3) == ["k2"]


def test_bisecting_isolates_the_failing_record_and_keeps_the_others_in_order(
    stack: Stack, run: Callable[..., Running]
) -> None:
    for pk in ("a", "b", "poison", "c"):
        put(stack, pk, sk="KEY", kind="notify-x")
    source = dataclasses.replace(
        stack.dynamodb_event_sources()[0], bisect_batch_on_function_error=True, maximum_retry_attempts=1
    )
    succeeded: list[str] = []

    def crash_on_poison(records: list[dict[str, Any]]) -> Any:
        keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in records]
        if "poison" in keys:
            raise RuntimeError("poison")
        succeeded.extend(keys)
        return None

    recorder = Recorder(crash_on_poison)
    run(recorder, source)
    wait_for(lambda: succeeded == ["a", "b", "c"])
    assert [recorder.keys(index) for index in range(len(recorder.batches))] == [
        ["a", "b", "poison", "c"],
        ["a", "b"],
        ["poison", "c"],
        ["poison"],  # a split does not count as a retry: one try and one retry for the lone record
        ["poison"],
        ["c"],
    ]
    (message,) = on_failure_messages(stack)
    assert message["DDBStreamBatchInfo"]["batchSize"] == 1
    assert (
        message["DDBStreamBatchInfo"]["startSequenceNumber"]
        == recorder.batches[3][0]["dynamodb"]["SequenceNumber"]
    )


# --------------------------------------------------------------------------------------------- stopping


def test_the_runner_stops_within_a_second_when_idle(stack: Stack, run: Callable[..., Running]) -> None:
    running = run(Recorder())
    time.sleep(0.3)
    assert running.stop() < 1.0


def test_the_runner_stops_within_a_second_while_retrying(stack: Stack, run: Callable[..., Running]) -> None:
    put(stack, "poison", sk="KEY", kind="notify-x")
    source = dataclasses.replace(stack.dynamodb_event_sources()[0], maximum_retry_attempts=10_000)

    def crash(records: list[dict[str, Any]]) -> Any:
        raise RuntimeError("always")

    recorder = Recorder(crash)
    # Backoffs of 2 s: the stop must cut the one under way short.
    running = run(recorder, source, retry_delay_seconds=2.0)
    wait_for(lambda: len(recorder.batches) == 1)
    time.sleep(0.1)
    assert running.stop() < 1.0
    assert len(recorder.batches) == 1


# --------------------------------------------------------------------------------------------- wiring


def test_the_local_stack_starts_a_runner_per_enabled_mapping(stack: Stack) -> None:
    class Runtime:
        def __init__(self, logical_id: str) -> None:
            self.spec = stack.functions()[logical_id]
            self.recorder = Recorder()

        @property
        def name(self) -> str:
            return self.spec.logical_id

        def invoke(self, event: dict[str, Any], context: LambdaContext | None = None) -> Any:
            assert context is not None
            assert context.timeout_seconds == self.spec.timeout
            return self.recorder(event, context)

    functions = {logical_id: Runtime(logical_id) for logical_id in stack.functions()}
    stopping = threading.Event()
    threads: list[threading.Thread] = []

    def spawn(target: Callable[[], None], name: str) -> None:
        threads.append(threading.Thread(target=target, name=name, daemon=True))
        threads[-1].start()

    runners = start_stream_runners(stack, functions, stopping, spawn)
    try:
        # PlainFunction's mapping is Enabled: false.
        assert [runner.source.function for runner in runners] == ["NotifyFunction"]
        assert [thread.name for thread in threads] == ["ddb-stream-NotifyFunction-ItemsTable"]
        put(stack, "k1", sk="KEY", kind="notify-x")
        wait_for(lambda: len(functions["NotifyFunction"].recorder.delivered) == 1)
        assert functions["PlainFunction"].recorder.batches == []
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=2)
    assert not any(thread.is_alive() for thread in threads)
    assert isinstance(functions["NotifyFunction"].spec, FunctionSpec)


def test_records_keep_coming_after_a_cancelled_transaction(stack: Stack, run: Callable[..., Running]) -> None:
    """moto answers a cancelled transaction by restoring the table from a copy, which orphaned the
    shard the runner was reading: nothing written afterwards arrived (seen with webhook endpoints)."""
    recorder = Recorder()
    run(recorder)
    put(stack, "before", sk="KEY", kind="notify-x")
    wait_for(lambda: len(recorder.delivered) == 1)
    with pytest.raises(boto3.client("dynamodb").exceptions.TransactionCanceledException):
        boto3.client("dynamodb").transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": stack.ref("ItemsTable"),
                        "Key": {"pk": {"S": "missing"}, "sk": {"S": "KEY"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                }
            ]
        )
    put(stack, "after", sk="KEY", kind="notify-x")
    wait_for(lambda: len(recorder.delivered) == 2)
