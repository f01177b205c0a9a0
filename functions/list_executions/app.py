"""GET /v1/executions: the caller's executions, newest first, with an opaque cursor."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate.api.http import authenticate, build_resolver, http_handler, json_response, parse_query
from asyncgate.api.models import ExecutionPage, ExecutionView, ListQuery
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import list_executions, within_bytes
from asyncgate.store.keys import Scope

app = build_resolver()
# A Lambda answer holds 6 MB, the JSON-escaped body included: a page stays well under it.
MAX_PAGE_BYTES = 4 * 1024 * 1024


@app.get("/v1/executions")
def list_route() -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.EXECUTION_READ)
    query = parse_query(app, ListQuery)
    page = list_executions(
        deps, principal, status=query.status, model=query.model, limit=query.limit, cursor=query.cursor
    )
    views = [ExecutionView.of(item, deps.results.url_for) for item in page.items]
    page = within_bytes(page, [len(view.to_json()) for view in views], MAX_PAGE_BYTES)
    return json_response(200, ExecutionPage(items=views[: len(page.items)], next_cursor=page.next_cursor))


lambda_handler = http_handler(app)
