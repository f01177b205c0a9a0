"""DynamoDB stream of the executions table: each transition's webhook events, first attempt at once.

The stream is the outbox: an event exists because the write that caused it committed, never because
someone remembered to send it afterwards.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.observability import logger, metrics, tracer
from asyncgate.services.deps import default_deps
from asyncgate.services.notify import notify
from asyncgate.store.items import from_item

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@tracer.capture_method
def handle_record(record: DynamoDBRecord) -> int:
    # The typed images, as the table holds them (the data class would hand back plain Python values).
    images = record.raw_event["dynamodb"]
    old = from_item(images["OldImage"]) if "OldImage" in images else None
    return notify(default_deps(), old, from_item(images["NewImage"]))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
