"""GET /v1/models: the catalog, for any valid key."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from asyncgate.api.http import authenticate, build_resolver, http_handler, json_response
from asyncgate.api.models import ModelList, ModelView
from asyncgate.providers.registry import is_configured
from asyncgate.services.deps import default_deps

app = build_resolver()


@app.get("/v1/models")
def list_models() -> Response[str]:
    deps = default_deps()
    authenticate(app, deps)
    # Models of a provider without a key here would only answer UNKNOWN_MODEL: they are not offered.
    available = [spec for spec in deps.catalog.models if is_configured(spec.provider)]
    return json_response(200, ModelList(items=[ModelView.of(spec) for spec in available]))


lambda_handler = http_handler(app)
