"""GET /v1/executions/{executionId}: the execution, optionally held until it changes (long poll)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate.api.http import (
    authenticate,
    build_resolver,
    http_handler,
    json_response,
    parse_query,
    remaining_deadline,
)
from asyncgate.api.models import ExecutionView, StatusQuery
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import retry_after_seconds, wait_for_change
from asyncgate.store.keys import Scope

app = build_resolver()


@app.get("/v1/executions/<executionId>")
def get_execution(executionId: str) -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.EXECUTION_READ)
    query = parse_query(app, StatusQuery)
    execution = wait_for_change(
        deps, principal, executionId, wait_seconds=query.wait_seconds, deadline=remaining_deadline(app)
    )
    retry_after = retry_after_seconds(deps, execution)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return json_response(200, ExecutionView.of(execution, deps.results.url_for), headers)


lambda_handler = http_handler(app)
