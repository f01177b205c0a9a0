"""Idempotent submits, as Stripe does them: one key (per tenant, kept 24 hours) names one request; the
same key with the same body answers the first answer again, with another body it is refused.

What is kept of the first answer is its receipt: the fields the submit answer is made of, as they were
when it was given, so a replay is byte for byte the same answer however far the execution has moved on.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from asyncgate.domain.execution import Execution, ExecutionError
from asyncgate.domain.status import Status

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# 1-255 printable ASCII characters (API.md).
IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")


class SubmitReceipt(BaseModel):
    execution_id: str
    model: str
    status: Status
    provider_request_id: str | None = None
    created_at: datetime
    webhook_url: str | None = None
    # Set when the answer was the 500 PROVIDER_SUBMIT_FAILED of an inline dispatch.
    error: ExecutionError | None = None

    @classmethod
    def of(cls, execution: Execution) -> SubmitReceipt:
        """The receipt of the answer given now for `execution`."""
        error = execution.error
        failed_submit = execution.status is Status.FAILED and error and error.code == "PROVIDER_SUBMIT_FAILED"
        return cls(
            execution_id=execution.execution_id,
            model=execution.model,
            status=execution.status,
            provider_request_id=execution.provider_request_id,
            created_at=execution.created_at,
            webhook_url=execution.webhook.url,
            error=error if failed_submit else None,
        )

    @classmethod
    def recovered(cls, execution: Execution) -> SubmitReceipt:
        """The answer a submit would have given, for a first request that died before it answered:
        what the dispatch recorded (running with the provider's id, or the failed submit), else queued."""
        receipt = cls.of(execution)
        if receipt.error is not None:
            return receipt
        status = Status.RUNNING if execution.provider_request_id else Status.QUEUED
        return receipt.model_copy(update={"status": status})


class IdempotencyRecord(BaseModel):
    tenant: str
    key_hash: str
    fingerprint: str
    execution_id: str
    created_at: datetime
    expires_at: datetime
    # None while the first request is still deciding its answer (an inline dispatch in flight).
    receipt: SubmitReceipt | None = None


def is_idempotency_key(value: str) -> bool:
    return IDEMPOTENCY_KEY.fullmatch(value) is not None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def fingerprint(request: dict[str, Any]) -> str:
    """The request's identity for key reuse: the same fields in any order or spacing are the same body."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
