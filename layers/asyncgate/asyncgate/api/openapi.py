"""The OpenAPI 3.1 document of the public API (committed as `docs/openapi.json`): the schemas come from
the pydantic wire models that parse every request and shape every answer, the operations from the table
below, which names for each route every status it can answer.

Not Powertools' own OpenAPI support (`APIGatewayHttpResolver(enable_validation=True)`): it derives the
document from the handlers' signatures by taking request parsing over, so every handler would change
how it reads its input. Powertools would validate bodies and queries itself and answer failures with a
422 body of its own rather than the contract's envelope, before the 256 KiB check that must answer 413
first; and it cannot know the errors the services raise. Here `parse_body`/`parse_query` stay the only
parsers. tests/unit/test_openapi.py holds this table to template.yaml's routes and to the committed
document; tests/e2e/test_fuzz.py holds the running stack to the document.

`python -m asyncgate.api.openapi` prints the document (`make openapi` rewrites docs/openapi.json).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from pydantic.json_schema import JsonSchemaMode, models_json_schema

from asyncgate.api.http import JSON, MAX_BODY_BYTES
from asyncgate.api.models import (
    AccountView,
    CallbackAnswer,
    CallbackQuery,
    CancelAnswer,
    ErrorEnvelope,
    ExecutionPage,
    ExecutionView,
    ListQuery,
    ModelList,
    StatusQuery,
    SubmitAccepted,
    SubmitRequest,
    WebhookEndpointList,
    WebhookEndpointRequest,
    WebhookEndpointWithSecret,
    WebhookEventBody,
    WebhookSecretView,
    WireModel,
)
from asyncgate.domain.idempotency import IDEMPOTENCY_KEY
from asyncgate.errors import (
    AsyncgateError,
    AsyncNotSupported,
    ExecutionNotCancellable,
    ExecutionNotFound,
    Forbidden,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidWebhookUrlError,
    PayloadTooLarge,
    ProviderSubmitFailed,
    QueueLimitExceeded,
    RouteNotFound,
    Unauthorized,
    UnknownModel,
    ValidationFailed,
    WebhookEndpointNotFound,
    WebhookNotConfigured,
    WebhookNotFailed,
)
from asyncgate.services.executions import IDEMPOTENT_REPLAYED
from asyncgate.store.keys import Scope

SCHEMA_REF = "#/components/schemas/{model}"
# The base class is the contract's `500 INTERNAL_ERROR`: what any unexpected failure answers.
INTERNAL_ERROR = AsyncgateError
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")
PATH_PARAMETERS = {
    "executionId": "The execution's id, as the submit answered it.",
    "endpointId": "The webhook endpoint's id, as its creation answered it.",
    "provider": "The provider the callback URL was made for.",
}


@dataclass(frozen=True)
class Header:
    name: str
    description: str
    schema: dict[str, Any]
    required: bool = True

    def spec(self) -> dict[str, Any]:
        return {"description": self.description, "required": self.required, "schema": self.schema}


RETRY_AFTER = Header(
    "Retry-After", "Seconds until trying again is useful.", {"type": "integer", "minimum": 1}
)
POLL_HINT = Header(
    "Retry-After",
    "While the execution is not terminal: seconds until polling again is useful.",
    RETRY_AFTER.schema,
    required=False,
)
LOCATION = Header("Location", "The execution's status URL.", {"type": "string"})
REPLAYED = Header(
    IDEMPOTENT_REPLAYED,
    "Set when this is the first answer to an earlier request with the same Idempotency-Key, again.",
    {"type": "string", "enum": ["true"]},
    required=False,
)
IDEMPOTENCY_KEY_HEADER = Header(
    "Idempotency-Key",
    "Makes the submit safe to retry: for 24 hours the same key with the same body answers the first "
    "answer again (same status, body and executionId); with another body, 422 IDEMPOTENCY_KEY_REUSED; "
    "while the first is still in flight, its answer after a short wait, or else 409 "
    "IDEMPOTENCY_KEY_IN_USE. Scoped to the tenant.",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY.pattern},
    required=False,
)
# The headers an error answer carries, where it carries any.
ERROR_HEADERS: dict[type[AsyncgateError], tuple[Header, ...]] = {
    QueueLimitExceeded: (RETRY_AFTER,),
    IdempotencyKeyInUse: (RETRY_AFTER,),
    ProviderSubmitFailed: (REPLAYED,),
}


@dataclass(frozen=True)
class Success:
    status: int
    description: str
    model: type[WireModel] | None = None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    success: Success
    scope: Scope | None = None
    body: type[WireModel] | None = None
    query: type[WireModel] | None = None
    headers: tuple[Header, ...] = ()
    # What the operation's own service can refuse with; those every request can meet are added below.
    errors: tuple[type[AsyncgateError], ...] = ()
    # False for the one route providers call: its proof is the URL's token, not an API key.
    api_key: bool = True

    @property
    def path_parameters(self) -> list[str]:
        return _PATH_PARAMETER.findall(self.path)

    def answered_errors(self) -> list[type[AsyncgateError]]:
        """Every error the operation can answer, in the order the request meets them."""
        errors: list[type[AsyncgateError]] = [Unauthorized]
        if self.scope is not None:
            errors.append(Forbidden)
        if self.path_parameters:
            # An empty id leaves a path no route matches.
            errors.append(RouteNotFound)
        if self.body is not None:
            errors.append(PayloadTooLarge)
        if self.body or self.query or self.headers:
            errors.append(ValidationFailed)
        errors += self.errors
        errors.append(INTERNAL_ERROR)
        return list(dict.fromkeys(errors))


def _cancel(method: str, path: str, operation_id: str) -> Operation:
    """Cancel has two routes."""
    return Operation(
        method,
        path,
        operation_id,
        "Cancel an execution: queued turns cancelled at once, running turns cancel_requested (then "
        "cancelled once the provider stops); asking again answers the same way.",
        Success(200, "The execution after the cancel request.", CancelAnswer),
        scope=Scope.EXECUTION_CANCEL,
        errors=(ExecutionNotFound, ExecutionNotCancellable),
    )


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/v1/executions",
        "submitExecution",
        "Submit a job: answered at once with the execution's id.",
        Success(202, "Accepted.", SubmitAccepted, (LOCATION, REPLAYED)),
        scope=Scope.EXECUTION_WRITE,
        body=SubmitRequest,
        headers=(IDEMPOTENCY_KEY_HEADER,),
        errors=(
            UnknownModel,
            AsyncNotSupported,
            InvalidWebhookUrlError,
            InsufficientCredits,
            IdempotencyKeyInUse,
            IdempotencyKeyReused,
            QueueLimitExceeded,
            ProviderSubmitFailed,
        ),
    ),
    Operation(
        "GET",
        "/v1/executions",
        "listExecutions",
        "The caller's executions, newest first, a page at a time.",
        Success(200, "A page; nextCursor continues it.", ExecutionPage),
        scope=Scope.EXECUTION_READ,
        query=ListQuery,
    ),
    Operation(
        "GET",
        "/v1/executions/{executionId}",
        "getExecution",
        "One execution; with waitSeconds, held until its status or progress changes (long poll).",
        Success(200, "The execution.", ExecutionView, (POLL_HINT,)),
        scope=Scope.EXECUTION_READ,
        query=StatusQuery,
        errors=(ExecutionNotFound,),
    ),
    _cancel("POST", "/v1/executions/{executionId}/cancel", "cancelExecution"),
    _cancel("DELETE", "/v1/executions/{executionId}", "deleteExecution"),
    Operation(
        "POST",
        "/v1/executions/{executionId}/webhook-redeliver",
        "redeliverWebhook",
        "Deliver a failed webhook's terminal event again, with a fresh schedule of attempts.",
        Success(202, "The execution, its webhook pending again.", ExecutionView),
        scope=Scope.EXECUTION_WRITE,
        errors=(ExecutionNotFound, WebhookNotConfigured, WebhookNotFailed),
    ),
    Operation(
        "GET",
        "/v1/models",
        "listModels",
        "The model catalog.",
        Success(200, "Every model.", ModelList),
    ),
    Operation(
        "GET",
        "/v1/account",
        "getAccount",
        "The caller's account: spendable and reserved credits, live executions and queue limit.",
        Success(200, "The account.", AccountView),
    ),
    Operation(
        "POST",
        "/v1/callbacks/{provider}/{executionId}",
        "providerCallback",
        "A provider calling back about a job it runs for asyncgate, at the URL it was given with the job "
        "(token included). The body is the provider's own; it is never taken as the job's state, the job "
        "is polled at once. Any refusal (token, signature, replay, unknown execution) is the same 401.",
        Success(200, "Received: the job is polled now, or it had finished already.", CallbackAnswer),
        query=CallbackQuery,
        errors=(PayloadTooLarge,),
        api_key=False,
    ),
    Operation(
        "GET",
        "/v1/webhooks",
        "listWebhookEndpoints",
        "The tenant's webhook endpoints (never their secrets).",
        Success(200, "Every endpoint.", WebhookEndpointList),
        scope=Scope.WEBHOOK_MANAGE,
    ),
    Operation(
        "POST",
        "/v1/webhooks",
        "createWebhookEndpoint",
        "A new webhook endpoint, subscribed to the given event types.",
        Success(201, "The endpoint and its secret, shown only in this answer.", WebhookEndpointWithSecret),
        scope=Scope.WEBHOOK_MANAGE,
        body=WebhookEndpointRequest,
        errors=(InvalidWebhookUrlError,),
    ),
    Operation(
        "DELETE",
        "/v1/webhooks/{endpointId}",
        "deleteWebhookEndpoint",
        "Delete a webhook endpoint.",
        Success(204, "Deleted."),
        scope=Scope.WEBHOOK_MANAGE,
        errors=(WebhookEndpointNotFound,),
    ),
    Operation(
        "POST",
        "/v1/webhooks/{endpointId}/rotate-secret",
        "rotateWebhookSecret",
        "A new signing secret for the endpoint; for 24 hours deliveries are signed with both.",
        Success(200, "The endpoint and its new secret, shown only here.", WebhookEndpointWithSecret),
        scope=Scope.WEBHOOK_MANAGE,
        errors=(WebhookEndpointNotFound,),
    ),
    Operation(
        "GET",
        "/v1/webhooks/secret",
        "getWebhookSecret",
        "The tenant's secret that signs deliveries to per-execution webhook URLs.",
        Success(200, "The secret.", WebhookSecretView),
        scope=Scope.WEBHOOK_MANAGE,
    ),
)

DESCRIPTION = f"""\
asyncgate runs long AI generation jobs behind one contract: submit and get an id at once, then poll,
list, cancel, or be told by a signed webhook.

Every route but the providers' callback takes an API key as `X-API-Key` or `Authorization: Bearer`;
a route that needs a scope names it in its security requirement. Every non-2xx answer is the error
envelope, with a `code` from the operation's list. Any other path or method answers `404 NOT_FOUND`.
Request bodies are JSON of at most {MAX_BODY_BYTES} bytes; unknown fields and query parameters are
refused (`422 VALIDATION_ERROR`).
"""


def openapi_document() -> dict[str, Any]:
    schemas = _component_schemas()
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        parameters = _path_parameters(operation) + [
            {"name": header.name, "in": "header", **header.spec()} for header in operation.headers
        ]
        if operation.query is not None:
            query_parameters, definitions = _query_parameters(operation.query)
            parameters += query_parameters
            _merge_schemas(schemas, definitions)
        spec: dict[str, Any] = {
            "operationId": operation.operation_id,
            "summary": operation.summary,
            "security": _security(operation.scope) if operation.api_key else [],
            "responses": {**_success_response(operation.success), **_error_responses(operation)},
        }
        if parameters:
            spec["parameters"] = parameters
        if operation.body is not None:
            spec["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(operation.body)}}}
        paths.setdefault(operation.path, {})[operation.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {"title": "asyncgate", "version": "1", "description": DESCRIPTION},
        "paths": paths,
        "webhooks": {"executionEvent": {"post": _webhook_delivery()}},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer", "description": "The API key as a token."},
            },
        },
    }


def render() -> str:
    """The document as committed: sorted keys, two-space indent, a trailing newline."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _ref(model: type[WireModel]) -> dict[str, str]:
    return {"$ref": SCHEMA_REF.format(model=model.__name__)}


def _component_schemas() -> dict[str, Any]:
    """Request bodies as they validate, answers (and the webhook body) as they serialize."""
    models: dict[tuple[type[WireModel], JsonSchemaMode], None] = {}
    for operation in OPERATIONS:
        if operation.body is not None:
            models[(operation.body, "validation")] = None
        if operation.success.model is not None:
            models[(operation.success.model, "serialization")] = None
    models[(ErrorEnvelope, "serialization")] = None
    models[(WebhookEventBody, "serialization")] = None
    _, definitions = models_json_schema(list(models), by_alias=True, ref_template=SCHEMA_REF)
    schemas: dict[str, Any] = definitions["$defs"]
    # Pydantic names a model used in both modes whose schemas differ `<name>-Input`/`<name>-Output`.
    unnamed = sorted({model.__name__ for model, _ in models} - set(schemas))
    if unnamed:
        raise ValueError(f"no component schema is named after {unnamed}")
    return schemas


def _merge_schemas(schemas: dict[str, Any], more: dict[str, Any]) -> None:
    for name, schema in more.items():
        if schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas are both named {name}")


def _security(scope: Scope | None) -> list[dict[str, list[str]]]:
    # OpenAPI 3.1 lets a non-OAuth requirement list the roles it needs: here, the key's scope.
    roles = [scope.value] if scope is not None else []
    return [{"apiKey": roles}, {"bearer": roles}]


def _path_parameters(operation: Operation) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": PATH_PARAMETERS[name],
            "schema": {"type": "string"},
        }
        for name in operation.path_parameters
    ]


def _query_parameters(model: type[WireModel]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One parameter per field of the query model, and the definitions their schemas refer to."""
    schema = model.model_json_schema(by_alias=True, ref_template=SCHEMA_REF, mode="validation")
    required = set(schema.get("required", ()))
    parameters = [
        {"name": name, "in": "query", "required": name in required, "schema": _without_null(field)}
        for name, field in schema["properties"].items()
    ]
    return parameters, schema.get("$defs", {})


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema without its `null` branch: a query parameter is absent, never null."""
    variants = [variant for variant in schema.get("anyOf", ()) if variant != {"type": "null"}]
    if len(variants) != 1:
        return schema
    # Its `default: null` goes with the null branch.
    rest = {key: value for key, value in schema.items() if key != "anyOf" and value is not None}
    only: dict[str, Any] = variants[0]
    return rest | only


def _success_response(success: Success) -> dict[str, Any]:
    response: dict[str, Any] = {"description": success.description}
    if success.model is not None:
        response["content"] = {JSON: {"schema": _ref(success.model)}}
    if success.headers:
        response["headers"] = {header.name: header.spec() for header in success.headers}
    return {str(success.status): response}


def _error_responses(operation: Operation) -> dict[str, Any]:
    by_status: dict[int, list[type[AsyncgateError]]] = {}
    for error in operation.answered_errors():
        by_status.setdefault(error.status, []).append(error)
    return {str(status): _error_response(errors) for status, errors in sorted(by_status.items())}


def _error_response(errors: list[type[AsyncgateError]]) -> dict[str, Any]:
    """The envelope with `code` one of these errors' codes, and their headers: required where every
    one of them carries it."""
    codes = list(dict.fromkeys(error.code for error in errors))
    response: dict[str, Any] = {
        "description": " or ".join(codes),
        "content": {
            JSON: {
                "schema": {
                    "allOf": [
                        _ref(ErrorEnvelope),
                        {"properties": {"error": {"properties": {"code": {"enum": codes}}}}},
                    ]
                }
            }
        },
    }
    carried = [ERROR_HEADERS.get(error, ()) for error in errors]
    headers = {header.name: header for headers_of_one in carried for header in headers_of_one}
    if headers:
        response["headers"] = {
            name: replace(header, required=all(_requires(each, name) for each in carried)).spec()
            for name, header in headers.items()
        }
    return response


def _requires(headers: tuple[Header, ...], name: str) -> bool:
    return any(header.name == name and header.required for header in headers)


def _webhook_delivery() -> dict[str, Any]:
    signature_headers = {
        "webhook-id": "The event's id at this URL, the same on every attempt: de-duplicate on it.",
        "webhook-timestamp": "Unix seconds of this attempt.",
        "webhook-signature": 'Space-separated `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` '
        "(two while a rotated secret overlaps the new one).",
    }
    return {
        "operationId": "executionEvent",
        "summary": "An execution event, POSTed to the execution's webhook.url and to every tenant "
        "endpoint subscribed to its type, signed per Standard Webhooks.",
        "parameters": [
            Header(name, description, {"type": "string"}).spec() | {"name": name, "in": "header"}
            for name, description in signature_headers.items()
        ],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref(WebhookEventBody)}}},
        "responses": {
            "2XX": {"description": "Delivered. Anything else, or no answer within 10 s, is retried."}
        },
    }


if __name__ == "__main__":
    print(render(), end="")
