"""GET /v1/executions: the caller's executions, newest first, with an opaque cursor."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from asyncgate.api.http import authenticate, build_resolver, json_response, parse_query
from asyncgate.api.models import ExecutionPage, ExecutionView, ListQuery
from asyncgate.observability import logger, metrics, tracer
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import list_executions
from asyncgate.store.keys import Scope

app = build_resolver()


@app.get("/v1/executions")
def list_route() -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.EXECUTION_READ)
    query = parse_query(app, ListQuery)
    page = list_executions(
        deps, principal, status=query.status, model=query.model, limit=query.limit, cursor=query.cursor
    )
    body = ExecutionPage(items=[ExecutionView.of(item) for item in page.items], next_cursor=page.next_cursor)
    return json_response(200, body)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
