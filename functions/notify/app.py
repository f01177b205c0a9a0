"""DynamoDB stream of the executions table: each transition's webhook events, first attempt at once.

The stream is the outbox: an event exists because the write that caused it committed, never because
someone remembered to send it afterwards.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from asyncgate.batch import batch_handler
from asyncgate.observability import tracer
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


lambda_handler = batch_handler(processor, handle_record)
