"""Request and response bodies of the public contract (camelCase on the wire)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel

from asyncgate.domain.accounts import Account
from asyncgate.domain.catalog import ModelSpec, Number
from asyncgate.domain.clock import format_ts
from asyncgate.domain.execution import TERMINAL_EVENTS, EventType, Execution, OutputRef
from asyncgate.domain.idempotency import SubmitReceipt
from asyncgate.domain.status import Status
from asyncgate.domain.webhooks import WebhookEndpoint

Timestamp = Annotated[
    datetime,
    PlainSerializer(format_ts, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

METADATA_MAX_KEYS = 16
METADATA_MAX_VALUE = 512
METADATA_MAX_KEY = 64
# As types rather than a validator, so that the OpenAPI document states the limits too.
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=METADATA_MAX_KEY)]
MetadataValue = Annotated[str, StringConstraints(max_length=METADATA_MAX_VALUE)]


class WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        # An answer always carries its fields, defaults included: the document says they are required.
        json_schema_serialization_defaults_required=True,
        # Titles in the OpenAPI document: "Live executions", not the alias's "Liveexecutions".
        field_title_generator=lambda name, _: name.replace("_", " ").capitalize(),
    )

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class EnvelopeError(WireModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    details: dict[str, Any]


class ErrorEnvelope(WireModel):
    """The body of every non-2xx answer, and nothing else at the top level."""

    model_config = ConfigDict(extra="forbid")

    error: EnvelopeError


class WebhookRequest(WireModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    events: list[EventType] | None = Field(default=None, min_length=1)


class SubmitRequest(WireModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=128)
    input: dict[str, Any] = Field(default_factory=dict)
    webhook: WebhookRequest | None = None
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=METADATA_MAX_KEYS)

    @field_validator("input")
    @classmethod
    def _finite_numbers(cls, value: dict[str, Any]) -> dict[str, Any]:
        # NaN, Infinity and overflowing numbers parse, but no provider (and no JSON encoder) takes them.
        pending: list[Any] = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError("numbers must be finite (no NaN, Infinity or overflow)")
            if isinstance(item, dict):
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
        return value


class ListQuery(WireModel):
    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    model: str | None = Field(default=None, min_length=1, max_length=128)
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, min_length=1, max_length=512)


class StatusQuery(WireModel):
    model_config = ConfigDict(extra="forbid")

    wait_seconds: int = Field(default=0, ge=0, le=20)


class CallbackQuery(WireModel):
    # Providers may add their own parameters to a callback URL: those are let through.
    model_config = ConfigDict(extra="ignore")

    # No bounds: a token of any other shape simply does not match (401, like every refusal).
    token: str | None = None


class OutputView(WireModel):
    """One output. `url` is a presigned URL of asyncgate's own copy when `stored` (valid for the
    deployment's ResultUrlSeconds, made afresh on every read), else the provider's own URL."""

    url: str
    content_type: str | None
    stored: bool


class ResultView(WireModel):
    outputs: list[OutputView]
    raw: dict[str, Any]


class ErrorView(WireModel):
    code: str
    message: str
    provider_status: int | None
    provider_body: str | None


class CostView(WireModel):
    credits: Number


class AttemptView(WireModel):
    at: Timestamp
    status_code: int | None
    error: str | None


class WebhookView(WireModel):
    configured: bool
    url: str | None
    state: Literal["none", "pending", "delivered", "failed"]
    attempts: list[AttemptView]


class ExecutionView(WireModel):
    execution_id: str
    model: str
    status: Status
    progress: float | None
    # The job's place in the provider's queue while it waits there (fal, Kie.ai), else null.
    queue_position: int | None
    # Seconds the job is estimated still to run (progress rate, else the expected duration), else null.
    eta_seconds: int | None
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    updated_at: Timestamp
    provider_request_id: str | None
    result: ResultView | None
    error: ErrorView | None
    poll_count: int
    cost: CostView | None
    metadata: dict[str, str]
    webhook: WebhookView
    cleanup_after: Timestamp | None

    @classmethod
    def of(cls, execution: Execution, output_url: Callable[[OutputRef], str | None]) -> ExecutionView:
        """The execution on the wire. `output_url` gives a copied output's URL (a fresh presigned one,
        `Deps.results.url_for`), or None for an output read from the provider."""
        data = execution.model_dump()
        data["webhook"] = {**data["webhook"], "configured": execution.webhook.url is not None}
        if execution.result is not None:
            outputs = []
            for output in execution.result.outputs:
                url = output_url(output)
                outputs.append(
                    {"url": url or output.url, "content_type": output.content_type, "stored": url is not None}
                )
            data["result"] = {"outputs": outputs, "raw": execution.result.raw}
        return cls.model_validate(data)


class SubmitWebhookView(WireModel):
    configured: bool
    url: str | None


class SubmitAccepted(WireModel):
    is_async: bool = Field(default=True, alias="async")
    execution_id: str
    status: Status
    model: str
    provider_request_id: str | None
    created_at: Timestamp
    status_url: str
    cancel_url: str
    webhook: SubmitWebhookView

    @classmethod
    def of(cls, receipt: SubmitReceipt) -> SubmitAccepted:
        return cls(
            execution_id=receipt.execution_id,
            status=receipt.status,
            model=receipt.model,
            provider_request_id=receipt.provider_request_id,
            created_at=receipt.created_at,
            status_url=execution_path(receipt.execution_id),
            cancel_url=execution_path(receipt.execution_id) + "/cancel",
            webhook=SubmitWebhookView(configured=receipt.webhook_url is not None, url=receipt.webhook_url),
        )


class ExecutionPage(WireModel):
    items: list[ExecutionView]
    next_cursor: str | None


class CancelAnswer(WireModel):
    execution_id: str
    cancelled: bool
    previous_status: Status
    status: Status
    message: str
    execution: ExecutionView


class PriceTermView(WireModel):
    # The input's path in `input`, dotted into nested objects (`sim.outputs`).
    input: str
    credits: Number
    per: Number


class PriceView(WireModel):
    # What a job costs with the input schema's defaults (for a flat price, the price): the contract's
    # figure, what existing clients read.
    credits: Number
    # What every job costs; each term adds its `credits` for every `per` units (started ones counted
    # whole) of its input, an input left out counting at its schema's default.
    base: Number
    per_input: list[PriceTermView]

    @classmethod
    def of(cls, spec: ModelSpec) -> PriceView:
        return cls(
            credits=spec.price_of({}),
            base=spec.price.credits,
            per_input=[
                PriceTermView(input=term.input, credits=term.credits, per=term.per)
                for term in spec.price.per_input
            ],
        )


class ModelView(WireModel):
    model: str
    provider: str
    is_async: bool = Field(alias="async")
    cancel: bool
    expected_duration_seconds: Number
    max_duration_seconds: Number
    price: PriceView
    # The JSON Schema `input` must satisfy (submit answers 422 otherwise); null when any object goes.
    input_schema: dict[str, Any] | None

    @classmethod
    def of(cls, spec: ModelSpec) -> ModelView:
        return cls(
            model=spec.model,
            provider=spec.provider,
            is_async=spec.is_async,
            cancel=spec.cancel,
            expected_duration_seconds=spec.expected_duration_seconds,
            max_duration_seconds=spec.max_duration_seconds,
            price=PriceView.of(spec),
            input_schema=spec.input_schema,
        )


class ModelList(WireModel):
    items: list[ModelView]


class AccountView(WireModel):
    tenant: str
    credits: Number
    reserved_credits: Number
    queue_limit: int
    live_executions: int
    scopes: list[str]

    @classmethod
    def of(cls, account: Account, scopes: frozenset[str]) -> AccountView:
        return cls(
            tenant=account.tenant,
            credits=account.credits,
            reserved_credits=account.reserved_credits,
            queue_limit=account.queue_limit,
            live_executions=account.live_executions,
            scopes=sorted(scopes),
        )


class WebhookEndpointRequest(WireModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    events: list[EventType] = Field(default_factory=lambda: list(TERMINAL_EVENTS), min_length=1)
    description: str | None = Field(default=None, max_length=256)

    @field_validator("events")
    @classmethod
    def _no_duplicates(cls, events: list[EventType]) -> list[EventType]:
        if len(set(events)) != len(events):
            raise ValueError("each event type at most once")
        return events


class WebhookEndpointView(WireModel):
    """An endpoint as listed: never its secret. `description` only when it has one."""

    id: str
    url: str
    events: list[EventType]
    description: str | None = Field(default=None, exclude_if=lambda description: description is None)
    created_at: Timestamp

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookEndpointView:
        return cls(
            id=endpoint.endpoint_id,
            url=endpoint.url,
            events=list(endpoint.events),
            description=endpoint.description,
            created_at=endpoint.created_at,
        )


class WebhookEndpointWithSecret(WebhookEndpointView):
    """The answer to a create or a rotation: the endpoint and its (new) secret, shown only then."""

    secret: str

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookEndpointWithSecret:
        view = WebhookEndpointView.of(endpoint)
        return cls(**view.model_dump(), secret=endpoint.secret)


class WebhookEndpointList(WireModel):
    items: list[WebhookEndpointView]


class WebhookSecretView(WireModel):
    secret: str


class CallbackAnswer(WireModel):
    """A provider's callback was taken: the job is polled now (or it had finished already)."""

    received: bool


def execution_path(execution_id: str) -> str:
    return f"/v1/executions/{execution_id}"


class WebhookEventBody(WireModel):
    """The body of every webhook delivery."""

    type: EventType
    timestamp: Timestamp
    data: ExecutionView
