"""A provider described by data: request templates and paths into the provider's answers, no code.

A `DeclarativeSpec` (JSON, camelCase; see docs/providers.md) says how to submit, poll and
cancel, where the job id, status, progress, queue position, outputs and error message sit in the answers,
and how the provider's status values map onto asyncgate's. `build_declarative(spec, api_key, base_url)`
turns it into a provider port like any hand-written adapter, on the same HTTP helper.

Substitution is deliberately small and whole-value only, never string formatting:

- in a JSON template (`body`, `query`), a string that is exactly `$input`, `$model`, `$executionId`
  (submit) or `$id` (poll, cancel) is replaced by that value, of whatever JSON type; `$$...` is a literal
  string starting with `$`; the key `$merge` folds an object (e.g. `"$merge": "$input"`) into the object
  holding it, the template's own keys winning;
- in a path, a whole segment `{model}` (submit) or `{id}` (poll, cancel) is replaced URL-encoded;
- in a header value, `{apiKey}` is replaced by the API key (headers only: the key never goes into a URL
  or body that an error message could echo).

Paths into answers are dotted (`data.task.id`); a numeric segment indexes a list (`data.0.url`), and the
segment `$json` parses a string holding JSON (`data.resultJson.$json.urls`). Unknown placeholders are
refused when the spec loads, so a typo fails the deployment rather than a request.

No callbacks: a spec has no way to say where a callback URL goes or how the provider signs, so a
declarative provider's jobs are followed by polling alone.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

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
from asyncgate.providers.outputs import output as output_for

MERGE = "$merge"
JSON_SEGMENT = "$json"
API_KEY = "{apiKey}"
SUBMIT_VALUES = frozenset({"input", "model", "executionId"})
# A path segment is filled from a short identifier only: the model in a submit's path, the job's id in
# the others (the input and the execution id go in bodies and queries).
SUBMIT_PATH_VALUES = frozenset({"model"})
JOB_VALUES = frozenset({"id"})
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class _Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


def _check_template(template: Any, names: frozenset[str], where: str) -> None:
    """Refuse a JSON template naming a value this request does not have."""
    if isinstance(template, str):
        if template.startswith("$") and not template.startswith("$$") and template[1:] not in names:
            raise ValueError(
                f"{where}: unknown placeholder {template!r} (known: ${', $'.join(sorted(names))})"
            )
    elif isinstance(template, list):
        for item in template:
            _check_template(item, names, where)
    elif isinstance(template, dict):
        for key, value in template.items():
            if key == MERGE and not (isinstance(value, str) and value.startswith("$")):
                raise ValueError(f'{where}: {MERGE} takes a placeholder, e.g. "$input"')
            _check_template(value, names, where)


def _check_path_template(path: str, names: frozenset[str], where: str) -> None:
    if not path.startswith("/") or "?" in path or "#" in path:
        raise ValueError(f"{where}: the path must start with / and carry no query (use `query`)")
    for segment in path.split("/"):
        found = _PLACEHOLDER.findall(segment)
        if not found and "{" not in segment and "}" not in segment:
            continue
        if len(found) != 1 or segment != "{" + found[0] + "}" or found[0] not in names:
            raise ValueError(
                f"{where}: a placeholder must be a whole path segment, one of "
                + ", ".join("{" + name + "}" for name in sorted(names))
            )


def _check_headers(headers: dict[str, str], where: str) -> None:
    for name, value in headers.items():
        rest = value.replace(API_KEY, "")
        if "{" in rest or "}" in rest:
            raise ValueError(f"{where}: header {name!r} may only use the placeholder {API_KEY}")


def _check_answer_path(path: str | None, where: str) -> None:
    if path is not None and (not path or any(not segment for segment in path.split("."))):
        raise ValueError(f"{where}: {path!r} is not a dotted path")


class RequestSpec(_Spec):
    """One HTTP request: method, path under the base URL, query, extra headers and a JSON body."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    query: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None

    def check(self, names: frozenset[str], where: str, path_names: frozenset[str] | None = None) -> None:
        _check_path_template(self.path, names if path_names is None else path_names, where)
        _check_template(self.query, names, where)
        _check_template(self.body, names, where)
        _check_headers(self.headers, where)


class SubmitSpec(RequestSpec):
    # Where the job's id sits in the submit answer (a string or a number).
    id_path: str


class OutputsSpec(_Spec):
    # Where the outputs sit: a URL, a list of URLs, or a list of objects.
    path: str
    # In each object: where its URL and content type sit.
    url_path: str | None = None
    content_type_path: str | None = None
    # When neither the provider nor the URL's extension tells the content type.
    content_type: str | None = None


class PollSpec(RequestSpec):
    status_path: str
    # The provider's status values (non-string values by their JSON text: 1 → "1", true → "true").
    states: dict[str, ProviderState] = Field(min_length=1)
    progress_path: str | None = None
    # Multiplies the provider's progress into 0-100 (100 when it reports a 0-1 fraction).
    progress_scale: float = Field(default=1.0, gt=0)
    queue_position_path: str | None = None
    outputs: OutputsSpec | None = None
    error_message_path: str | None = None
    # Whether a succeeded job must have at least one output (else it is "done but no output").
    expect_outputs: bool = True


class DeclarativeSpec(_Spec):
    """A provider's HTTP API, described."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    # For the deployment's wiring (where the key and base URL come from); the adapter is given both.
    key_variable: str | None = None
    default_url: str | None = None
    # Sent with every request (auth goes here: "Authorization": "Bearer {apiKey}").
    headers: dict[str, str] = Field(default_factory=dict)
    submit: SubmitSpec
    poll: PollSpec
    # None: the provider cannot cancel a job (cancel raises ProviderRejected).
    cancel: RequestSpec | None = None

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        _check_headers(headers, "headers")
        return headers

    @model_validator(mode="after")
    def _templates(self) -> DeclarativeSpec:
        self.submit.check(SUBMIT_VALUES, "submit", SUBMIT_PATH_VALUES)
        self.poll.check(JOB_VALUES, "poll")
        if self.cancel is not None:
            self.cancel.check(JOB_VALUES, "cancel")
        _check_answer_path(self.submit.id_path, "submit.idPath")
        for field in ("status_path", "progress_path", "queue_position_path", "error_message_path"):
            _check_answer_path(getattr(self.poll, field), f"poll.{to_camel(field)}")
        if self.poll.outputs is not None:
            for field in ("path", "url_path", "content_type_path"):
                _check_answer_path(getattr(self.poll.outputs, field), f"poll.outputs.{to_camel(field)}")
        if self.needs_key and self.key_variable is None:
            raise ValueError(f"headers use {API_KEY}: name the variable that holds it in keyVariable")
        return self

    @property
    def needs_key(self) -> bool:
        calls = [self.submit, self.poll, *([self.cancel] if self.cancel else [])]
        headers = [self.headers, *(call.headers for call in calls)]
        return any(API_KEY in value for group in headers for value in group.values())


def load_spec(path: Path) -> DeclarativeSpec:
    return DeclarativeSpec.model_validate_json(path.read_text(encoding="utf-8"))


def build_declarative(
    spec: DeclarativeSpec, api_key: str | None, base_url: str, session: requests.Session | None = None
) -> DeclarativeProvider:
    """The provider port for a spec. ValueError when the spec needs a key and none is given, or when
    there is no base URL (neither given nor the spec's default)."""
    if spec.needs_key and not api_key:
        variable = spec.key_variable or "its API key"
        raise ValueError(f"provider {spec.name!r} is not configured: set {variable}")
    url = base_url or spec.default_url
    if not url:
        raise ValueError(f"provider {spec.name!r} has no base URL")
    return DeclarativeProvider(spec, api_key or "", url, session=session)


class DeclarativeProvider:
    accepts_callbacks = False

    def __init__(
        self, spec: DeclarativeSpec, api_key: str, base_url: str, session: requests.Session | None = None
    ) -> None:
        self.name = spec.name
        self._spec = spec
        self._key = api_key
        self._http = ProviderHttp(spec.name, base_url, _headers(spec.headers, api_key), session=session)

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,  # never given: accepts_callbacks is False
    ) -> ProviderJob:
        values = {"input": input, "model": provider_model, "executionId": execution_id}
        submit = self._spec.submit
        segments = {"model": _model_segment(provider_model)} if "{model}" in submit.path else {}
        response = self._send(submit, values, segments)
        body = self._http.json(response, "submit")
        job_id = lookup(body, submit.id_path)
        if isinstance(job_id, bool) or not isinstance(job_id, str | int) or job_id == "":
            raise self._http.malformed(response, "submit")
        return ProviderJob(provider_request_id=str(job_id))

    def verify_callback(self, request: CallbackRequest, *, job_ref: str, now: datetime) -> None:
        raise CallbackRejected(f"{self.name} does not take callbacks")

    def poll(self, job_ref: str) -> PollResult:
        response = self._send_for_job(self._spec.poll, job_ref)
        return self._http.parsed(response, "poll", lambda body: poll_result(self._spec.poll, body))

    def cancel(self, job_ref: str) -> None:
        if self._spec.cancel is None:
            raise ProviderRejected(f"{self.name} cannot cancel a job")
        response = self._send_for_job(self._spec.cancel, job_ref)
        self._http.checked(response, "cancel")

    def _send_for_job(self, request: RequestSpec, job_id: str) -> requests.Response:
        return self._send(request, {"id": job_id}, {"id": quote(job_id, safe="")})

    def _send(
        self, request: RequestSpec, values: dict[str, Any], segments: dict[str, str]
    ) -> requests.Response:
        path = "/".join(
            segments[segment[1:-1]] if _PLACEHOLDER.fullmatch(segment) else segment
            for segment in request.path.split("/")
        )
        query = {name: _query_value(render(value, values)) for name, value in request.query.items()}
        body = render(request.body, values) if request.body is not None else None
        return self._http.request(
            request.method,
            path,
            json=body,
            params=query or None,
            headers=_headers(request.headers, self._key),
        )


def _headers(headers: dict[str, str], api_key: str) -> dict[str, str]:
    return {name: value.replace(API_KEY, api_key) for name, value in headers.items()}


def _model_segment(model: str) -> str:
    """A model id as path segments (`owner/name` stays two segments); refuses dot segments, which would
    climb out of the templated path."""
    segments = model.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ProviderRejected(f"model id {model!r} cannot be used in a path")
    return "/".join(quote(segment, safe="") for segment in segments)


def _query_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, dict | list):
        raise ProviderRejected("a query parameter must be a string, number or boolean")
    return json.dumps(value)


def render(template: Any, values: dict[str, Any]) -> Any:
    """A JSON template with its whole-value placeholders replaced (see the module's docstring)."""
    if isinstance(template, str):
        if template.startswith("$$"):
            return template[1:]
        if template.startswith("$"):
            return values[template[1:]]
        return template
    if isinstance(template, list):
        return [render(item, values) for item in template]
    if isinstance(template, dict):
        rendered: dict[str, Any] = {}
        if MERGE in template:
            merged = render(template[MERGE], values)
            if not isinstance(merged, dict):
                raise ProviderRejected(f"{template[MERGE]} is not an object: it cannot be merged")
            rendered.update(merged)
        rendered.update({key: render(value, values) for key, value in template.items() if key != MERGE})
        return rendered
    return template


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path, or None where the path leads nowhere."""
    current = document
    for segment in path.split("."):
        if segment == JSON_SEGMENT:
            # A string holding JSON is parsed; a value the provider already sent as JSON is kept.
            if isinstance(current, str):
                try:
                    current = json.loads(current)
                except ValueError:
                    return None
        elif isinstance(current, dict):
            current = current.get(segment)
        elif isinstance(current, list) and segment.isdigit():
            index = int(segment)
            current = current[index] if index < len(current) else None
        else:
            return None
        if current is None:
            return None
    return current


def poll_result(spec: PollSpec, body: dict[str, Any]) -> PollResult:
    """Raises KeyError, TypeError or ValueError (pydantic's too) when the body does not fit the spec."""
    state = spec.states[_status_key(lookup(body, spec.status_path))]
    outputs = _outputs(spec.outputs, body) if spec.outputs is not None else []
    return PollResult(
        state=state,
        progress=_progress(spec, body),
        queue_position=_queue_position(spec, body) if state is ProviderState.PENDING else None,
        outputs=outputs,
        raw=body,
        error_message=_error_message(spec, body),
        incomplete=state is ProviderState.SUCCEEDED and spec.expect_outputs and not outputs,
    )


def _status_key(status: Any) -> str:
    if isinstance(status, str):
        return status
    if isinstance(status, bool | int | float):
        return json.dumps(status)
    raise TypeError("no status in the answer")


def _number(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise TypeError(f"{value!r} is not a number")
    return value


def _queue_position(spec: PollSpec, body: dict[str, Any]) -> int | None:
    """Advisory, like progress: anything but a whole number from 0 up is no position, not a failure."""
    if spec.queue_position_path is None:
        return None
    value = lookup(body, spec.queue_position_path)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _progress(spec: PollSpec, body: dict[str, Any]) -> float | None:
    if spec.progress_path is None:
        return None
    value = _number(lookup(body, spec.progress_path))
    if value is None:
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too big for a float is no progress either
        return None
    if not math.isfinite(number):
        return None
    # Progress is advisory: a provider's 100.4% or -1 is clamped, not a reason to fail the poll.
    return float(min(max(number * spec.progress_scale, 0.0), 100.0))


def _outputs(spec: OutputsSpec, body: dict[str, Any]) -> list[Output]:
    found = lookup(body, spec.path)
    items = [] if found is None else found if isinstance(found, list) else [found]
    outputs = []
    for item in items:
        if isinstance(item, str):
            url, content_type = item, None
        elif isinstance(item, dict) and spec.url_path is not None:
            url = lookup(item, spec.url_path)
            content_type = lookup(item, spec.content_type_path) if spec.content_type_path else None
        else:
            raise TypeError("an output is neither a URL nor an object with a urlPath")
        if not isinstance(url, str) or not url:
            raise TypeError("an output has no URL")
        if content_type is not None and not isinstance(content_type, str):
            raise TypeError("an output's content type is not a string")
        found = output_for(url, content_type)
        outputs.append(found if found.content_type else Output(url=url, content_type=spec.content_type))
    return outputs


def _error_message(spec: PollSpec, body: dict[str, Any]) -> str | None:
    if spec.error_message_path is None:
        return None
    message = lookup(body, spec.error_message_path)
    if message is None or message == "":
        return None
    return message if isinstance(message, str) else json.dumps(message)
