"""The indexed SQS queue (asyncgate_dev.motosqs) against moto's own list-based queue.

Every operation runs on two queues side by side on one fake clock: an indexed one and one given moto's
own list back (`use_moto_list`, so moto's original code serves it). Their answers must agree.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.sqs import models
from moto.sqs.exceptions import InvalidParameterValue, ReceiptHandleIsInvalid, SQSException

from asyncgate_dev import motosqs

ACCOUNT, REGION = "123456789012", "us-east-1"
MAX_RECEIVES = 3
VISIBILITY = 30


class FakeClock:
    def __init__(self) -> None:
        self.seconds = 1_800_000_000.0

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(models, "unix_time", lambda dt=None: fake.seconds)
    monkeypatch.setattr(models, "unix_time_millis", lambda dt=None: fake.seconds * 1000)
    return fake


@pytest.fixture
def backend() -> Iterator[Any]:
    motosqs.install()
    with mock_aws():
        yield models.sqs_backends[ACCOUNT][REGION]


def make_queue(backend: Any, name: str, *, indexed: bool, **attributes: Any) -> Any:
    dlq = backend.create_queue(f"{name}-dlq")
    redrive = {"deadLetterTargetArn": dlq.queue_arn, "maxReceiveCount": MAX_RECEIVES}
    queue = backend.create_queue(
        name, VisibilityTimeout=VISIBILITY, RedrivePolicy=json.dumps(redrive), **attributes
    )
    if not indexed:
        motosqs.use_moto_list(queue)
        motosqs.use_moto_list(dlq)
    return queue


def counts(queue: Any) -> tuple[int, int, int]:
    attributes = queue.attributes
    return (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesDelayed"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    )


@dataclass
class Side:
    """One queue and the receipt handles it gave, in the order they were given."""

    backend: Any
    queue: Any
    handles: list[str] = field(default_factory=list)

    def run(self, operation: tuple[Any, ...]) -> object:
        kind = operation[0]
        try:
            if kind == "send":
                self.backend.send_message(self.queue.name, operation[1], delay_seconds=operation[2])
                return None
            if kind == "receive":
                received = self.backend.receive_message(self.queue.name, operation[1], 0, operation[2])
                self.handles.extend(message.receipt_handle for message in received)
                return [(message.body, message.approximate_receive_count) for message in received]
            if kind == "delete" and self.handles:
                self.backend.delete_message(self.queue.name, self.handles[operation[1] % len(self.handles)])
                return None
            if kind == "change" and self.handles:
                handle = self.handles[operation[1] % len(self.handles)]
                self.backend.change_message_visibility(self.queue.name, handle, operation[2])
                return None
            if kind == "purge":
                self.backend.purge_queue(self.queue.name)
            return None
        except SQSException as error:
            return type(error).__name__

    def state(self) -> object:
        dlq = self.queue.dead_letter_queue
        return (
            counts(self.queue),
            counts(dlq),
            [message.body for message in self.queue.messages],
            [(message.body, message.approximate_receive_count) for message in dlq.messages],
        )


operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 3)),
        st.tuples(st.just("receive"), st.integers(1, 10), st.sampled_from([0, 1, 2, VISIBILITY])),
        st.tuples(st.just("delete"), st.integers(0, 1000)),
        st.tuples(st.just("change"), st.integers(0, 1000), st.sampled_from([0, 1, 5, 43_201])),
        st.tuples(st.just("tick"), st.sampled_from([0.0, 0.001, 0.5, 1.0, 2.5, 31.0])),
        st.tuples(st.just("purge")),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps=operations)
def test_the_index_answers_every_call_as_moto_does(steps: list[tuple[Any, ...]]) -> None:
    fake = FakeClock()
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        patch.setattr(models, "unix_time", lambda dt=None: fake.seconds)
        patch.setattr(models, "unix_time_millis", lambda dt=None: fake.seconds * 1000)
        patch.setenv("MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR", "false")
        motosqs.install()
        backend = models.sqs_backends[ACCOUNT][REGION]
        indexed = Side(backend, make_queue(backend, "indexed", indexed=True))
        reference = Side(backend, make_queue(backend, "reference", indexed=False))
        assert isinstance(indexed.queue._messages, motosqs.MessageIndex)
        assert isinstance(reference.queue._messages, list)
        sent = 0
        for step in steps:
            if step[0] == "tick":
                fake.advance(step[1])
                continue
            operation = ("send", f"m{sent}", step[1]) if step[0] == "send" else step
            sent += step[0] == "send"
            assert indexed.run(operation) == reference.run(operation), operation
            assert indexed.state() == reference.state(), operation


def test_a_delayed_message_is_received_once_its_delay_has_passed(backend: Any, clock: FakeClock) -> None:
    queue = make_queue(backend, "q", indexed=True)
    backend.send_message("q", "late", delay_seconds=5)
    backend.send_message("q", "now")
    assert counts(queue) == (1, 1, 0)
    clock.advance(4.999)
    assert [m.body for m in backend.receive_message("q", 10, 0, VISIBILITY)] == ["now"]
    clock.advance(0.001)
    assert [m.body for m in backend.receive_message("q", 10, 0, VISIBILITY)] == ["late"]
    assert counts(queue) == (0, 0, 2)


def test_a_message_not_deleted_comes_back_after_its_visibility_timeout_then_goes_to_the_dlq(
    backend: Any, clock: FakeClock
) -> None:
    queue = make_queue(backend, "q", indexed=True)
    backend.send_message("q", "job")
    for attempt in range(1, MAX_RECEIVES + 1):
        (message,) = backend.receive_message("q", 1, 0, 10)
        assert message.approximate_receive_count == attempt
        assert backend.receive_message("q", 1, 0, 10) == []
        clock.advance(10)
        assert counts(queue) == (0, 0, 1)  # visible again only after the exact timeout
        clock.advance(0.001)
        assert counts(queue) == (1, 0, 0)
    assert backend.receive_message("q", 1, 0, 10) == []
    assert counts(queue) == (0, 0, 0)
    dead = queue.dead_letter_queue
    assert [(m.body, m.approximate_receive_count) for m in dead.messages] == [("job", MAX_RECEIVES)]
    assert [m.body for m in backend.receive_message(dead.name, 1, 0, 10)] == ["job"]


def test_change_visibility_delete_and_their_refusals(backend: Any, clock: FakeClock) -> None:
    make_queue(backend, "q", indexed=True)
    backend.send_message("q", "job")
    (first,) = backend.receive_message("q", 1, 0, 100)
    backend.change_message_visibility("q", first.receipt_handle, 0)
    clock.advance(0.001)
    (second,) = backend.receive_message("q", 1, 0, 100)
    with pytest.raises(InvalidParameterValue):
        backend.change_message_visibility("q", second.receipt_handle, 43_201)
    with pytest.raises(ReceiptHandleIsInvalid):
        backend.delete_message("q", "not-a-handle")
    backend.delete_message("q", first.receipt_handle)  # an old handle deletes it too, as in moto
    backend.delete_message("q", second.receipt_handle)  # and deleting again is a success
    with pytest.raises(ReceiptHandleIsInvalid):
        backend.change_message_visibility("q", second.receipt_handle, 5)
    assert counts(backend.get_queue("q")) == (0, 0, 0)


def test_purge_empties_the_index(backend: Any, clock: FakeClock) -> None:
    queue = make_queue(backend, "q", indexed=True)
    for delay in (0, 5):
        backend.send_message("q", f"d{delay}", delay_seconds=delay)
    backend.receive_message("q", 1, 0, 30)
    backend.purge_queue("q")
    assert isinstance(queue._messages, motosqs.MessageIndex)
    assert counts(queue) == (0, 0, 0)
    backend.send_message("q", "after")
    assert [m.body for m in backend.receive_message("q", 10, 0, 30)] == ["after"]


def test_fifo_queues_keep_motos_list(backend: Any, clock: FakeClock) -> None:
    queue = backend.create_queue("q.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    assert isinstance(queue._messages, list)
    for body in ("a", "b", "a"):  # the second "a" is deduplicated
        backend.send_message("q.fifo", body, group_id="g")
    (first,) = backend.receive_message("q.fifo", 10, 0, 30)[:1]
    assert first.body == "a"
    assert counts(queue) == (0, 0, 2)


def test_no_call_walks_the_queue(backend: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """With thousands of delayed messages queued (one safety-net tick per execution), a send, receive,
    delete, visibility change and the counts look at no message's state one by one."""
    queue = make_queue(backend, "q", indexed=True)
    for number in range(3000):
        backend.send_message("q", f"later{number}", delay_seconds=900)
    looked_at = {"visible": 0, "delayed": 0}

    def counted(name: str) -> property:
        original = getattr(models.Message, name)

        def state(message: Any) -> bool:
            looked_at[name] += 1
            return bool(original.fget(message))

        return property(state)

    for name in looked_at:
        monkeypatch.setattr(models.Message, name, counted(name))
    backend.send_message("q", "now")
    (message,) = backend.receive_message("q", 10, 0, 30)
    backend.change_message_visibility("q", message.receipt_handle, 60)
    backend.delete_message("q", message.receipt_handle)
    assert counts(queue) == (0, 3000, 0)
    assert looked_at == {"visible": 0, "delayed": 0}


def test_concurrent_sends_receives_and_deletes_lose_and_duplicate_nothing(backend: Any) -> None:
    make_queue(backend, "q", indexed=True)
    senders, per_sender = 4, 250
    received: list[str] = []
    done = threading.Event()

    def send(sender: int) -> None:
        for number in range(per_sender):
            backend.send_message("q", f"{sender}-{number}")

    def consume() -> None:
        while not done.is_set() or counts(backend.get_queue("q"))[0]:
            for message in backend.receive_message("q", 10, 0, 3600):
                received.append(message.body)
                backend.delete_message("q", message.receipt_handle)

    threads = [threading.Thread(target=send, args=(sender,)) for sender in range(senders)]
    consumers = [threading.Thread(target=consume) for _ in range(3)]
    for thread in threads + consumers:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    for thread in consumers:
        thread.join()
    assert sorted(received) == sorted(f"{s}-{n}" for s in range(senders) for n in range(per_sender))
    assert counts(backend.get_queue("q")) == (0, 0, 0)


def test_over_boto3_the_counts_and_attributes_are_what_sqs_answers() -> None:
    import boto3  # noqa: PLC0415

    motosqs.install()
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=900)
        sqs.send_message(QueueUrl=url, MessageBody="now")
        (message,) = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
        assert message["Body"] == "now"
        assert message["Attributes"]["ApproximateReceiveCount"] == "1"
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0"
        assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
        assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_visibility_extended_while_in_flight_holds_back_no_other_message(
    backend: Any, clock: FakeClock
) -> None:
    """The first message's old (earlier) timeout is still filed when the second one's passes."""
    queue = make_queue(backend, "q", indexed=True)
    backend.send_message("q", "first")
    backend.send_message("q", "second")
    (first,) = backend.receive_message("q", 1, 0, 1)
    backend.change_message_visibility("q", first.receipt_handle, 60)
    assert [m.body for m in backend.receive_message("q", 1, 0, 2)] == ["second"]
    clock.advance(2.001)
    assert counts(queue) == (1, 0, 1)
    assert [m.body for m in backend.receive_message("q", 10, 0, 30)] == ["second"]
