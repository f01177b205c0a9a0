"""POST /v1/callbacks/{provider}/{executionId}: a provider calling back about a job it runs for us.

No API key: the URL's per-execution token (and the provider's own signature, where it signs) is the
proof. Every refusal is the same 401, whatever failed.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate import budget
from asyncgate.api.http import (
    build_resolver,
    http_handler,
    json_response,
    parse_query,
    raw_body,
    remaining_seconds,
)
from asyncgate.api.models import CallbackAnswer, CallbackQuery
from asyncgate.providers.base import CallbackRequest
from asyncgate.services.callbacks import receive_callback
from asyncgate.services.deps import default_deps

app = build_resolver()
# Providers put the job's whole state in a callback (Replicate its logs too): up to what a Lambda
# invocation carries, not the 256 KiB of a submit.
CALLBACK_BODY_LIMIT = 6 * 1024 * 1024


@app.post("/v1/callbacks/<provider>/<executionId>")
def provider_callback(provider: str, executionId: str) -> Response[str]:
    event = app.current_event
    query = parse_query(app, CallbackQuery)
    request = CallbackRequest(
        headers={name.lower(): value for name, value in (event.headers or {}).items()},
        body=raw_body(app, CALLBACK_BODY_LIMIT),
    )
    # Fetching a provider's signing key must end in time for the 200 or the 401.
    with budget.within(remaining_seconds(app)):
        receive_callback(
            default_deps(), provider=provider, execution_id=executionId, token=query.token, request=request
        )
    return json_response(200, CallbackAnswer(received=True))


lambda_handler = http_handler(app)
