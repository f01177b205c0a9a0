"""fal's adapter: the provider port over fal's queue API (https://fal.ai/docs/model-endpoints/queue,
https://fal.ai/docs/api-reference/inference-api).

- Submit: `POST {base}/{app id}` (the full id, endpoint path included: `fal-ai/flux/dev`) with the
  user's `input` as the JSON body and `Authorization: Key <FAL_KEY>`. fal documents no idempotency key
  or client reference, so the execution id is not sent; the submit is never retried.
- Callbacks: with a callback URL, the submit carries it as the `fal_webhook` query parameter. fal signs
  its webhooks with ED25519 (https://docs.fal.ai/model-apis/model-endpoints/webhooks, "Verifying your
  webhook"): `X-Fal-Webhook-Signature` (hex) over the lines request id, user id, timestamp (the
  `X-Fal-Webhook-*` headers) and the body's SHA-256 hex digest, by one of the public keys at fal's JWKS
  (`JWKS_URL`, fetched without the API key and cached for a day). The request id must be this job's.
- Status, result and cancel live under the app's root only (owner and app, `fal-ai/flux`, plus a
  leading `workflows/` or `comfy/` namespace): fal says to use the `status_url`/`response_url`/
  `cancel_url` of the submit answer rather than build them. The adapter takes that root from the
  answer's `response_url` (falling back on the documented owner/app rule), re-based on the configured
  base URL so `ASYNCGATE_FAL_URL` points everything at a fake, and keeps it in the job's reference
  `<app root>::<request id>`, e.g. `fal-ai/flux::80e732af-...` (the execution's `providerRequestId` is
  fal's own request id).
- Poll: `GET {base}/{root}/requests/{id}/status?logs=1`; on `COMPLETED`, `GET {base}/{root}/requests/{id}`
  for the result. fal answers the result call with the model's own status and body, so a failed request
  shows there: a fal error body (`detail`, `error_type`) on a non-2xx answer is the job's failure.
- Cancel: `PUT {base}/{root}/requests/{id}/cancel`; `ALREADY_COMPLETED`/`NOT_FOUND` are refusals.
- Outputs: fal results differ per app (`images[]`, `video`, `audio`, ...), but files are fal `File`/
  `Image` objects: every object in the result with an http(s) `url` is an output, in document order,
  with its `content_type` (guessed from the URL's extension when absent). Inline `data:` URIs (sync mode)
  are not outputs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from asyncgate.providers.base import (
    CallbackRejected,
    CallbackRequest,
    PollResult,
    ProviderJob,
    ProviderRejected,
    ProviderState,
)
from asyncgate.providers.callback_checks import check_job, check_timestamp, json_object, required_header
from asyncgate.providers.http import Malformed, ProviderHttp
from asyncgate.providers.outputs import output as output_for
from asyncgate.providers.outputs import tqdm_progress

# https://docs.fal.ai/documentation/model-apis/inference/queue ("Request Lifecycle").
DOCUMENTED_STATUSES: tuple[str, ...] = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")

# fal's status vocabulary, the only place it is translated. COMPLETED says the request is over, not
# how: the result (or an `error` on the status) tells success from failure.
STATES: dict[str, ProviderState] = {
    "IN_QUEUE": ProviderState.PENDING,
    "IN_PROGRESS": ProviderState.RUNNING,
    "COMPLETED": ProviderState.SUCCEEDED,
}

# Cancel answers (https://fal.ai/docs/inference-api/queue/cancel) that mean nothing was cancelled.
CANCEL_REFUSALS = frozenset({"ALREADY_COMPLETED", "NOT_FOUND"})

# App ids whose first segment is a namespace: their root has three segments, not two (fal's Python
# client, `AppId.from_endpoint_id`).
APP_NAMESPACES = frozenset({"workflows", "comfy"})
SEPARATOR = "::"

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# fal's webhook signing keys (a JWKS of Ed25519 keys), and how long a fetched set is trusted: a day, as
# fal's verification guide caches it.
JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
JWKS_CACHE_SECONDS = 24 * 3600


class FalProvider:
    name = "fal"
    accepts_callbacks = True

    def __init__(
        self,
        api_key: str,
        base_url: str,
        session: requests.Session | None = None,
        *,
        jwks_url: str = JWKS_URL,
    ) -> None:
        self._http = ProviderHttp("fal", base_url, {"Authorization": f"Key {api_key}"}, session=session)
        # The JWKS lives on another host: no API key goes there.
        self._jwks_http = ProviderHttp("fal JWKS", jwks_url, {}, session=session)
        self._keys: list[Ed25519PublicKey] = []
        self._keys_until = 0.0  # time.monotonic() until which `_keys` are trusted

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,
    ) -> ProviderJob:
        segments = _app_segments(provider_model)
        params = {"fal_webhook": callback_url} if callback_url is not None else None
        response = self._http.request("POST", "/" + "/".join(segments), json=input, params=params)
        body = self._http.json(response, "submit")
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not request_id or SEPARATOR in request_id:
            raise self._http.malformed(response, "submit")
        root = self._root_from_answer(body.get("response_url"), request_id) or _app_root(segments)
        return ProviderJob(provider_request_id=request_id, reference=f"{root}{SEPARATOR}{request_id}")

    def verify_callback(self, request: CallbackRequest, *, job_ref: str, now: datetime) -> None:
        """fal's ED25519 signature by one of its published keys, a timestamp within five minutes of `now`,
        and a request id (the signed header's, and the body's when it has one) that is this job's."""
        request_id = required_header(request, "x-fal-webhook-request-id", "fal")
        user_id = required_header(request, "x-fal-webhook-user-id", "fal")
        timestamp = required_header(request, "x-fal-webhook-timestamp", "fal")
        signature_hex = required_header(request, "x-fal-webhook-signature", "fal")
        check_timestamp(timestamp, now, "fal")
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise CallbackRejected("fal callback signature is not hex") from None
        message = "\n".join(
            [request_id, user_id, timestamp, hashlib.sha256(request.body).hexdigest()]
        ).encode()
        if not any(_signed_by(key, signature, message) for key in self._public_keys()):
            raise CallbackRejected("fal callback signature does not match")
        _, _, ours = job_ref.rpartition(SEPARATOR)
        check_job(request_id, ours, "fal")
        body = json_object(request, "fal")
        if "request_id" in body:
            check_job(body["request_id"], ours, "fal")

    def poll(self, job_ref: str) -> PollResult:
        request_path = _request_path(job_ref)
        response = self._http.request("GET", request_path + "/status", params={"logs": "1"})
        status = self._http.json(response, "poll")
        try:
            state = _state(status)
        except (KeyError, TypeError) as error:
            raise self._http.malformed(response, "poll") from error
        if state is not ProviderState.SUCCEEDED:
            return PollResult(
                state=state,
                progress=_logs_progress(status.get("logs")),
                queue_position=_queue_position(status) if state is ProviderState.PENDING else None,
                raw=status,
            )
        if status.get("error"):
            # A failed request may say so on its status already (with an `error_type`).
            return PollResult(state=ProviderState.FAILED, raw=status, error_message=_message(status["error"]))
        return self._result(request_path, status)

    def cancel(self, job_ref: str) -> None:
        response = self._http.request("PUT", _request_path(job_ref) + "/cancel")
        self._http.checked(response, "cancel")
        try:
            answer = response.json()
        except ValueError:
            return  # 2xx with no JSON body: accepted
        if isinstance(answer, dict) and answer.get("status") in CANCEL_REFUSALS:
            raise ProviderRejected(
                f"fal refused the cancel: {answer['status']}", status=response.status_code, body=response.text
            )

    def _public_keys(self) -> list[Ed25519PublicKey]:
        """fal's webhook keys, fetched again once a day; ProviderError when they cannot be had."""
        if time.monotonic() >= self._keys_until:
            response = self._jwks_http.request("GET", "")
            self._keys = self._jwks_http.parsed(response, "JWKS", _ed25519_keys)
            self._keys_until = time.monotonic() + JWKS_CACHE_SECONDS
        return self._keys

    def _result(self, request_path: str, status: dict[str, Any]) -> PollResult:
        response = self._http.request("GET", request_path)
        failure = _failure_body(response)
        if failure is not None:
            return PollResult(
                state=ProviderState.FAILED,
                raw={**status, "response": failure, "response_status": response.status_code},
                error_message=_message(failure.get("detail") or failure.get("error_type")),
            )
        result = self._http.json(response, "result")
        outputs = [output_for(url, content_type) for url, content_type in _files(result)]
        return PollResult(
            state=ProviderState.SUCCEEDED,
            progress=100.0,
            outputs=outputs,
            raw={**status, "response": result},
            incomplete=not outputs,
        )

    def _root_from_answer(self, response_url: Any, request_id: str) -> str | None:
        """The app root in the submit answer's `response_url` (`.../{root}/requests/{id}`), relative to
        the configured base URL's own path; None when the answer does not have that shape."""
        if not isinstance(response_url, str):
            return None
        path = urlsplit(response_url).path
        base_path = urlsplit(self._http.base_url).path.rstrip("/")
        if base_path and path.startswith(base_path + "/"):
            path = path[len(base_path) :]
        suffix = f"/requests/{request_id}"
        if not path.endswith(suffix):
            return None
        root = path[: -len(suffix)].strip("/")
        segments = root.split("/")
        return root if all(_SEGMENT.fullmatch(segment) for segment in segments) else None


def build(api_key: str, base_url: str) -> FalProvider:
    return FalProvider(api_key, base_url)


def _ed25519_keys(jwks: dict[str, Any]) -> list[Ed25519PublicKey]:
    """The Ed25519 keys (`kty` OKP, `crv` Ed25519, `x` base64url) of a JWKS; a set without any is
    malformed (every callback would be refused until the next fetch)."""
    keys = []
    for jwk in jwks["keys"]:
        if isinstance(jwk, dict) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            x = jwk["x"]
            # base64url without padding (RFC 7517); a bad encoding or length raises ValueError.
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
    if not keys:
        raise Malformed("the JWKS has no Ed25519 key")
    return keys


def _signed_by(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _app_segments(provider_model: str) -> list[str]:
    segments = provider_model.strip("/").split("/")
    if len(segments) < 2 or not all(_SEGMENT.fullmatch(segment) for segment in segments):
        raise ProviderRejected(f"not a fal app id: {provider_model!r} (expected owner/app[/path])")
    return segments


def _app_root(segments: list[str]) -> str:
    """The documented root of an app id: owner/app (namespace/owner/app for a namespaced app)."""
    return "/".join(segments[:3] if segments[0] in APP_NAMESPACES else segments[:2])


def _request_path(job_ref: str) -> str:
    root, _, request_id = job_ref.rpartition(SEPARATOR)
    segments = root.split("/")
    if not request_id or len(segments) < 2 or not all(_SEGMENT.fullmatch(segment) for segment in segments):
        raise ProviderRejected(f"not a fal request reference: {job_ref!r}")
    return f"/{root}/requests/{quote(request_id, safe='')}"


def _state(status: dict[str, Any]) -> ProviderState:
    value = status["status"]
    if not isinstance(value, str):
        raise TypeError("status is not a string")
    return STATES[value]


def _queue_position(status: dict[str, Any]) -> int | None:
    position = status.get("queue_position")
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        return None
    return position


def _failure_body(response: requests.Response) -> dict[str, Any] | None:
    """The fal error of a non-2xx result answer, or None. These are not the job's failure, and
    `checked` maps them (429/5xx transient, other 4xx final): a 429 (the result call's own rate
    limit), a gateway's 502/503/504 that fal does not mark as its own (`error_type` in the body or an
    X-Fal-Error-Type header), and answers that are not fal's error shape (a proxy's page)."""
    status = response.status_code
    if 200 <= status < 300 or status == 429:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    error_type = response.headers.get("X-Fal-Error-Type")
    marked = bool(error_type) or (isinstance(body, dict) and "error_type" in body)
    if status in {502, 503, 504} and not marked:
        return None
    if isinstance(body, dict) and ("detail" in body or "error_type" in body):
        return body
    if error_type:
        return {"error_type": error_type, "detail": response.text or None}
    return None


def _message(detail: Any) -> str | None:
    """A readable message from fal's `detail`: a string, or a list of validation errors with `msg`."""
    if detail is None or detail == "":
        return None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        messages = [
            str(item.get("msg")) if isinstance(item, dict) and item.get("msg") else json.dumps(item)
            for item in detail
        ]
        return "; ".join(messages) or None
    return json.dumps(detail)


def _files(value: Any) -> list[tuple[str, str | None]]:
    """Every fal file object (a dict with an http(s) `url`) in a result, in document order."""
    if isinstance(value, list):
        return [found for item in value for found in _files(item)]
    if not isinstance(value, dict):
        return []
    url = value.get("url")
    if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
        content_type = value.get("content_type")
        return [(url, content_type if isinstance(content_type, str) and content_type else None)]
    return [found for item in value.values() for found in _files(item)]


def _logs_progress(logs: Any) -> float | None:
    """The percentage of the last tqdm progress line among the runner's log messages, or None."""
    if not isinstance(logs, list):
        return None
    entries = [entry.get("message") if isinstance(entry, dict) else None for entry in logs]
    return tqdm_progress(message for message in entries if isinstance(message, str))
