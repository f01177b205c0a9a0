"""OpenAI's adapter: the provider port over the Responses API in background mode.

- submit: `POST /v1/responses` with the user's `input` as the body (Responses API fields: `input`,
  `instructions`, `max_output_tokens`, `text`, `reasoning`, `tools`, ...), plus `model` (the catalog's
  provider model), `background: true`, `store: true` unless the user set `store`, and the execution id in
  `metadata.asyncgate_execution_id` (OpenAI documents no idempotency key for this endpoint, so none is sent;
  the metadata lets a duplicate be found in the dashboard, it does not prevent one).
- poll: `GET /v1/responses/{id}`; cancel: `POST /v1/responses/{id}/cancel` (background responses only).

A response's result is text, not a file: each `output_text` part of the response's `message` items becomes
one output, a `data:` URL (`text/plain;charset=utf-8`, or `application/json` when the request asked for
structured output through `text.format` `json_schema`/`json_object`). The provider's body stays in `raw`.

No callbacks: OpenAI's webhooks are configured per project in its dashboard, not per request, so a job
is followed by polling alone.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

from asyncgate.providers.base import (
    CallbackRejected,
    CallbackRequest,
    Output,
    PollResult,
    ProviderJob,
    ProviderRejected,
    ProviderState,
)
from asyncgate.providers.http import ProviderHttp

NAME = "openai"
METADATA_KEY = "asyncgate_execution_id"
# Fields the adapter owns: the model is the catalog's, and the job must run in the background. Streaming
# would hand the output to a connection nobody holds.
OWNED_FIELDS = ("model", "background")
UNSUPPORTED_FIELDS = ("stream",)

# The Response object's `status`, as documented ("One of completed, failed, in_progress, cancelled,
# queued, or incomplete").
DOCUMENTED_STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled", "incomplete")

# OpenAI's status vocabulary, the only place it is translated. `incomplete` (the model stopped early:
# `incomplete_details.reason` is `max_output_tokens` or `content_filter`) is a finished job whose promised
# output is missing: succeeded, flagged incomplete (the contract's PROVIDER_RESPONSE_INCOMPLETE).
STATES: dict[str, ProviderState] = {
    "queued": ProviderState.PENDING,
    "in_progress": ProviderState.RUNNING,
    "completed": ProviderState.SUCCEEDED,
    "incomplete": ProviderState.SUCCEEDED,
    "failed": ProviderState.FAILED,
    "cancelled": ProviderState.CANCELLED,
}

TEXT = "text/plain;charset=utf-8"
JSON = "application/json"
STRUCTURED_FORMATS = frozenset({"json_schema", "json_object"})


class OpenAIProvider:
    name = NAME
    accepts_callbacks = False

    def __init__(self, api_key: str, base_url: str, session: requests.Session | None = None) -> None:
        self._http = ProviderHttp("openai", base_url, {"Authorization": f"Bearer {api_key}"}, session=session)

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,  # never given: accepts_callbacks is False
    ) -> ProviderJob:
        body = request_body(execution_id, provider_model, input)
        response = self._http.request("POST", "/v1/responses", json=body)
        response_id = self._http.json(response, "submit").get("id")
        if not isinstance(response_id, str) or not response_id:
            raise self._http.malformed(response, "submit")
        return ProviderJob(provider_request_id=response_id)

    def verify_callback(self, request: CallbackRequest, *, job_ref: str, now: datetime) -> None:
        raise CallbackRejected("openai does not take callbacks")

    def poll(self, job_ref: str) -> PollResult:
        response = self._http.request("GET", _path(job_ref))
        return self._http.parsed(response, "poll", poll_result)

    def cancel(self, job_ref: str) -> None:
        # Cancelling a finished (or foreground) response is refused with a 4xx: ProviderRejected.
        response = self._http.request("POST", _path(job_ref) + "/cancel")
        self._http.checked(response, "cancel")


def build(api_key: str, base_url: str) -> OpenAIProvider:
    return OpenAIProvider(api_key, base_url)


def _path(response_id: str) -> str:
    return f"/v1/responses/{quote(response_id, safe='')}"


def request_body(execution_id: str, provider_model: str, input: dict[str, Any]) -> dict[str, Any]:
    """The create-response body: the user's Responses API fields, with the adapter's own on top."""
    for field in UNSUPPORTED_FIELDS:
        if input.get(field):
            raise ProviderRejected(f"openai: input.{field} is not supported (the job runs in the background)")
    metadata = input.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ProviderRejected("openai: input.metadata must be an object of strings")
    body = {key: value for key, value in input.items() if key not in OWNED_FIELDS + UNSUPPORTED_FIELDS}
    # Without store, a background response is deleted about ten minutes after it ends: a slow poll
    # schedule could miss it. A user may still choose `store: false` (zero data retention).
    body.setdefault("store", True)
    return {
        **body,
        "model": provider_model,
        "background": True,
        "metadata": {**metadata, METADATA_KEY: execution_id},
    }


def poll_result(body: dict[str, Any]) -> PollResult:
    """Raises KeyError, TypeError or ValueError (pydantic's too) when the body is not a Response."""
    status = body["status"]
    if not isinstance(status, str):
        raise TypeError("status is not a string")
    state = STATES[status]
    outputs = _outputs(body) if state is ProviderState.SUCCEEDED else []
    return PollResult(
        state=state,
        outputs=outputs,
        raw=body,
        error_message=_error_message(body, status),
        # `incomplete` is done without the whole output; `completed` with no text (a refusal, or only tool
        # calls) is done without any.
        incomplete=state is ProviderState.SUCCEEDED and (status == "incomplete" or not outputs),
    )


def _outputs(body: dict[str, Any]) -> list[Output]:
    items = body["output"]
    if not isinstance(items, list):
        raise TypeError("output is not a list")
    content_type = JSON if _structured(body) else TEXT
    outputs = []
    for item in items:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue  # reasoning, tool calls: kept in raw
        for part in item.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "output_text":
                text = part["text"]
                if not isinstance(text, str):
                    raise TypeError("output_text.text is not a string")
                outputs.append(Output(url=data_url(text, content_type), content_type=content_type))
    return outputs


def _structured(body: dict[str, Any]) -> bool:
    text = body.get("text")
    text_format = text.get("format") if isinstance(text, dict) else None
    return isinstance(text_format, dict) and text_format.get("type") in STRUCTURED_FORMATS


def data_url(text: str, content_type: str) -> str:
    """An RFC 2397 `data:` URL holding the text (base64: any character survives)."""
    return f"data:{content_type};base64,{base64.b64encode(text.encode('utf-8')).decode('ascii')}"


def _error_message(body: dict[str, Any], status: str) -> str | None:
    error = body.get("error")
    if isinstance(error, dict):
        message, code = error.get("message"), error.get("code")
        if isinstance(message, str) and message:
            return f"{code}: {message}" if isinstance(code, str) and code else message
    if status == "incomplete":
        details = body.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return f"response incomplete: {reason}" if isinstance(reason, str) else "response incomplete"
    if status == "failed":
        return "openai reported the response failed without an error message"
    return None
