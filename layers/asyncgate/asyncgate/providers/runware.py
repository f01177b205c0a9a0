"""The Runware adapter: the provider port over Runware's single task endpoint.

Every call is `POST /v1` with a JSON *array* of tasks (`Authorization: Bearer <key>`), answered with
`{"data": [...], "errors": [...]}`:

- submit: one inference task (`imageInference`, `videoInference`, `audioInference`, ...) with
  `deliveryMethod: "async"`, `includeCost: true` and `taskUUID` derived from the execution id (Runware's
  correlation id: the same execution always sends the same taskUUID);
- poll: a `{"taskType": "getResponse", "taskUUID": ...}` task. Each generation of the task (a batch
  has `numberResults` of them) is reported with its own status: `processing` and `success` items in
  `data` (a success carries `imageURL`/`videoURL`/`audioURL` and `cost`), failed ones in `errors`.
  Finished generations are outputs at once (partial results of a batch).

Runware documents no cancel: a cancel is refused.

Callbacks: with a callback URL, the task carries it as `webhookURL`; Runware posts each finished
generation's response there (https://runware.ai/docs/platform/webhooks). Runware does not sign webhooks:
its guide says to authenticate them with a token in the URL, which the callback URL carries. Here the
body's `taskUUID`s (top level, or in `data`/`errors` items) must be this task's.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

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
from asyncgate.providers.callback_checks import check_job
from asyncgate.providers.http import MESSAGE_LIMIT, Malformed, ProviderHttp
from asyncgate.providers.outputs import output as output_for

PROVIDER = "runware"
TASKS_PATH = "/v1"
DEFAULT_TASK_TYPE = "imageInference"
# The job's reference is "<taskUUID>::<numberResults>": a poll needs both to tell a finished batch (the
# execution's providerRequestId is the taskUUID alone).
ID_SEPARATOR = "::"

# Each generation's status (runware.ai/docs/utilities/task-responses), the only place it is translated.
# The current page lists processing/success/error; an earlier version of the same page named the
# in-progress status "pending", so both are accepted.
STATES: dict[str, ProviderState] = {
    "pending": ProviderState.PENDING,
    "processing": ProviderState.RUNNING,
    "success": ProviderState.SUCCEEDED,
    "error": ProviderState.FAILED,
}
DOCUMENTED_STATUSES = ("processing", "success", "error", "pending")

# Where a finished generation's file is, by task type (imageURL: imageInference and the image tools;
# videoURL: videoInference; audioURL: audioInference).
OUTPUT_URL_FIELDS = ("imageURL", "videoURL", "audioURL")

NOT_CANCELLABLE = "runware has no cancel API: a task runs to its end"


def task_uuid_for(execution_id: str) -> str:
    """Runware wants a UUID v4 per task. An execution id that is a UUID is used as it is; any other id
    is hashed into a stable UUID with the v4 layout, so the same execution always sends the same one."""
    try:
        return str(uuid.UUID(execution_id))
    except ValueError:
        digest = hashlib.sha256(execution_id.encode("utf-8")).digest()[:16]
        return str(uuid.UUID(bytes=digest, version=4))


def split_model(provider_model: str, input: dict[str, Any]) -> tuple[str, str]:
    """(taskType, model AIR id). `provider_model` may be `<taskType>/<AIR>` (e.g.
    `videoInference/klingai:5@3`; AIR ids never contain "/"); else the input's `taskType`, else
    imageInference."""
    task_type, slash, model = provider_model.partition("/")
    if slash and task_type and model:
        return task_type, model
    chosen = input.get("taskType")
    return (chosen if isinstance(chosen, str) and chosen else DEFAULT_TASK_TYPE), provider_model


class RunwareProvider:
    name = "runware"
    accepts_callbacks = True

    def __init__(self, api_key: str, base_url: str, session: requests.Session | None = None) -> None:
        self._http = ProviderHttp(PROVIDER, base_url, {"Authorization": f"Bearer {api_key}"}, session=session)

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,
    ) -> ProviderJob:
        task_type, model = split_model(provider_model, input)
        task_uuid = task_uuid_for(execution_id)
        number_results = input.get("numberResults", 1)
        if isinstance(number_results, bool) or not isinstance(number_results, int) or number_results < 1:
            raise ProviderRejected(f"{PROVIDER}: numberResults must be a positive integer")
        # The user's fields first; the adapter's own (correlation, delivery, model) cannot be overridden.
        task = {
            **{key: value for key, value in input.items() if key != "taskType"},
            "taskType": task_type,
            "taskUUID": task_uuid,
            "model": model,
            "deliveryMethod": "async",
            "includeCost": True,
        }
        if callback_url is not None:
            task["webhookURL"] = callback_url
        response = self._http.request("POST", TASKS_PATH, json=[task])
        data, errors = self._http.parsed(response, "submit", lambda body: _ours(body, task_uuid))
        if errors and not data:
            raise ProviderRejected(
                f"{PROVIDER} refused the task: {_error_message(errors[0])}",
                status=response.status_code,
                body=response.text,
            )
        if not data:
            raise self._http.malformed(response, "submit")
        return ProviderJob(
            provider_request_id=task_uuid, reference=f"{task_uuid}{ID_SEPARATOR}{number_results}"
        )

    def verify_callback(self, request: CallbackRequest, *, job_ref: str, now: datetime) -> None:
        """Runware does not sign: only that every task the body names is this one."""
        try:
            body = json.loads(request.body)
        except ValueError:
            raise CallbackRejected(f"{PROVIDER} callback body is not JSON") from None
        task_uuid = job_ref.partition(ID_SEPARATOR)[0]
        for named in _callback_task_uuids(body):
            check_job(named, task_uuid, PROVIDER)

    def poll(self, job_ref: str) -> PollResult:
        task_uuid, _, count = job_ref.partition(ID_SEPARATOR)
        expected = int(count) if count.isdigit() and int(count) > 0 else 1
        response = self._http.request(
            "POST", TASKS_PATH, json=[{"taskType": "getResponse", "taskUUID": task_uuid}]
        )
        return self._http.parsed(response, "poll", lambda body: _poll_result(body, task_uuid, expected))

    def cancel(self, job_ref: str) -> None:
        raise ProviderRejected(NOT_CANCELLABLE)


def build(api_key: str, base_url: str) -> RunwareProvider:
    return RunwareProvider(api_key, base_url)


def _callback_task_uuids(body: Any) -> list[Any]:
    """The taskUUIDs a webhook body names: a task response (`{"data": [...], "errors": [...]}`), one
    result item, or a list of them. A body that is none of these is refused."""
    if isinstance(body, list):
        items = body
    elif isinstance(body, dict):
        data, errors = body.get("data") or [], body.get("errors") or []
        if not isinstance(data, list) or not isinstance(errors, list):
            raise CallbackRejected(f"{PROVIDER} callback data/errors are not lists")
        items = [body, *data, *errors]
    else:
        raise CallbackRejected(f"{PROVIDER} callback body is not a task response")
    if not all(isinstance(item, dict) for item in items):
        raise CallbackRejected(f"{PROVIDER} callback items are not objects")
    return [item["taskUUID"] for item in items if "taskUUID" in item]


def _ours(body: dict[str, Any], task_uuid: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """This task's items in `data` and in `errors` (an error without a taskUUID is about the whole
    request, which only ever holds this task). Either key may be absent."""
    data = body.get("data") or []
    errors = body.get("errors") or []
    if not isinstance(data, list) or not isinstance(errors, list):
        raise Malformed("data/errors are not lists")
    if not all(isinstance(item, dict) for item in [*data, *errors]):
        raise Malformed("data/errors items are not objects")
    return (
        [item for item in data if item.get("taskUUID") == task_uuid],
        [item for item in errors if item.get("taskUUID") in (None, task_uuid)],
    )


def _poll_result(body: dict[str, Any], task_uuid: str, expected: int) -> PollResult:
    items, errors = _ours(body, task_uuid)
    states = [_state(item) for item in items]
    done = [item for item, state in zip(items, states, strict=True) if state is ProviderState.SUCCEEDED]
    failed = len(errors) + states.count(ProviderState.FAILED)
    outputs = [output for item in done if (output := _output(item)) is not None]
    total = max(expected, len(items) + len(errors))
    finished = len(done) + failed
    common: dict[str, Any] = {"outputs": outputs, "raw": body}
    if finished and finished >= total:
        if done:
            # A batch where some generations failed still succeeds with the files it has (the failures
            # stay in raw); a "success" without its file is a promise broken.
            return PollResult(state=ProviderState.SUCCEEDED, incomplete=len(outputs) < len(done), **common)
        first_error = (
            errors[0]
            if errors
            else next(
                item for item, state in zip(items, states, strict=True) if state is ProviderState.FAILED
            )
        )
        return PollResult(state=ProviderState.FAILED, error_message=_error_message(first_error), **common)
    if finished or ProviderState.RUNNING in states:
        # Progress is the batch's share of finished generations (Runware reports none per generation).
        progress = 100.0 * finished / total if total > 1 else None
        return PollResult(state=ProviderState.RUNNING, progress=progress, **common)
    # Nothing reported yet (just queued) or only pending generations.
    return PollResult(state=ProviderState.PENDING, **common)


def _state(item: dict[str, Any]) -> ProviderState:
    status = item.get("status")
    if status is None:
        # A finished item as a synchronous answer shows it (no status, its file URL): a success.
        return ProviderState.SUCCEEDED if _output(item) is not None else ProviderState.RUNNING
    state = STATES.get(status) if isinstance(status, str) else None
    if state is None:
        raise Malformed(f"unknown status {status!r}")
    return state


def _output(item: dict[str, Any]) -> Output | None:
    for field in OUTPUT_URL_FIELDS:
        url = item.get(field)
        if isinstance(url, str) and url:
            return output_for(url)
    return None


def _error_message(error: dict[str, Any]) -> str:
    message = error.get("message")
    code = error.get("code")
    text = message if isinstance(message, str) and message else "generation failed"
    if isinstance(code, str) and code:
        text = f"{code}: {text}"
    return text[:MESSAGE_LIMIT]
