"""The Lambda entry point of a batch consumer (SQS, DynamoDB Streams): Powertools' batch processing with
partial batch failures, inside the same logging context, tracing and metrics as every function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools.utilities.batch import BatchProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.observability import logger, metrics, tracer

BatchEntry = Callable[[dict[str, Any], LambdaContext], PartialItemFailureResponse]


def batch_handler(processor: BatchProcessor, record_handler: Callable[..., Any]) -> BatchEntry:
    """A failing record fails only itself: its source retries it (and redrives or bisects it). The
    trace never holds the answer (as in every function: what a function returns may be a secret)."""

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    # Powertools types its decorators given options as returning Any.
    return cast("BatchEntry", lambda_handler)
