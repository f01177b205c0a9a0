"""Errors that reach the client, each with its HTTP status and contract code.

Services raise these; the HTTP layer maps every one of them to the contract's envelope in one place.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AsyncgateError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


class AsyncNotSupported(AsyncgateError):
    status = 400
    code = "ASYNC_NOT_SUPPORTED"


class InvalidWebhookUrlError(AsyncgateError):
    status = 400
    code = "INVALID_WEBHOOK_URL"


class WebhookNotConfigured(AsyncgateError):
    """An extension of the contract: a webhook redelivery for an execution without a webhook.url."""

    status = 400
    code = "WEBHOOK_NOT_CONFIGURED"


class UnknownModel(AsyncgateError):
    status = 400
    code = "UNKNOWN_MODEL"


class Unauthorized(AsyncgateError):
    status = 401
    code = "UNAUTHORIZED"


class InsufficientCredits(AsyncgateError):
    status = 402
    code = "INSUFFICIENT_CREDITS"


class Forbidden(AsyncgateError):
    status = 403
    code = "FORBIDDEN"


class ExecutionNotFound(AsyncgateError):
    status = 404
    code = "EXECUTION_NOT_FOUND"


class RouteNotFound(AsyncgateError):
    status = 404
    code = "NOT_FOUND"


class WebhookEndpointNotFound(AsyncgateError):
    status = 404
    code = "NOT_FOUND"


class ExecutionNotCancellable(AsyncgateError):
    status = 409
    code = "EXECUTION_NOT_CANCELLABLE"


class IdempotencyKeyInUse(AsyncgateError):
    """An extension of the contract: a request whose Idempotency-Key is held by one still in flight."""

    status = 409
    code = "IDEMPOTENCY_KEY_IN_USE"


class WebhookNotFailed(AsyncgateError):
    """An extension of the contract: a webhook redelivery while the webhook has not failed."""

    status = 409
    code = "WEBHOOK_NOT_FAILED"


class PayloadTooLarge(AsyncgateError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class ValidationFailed(AsyncgateError):
    status = 422
    code = "VALIDATION_ERROR"

    def __init__(self, message: str, errors: list[dict[str, str]]) -> None:
        super().__init__(message, details={"errors": errors})


class IdempotencyKeyReused(AsyncgateError):
    status = 422
    code = "IDEMPOTENCY_KEY_REUSED"


class QueueLimitExceeded(AsyncgateError):
    status = 429
    code = "QUEUE_LIMIT_EXCEEDED"


class ProviderSubmitFailed(AsyncgateError):
    status = 500
    code = "PROVIDER_SUBMIT_FAILED"
