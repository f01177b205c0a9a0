"""An indexed standard queue for moto's SQS (moto 5.2.5), patched in place until it is upstream.

Written as it would be offered to moto:

    SQS: index standard queues by message state, so each call costs O(log n) rather than O(n)

    `Queue._messages` is one list, and every call walks it: `Queue.messages` (a list comprehension
    calling `Message.visible` and `Message.delayed`, each reading the clock), the three
    `ApproximateNumberOf*` properties (which `Queue.attributes` evaluates, and `send_message` reads
    `queue.attributes` on every send; `receive_message` again per received message for the retention
    check), `delete_message` (a scan for the receipt handle, then a rebuilt list) and
    `change_message_visibility` (a scan). A queue that holds many delayed messages (scheduled work,
    one delayed message per job) therefore makes every call O(messages queued), and a burst of n
    sends and receives O(n^2). The list is also mutated without a lock while the threaded server runs
    requests concurrently: `delete_message` assigns a rebuilt list, so a message appended by a
    concurrent send between the scan and the assignment is silently lost, and two concurrent receives
    can both take one message.

    Standard queues now keep their messages in a `MessageIndex`:
    - ready messages in a heap by send order (the order `receive_message` returned them in before),
    - delayed messages in a heap by `delayed_until`, in-flight messages in a heap by `visible_at`;
      on each call the messages whose time has come move to the ready heap (lazily: a message's heap
      entry carries a stamp, and entries whose stamp is no longer the message's are skipped and
      compacted away),
    - a map from every receipt handle a message was given to the message,
    - counts per state, so the approximate numbers are O(1) after the lazy move.
    Send, receive (per message), delete and change visibility are O(log n). Every access holds the
    queue's existing `_messages_lock`, and a long poll waits on it until a message is sent, a
    visibility changes, or the next delayed / in-flight message is due (previously: 1 s steps).

    Semantics are unchanged: delay and visibility boundaries as `Message.delayed` / `Message.visible`
    define them, receive order, `ApproximateReceiveCount`, redrive to the dead-letter queue once a
    message was received `maxReceiveCount` times, deleting by any receipt handle the message was
    given (and again after deletion), ChangeMessageVisibility (43 200 s limit), PurgeQueue. The index
    is list-like (`append`, `remove`, iteration in send order, `len`) where other code touches
    `_messages`. Two corrections to SQS's documented behaviour: a message past the retention period
    is deleted when it would be received (before: marked received, left in the queue, and the
    receive ended early), and a long poll returns as soon as a message is ready. FIFO queues keep the
    list (group ordering and deduplication live there) and are untouched. `Queue.pending_messages`,
    which only FIFO ordering reads, is no longer kept for standard queues.

`install()` is idempotent; the local stack, the test suite and the benchmark call it (with
`motofix.install()`). Queues created before it keep moto's list.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

_lock = threading.Lock()
_MARK = "_asyncgate_indexed"
# Heaps are rebuilt once stale entries outnumber live ones by this much (bounded memory, amortized O(1)).
_COMPACT_SLACK = 1024


class State(Enum):
    READY = "ready"
    DELAYED = "delayed"  # now < delayed_until (Message.delayed)
    IN_FLIGHT = "in_flight"  # now <= visible_at (not Message.visible)


def state_at(message: Any, now: float) -> State:
    """Where a message is at `now` (unix ms), with moto's boundaries. Only a received message has a
    visibility timeout, and it was no longer delayed when received: the two never overlap."""
    if now < message.delayed_until:
        return State.DELAYED
    if now <= message.visible_at:
        return State.IN_FLIGHT
    return State.READY


def _passed(state: State, until: float, now: float) -> bool:
    """Whether a message filed as delayed or in flight until `until` is no longer (see state_at)."""
    return until <= now if state is State.DELAYED else until < now


@dataclass
class _Entry:
    sequence: int  # send order in this queue: ready messages are received in it
    state: State
    stamp: int  # the message's current heap entry; any other entry for it is stale


@dataclass
class MessageIndex:
    """A standard queue's messages by state; see the module docstring. Not thread-safe by itself: the
    queue's `_messages_lock` guards every call."""

    clock: Callable[[], float]
    _sequence: Iterator[int] = field(default_factory=itertools.count)
    _stamps: Iterator[int] = field(default_factory=itertools.count)
    _entries: dict[Any, _Entry] = field(default_factory=dict)
    # (sequence, stamp, message) for ready; (due at, sequence, stamp, message) for the others.
    _ready: list[tuple[int, int, Any]] = field(default_factory=list)
    _waiting: dict[State, list[tuple[float, int, int, Any]]] = field(
        default_factory=lambda: {State.DELAYED: [], State.IN_FLIGHT: []}
    )
    _counts: Counter[State] = field(default_factory=Counter)
    _receipts: dict[str, Any] = field(default_factory=dict)

    # The list protocol moto's own code uses on `_messages`.
    def append(self, message: Any) -> None:
        for handle in message.all_receipt_handles:
            if handle is not None:
                self._receipts[handle] = message
        self._file(message, next(self._sequence), self.clock())

    def remove(self, message: Any) -> None:
        if message not in self._entries:
            raise ValueError("message not in queue")
        self._unfile(message)
        self.drop(message)

    def __iter__(self) -> Iterator[Any]:
        ordered = sorted(self._entries.items(), key=lambda pair: pair[1].sequence)
        return iter([message for message, _ in ordered])

    def __len__(self) -> int:
        return len(self._entries)

    # What the patched queue and backend use.
    def find(self, receipt_handle: str) -> Any | None:
        return self._receipts.get(receipt_handle)

    def count(self, state: State) -> int:
        self.refresh()
        return self._counts[state]

    def ready(self) -> list[Any]:
        """The messages a receive could take now, in the order it takes them."""
        self.refresh()
        return [message for _, stamp, message in sorted(self._ready) if self._current(message, stamp)]

    def pop_ready(self) -> tuple[int, Any] | None:
        """The first ready message and its place in the send order, taken out of the index: the caller
        files it again (`refile`) or lets it go (`drop`)."""
        self.refresh()
        while self._ready:
            sequence, stamp, message = heapq.heappop(self._ready)
            if self._current(message, stamp):
                self._unfile(message)
                return sequence, message
        return None

    def refile(self, message: Any, sequence: int | None = None) -> None:
        """File a message again after its visibility changed (or it was taken by `pop_ready`, whose
        sequence is then given), keeping its place in the send order."""
        entry = self._entries.get(message)
        if entry is not None:
            self._unfile(message)
            sequence = entry.sequence
        assert sequence is not None
        for handle in message.all_receipt_handles:
            if handle is not None:
                self._receipts[handle] = message
        self._file(message, sequence, self.clock())

    def drop(self, message: Any) -> None:
        """Forget the receipt handles of a message that left the queue."""
        for handle in message.all_receipt_handles:
            self._receipts.pop(handle, None)

    def seconds_to_next_change(self) -> float | None:
        """Seconds until a delayed or in-flight message turns ready, if any is waiting."""
        now = self.clock()
        due = [heap[0][0] for heap in self._waiting.values() if heap]
        return max(0.0, (min(due) - now) / 1000) if due else None

    def refresh(self) -> None:
        """Move every message whose delay or visibility timeout has passed to the ready heap. The heaps
        are ordered by the time each entry was filed with (a stale entry keeps its old time)."""
        now = self.clock()
        for state, heap in self._waiting.items():
            while heap and _passed(state, heap[0][0], now):
                _, sequence, stamp, message = heapq.heappop(heap)
                if self._current(message, stamp):
                    self._unfile(message)
                    self._file(message, sequence, now)

    def _current(self, message: Any, stamp: int) -> bool:
        entry = self._entries.get(message)
        return entry is not None and entry.stamp == stamp

    def _file(self, message: Any, sequence: int, now: float) -> None:
        state, stamp = state_at(message, now), next(self._stamps)
        self._entries[message] = _Entry(sequence, state, stamp)
        self._counts[state] += 1
        if state is State.READY:
            heapq.heappush(self._ready, (sequence, stamp, message))
        elif state is State.DELAYED:
            heapq.heappush(self._waiting[state], (message.delayed_until, sequence, stamp, message))
        else:
            heapq.heappush(self._waiting[state], (message.visible_at, sequence, stamp, message))

    def _unfile(self, message: Any) -> None:
        entry = self._entries.pop(message)
        self._counts[entry.state] -= 1
        self._compact(entry.state)

    def _compact(self, state: State) -> None:
        heap: list[Any] = self._ready if state is State.READY else self._waiting[state]
        if len(heap) > 2 * self._counts[state] + _COMPACT_SLACK:
            heap[:] = [entry for entry in heap if self._current(entry[-1], entry[-2])]
            heapq.heapify(heap)


def install() -> None:
    models = _models()
    with _lock:
        if getattr(models.Queue, _MARK, False):
            return
        for owner, name, replacement in _PATCHES:
            cls = getattr(models, owner)
            _originals[(owner, name)] = cls.__dict__[name]
            setattr(cls, name, replacement)
        setattr(models.Queue, _MARK, True)


def _models() -> Any:
    """moto's SQS models module; its clock is read through it on each call, so a patched one is used."""
    import moto.sqs.models  # noqa: PLC0415 - only where moto runs

    return moto.sqs.models


def _index(queue: Any) -> MessageIndex | None:
    messages = queue.__dict__.get("_messages")
    return messages if isinstance(messages, MessageIndex) else None


def _new_index() -> MessageIndex:
    return MessageIndex(clock=lambda: float(_models().unix_time_millis()))


def _original(owner: str, name: str) -> Any:
    return _originals[(owner, name)]


def _init(queue: Any, *args: Any, **kwargs: Any) -> None:
    _original("Queue", "__init__")(queue, *args, **kwargs)
    if not queue.fifo_queue:
        queue._messages = _new_index()


def _delete_message(queue: Any, receipt_handle: str) -> None:
    index = _index(queue)
    if index is None:
        _original("Queue", "delete_message")(queue, receipt_handle)
        return
    with queue._messages_lock:
        if receipt_handle in queue.deleted_messages:
            return  # deleted before: a success again, as in moto and SQS
        message = index.find(receipt_handle)
        if message is None:
            raise _models().ReceiptHandleIsInvalid()
        index.remove(message)
        queue.deleted_messages.update(message.all_receipt_handles)


def _ready_messages(queue: Any) -> list[Any]:
    index = _index(queue)
    if index is None:
        return list(_original("Queue", "messages").fget(queue))
    with queue._messages_lock:
        return index.ready()


def _counter(state: State) -> property:
    name = _COUNT_PROPERTIES[state]

    def count(queue: Any) -> int:
        index = _index(queue)
        if index is None:
            return int(_original("Queue", name).fget(queue))
        with queue._messages_lock:
            return index.count(state)

    return property(count)


def _receive_message(
    backend: Any,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Any]:
    queue = backend.get_queue(queue_name)
    index = _index(queue)
    if index is None:
        return list(
            _original("SQSBackend", "receive_message")(
                backend, queue_name, count, wait_seconds_timeout, visibility_timeout, message_attribute_names
            )
        )
    models = _models()
    deadline = models.unix_time() + wait_seconds_timeout
    while True:
        with queue._messages_lock:
            received, dead = _take(queue, index, count, visibility_timeout, message_attribute_names)
            remaining = deadline - models.unix_time()
            if not received and not dead and wait_seconds_timeout and remaining > 0:
                # Woken by a send or a visibility change, else a millisecond after the next waiting message
                # is due (a visibility timeout ends strictly after its time).
                next_change = index.seconds_to_next_change()
                queue._messages_lock.wait(
                    remaining if next_change is None else min(remaining, next_change + 0.001)
                )
                continue
        # Outside this queue's lock: the dead-letter queue takes its own.
        for message in dead:
            queue.dead_letter_queue.add_message(message)
        if received or not wait_seconds_timeout or models.unix_time() >= deadline:
            return received


def _take(
    queue: Any, index: MessageIndex, count: int, visibility_timeout: int, attribute_names: list[str] | None
) -> tuple[list[Any], list[Any]]:
    """Up to `count` ready messages, received (copies, as moto returns them), and the messages taken
    out for the dead-letter queue."""
    models = _models()
    now_seconds = models.unix_time()
    retention = int(queue.message_retention_period)
    policy = queue.redrive_policy if queue.dead_letter_queue is not None else None
    received: list[Any] = []
    taken: list[tuple[int, Any]] = []
    dead: list[Any] = []
    try:
        while len(received) < count and (popped := index.pop_ready()) is not None:
            sequence, message = popped
            if message.sent_timestamp / 1000 + retention <= now_seconds:
                index.drop(message)  # past the retention period: SQS has deleted it
                continue
            if policy and message.approximate_receive_count >= policy["maxReceiveCount"]:
                index.drop(message)
                dead.append(message)
                continue
            taken.append((sequence, message))
            message.mark_received(visibility_timeout=visibility_timeout)
            received_copy = copy.deepcopy(message)
            models._filter_message_attributes(received_copy, attribute_names or [])
            received.append(received_copy)
    finally:
        # Filed again only now: a message whose visibility stays 0 is still taken once per call.
        for sequence, message in taken:
            index.refile(message, sequence)
    return received, dead


def _change_message_visibility(
    backend: Any, queue_name: str, receipt_handle: str, visibility_timeout: int
) -> None:
    queue = backend.get_queue(queue_name)
    index = _index(queue)
    if index is None:
        _original("SQSBackend", "change_message_visibility")(
            backend, queue_name, receipt_handle, visibility_timeout
        )
        return
    models = _models()
    with queue._messages_lock:
        message = index.find(receipt_handle)
        if message is None:
            raise models.ReceiptHandleIsInvalid()
        limit = models.MAXIMUM_VISIBILITY_TIMEOUT
        if models.unix_time_millis() + int(visibility_timeout) * 1000 - message.sent_timestamp > limit * 1000:
            raise models.InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: Total "
                f"VisibilityTimeout for the message is beyond the limit [{limit} seconds]"
            )
        message.change_visibility(visibility_timeout)
        index.refile(message)
        queue._messages_lock.notify_all()


def _purge_queue(backend: Any, queue_name: str) -> None:
    queue = backend.get_queue(queue_name)
    with queue._messages_lock:
        indexed = _index(queue) is not None
        _original("SQSBackend", "purge_queue")(backend, queue_name)
        if indexed:
            queue._messages = _new_index()


_COUNT_PROPERTIES = {
    State.READY: "approximate_number_of_messages",
    State.DELAYED: "approximate_number_of_messages_delayed",
    State.IN_FLIGHT: "approximate_number_of_messages_not_visible",
}
_originals: dict[tuple[str, str], Any] = {}
_PATCHES: list[tuple[str, str, Any]] = [
    ("Queue", "__init__", _init),
    ("Queue", "delete_message", _delete_message),
    ("Queue", "messages", property(_ready_messages)),
    *(("Queue", name, _counter(state)) for state, name in _COUNT_PROPERTIES.items()),
    ("SQSBackend", "receive_message", _receive_message),
    ("SQSBackend", "change_message_visibility", _change_message_visibility),
    ("SQSBackend", "purge_queue", _purge_queue),
]


def use_moto_list(queue: Any) -> None:
    """Give an indexed standard queue moto's own list back, holding the same messages in send order:
    the reference the tests and the benchmark compare the index with."""
    index = _index(queue)
    if index is None:
        raise ValueError(f"queue {queue.name} is not indexed")
    with queue._messages_lock:
        queue._messages = list(index)
