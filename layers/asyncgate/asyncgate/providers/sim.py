"""The simulated provider's adapter: the provider port over the sim's HTTP API (documented in
`asyncgate_dev.simprovider`)."""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from asyncgate.providers.base import (
    Output,
    PollResult,
    ProviderJob,
    ProviderRejected,
    ProviderState,
    ProviderUnavailable,
)

# (connect, read): a little over a TCP retransmit window to connect; the sim answers at once.
TIMEOUT = (3.05, 10.0)
NOT_CONFIGURED = "simulated provider not configured: set SimProviderUrl"

# The sim's status vocabulary, the only place it is translated.
STATES: dict[str, ProviderState] = {
    "running": ProviderState.RUNNING,
    "succeeded": ProviderState.SUCCEEDED,
    "failed": ProviderState.FAILED,
    "cancelled": ProviderState.CANCELLED,
}


@cache
def _default_session() -> requests.Session:
    """One connection pool per container, reused across invocations."""
    session = requests.Session()
    # No transport retries: a re-sent submit could start (and bill) a second job, and the workflow's
    # poll error budget already decides when to try again.
    adapter = HTTPAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class SimProvider:
    name = "sim"

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._session = session or _default_session()

    def submit(self, *, execution_id: str, provider_model: str, input: dict[str, Any]) -> ProviderJob:
        response = self._call(
            "POST", "/v1/jobs", {"model": provider_model, "input": input, "reference": execution_id}
        )
        if not 200 <= response.status_code < 300:
            raise ProviderRejected(
                f"simulated provider refused the submit: HTTP {response.status_code}",
                status=response.status_code,
                body=response.text,
            )
        try:
            job_id = response.json()["id"]
        except (ValueError, KeyError, TypeError) as error:
            raise _malformed(response, "submit") from error
        if not isinstance(job_id, str) or not job_id:
            raise _malformed(response, "submit")
        return ProviderJob(provider_request_id=job_id)

    def poll(self, provider_request_id: str) -> PollResult:
        response = self._call("GET", f"/v1/jobs/{quote(provider_request_id, safe='')}")
        _raise_for_status(response, "poll")
        try:
            return _poll_result(response.json())
        except (ValueError, KeyError, TypeError) as error:
            raise _malformed(response, "poll") from error

    def cancel(self, provider_request_id: str) -> None:
        response = self._call("POST", f"/v1/jobs/{quote(provider_request_id, safe='')}/cancel")
        _raise_for_status(response, "cancel")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        if not self._base_url:
            raise ProviderRejected(NOT_CONFIGURED)
        try:
            # No redirects: requests would turn a redirected POST into a GET.
            return self._session.request(
                method, self._base_url + path, json=body, timeout=TIMEOUT, allow_redirects=False
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as error:
            raise ProviderUnavailable(f"simulated provider unreachable: {error}") from error
        except requests.RequestException as error:
            # An invalid URL and the like: a configuration fault that no retry would mend.
            raise ProviderRejected(f"simulated provider request failed: {error}") from error


def _raise_for_status(response: requests.Response, call: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"simulated provider answered HTTP {status} to {call}"
    if status >= 500 or status == 429:
        raise ProviderUnavailable(message, status=status, body=response.text)
    raise ProviderRejected(message, status=status, body=response.text)


def _poll_result(body: dict[str, Any]) -> PollResult:
    """Raises KeyError, TypeError or ValueError (pydantic's too) when the body is not a sim job."""
    state = STATES[body["status"]]
    outputs = [Output(url=item["url"], content_type=item.get("contentType")) for item in body["outputs"]]
    error = body.get("error")
    return PollResult(
        state=state,
        progress=body.get("progress"),
        outputs=outputs,
        raw=body,
        error_message=error.get("message") if isinstance(error, dict) else None,
        # The sim always promises at least one output; "succeeded" without any means it lost them.
        incomplete=state is ProviderState.SUCCEEDED and not outputs,
    )


def _malformed(response: requests.Response, call: str) -> ProviderRejected:
    return ProviderRejected(
        f"simulated provider answered {call} with an unexpected body",
        status=response.status_code,
        body=response.text,
    )
