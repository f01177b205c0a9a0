"""Replicate's adapter: the provider port over Replicate's HTTP API (https://replicate.com/docs/reference/http).

- Submit: `POST /v1/models/{owner}/{name}/predictions` with `{"input": ...}` for a model named
  `owner/name` (an official model, or any model's latest version); `POST /v1/predictions` with
  `{"version": ..., "input": ...}` for a pinned version, `owner/name:<version id>` or a bare 64-hex
  version id. No `Prefer: wait` header: the default (asynchronous) mode answers at once with a prediction
  in `starting`. Replicate documents no idempotency key or client reference, so the execution id is not
  sent; the submit is never retried.
- Callbacks: with a callback URL, the create body carries `webhook` and `webhook_events_filter`
  (`completed` only: `output` fires for every partial output, up to twice a second for a streaming
  model, and each callback costs a poll; partial outputs show at the safety-net polls). Replicate signs
  every webhook the Standard
  Webhooks way (https://replicate.com/docs/topics/webhooks/verify-webhook): `webhook-id`,
  `webhook-timestamp`, `webhook-signature`, an HMAC-SHA256 keyed by the account's signing secret
  (`GET /v1/webhooks/default/secret`, fetched once per adapter). The body is the prediction: its `id`
  must be this job's.
- Poll: `GET /v1/predictions/{id}`. Cancel: `POST /v1/predictions/{id}/cancel`. Both on the base URL
  (not the absolute `urls.get`/`urls.cancel` of the answer) so `ASYNCGATE_REPLICATE_URL` points every
  call at a fake or a proxy.
- `output` is whatever the model returns (a URL string, a list growing while `processing`, an object,
  text): every http(s) URL found in it is an output, in order, with a content type guessed from the
  URL's extension (Replicate gives none). Text and other non-URL outputs stay in `raw` only.
- Progress comes from the last tqdm-style line of `logs` (`45%|████     | 9/20 [...]`), the format
  Replicate's own JavaScript client parses (`parseProgressFromLogs`); no such line, no progress.
"""

from __future__ import annotations

import hmac
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from standardwebhooks import Webhook

from asyncgate.providers.base import (
    CallbackRejected,
    CallbackRequest,
    PollResult,
    ProviderJob,
    ProviderRejected,
    ProviderState,
)
from asyncgate.providers.callback_checks import check_job, check_timestamp, json_object, required_header
from asyncgate.providers.http import ProviderHttp
from asyncgate.providers.outputs import output as output_for
from asyncgate.providers.outputs import tqdm_progress

# https://replicate.com/docs/topics/predictions/lifecycle ("Prediction statuses").
DOCUMENTED_STATUSES: tuple[str, ...] = (
    "starting",
    "processing",
    "succeeded",
    "failed",
    "canceled",
    "aborted",
)

# Replicate's status vocabulary, the only place it is translated.
STATES: dict[str, ProviderState] = {
    # Booting a worker (a cold boot) or waiting for one: not running the model yet.
    "starting": ProviderState.PENDING,
    "processing": ProviderState.RUNNING,
    "succeeded": ProviderState.SUCCEEDED,
    "failed": ProviderState.FAILED,
    # Cancelled by its creator (asyncgate's cancel, or the owner in Replicate's dashboard).
    "canceled": ProviderState.CANCELLED,
    # The prediction's deadline passed before it started. asyncgate sets no deadline (`Cancel-After`),
    # so this is not a cancellation anyone here asked for: a failure, with a message saying why.
    "aborted": ProviderState.FAILED,
}

ABORTED_MESSAGE = "Replicate aborted the prediction: its deadline passed before it started"

# A version id: 64 lowercase hex digits (a SHA-256 of the model image).
_VERSION_ID = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

WEBHOOK_KEY_PATH = "/v1/webhooks/default/secret"
# Asked for at submit: the end only, the moment worth polling at once (see the module's docstring).
WEBHOOK_EVENTS = ["completed"]


class ReplicateProvider:
    name = "replicate"
    accepts_callbacks = True

    def __init__(self, api_token: str, base_url: str, session: requests.Session | None = None) -> None:
        self._http = ProviderHttp(
            "Replicate", base_url, {"Authorization": f"Bearer {api_token}"}, session=session
        )
        # The account's webhook signing secret, fetched at the first callback. The adapter is rebuilt when
        # the API token may have rotated, and the secret with it.
        self._signer: Webhook | None = None

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,
    ) -> ProviderJob:
        path, body = _create_request(provider_model, input)
        if callback_url is not None:
            body = {**body, "webhook": callback_url, "webhook_events_filter": WEBHOOK_EVENTS}
        response = self._http.request("POST", path, json=body)
        prediction_id = self._http.json(response, "submit").get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise self._http.malformed(response, "submit")
        return ProviderJob(provider_request_id=prediction_id)

    def verify_callback(self, request: CallbackRequest, *, job_ref: str, now: datetime) -> None:
        """A Standard Webhooks signature by the account's secret, a `webhook-timestamp` within five minutes
        of `now` (checked here rather than by `Webhook.verify`, which reads the wall clock), and a body
        that is this prediction."""
        message_id = required_header(request, "webhook-id", "Replicate")
        timestamp = required_header(request, "webhook-timestamp", "Replicate")
        signatures = required_header(request, "webhook-signature", "Replicate")
        check_timestamp(timestamp, now, "Replicate")
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise CallbackRejected("Replicate callback body is not UTF-8") from None
        signed_at = datetime.fromtimestamp(int(timestamp), tz=UTC)
        expected = self._secret().sign(message_id, signed_at, body).encode()
        # The header lists `v1,<base64>` signatures, space-separated (one per active secret).
        if not any(hmac.compare_digest(expected, given.encode()) for given in signatures.split()):
            raise CallbackRejected("Replicate callback signature does not match")
        check_job(json_object(request, "Replicate").get("id"), job_ref, "Replicate")

    def poll(self, job_ref: str) -> PollResult:
        response = self._http.request("GET", _prediction_path(job_ref))
        return self._http.parsed(response, "poll", poll_result)

    def cancel(self, job_ref: str) -> None:
        response = self._http.request("POST", _prediction_path(job_ref) + "/cancel")
        self._http.checked(response, "cancel")

    def _secret(self) -> Webhook:
        """The signing secret (`{"key": "whsec_..."}`); ProviderError when it cannot be had."""
        if self._signer is None:
            response = self._http.request("GET", WEBHOOK_KEY_PATH)
            self._signer = self._http.parsed(response, "webhook secret", _signing_key)
        return self._signer


def build(api_key: str, base_url: str) -> ReplicateProvider:
    return ReplicateProvider(api_key, base_url)


def _signing_key(body: dict[str, Any]) -> Webhook:
    key = body["key"]
    if not isinstance(key, str) or not key.removeprefix("whsec_"):
        raise ValueError("key is not a signing secret")
    return Webhook(key)


def _create_request(provider_model: str, input: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The create call for a provider model id: `owner/name`, `owner/name:<version>` or `<version>`."""
    model, _, version = provider_model.partition(":")
    if not version and _VERSION_ID.fullmatch(model):
        return "/v1/predictions", {"version": model, "input": input}
    owner, _, name = model.partition("/")
    if not (_NAME.fullmatch(owner) and _NAME.fullmatch(name)):
        raise ProviderRejected(
            f"not a Replicate model: {provider_model!r} (expected owner/name or owner/name:version)"
        )
    if not version:
        return f"/v1/models/{owner}/{name}/predictions", {"input": input}
    if not _VERSION_ID.fullmatch(version):
        raise ProviderRejected(f"not a Replicate version id: {version!r} (expected 64 hex digits)")
    return "/v1/predictions", {"version": version, "input": input}


def _prediction_path(prediction_id: str) -> str:
    if not prediction_id:
        raise ProviderRejected("empty Replicate prediction id")
    return f"/v1/predictions/{quote(prediction_id, safe='')}"


def poll_result(body: dict[str, Any]) -> PollResult:
    """A prediction object in the port's words. Raises KeyError, TypeError or ValueError (pydantic's
    too) when the body is not one: an unknown status among them."""
    status = body["status"]
    if not isinstance(status, str):
        raise TypeError("status is not a string")
    state = STATES[status]
    output = body.get("output")
    outputs = [output_for(url) for url in _urls(output)]
    return PollResult(
        state=state,
        progress=100.0 if state is ProviderState.SUCCEEDED else logs_progress(body.get("logs")),
        outputs=outputs,
        raw=body,
        error_message=_error_message(status, body.get("error")),
        incomplete=state is ProviderState.SUCCEEDED and _empty(output),
    )


def _error_message(status: str, error: Any) -> str | None:
    if error is not None and error != "":
        return error if isinstance(error, str) else str(error)
    return ABORTED_MESSAGE if status == "aborted" else None


def _empty(output: Any) -> bool:
    return output is None or output in ("", [], {})


def _urls(output: Any) -> list[str]:
    """Every http(s) URL in a model's output (a string, a list, an object, nested), in order."""
    if isinstance(output, str):
        return [output] if urlsplit(output).scheme in ("http", "https") else []
    if isinstance(output, list):
        return [url for item in output for url in _urls(item)]
    if isinstance(output, dict):
        return [url for item in output.values() for url in _urls(item)]
    return []


def logs_progress(logs: Any) -> float | None:
    """The percentage of the last tqdm progress line in the prediction's logs, or None."""
    return tqdm_progress([logs]) if isinstance(logs, str) else None
