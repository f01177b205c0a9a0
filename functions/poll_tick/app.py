"""SQS poll queue consumer: one tick per message, partial batch failures reported to SQS."""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate import budget
from asyncgate.batch import batch_handler
from asyncgate.observability import logger, tracer
from asyncgate.scheduling import TickMessage
from asyncgate.services.deps import default_deps
from asyncgate.services.outputs import COPY_BUDGET_SECONDS
from asyncgate.services.ticks import hand_back, process_tick

processor = BatchProcessor(event_type=EventType.SQS)
# A tick makes at most two provider calls (cancel, poll) of up to 13 s each, plus a few AWS calls, and
# may copy the poll's outputs into the results bucket (COPY_BUDGET_SECONDS, a read timeout over at worst).
TICK_BUDGET_MILLIS = 30_000 + int(COPY_BUDGET_SECONDS * 1000) + 15_000
# What a tick leaves of the invocation for its own writes after its provider calls and copies.
WRITE_RESERVE_SECONDS = 5.0


@tracer.capture_method(capture_response=False)
def handle_record(record: SQSRecord, lambda_context: LambdaContext | None = None) -> str:
    # An exception here fails this message only; after maxReceiveCount redrives it lands in the DLQ.
    message = TickMessage.model_validate_json(record.body)
    remaining = lambda_context.get_remaining_time_in_millis() if lambda_context else TICK_BUDGET_MILLIS
    if remaining < TICK_BUDGET_MILLIS:
        # Better handed to another invocation now than cut off halfway by the function's timeout.
        return hand_back(default_deps(), message).value
    # The tick's provider calls and copies end in time for its writes, well inside the invocation (and
    # so inside the poll queue's visibility timeout, six times the function's).
    with budget.within(TICK_BUDGET_MILLIS / 1000 - WRITE_RESERVE_SECONDS):
        outcome = process_tick(default_deps(), message)
    logger.debug("tick done", extra={"outcome": outcome.value})
    return outcome.value


lambda_handler = batch_handler(processor, handle_record)
