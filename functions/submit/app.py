"""POST /v1/executions: accept a job and answer at once with its id."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate import budget
from asyncgate.api.http import (
    authenticate,
    build_resolver,
    http_handler,
    idempotency_key,
    json_response,
    parse_body,
    public_url,
    remaining_seconds,
)
from asyncgate.api.models import SubmitAccepted, SubmitRequest, execution_path
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import IDEMPOTENT_REPLAYED, SubmitCommand, submit
from asyncgate.store.keys import Scope

app = build_resolver()
# What the answer keeps of the function's time after an inline dispatch's provider call: the writes that
# record its outcome (a provider call that would run past it is not made: the job is not sent).
RECORD_RESERVE_SECONDS = 4.0


@app.post("/v1/executions")
def submit_execution() -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.EXECUTION_WRITE)
    request = parse_body(app, SubmitRequest)
    command = SubmitCommand(
        model=request.model,
        input=request.input,
        metadata=request.metadata,
        webhook_url=request.webhook.url if request.webhook else None,
        webhook_events=request.webhook.events if request.webhook else None,
        idempotency_key=idempotency_key(app),
        callback_base=public_url(app, deps.settings),
    )
    with budget.within(remaining_seconds(app, RECORD_RESERVE_SECONDS)):
        outcome = submit(deps, principal, command)
    headers = {"Location": execution_path(outcome.receipt.execution_id)}
    if outcome.replayed:
        headers[IDEMPOTENT_REPLAYED] = "true"
    return json_response(202, SubmitAccepted.of(outcome.receipt), headers)


lambda_handler = http_handler(app)
