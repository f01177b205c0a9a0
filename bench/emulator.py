"""`make bench` section 9: the local stack's emulator, moto's own code next to asyncgate_dev's fixes of
it (each one swapped back for the "moto" column), with N items or messages already in it; in-process,
through boto3 (client and moto's request handling, no HTTP)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from moto import mock_aws
from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.table import Table
from moto.sqs import models as sqs_models

from asyncgate_dev import motoquery, motoserialize, motosqs
from asyncgate_dev.handlers import REPO_ROOT, TEMPLATE_PATH
from asyncgate_dev.template import load_template, provision

ACCOUNT, REGION = "123456789012", "us-east-1"
QUEUED = (0, 1_000, 10_000)
EXECUTIONS = (1_000, 10_000)
# Live executions among them (in the sparse due index), and ledger entries per execution.
LIVE_SHARE = 0.1
# Calls timed per figure: enough to time the fix, few enough that moto's own O(n) calls end.
CALLS = {"fixed": 300, "moto": 30}


def _rate(call: Callable[[], Any], calls: int) -> float:
    call()  # warm
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return calls / (time.perf_counter() - started)


@contextlib.contextmanager
def _moto_own(owner: type, name: str, original: Any) -> Iterator[None]:
    """moto's own method back for the duration (the "moto" column)."""
    fixed = owner.__dict__[name]
    setattr(owner, name, original)
    try:
        yield
    finally:
        setattr(owner, name, fixed)


def _row(
    label: str,
    calls_of: Callable[[str], Callable[[], Any]],
    moto_own: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    """Calls per second with moto's own code and with the fix; `calls_of(column)` makes the call."""
    fixed = _rate(calls_of("fixed"), CALLS["fixed"])
    with moto_own():
        own = _rate(calls_of("moto"), CALLS["moto"])
    print(f"  {label:48} {own:9.0f}/s {fixed:9.0f}/s  {fixed / own:6.1f}x")


def _tick_round(sqs: Any, url: str) -> None:
    """One poll tick's SQS calls: its message received, the next tick sent (delayed), the batch deleted,
    and the queue's backlog read (as the sweeper does)."""
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"tick": "due"}))
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"tick": "next"}), DelaySeconds=900)
    sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(messages)],
    )
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])


def _sqs(queued: int) -> None:
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        backend = sqs_models.sqs_backends[ACCOUNT][REGION]

        def rounds_on(store: str) -> Callable[[], Any]:
            name = f"poll-{store}"
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            for number in range(queued):  # straight into the backend: setting up is not what is timed
                backend.send_message(name, json.dumps({"tick": number}), delay_seconds=900)
            if store == "moto":
                motosqs.use_moto_list(backend.get_queue(name))
            return lambda: _tick_round(sqs, url)

        _row(f"a tick's 5 SQS calls, {queued:5} ticks queued", rounds_on, contextlib.nullcontext)


EXECUTION_ITEM: dict[str, Any] = {
    "status": {"S": "running"},
    "model": {"S": "sim-video"},
    "input": {"M": {"prompt": {"S": "a red fox"}, "sim": {"M": {"durationSeconds": {"N": "20"}}}}},
    "result": {
        "M": {
            "outputs": {
                "L": [
                    {"M": {"url": {"S": f"https://x/{n}.mp4"}, "contentType": {"S": "video/mp4"}}}
                    for n in range(3)
                ]
            },
            "raw": {"M": {"id": {"S": "sim_1"}, "status": {"S": "succeeded"}}},
        }
    },
    "webhook": {
        "M": {"state": {"S": "pending"}, "attempts": {"L": [{"M": {"statusCode": {"N": "503"}}}] * 3}}
    },
    "metadata": {"M": {"order": {"S": "A-17"}}},
}


def _dynamodb(executions: int) -> None:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        stack = provision(load_template(TEMPLATE_PATH), dynamodb, boto3.client("sqs", region_name=REGION),
                          base_dir=REPO_ROOT)  # fmt: skip
        table = stack.outputs()["ExecutionsTableName"]
        backend = dynamodb_backends[ACCOUNT][REGION]
        for number in range(executions):  # straight into the backend, as above
            item = {"pk": {"S": f"EXEC#{number}"}, "sk": {"S": "EXEC"}, **EXECUTION_ITEM}
            if number < executions * LIVE_SHARE:
                item |= {
                    "dueShard": {"S": f"DUE#{number % 8}"},
                    "nextPollAt": {"S": f"2026-11-23T12:{number % 60:02}"},
                }
            backend.put_item(table, item)
            for kind in ("reserve", "settle"):
                ledger_key = {"S": f"LEDGER#2026-11-23T12:00:00.000Z#{number}#{kind}"}
                backend.put_item(table, {"pk": {"S": "TENANT#t"}, "sk": ledger_key, "credits": {"N": "-10"}})
        backend.put_item(
            table, {"pk": {"S": "TENANT#t"}, "sk": {"S": "WEBHOOK#1"}, "url": {"S": "https://x"}}
        )
        endpoints: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": "TENANT#t"}, ":prefix": {"S": "WEBHOOK#"}},
        }
        overdue: dict[str, Any] = {
            "TableName": table,
            "IndexName": "ByDue",
            "KeyConditionExpression": "dueShard = :shard AND nextPollAt < :now",
            "ExpressionAttributeValues": {":shard": {"S": "DUE#3"}, ":now": {"S": "2026-11-23T12:30"}},
        }

        def moto_query() -> contextlib.AbstractContextManager[None]:
            return _moto_own(Table, "query", motoquery._originals["query"])

        def moto_serializer() -> contextlib.AbstractContextManager[None]:
            return _moto_own(
                BaseJSONSerializer, "_serialize_type_structure", motoserialize._originals["structure"]
            )

        label = f"{executions:5} executions"
        key = {"pk": {"S": "EXEC#1"}, "sk": {"S": "EXEC"}}
        _row(
            f"a tenant's webhook endpoints, {label}",
            lambda _: lambda: dynamodb.query(**endpoints),
            moto_query,
        )
        _row(f"overdue in one due shard, {label}", lambda _: lambda: dynamodb.query(**overdue), moto_query)
        _row(
            "GetItem of an execution with a result",
            lambda _: lambda: dynamodb.get_item(TableName=table, Key=key),
            moto_serializer,
        )


def bench_emulator() -> None:
    print("\n## 9. The local stack's emulator: moto's own code vs asyncgate_dev's fixes (in-process, boto3)")
    print(f"  {'per second of':48} {'moto':>11} {'fixed':>11}  speed-up")
    print(f"  (an execution: 2 ledger entries in its tenant's partition; {LIVE_SHARE:.0%} live, due-indexed)")
    for queued in QUEUED:
        _sqs(queued)
    for executions in EXECUTIONS:
        _dynamodb(executions)
    print(
        "  (the stack's own figures: section 5's burst and `make soak`; the emulator runs in a process of its"
    )
    print("   own beside the handlers, asyncgate_dev.motoserver)")
