"""The provider port: every adapter (simulated, Replicate, fal, ...) implements these three calls.

Adapters translate a provider's HTTP vocabulary into these neutral types; the core never sees a
provider's own status names.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, Field

PROVIDER_BODY_LIMIT = 4096


def truncate_body(body: str) -> str:
    """Provider bodies are kept for diagnosis, bounded to 4 KiB as the contract requires."""
    encoded = body.encode("utf-8", errors="replace")
    if len(encoded) <= PROVIDER_BODY_LIMIT:
        return body
    return encoded[:PROVIDER_BODY_LIMIT].decode("utf-8", errors="ignore")


class ProviderState(StrEnum):
    """What the provider says about a job, in asyncgate's words."""

    PENDING = "pending"  # accepted, not started (in the provider's queue)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Output(BaseModel):
    url: str
    content_type: str | None = None


class ProviderJob(BaseModel):
    """The provider accepted a submit."""

    # The provider's own id of the job, as its logs and dashboard show it.
    provider_request_id: str
    # How the adapter names the job in its later calls when the id alone is not enough (fal: the app's
    # root with it); None when it is the id.
    reference: str | None = None

    @property
    def job_ref(self) -> str:
        """What `poll`, `cancel` and `verify_callback` are given for this job."""
        return self.reference or self.provider_request_id


class PollResult(BaseModel):
    state: ProviderState
    progress: float | None = Field(default=None, ge=0.0, le=100.0)
    # The job's place in the provider's queue while PENDING, where the provider tells it (0: next).
    queue_position: int | None = Field(default=None, ge=0)
    outputs: list[Output] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict)
    error_message: str | None = None
    # Set on a terminal answer whose promised outputs are missing ("done but no output").
    incomplete: bool = False


class ProviderError(Exception):
    """Base for failures talking to a provider."""

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = truncate_body(body) if body is not None else None


class ProviderRejected(ProviderError):
    """The provider answered with a 4xx/5xx that is its final word on this request (not worth retrying)."""


class ProviderMalformed(ProviderRejected):
    """A 2xx answer that is not what the provider documents (a proxy's error page, a truncated body). A
    submit answered so is refused like any other (the job's id is unknown); a poll answered so says
    nothing of the job, so it is tried again within the model's error budget."""


class ProviderUnavailable(ProviderError):
    """A transient failure (429, 5xx, timeout, connection error): worth retrying within the error
    budget, not before `retry_after` seconds when the provider said so (a rate limit's Retry-After)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class CallbackRequest(BaseModel):
    """A provider's call to an execution's callback URL, as received: header names lower-cased, the body
    as sent (signatures are over its exact bytes)."""

    headers: dict[str, str] = Field(default_factory=dict)
    body: bytes = b""


class CallbackRejected(Exception):
    """A callback that is not the provider's own word on this job: a missing or wrong signature, a
    timestamp outside the tolerance (a replay), a body about another job."""


class Provider(Protocol):
    """The calls every provider adapter offers."""

    name: str

    @property
    def accepts_callbacks(self) -> bool:
        """Whether `submit` hands the provider a callback URL that it calls when the job finishes."""
        ...

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,
    ) -> ProviderJob:
        """Start a job; with `callback_url` (only given when `accepts_callbacks`), ask the provider to
        call it when the job finishes. Raises ProviderRejected (4xx/5xx answer) or ProviderUnavailable
        (no answer)."""
        ...

    def verify_callback(self, request: CallbackRequest, *, job_ref: str, now: datetime) -> None:
        """Check that a callback is the provider's, about this job: its signature where the provider
        signs (raises CallbackRejected otherwise). The callback's body is never trusted for the job's
        state: a verified callback only makes the gateway poll now."""
        ...

    def poll(self, job_ref: str) -> PollResult:
        """Read the job's state. Raises ProviderUnavailable for transient failures."""
        ...

    def cancel(self, job_ref: str) -> None:
        """Ask the provider to stop the job. Raises ProviderError when the request fails."""
        ...
