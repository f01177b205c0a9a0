"""The Kie.ai adapter: the provider port over Kie's two task APIs.

- Market models (every `model` documented under docs.kie.ai/market, e.g. `kling-2.6/text-to-video`):
  `POST /api/v1/jobs/createTask` with `{"model": ..., "input": {...}}`, then
  `GET /api/v1/jobs/recordInfo?taskId=...` (`data.state`, `data.resultJson` a JSON *string* holding
  `resultUrls`, `failCode`/`failMsg`, `progress` for the models that report it).
- Suno music (selected by a provider model `suno/<version>`, e.g. `suno/V4_5`): `POST /api/v1/generate`
  with the user's input as the body plus `model: <version>`, then
  `GET /api/v1/generate/record-info?taskId=...` (`data.status`, tracks in `data.response.sunoData`).

Kie answers HTTP 200 with its own `code` in the body: 200 is success, anything else is an error whose
class follows the documented codes (401/402/404/422/501/505 final, 429/455/500 transient).

Kie has no cancel API and no idempotency key: a submit is never retried, a cancel is refused.

Callbacks: with a callback URL, both submit bodies carry it as `callBackUrl`. Kie posts the task's record
there (`data.taskId` for Market tasks, `data.task_id` for Suno), which must be this task. Kie signs its
callbacks only when the account turns on its webhook HMAC key
(https://docs.kie.ai/common-api/webhook-verification): `X-Webhook-Signature` is
base64(HMAC-SHA256(key, taskId + "." + X-Webhook-Timestamp)). With that key configured here
(`KIE_WEBHOOK_HMAC_KEY`, or `KIE_WEBHOOK_HMAC_KEY_PARAMETER` naming it in SSM or Secrets Manager), every
callback must carry a valid signature and a timestamp within five minutes; without it there is nothing to
verify, and the callback URL's own token is the only proof.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import requests

from asyncgate.providers.base import (
    CallbackRejected,
    CallbackRequest,
    PollResult,
    ProviderJob,
    ProviderRejected,
    ProviderState,
    ProviderUnavailable,
)
from asyncgate.providers.callback_checks import check_job, check_timestamp, json_object, required_header
from asyncgate.providers.http import MESSAGE_LIMIT, Malformed, ProviderHttp, retry_after_seconds
from asyncgate.providers.outputs import output as output_for
from asyncgate.secrets import secret_value

PROVIDER = "kie.ai"
CREATE_TASK_PATH = "/api/v1/jobs/createTask"
RECORD_INFO_PATH = "/api/v1/jobs/recordInfo"
SUNO_GENERATE_PATH = "/api/v1/generate"
SUNO_RECORD_INFO_PATH = "/api/v1/generate/record-info"

# A provider model `suno/<version>` selects the Suno music API; its request ids carry this prefix so a
# poll knows which record-info endpoint to read (Market task ids never contain "::").
SUNO_MODEL_PREFIX = "suno/"
SUNO_ID_PREFIX = "suno::"

# Body codes (docs.kie.ai, "Response codes" of every endpoint). Transient: 429 Rate Limited, 455 Service
# Unavailable (maintenance), 500 Server Error (and any other undocumented 5xx). Final: the rest, among
# them 501 Generation Failed and 505 Feature Disabled, which no retry mends.
TRANSIENT_CODES = frozenset({429, 455})
FINAL_SERVER_CODES = frozenset({501, 505})

# The Market task states (docs.kie.ai/market/common/get-task-detail), the only place they are translated.
MARKET_STATES: dict[str, ProviderState] = {
    "waiting": ProviderState.PENDING,
    "queuing": ProviderState.PENDING,
    "generating": ProviderState.RUNNING,
    "success": ProviderState.SUCCEEDED,
    "fail": ProviderState.FAILED,
}
DOCUMENTED_MARKET_STATES = ("waiting", "queuing", "generating", "success", "fail")

# The Suno task statuses (docs.kie.ai/suno-api/get-music-details), the only place they are translated.
# TEXT_SUCCESS: the lyrics are written, no audio yet. FIRST_SUCCESS: the first track is done (a partial
# result), the others are still generating. CALLBACK_EXCEPTION is documented as "error during callback
# process": it is terminal and not a success, so it fails (tracks already made are kept as outputs).
SUNO_STATES: dict[str, ProviderState] = {
    "PENDING": ProviderState.PENDING,
    "TEXT_SUCCESS": ProviderState.RUNNING,
    "FIRST_SUCCESS": ProviderState.RUNNING,
    "SUCCESS": ProviderState.SUCCEEDED,
    "CREATE_TASK_FAILED": ProviderState.FAILED,
    "GENERATE_AUDIO_FAILED": ProviderState.FAILED,
    "CALLBACK_EXCEPTION": ProviderState.FAILED,
    "SENSITIVE_WORD_ERROR": ProviderState.FAILED,
}
DOCUMENTED_SUNO_STATUSES = (
    "PENDING",
    "TEXT_SUCCESS",
    "FIRST_SUCCESS",
    "SUCCESS",
    "CREATE_TASK_FAILED",
    "GENERATE_AUDIO_FAILED",
    "CALLBACK_EXCEPTION",
    "SENSITIVE_WORD_ERROR",
)

NOT_CANCELLABLE = "kie.ai has no cancel API: a task runs to its end"

# The account's webhook HMAC key (Kie's settings page), in the environment or, in AWS, in SSM or Secrets
# Manager (named by the `_PARAMETER` variable).
WEBHOOK_KEY_VARIABLE = "KIE_WEBHOOK_HMAC_KEY"
WEBHOOK_KEY_PARAMETER_VARIABLE = f"{WEBHOOK_KEY_VARIABLE}_PARAMETER"


class KieProvider:
    name = "kie"
    accepts_callbacks = True

    def __init__(
        self,
        api_key: str,
        base_url: str,
        session: requests.Session | None = None,
        *,
        webhook_key: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._http = ProviderHttp(PROVIDER, base_url, {"Authorization": f"Bearer {api_key}"}, session=session)
        # Read at the first callback, not at build: polls must not depend on a key only callbacks need.
        self._webhook_key = webhook_key

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,
    ) -> ProviderJob:
        # Kie documents no idempotency key or client reference, so the execution id is not sent; the
        # submit is sent once (http.py never retries).
        if provider_model.startswith(SUNO_MODEL_PREFIX) or provider_model == "suno":
            version = provider_model[len(SUNO_MODEL_PREFIX) :]
            body = {**input, "model": version} if version else dict(input)
            path, id_prefix = SUNO_GENERATE_PATH, SUNO_ID_PREFIX
        else:
            body = {"model": provider_model, "input": input}
            path, id_prefix = CREATE_TASK_PATH, ""
        if callback_url is not None:
            body["callBackUrl"] = callback_url
        response = self._http.request("POST", path, json=body)
        _, data = self._answer(response, "submit")
        task_id = data.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            raise self._http.malformed(response, "submit")
        return ProviderJob(provider_request_id=task_id, reference=id_prefix + task_id if id_prefix else None)

    def verify_callback(self, request: CallbackRequest, *, job_ref: str, now: datetime) -> None:
        """The body names this task; with the webhook HMAC key configured, Kie's signature over that task
        id and a timestamp within five minutes of `now`."""
        data = json_object(request, PROVIDER).get("data")
        task_id = _callback_task_id(data) if isinstance(data, dict) else None
        key = self._webhook_key()
        if key:
            if task_id is None:
                raise CallbackRejected(f"{PROVIDER} callback names no task to check its signature against")
            timestamp = required_header(request, "x-webhook-timestamp", PROVIDER)
            signature = required_header(request, "x-webhook-signature", PROVIDER)
            check_timestamp(timestamp, now, PROVIDER)
            digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(base64.b64encode(digest), signature.encode()):
                raise CallbackRejected(f"{PROVIDER} callback signature does not match")
        if task_id is not None:
            check_job(task_id, job_ref.removeprefix(SUNO_ID_PREFIX), PROVIDER)

    def poll(self, job_ref: str) -> PollResult:
        suno = job_ref.startswith(SUNO_ID_PREFIX)
        task_id = job_ref.removeprefix(SUNO_ID_PREFIX)
        if not task_id:
            raise ProviderRejected(f"{PROVIDER}: empty task id")
        path = SUNO_RECORD_INFO_PATH if suno else RECORD_INFO_PATH
        response = self._http.request("GET", path, params={"taskId": task_id})
        body, data = self._answer(response, "poll")
        return self._http.parsed(
            response, "poll", lambda _: _suno_result(data, body) if suno else _market_result(data, body)
        )

    def cancel(self, job_ref: str) -> None:
        raise ProviderRejected(NOT_CANCELLABLE)

    def _answer(self, response: requests.Response, call: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The body and its `data` object for a `code: 200` answer; the port's error for any other."""
        body = self._http.json(response, call)
        code = body.get("code")
        if code == 200:
            data = body.get("data")
            if not isinstance(data, dict):
                raise self._http.malformed(response, call)
            return body, data
        if not isinstance(code, int) or isinstance(code, bool):
            raise self._http.malformed(response, call)
        detail = body.get("msg") or body.get("message")
        message = f"{PROVIDER} answered code {code} to {call}"
        if isinstance(detail, str) and detail:
            message += f": {detail[:MESSAGE_LIMIT]}"
        if code in TRANSIENT_CODES or (code >= 500 and code not in FINAL_SERVER_CODES):
            raise ProviderUnavailable(
                message, status=code, body=response.text, retry_after=retry_after_seconds(response)
            )
        raise ProviderRejected(message, status=code, body=response.text)


def build(api_key: str, base_url: str) -> KieProvider:
    return KieProvider(api_key, base_url, webhook_key=webhook_key)


def webhook_key(environ: Mapping[str, str] = os.environ) -> str | None:
    """The account's webhook HMAC key, or None when none is configured (Kie then does not sign)."""
    if key := environ.get(WEBHOOK_KEY_VARIABLE, "").strip():
        return key
    name = environ.get(WEBHOOK_KEY_PARAMETER_VARIABLE)
    return (secret_value(name) or None) if name else None


def _callback_task_id(data: dict[str, Any]) -> Any:
    """The task a callback's `data` names: `taskId` (Market) or `task_id` (Suno); None when neither."""
    return data.get("taskId", data.get("task_id"))


def _market_result(data: dict[str, Any], body: dict[str, Any]) -> PollResult:
    state = MARKET_STATES.get(data["state"])
    if state is None:
        raise Malformed(f"unknown state {data['state']!r}")
    urls = _result_urls(data.get("resultJson"))
    outputs = [output_for(url) for url in urls]
    return PollResult(
        state=state,
        progress=_progress(data.get("progress")),
        outputs=outputs,
        raw=body,
        error_message=_fail_message(data.get("failMsg"), data.get("failCode"))
        if state is ProviderState.FAILED
        else None,
        # "success" promises `resultUrls`; a text model's `{resultObject: ...}` has none (not supported).
        incomplete=state is ProviderState.SUCCEEDED and not outputs,
    )


def _suno_result(data: dict[str, Any], body: dict[str, Any]) -> PollResult:
    state = SUNO_STATES.get(data["status"])
    if state is None:
        raise Malformed(f"unknown status {data['status']!r}")
    response = data.get("response") or {}
    if not isinstance(response, dict):
        raise Malformed("response is not an object")
    tracks = response.get("sunoData") or []
    if not isinstance(tracks, list):
        raise Malformed("sunoData is not a list")
    # Only finished tracks (an `audioUrl`) are outputs; `streamAudioUrl` is a live stream, not a file.
    outputs = [
        output_for(track["audioUrl"])
        for track in tracks
        if isinstance(track, dict) and isinstance(track.get("audioUrl"), str) and track["audioUrl"]
    ]
    error_message = None
    if state is ProviderState.FAILED:
        error_message = _fail_message(
            data.get("errorMessage") or response.get("errorMessage"), data.get("errorCode")
        ) or str(data["status"])
    return PollResult(
        state=state,
        outputs=outputs,
        raw=body,
        error_message=error_message,
        incomplete=state is ProviderState.SUCCEEDED and not outputs,
    )


def _result_urls(result_json: Any) -> list[str]:
    """`resultJson` is a JSON string (`{"resultUrls": [...]}`), empty or absent until success."""
    if result_json in (None, ""):
        return []
    parsed = json.loads(result_json) if isinstance(result_json, str) else result_json
    if not isinstance(parsed, dict):
        raise Malformed("resultJson is not an object")
    urls = parsed.get("resultUrls") or []
    if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        raise Malformed("resultUrls is not a list of strings")
    return [url for url in urls if url]


def _progress(value: Any) -> float | None:
    """`progress` (0-100) is documented for some models only (sora2); absent elsewhere."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(min(max(value, 0), 100))


def _fail_message(message: Any, code: Any) -> str | None:
    if isinstance(message, str) and message:
        return message
    if code not in (None, ""):
        return f"failCode {code}"
    return None
