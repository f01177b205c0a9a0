"""The poll queue's dead-letter queue: what lands there, and how an operator looks at it and sends it back.

A tick message lands in the DLQ after SQS delivered it `maxReceiveCount` (5) times without the poll_tick
function deleting it: its invocation died every time (a timeout, an out-of-memory), or the function failed
to even count the failure (DynamoDB unreachable). Nothing is lost with it: its execution is still in the
table, and the sweeper re-arms (and after repeated failures gives up) every live execution whose tick is
overdue. So a dead tick is almost always stale by the time anyone looks (its execution moved on under a
newer tick id); a current one is safe to send back, since a tick only acts when it is its execution's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from asyncgate.scheduling import TickMessage
from asyncgate.store.executions import ExecutionStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# Messages are held invisible this long while they are listed or moved, then let go.
HOLD_SECONDS = 30
BATCH = 10


@dataclass(frozen=True)
class DeadTick:
    message_id: str
    # What the message says (None when its body is not a tick at all).
    execution_id: str | None
    tick_id: str | None
    due_at: datetime | None
    receives: int
    sent_at: datetime
    # The execution as it is now: its status, and whether this tick is still the one it waits for.
    status: str | None
    current: bool


def list_dead_ticks(
    sqs: SQSClient, dlq_url: str, executions: ExecutionStore, *, limit: int
) -> list[DeadTick]:
    """Up to `limit` dead ticks, each with its execution's state now; the DLQ is left as it was."""
    held = _hold(sqs, dlq_url, limit)
    try:
        return [_describe(message, executions) for message in held]
    finally:
        for start in range(0, len(held), BATCH):
            sqs.change_message_visibility_batch(
                QueueUrl=dlq_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
                    for index, message in enumerate(held[start : start + BATCH])
                ],
            )


def redrive_dead_ticks(sqs: SQSClient, dlq_url: str, *, limit: int) -> int:
    """Send up to `limit` dead ticks back to the poll queue the DLQ serves, due at once; how many went."""
    sources = sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get("queueUrls", [])
    if len(sources) != 1:
        raise ValueError(
            f"{dlq_url} is the dead-letter queue of {len(sources)} queues, not of one poll queue"
        )
    moved = 0
    while moved < limit:
        batch = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(BATCH, limit - moved),
            VisibilityTimeout=HOLD_SECONDS,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not batch:
            break
        sent = sqs.send_message_batch(
            QueueUrl=sources[0],
            Entries=[
                {"Id": str(index), "MessageBody": message["Body"]} for index, message in enumerate(batch)
            ],
        )
        delivered = {int(entry["Id"]) for entry in sent.get("Successful", [])}
        done = [message for index, message in enumerate(batch) if index in delivered]
        if done:
            sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(done)
                ],
            )
        moved += len(done)
        if len(done) < len(batch):
            break  # the poll queue refused some: they stay in the DLQ, seen again after HOLD_SECONDS
    return moved


def _hold(sqs: SQSClient, dlq_url: str, limit: int) -> list[MessageTypeDef]:
    held: dict[str, MessageTypeDef] = {}
    # Bounded: a few empty answers in a row mean the queue has nothing more to give.
    misses = 0
    while len(held) < limit and misses < 3:
        batch = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(BATCH, limit - len(held)),
            VisibilityTimeout=HOLD_SECONDS,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
        ).get("Messages", [])
        misses = 0 if batch else misses + 1
        held.update((message["MessageId"], message) for message in batch)
    return list(held.values())


def _describe(message: MessageTypeDef, executions: ExecutionStore) -> DeadTick:
    attributes = message.get("Attributes", {})
    sent_at = datetime.fromtimestamp(int(attributes.get("SentTimestamp", "0")) / 1000, tz=UTC)
    receives = int(attributes.get("ApproximateReceiveCount", "0"))
    try:
        tick = TickMessage.model_validate_json(message["Body"])
    except ValidationError:
        return DeadTick(message["MessageId"], None, None, None, receives, sent_at, None, False)
    execution = executions.get(tick.execution_id)
    return DeadTick(
        message_id=message["MessageId"],
        execution_id=tick.execution_id,
        tick_id=tick.tick_id,
        due_at=tick.due_at,
        receives=receives,
        sent_at=sent_at,
        status=execution.status.value if execution else None,
        current=execution is not None and not execution.terminal and execution.tick_id == tick.tick_id,
    )
