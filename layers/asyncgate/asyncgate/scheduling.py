"""The poll queue: one SQS message per live execution, delayed until its next tick is due."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from asyncgate.domain.schedule import sqs_hop_seconds

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class TickMessage(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    execution_id: str
    tick_id: str
    # When the tick is due; waits past SQS's 900 s limit arrive early and are sent on again.
    due_at: datetime


class PollScheduler:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, message: TickMessage, *, now: datetime) -> None:
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=message.model_dump_json(by_alias=True),
            DelaySeconds=sqs_hop_seconds((message.due_at - now).total_seconds()),
        )

    def backlog(self) -> int:
        """Ticks due and waiting for a consumer (not delayed, not in flight): SQS's approximate count."""
        answer = self._client.get_queue_attributes(
            QueueUrl=self._queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(answer["Attributes"]["ApproximateNumberOfMessages"])
