"""GET /v1/account: the caller's balance, reservations, live executions and queue limit."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate.api.http import authenticate, build_resolver, http_handler, json_response
from asyncgate.api.models import AccountView
from asyncgate.services.deps import default_deps
from asyncgate.services.tenants import account_for

app = build_resolver()


@app.get("/v1/account")
def get_account() -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps)
    return json_response(200, AccountView.of(account_for(deps, principal), principal.scopes))


lambda_handler = http_handler(app)
