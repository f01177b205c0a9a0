"""The chaos harness's injections on a boto3 client: each action does to the caller what its fault says,
and only to the calls its rule picks. Against moto's server on loopback, as the local stack is: moto's
in-process mock would carry out a request whose answer a hook made up."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError
from moto.server import ThreadedMotoServer

from asyncgate_dev.lambda_runtime import InvocationKilled
from chaos.injection import DYNAMODB_INTERNAL, S3_SLOW_DOWN, Action, Injector, Rule

# The product's retry configuration (asyncgate.aws): 4 attempts in all.
PRODUCT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})
PUT = frozenset({"PutItem"})
SEND = frozenset({"SendMessage"})


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def clients(endpoint: str) -> dict[str, Any]:
    made: dict[str, Any] = {
        "dynamodb": boto3.client("dynamodb", endpoint_url=endpoint, config=PRODUCT_CONFIG),
        "sqs": boto3.client("sqs", endpoint_url=endpoint, config=PRODUCT_CONFIG),
        "s3": boto3.client("s3", endpoint_url=endpoint, config=PRODUCT_CONFIG),
    }
    table = f"chaos-{uuid.uuid4().hex[:8]}"
    made["dynamodb"].create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    made["table"] = table
    return made


def injector_for(clients: dict[str, Any]) -> Injector:
    product = {service: clients[service] for service in ("dynamodb", "sqs", "s3")}
    clean = {
        service: boto3.client(client.meta.service_model.service_name, endpoint_url=client.meta.endpoint_url)
        for service, client in product.items()
    }
    injector = Injector(product, clean, seed=7)
    injector.install()
    return injector


def put(clients: dict[str, Any], key: str, **extra: Any) -> None:
    clients["dynamodb"].put_item(TableName=clients["table"], Item={"pk": {"S": key}}, **extra)


def stored(clients: dict[str, Any], key: str) -> bool:
    answer = clients["dynamodb"].get_item(
        TableName=clients["table"], Key={"pk": {"S": key}}, ConsistentRead=True
    )
    return "Item" in answer


def test_an_error_on_one_try_is_retried_by_botocore_and_the_write_happens(clients: dict[str, Any]) -> None:
    injector = injector_for(clients)
    rule = Rule("dynamodb", PUT, Action.ERROR, rate=1.0, error=DYNAMODB_INTERNAL, attempts=1)
    with injector.active((rule,)) as counts:
        put(clients, "a")
    assert counts[rule.label] == 1
    assert stored(clients, "a")


def test_an_error_on_every_try_reaches_the_caller_and_nothing_is_written(clients: dict[str, Any]) -> None:
    injector = injector_for(clients)
    rule = Rule("dynamodb", PUT, Action.ERROR, rate=1.0, error=DYNAMODB_INTERNAL, attempts=4)
    with injector.active((rule,)), pytest.raises(ClientError) as raised:
        put(clients, "a")
    assert raised.value.response["Error"]["Code"] == "InternalServerError"
    assert not stored(clients, "a")


def test_an_s3_error_is_answered_in_its_protocol(clients: dict[str, Any]) -> None:
    s3 = clients["s3"]
    bucket = f"results-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    injector = injector_for(clients)
    rule = Rule("s3", frozenset({"PutObject"}), Action.ERROR, rate=1.0, error=S3_SLOW_DOWN, attempts=4)
    with injector.active((rule,)), pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert raised.value.response["Error"]["Code"] == "SlowDown"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_a_lost_answer_is_a_timeout_for_a_write_that_happened(clients: dict[str, Any]) -> None:
    injector = injector_for(clients)
    with (
        injector.active((Rule("dynamodb", PUT, Action.LOST_ANSWER, rate=1.0),)),
        pytest.raises(ReadTimeoutError),
    ):
        put(clients, "a")
    assert stored(clients, "a")


def test_a_retried_commit_fails_its_condition_on_its_own_write(clients: dict[str, Any]) -> None:
    injector = injector_for(clients)
    rule = Rule("dynamodb", PUT, Action.RETRIED_COMMIT, rate=1.0)
    with injector.active((rule,)), pytest.raises(ClientError) as raised:
        put(clients, "a", ConditionExpression="attribute_not_exists(pk)")
    assert raised.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert stored(clients, "a")


def test_a_kill_after_a_write_gets_past_except_exception(clients: dict[str, Any]) -> None:
    injector = injector_for(clients)

    def handler() -> str:
        try:
            put(clients, "a")
        except Exception:
            return "swallowed"
        return "went on"

    with injector.active((Rule("dynamodb", PUT, Action.KILL, rate=1.0),)), pytest.raises(InvocationKilled):
        handler()
    assert stored(clients, "a")


def test_a_dropped_message_is_answered_and_never_queued(clients: dict[str, Any]) -> None:
    sqs = clients["sqs"]
    queue = sqs.create_queue(QueueName=f"ticks-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    injector = injector_for(clients)
    with injector.active((Rule("sqs", SEND, Action.DROP, rate=1.0),)):
        answer = sqs.send_message(QueueUrl=queue, MessageBody="tick")
    assert answer["MessageId"]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)


def test_a_duplicated_message_arrives_twice(clients: dict[str, Any]) -> None:
    sqs = clients["sqs"]
    queue = sqs.create_queue(QueueName=f"ticks-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    injector = injector_for(clients)
    with injector.active((Rule("sqs", SEND, Action.DUPLICATE, rate=1.0),)):
        sqs.send_message(QueueUrl=queue, MessageBody="tick")
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]
    assert bodies == ["tick", "tick"]


def test_a_delayed_message_waits_longer_than_it_asked(clients: dict[str, Any]) -> None:
    sqs = clients["sqs"]
    queue = sqs.create_queue(QueueName=f"ticks-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    injector = injector_for(clients)
    with injector.active((Rule("sqs", SEND, Action.DELAY, rate=1.0, delay_seconds=30),)):
        sqs.send_message(QueueUrl=queue, MessageBody="tick", DelaySeconds=0)
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"


def test_a_rule_stops_at_its_limit_and_takes_only_what_it_selects(clients: dict[str, Any]) -> None:
    injector = injector_for(clients)
    rule = Rule(
        "dynamodb", PUT, Action.LOST_ANSWER, rate=1.0, limit=1, when=lambda p: p["Item"]["pk"]["S"] != "b"
    )
    lost = []
    with injector.active((rule,)) as counts:
        for key in ("b", "a", "c"):
            try:
                put(clients, key)
            except ReadTimeoutError:
                lost.append(key)
    assert lost == ["a"]
    assert counts[rule.label] == 1


def test_nothing_is_injected_outside_a_faults_block(clients: dict[str, Any]) -> None:
    injector = injector_for(clients)
    with injector.active((Rule("dynamodb", PUT, Action.LOST_ANSWER, rate=1.0),)):
        pass
    put(clients, "a")
    injector.uninstall()
    assert stored(clients, "a")
