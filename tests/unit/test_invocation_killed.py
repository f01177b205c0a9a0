"""A handler killed mid-invocation (InvocationKilled, what the chaos harness raises between two writes)
is, for whoever invoked it, an invocation that died: an error without an answer, the SQS batch back on
its queue, and a fresh sandbox for the next call."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from asyncgate_dev.lambda_runtime import InvocationDied, deliver_sqs_batch
from asyncgate_dev.localstack import FunctionRuntime
from asyncgate_dev.template import FunctionSpec

# Counts its calls per sandbox (module copy); an event asking it to die is killed, though it tries to
# swallow the error.
HANDLER = """
from asyncgate_dev.lambda_runtime import InvocationKilled

calls = 0


def handler(event, context):
    global calls
    calls += 1
    if event.get("die"):
        try:
            raise InvocationKilled("out of memory")
        except Exception:
            return {"swallowed": True}
    return {"calls": calls}
"""


@pytest.fixture
def runtime(tmp_path: Path) -> FunctionRuntime:
    code = tmp_path / "dying"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    spec = FunctionSpec("DyingFunction", str(code), "app.handler", "python3.13", 30, 512, {}, {})
    return FunctionRuntime(spec, concurrency=1)


def test_a_killed_invocation_dies_and_its_sandbox_is_replaced(runtime: FunctionRuntime) -> None:
    assert runtime.invoke({}) == {"calls": 1}
    assert runtime.invoke({}) == {"calls": 2}
    with pytest.raises(InvocationDied):
        runtime.invoke({"die": True})
    # A new sandbox: its module state starts again.
    assert runtime.invoke({}) == {"calls": 1}


def test_a_killed_consumer_leaves_its_batch_on_the_queue(runtime: FunctionRuntime) -> None:
    with mock_aws():
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="ticks", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody="{}")
        assert (
            deliver_sqs_batch(sqs, queue, lambda event, context: runtime.invoke({"die": True}, context)) == 1
        )
        again = sqs.receive_message(QueueUrl=queue, AttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
