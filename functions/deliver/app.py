"""A task of the webhook retry state machine: one signed delivery attempt."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.delivery.tasks import DeliveryTask
from asyncgate.observability import logger, metrics, tracer
from asyncgate.services.deps import default_deps
from asyncgate.services.notify import attempt


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = DeliveryTask.model_validate(event)
    return attempt(default_deps(), task).model_dump(mode="json", by_alias=True)
