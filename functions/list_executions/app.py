"""GET /v1/executions: the caller's executions, newest first, with an opaque cursor."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate.api.http import authenticate, build_resolver, http_handler, json_response, parse_query
from asyncgate.api.models import ExecutionPage, ExecutionView, ListQuery
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
    body = ExecutionPage(
        items=[ExecutionView.of(item, deps.results.url_for) for item in page.items],
        next_cursor=page.next_cursor,
    )
    return json_response(200, body)


lambda_handler = http_handler(app)
