"""Lambda's calling conventions, reproduced for code that runs handlers outside Lambda (the tests, the
local stack, the benchmarks): the context object and the SQS event source's batch and redrive."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

Handler = Callable[[dict[str, Any], Any], Any]


class InvocationKilled(BaseException):
    """Kills the invocation it is raised in, as a timeout or an out-of-memory kill ends a Lambda
    invocation: a BaseException, so no `except Exception` of the handler can swallow it (the chaos
    harness raises it between two writes). The runtime that called the handler turns it into
    InvocationDied."""


class InvocationDied(Exception):
    """What the caller of a killed invocation sees: an error without an answer (an SQS batch returns to
    its queue, API Gateway answers 500, a stream batch or a Step Functions task is tried again)."""


@dataclass
class LambdaContext:
    """What Lambda passes as `context`, with a real deadline from the function's timeout."""

    function_name: str = "asyncgate-local"
    timeout_seconds: float = 30.0
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


def sqs_event(messages: list[MessageTypeDef], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """The event an SQS event source mapping hands the function for a batch of received messages."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def deliver_sqs_batch(
    sqs: SQSClient,
    queue_url: str,
    handler: Handler,
    *,
    batch_size: int = 10,
    wait_seconds: int = 1,
    timeout_seconds: float = 30.0,
    function_name: str = "asyncgate-local",
    report_batch_item_failures: bool = True,
) -> int:
    """Receive one batch and run the handler on it as the event source mapping would: messages the
    handler reports in `batchItemFailures` (when the mapping has ReportBatchItemFailures), or all of them
    if it raises, stay on the queue and come back
    after their visibility timeout (redriven to the DLQ by SQS after maxReceiveCount); the rest are
    deleted. Returns how many messages were delivered."""
    received = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=batch_size,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
    )
    messages = received.get("Messages", [])
    if not messages:
        return 0
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    context = LambdaContext(function_name=function_name, timeout_seconds=timeout_seconds)
    try:
        answer = handler(sqs_event(messages, queue_arn), context)
        # Without ReportBatchItemFailures on the mapping, Lambda ignores what the function answers.
        reported = (answer or {}).get("batchItemFailures", []) if report_batch_item_failures else []
        failed = {item["itemIdentifier"] for item in reported}
    except Exception:
        # A crashed invocation fails the whole batch, as in Lambda.
        logging.getLogger("asyncgate.dev").exception(
            "%s failed; its batch returns to the queue", function_name
        )
        failed = {message["MessageId"] for message in messages}
    done = [message for message in messages if message["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(done)],
        )
    return len(messages)
