"""POST /v1/executions: accept a job and answer at once with its id."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate.api.http import (
    authenticate,
    build_resolver,
    http_handler,
    idempotency_key,
    json_response,
    parse_body,
    public_url,
)
from asyncgate.api.models import SubmitAccepted, SubmitRequest, execution_path
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import IDEMPOTENT_REPLAYED, SubmitCommand, submit
from asyncgate.store.keys import Scope

app = build_resolver()


@app.post("/v1/executions")
def submit_execution() -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.EXECUTION_WRITE)
    request = parse_body(app, SubmitRequest)
    key = idempotency_key(app)
    outcome = submit(
        deps,
        principal,
        SubmitCommand(
            model=request.model,
            input=request.input,
            metadata=request.metadata,
            webhook_url=request.webhook.url if request.webhook else None,
            webhook_events=request.webhook.events if request.webhook else None,
            idempotency_key=key,
            callback_base=public_url(app, deps.settings),
        ),
    )
    headers = {"Location": execution_path(outcome.receipt.execution_id)}
    if outcome.replayed:
        headers[IDEMPOTENT_REPLAYED] = "true"
    return json_response(202, SubmitAccepted.of(outcome.receipt), headers)


lambda_handler = http_handler(app)
