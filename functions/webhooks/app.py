"""GET/POST /v1/webhooks, DELETE /v1/webhooks/{endpointId}, POST /v1/webhooks/{endpointId}/rotate-secret and
GET /v1/webhooks/secret: the tenant's webhook endpoints and the secret that signs deliveries to
per-execution webhook URLs."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate.api.http import authenticate, build_resolver, http_handler, json_response, parse_body
from asyncgate.api.models import (
    WebhookEndpointList,
    WebhookEndpointRequest,
    WebhookEndpointView,
    WebhookEndpointWithSecret,
    WebhookSecretView,
)
from asyncgate.services.deps import default_deps
from asyncgate.services.webhooks import (
    CreateEndpoint,
    create_endpoint,
    delete_endpoint,
    list_endpoints,
    rotate_endpoint_secret,
    signing_secret,
)
from asyncgate.store.keys import Scope

app = build_resolver()


@app.get("/v1/webhooks")
def list_webhooks() -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.WEBHOOK_MANAGE)
    endpoints = list_endpoints(deps, principal)
    return json_response(200, WebhookEndpointList(items=[WebhookEndpointView.of(e) for e in endpoints]))


@app.post("/v1/webhooks")
def create_webhook() -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.WEBHOOK_MANAGE)
    request = parse_body(app, WebhookEndpointRequest)
    endpoint = create_endpoint(
        deps,
        principal,
        CreateEndpoint(url=request.url, events=request.events, description=request.description),
    )
    return json_response(201, WebhookEndpointWithSecret.of(endpoint))


@app.get("/v1/webhooks/secret")
def get_secret() -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.WEBHOOK_MANAGE)
    return json_response(200, WebhookSecretView(secret=signing_secret(deps, principal)))


@app.delete("/v1/webhooks/<endpointId>")
def delete_webhook(endpointId: str) -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.WEBHOOK_MANAGE)
    delete_endpoint(deps, principal, endpointId)
    return Response(status_code=204, body="")


@app.post("/v1/webhooks/<endpointId>/rotate-secret")
def rotate_secret(endpointId: str) -> Response[str]:
    deps = default_deps()
    principal = authenticate(app, deps, Scope.WEBHOOK_MANAGE)
    endpoint = rotate_endpoint_secret(deps, principal, endpointId)
    return json_response(200, WebhookEndpointWithSecret.of(endpoint))


lambda_handler = http_handler(app)
