"""GET /v1/models: the catalog, for any valid key."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.api.http import authenticate, build_resolver, json_response
from asyncgate.api.models import CostView, ModelList, ModelView
from asyncgate.observability import logger, metrics, tracer
from asyncgate.services.deps import default_deps

app = build_resolver()


@app.get("/v1/models")
def list_models() -> Response[str]:
    deps = default_deps()
    authenticate(app, deps)
    items = [
        ModelView(
            model=spec.model,
            provider=spec.provider,
            is_async=spec.is_async,
            cancel=spec.cancel,
            expected_duration_seconds=spec.expected_duration_seconds,
            max_duration_seconds=spec.max_duration_seconds,
            price=CostView(credits=spec.price.credits),
        )
        for spec in deps.catalog.models
    ]
    return json_response(200, ModelList(items=items))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
