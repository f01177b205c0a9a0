"""DynamoDB stream of the executions table: each transition's webhook events, first attempts at once.

The stream is the outbox: an event exists because the write that caused it committed, never because
someone remembered to send it afterwards. A batch's first attempts run together, bounded by the
invocation's remaining time (services/notify.py); only a delivery that could not be handed to the retry
state machine fails its record, which the stream then retries.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.observability import logger, metrics, tracer
from asyncgate.services.deps import default_deps
from asyncgate.services.notify import StreamChange, notify
from asyncgate.store.items import from_item


def _change(record: dict[str, Any]) -> StreamChange:
    # The typed images, as the table holds them.
    images = record["dynamodb"]
    return StreamChange(
        record_id=images["SequenceNumber"],
        old=from_item(images["OldImage"]) if "OldImage" in images else None,
        new=from_item(images["NewImage"]),
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000
    # An image that cannot be read fails the invocation before any attempt: the stream bisects the
    # batch down to that record.
    failed = notify(default_deps(), [_change(record) for record in event["Records"]], deadline=deadline)
    return {"batchItemFailures": [{"itemIdentifier": record_id} for record_id in failed]}
