"""What every API function shares: the resolver with the contract's error envelope, authentication,
and request parsing. Handlers declare routes and call services; nothing here knows a route."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from asyncgate.api.models import EnvelopeError, ErrorEnvelope, WireModel
from asyncgate.domain.idempotency import is_idempotency_key
from asyncgate.errors import (
    AsyncgateError,
    Forbidden,
    PayloadTooLarge,
    RouteNotFound,
    Unauthorized,
    ValidationFailed,
)
from asyncgate.observability import logger, metrics, tracer
from asyncgate.services.deps import Deps
from asyncgate.settings import Settings
from asyncgate.store.keys import Principal, Scope, hash_key

MAX_BODY_BYTES = 256 * 1024
JSON = "application/json"

Model = TypeVar("Model", bound=BaseModel)
ApiHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]

# Resolved keys, per container: key hash -> (principal, monotonic expiry). Bounded by eviction.
_principals: dict[str, tuple[Principal, float]] = {}
_PRINCIPAL_CACHE_MAX = 1024


def envelope(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    body = ErrorEnvelope(error=EnvelopeError(code=code, message=message, details=details or {}))
    return json_response(status, body, headers)


def json_response(status: int, model: WireModel, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status_code=status, content_type=JSON, body=model.to_json(), headers=headers or {})


def validation_errors(error: ValidationError, location: str) -> list[dict[str, str]]:
    """Pydantic's errors as the contract's `details.errors`: the field and why, never the input."""
    return [
        {
            "field": ".".join([location, *(str(part) for part in item["loc"])]),
            "message": item["msg"],
        }
        for item in error.errors(include_input=False, include_url=False)
    ]


def build_resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()

    @app.exception_handler(AsyncgateError)
    def _contract_error(error: AsyncgateError) -> Response[str]:
        return envelope(error.status, error.code, error.message, error.details, error.headers)

    @app.not_found
    def _not_found(_: NotFoundError) -> Response[str]:
        return envelope(RouteNotFound.status, RouteNotFound.code, "no such route")

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[str]:
        # The client learns nothing of the failure but its correlation id; the log has the details.
        logger.exception("unhandled error")
        return envelope(
            AsyncgateError.status,
            AsyncgateError.code,
            "internal error",
            {"requestId": app.current_event.request_context.request_id},
        )

    return app


def http_handler(app: APIGatewayHttpResolver) -> ApiHandler:
    """The Lambda entry point of an API function: Powertools' logging context (never the event: it may
    hold keys), tracing (never the answer: it may hold webhook secrets and presigned URLs) and metrics
    around the resolver."""

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return app.resolve(event, context)

    # Powertools types its decorators given options as returning Any.
    return cast("ApiHandler", lambda_handler)


def _presented_key(app: APIGatewayHttpResolver) -> str | None:
    headers = app.current_event.headers or {}
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authenticate(app: APIGatewayHttpResolver, deps: Deps, scope: Scope | None = None) -> Principal:
    """The caller's principal; 401 without a known key, 403 when the key lacks `scope`.

    Done in the function rather than by an API Gateway authorizer: HTTP API authorizers answer 401/403
    with bodies of their own, which the contract's envelope forbids.
    """
    key = _presented_key(app)
    if not key:
        raise Unauthorized("missing API key: send X-API-Key or Authorization: Bearer")
    principal = _resolve(deps, key)
    if principal is None:
        raise Unauthorized("unknown API key")
    if scope is not None and scope not in principal.scopes:
        raise Forbidden(f"this key lacks the {scope.value} scope", details={"requiredScope": scope.value})
    logger.append_keys(tenant=principal.tenant)
    return principal


def _resolve(deps: Deps, key: str) -> Principal | None:
    digest = hash_key(key)
    cached = _principals.get(digest)
    now = time.monotonic()
    if cached and cached[1] > now:
        return cached[0]
    principal = deps.api_keys.lookup(key)
    if principal is not None and deps.settings.auth_cache_seconds > 0:
        if len(_principals) >= _PRINCIPAL_CACHE_MAX:
            _principals.clear()
        _principals[digest] = (principal, now + deps.settings.auth_cache_seconds)
    return principal


def forget_principals() -> None:
    """Drop cached keys, as a new container would start (tests that revoke keys)."""
    _principals.clear()


def raw_body(app: APIGatewayHttpResolver, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body's bytes as sent: 413 over `limit` (checked before decoding), 422 for bad base64."""
    event = app.current_event
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        if len(raw) > limit * 4 // 3 + 4:
            raise PayloadTooLarge(f"request body is over {limit} bytes", details={"limit": limit})
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValidationFailed(
                "body is not valid base64", [{"field": "body", "message": str(error)}]
            ) from None
    else:
        data = raw.encode("utf-8")
    if len(data) > limit:
        raise PayloadTooLarge(f"request body is over {limit} bytes", details={"limit": limit})
    return data


def parse_body(app: APIGatewayHttpResolver, model: type[Model]) -> Model:
    """The JSON body as `model`: 413 over 256 KiB (checked before parsing), 422 for anything else wrong."""
    event = app.current_event
    data = raw_body(app)
    content_type = (event.headers or {}).get("content-type", JSON)
    if content_type.split(";")[0].strip().lower() != JSON:
        raise ValidationFailed(
            "requests must be JSON", [{"field": "header.content-type", "message": f"expected {JSON}"}]
        )
    # Pydantic's own JSON parser: strict UTF-8 (no lone surrogates), bounded nesting depth.
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        raise ValidationFailed("request validation failed", validation_errors(error, "body")) from None


def idempotency_key(app: APIGatewayHttpResolver) -> str | None:
    """The request's Idempotency-Key header (1-255 printable ASCII), or None without one."""
    headers = app.current_event.headers or {}
    if "idempotency-key" not in headers:
        return None
    key = headers["idempotency-key"]
    if not is_idempotency_key(key):
        raise ValidationFailed(
            "invalid Idempotency-Key",
            [{"field": "header.idempotency-key", "message": "must be 1-255 printable ASCII characters"}],
        )
    return key


def parse_query(app: APIGatewayHttpResolver, model: type[Model]) -> Model:
    params = app.current_event.query_string_parameters or {}
    try:
        return model.model_validate(params)
    except ValidationError as error:
        raise ValidationFailed("query validation failed", validation_errors(error, "query")) from None


def remaining_seconds(app: APIGatewayHttpResolver, safety_seconds: float = 2.0) -> float:
    """The seconds left before a little before the function's own time limit."""
    context = app.lambda_context
    remaining = context.get_remaining_time_in_millis() / 1000 if context else 30.0
    return max(0.0, remaining - safety_seconds)


def remaining_deadline(app: APIGatewayHttpResolver, safety_seconds: float = 2.0) -> float:
    """A monotonic deadline a little before the function's own time limit."""
    return time.monotonic() + remaining_seconds(app, safety_seconds)


def public_url(app: APIGatewayHttpResolver, settings: Settings) -> str | None:
    """Where clients, and so providers, reach this API: the configured public URL (a custom domain),
    else the host this request came in on (API Gateway's own domain; always HTTPS there)."""
    if settings.public_url:
        return settings.public_url
    domain = app.current_event.request_context.domain_name
    return f"https://{domain}" if domain else None
