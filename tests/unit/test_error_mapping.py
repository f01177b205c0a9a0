"""Every error reaches the client in the contract's envelope, mapped in one place."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asyncgate import errors
from asyncgate.api.http import build_resolver
from asyncgate_dev.apigw import http_event
from asyncgate_dev.lambda_runtime import LambdaContext

CASES = [
    (errors.AsyncNotSupported("sync only"), 400, "ASYNC_NOT_SUPPORTED"),
    (errors.UnknownModel("nope"), 400, "UNKNOWN_MODEL"),
    (errors.InvalidWebhookUrlError("private"), 400, "INVALID_WEBHOOK_URL"),
    (errors.Unauthorized("who"), 401, "UNAUTHORIZED"),
    (errors.Forbidden("no"), 403, "FORBIDDEN"),
    (errors.ExecutionNotFound("gone"), 404, "EXECUTION_NOT_FOUND"),
    (
        errors.ExecutionNotCancellable("done", details={"status": "succeeded"}),
        409,
        "EXECUTION_NOT_CANCELLABLE",
    ),
    (errors.PayloadTooLarge("big"), 413, "PAYLOAD_TOO_LARGE"),
    (
        errors.ValidationFailed("bad", [{"field": "body.model", "message": "required"}]),
        422,
        "VALIDATION_ERROR",
    ),
    (errors.ProviderSubmitFailed("refused", details={"providerStatus": 503}), 500, "PROVIDER_SUBMIT_FAILED"),
    (RuntimeError("internal detail"), 500, "INTERNAL_ERROR"),
    (errors.WebhookEndpointNotFound("gone"), 404, "NOT_FOUND"),
    (errors.WebhookNotConfigured("no url"), 400, "WEBHOOK_NOT_CONFIGURED"),
    (errors.WebhookNotFailed("delivered", details={"state": "delivered"}), 409, "WEBHOOK_NOT_FAILED"),
]


def _resolve(raised: Exception, path: str = "/boom") -> dict[str, Any]:
    app = build_resolver()

    @app.get("/boom")
    def boom() -> None:
        raise raised

    event = http_event("GET", path, route_key=f"GET {path}")
    context: Any = LambdaContext()  # duck-typed like Lambda's own
    result: dict[str, Any] = app.resolve(event, context)
    return result


@pytest.mark.parametrize(("raised", "status", "code"), CASES)
def test_errors_map_to_their_status_and_code(raised: Exception, status: int, code: str) -> None:
    result = _resolve(raised)
    assert result["statusCode"] == status
    body = json.loads(result["body"])
    assert list(body) == ["error"]
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"code", "message", "details"}
    assert "Traceback" not in result["body"]
    assert "internal detail" not in result["body"]


def test_details_are_carried_and_unknown_routes_are_not_found() -> None:
    conflict = json.loads(_resolve(CASES[6][0])["body"])
    assert conflict["error"]["details"] == {"status": "succeeded"}
    missing = _resolve(RuntimeError(), path="/elsewhere")
    assert missing["statusCode"] == 404
    assert json.loads(missing["body"])["error"]["code"] == "NOT_FOUND"
