"""The public API's JSON bodies as pydantic models: camelCase on the wire, snake_case in Python.

Unknown fields are ignored, so a newer server that adds fields does not break an older client.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel


def _as_utc(value: datetime) -> datetime:
    # The contract's timestamps are UTC; a naive one from a sloppy server is read as UTC, not local time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _format_ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# RFC 3339 UTC with a `Z` both ways, as the contract writes it (`2026-11-22T17:16:06.532Z`).
Timestamp = Annotated[datetime, AfterValidator(_as_utc), PlainSerializer(_format_ts, return_type=str)]


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with the contract's camelCase names."""
        return self.model_dump(mode="json", by_alias=True)


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCEL_REQUESTED = "cancel_requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """A terminal execution never changes again."""
        return self in _TERMINAL


_TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})

WebhookState = Literal["none", "pending", "delivered", "failed"]


class Output(WireModel):
    url: str
    content_type: str | None = None
    # True: `url` is a presigned URL of the gateway's own copy (it expires; read the execution again
    # for a fresh one); False: the provider's URL.
    stored: bool = False


class Result(WireModel):
    outputs: list[Output] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict)


class ExecutionError(WireModel):
    code: str
    message: str
    provider_status: int | None = None
    provider_body: str | None = None


class Cost(WireModel):
    credits: float


class WebhookAttempt(WireModel):
    at: Timestamp
    status_code: int | None = None
    error: str | None = None


class ExecutionWebhook(WireModel):
    configured: bool
    url: str | None = None
    state: WebhookState = "none"
    attempts: list[WebhookAttempt] = Field(default_factory=list)


class Execution(WireModel):
    execution_id: str
    model: str
    status: Status
    progress: float | None = None
    queue_position: int | None = None
    eta_seconds: int | None = None
    created_at: Timestamp
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    updated_at: Timestamp
    provider_request_id: str | None = None
    result: Result | None = None
    error: ExecutionError | None = None
    poll_count: int = 0
    cost: Cost | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    webhook: ExecutionWebhook = Field(default_factory=lambda: ExecutionWebhook(configured=False))
    cleanup_after: Timestamp | None = None


class SubmitWebhook(WireModel):
    configured: bool
    url: str | None = None


class SubmitAccepted(WireModel):
    is_async: bool = Field(default=True, alias="async")
    execution_id: str
    status: Status
    model: str
    provider_request_id: str | None = None
    created_at: Timestamp
    status_url: str
    cancel_url: str
    webhook: SubmitWebhook = Field(default_factory=lambda: SubmitWebhook(configured=False))


class ExecutionPage(WireModel):
    items: list[Execution]
    next_cursor: str | None = None


class CancelAnswer(WireModel):
    execution_id: str
    cancelled: bool
    previous_status: Status
    status: Status
    message: str
    execution: Execution


class Price(WireModel):
    credits: float


class Model(WireModel):
    """One catalog entry; `async` on the wire is `is_async` here (a Python keyword)."""

    model: str
    provider: str
    is_async: bool = Field(alias="async")
    cancel: bool
    expected_duration_seconds: float
    max_duration_seconds: float
    price: Price
    # The JSON Schema the model's `input` must satisfy, when the catalog gives one.
    input_schema: dict[str, Any] | None = None


class ModelList(WireModel):
    items: list[Model]


class Account(WireModel):
    tenant: str
    credits: float
    reserved_credits: float
    queue_limit: int
    live_executions: int
    scopes: list[str]


class WebhookEndpoint(WireModel):
    id: str
    url: str
    events: list[str]
    created_at: Timestamp
    description: str | None = None
    # Only in the answer that created the endpoint.
    secret: str | None = None


class WebhookEndpointList(WireModel):
    items: list[WebhookEndpoint]


class WebhookSecret(WireModel):
    secret: str
