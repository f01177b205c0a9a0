"""The simulated provider's adapter: the provider port over the sim's HTTP API (documented in
`asyncgate_dev.simprovider`).

Callbacks: with a callback URL, the submit body carries it as `callbackUrl`, and the sim posts
`{"id", "status"}` there when the job ends. The sim does not sign: the body's `id` must be this job's, and
the callback URL's own token is the proof.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

from asyncgate.providers.base import (
    CallbackRequest,
    Output,
    PollResult,
    ProviderJob,
    ProviderRejected,
    ProviderState,
)
from asyncgate.providers.callback_checks import check_job, json_object
from asyncgate.providers.http import ProviderHttp

PROVIDER = "simulated provider"
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


class SimProvider:
    name = "sim"
    accepts_callbacks = True

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self._http = ProviderHttp(PROVIDER, base_url, {}, session=session, timeout=TIMEOUT)

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,
    ) -> ProviderJob:
        body: dict[str, Any] = {"model": provider_model, "input": input, "reference": execution_id}
        if callback_url is not None:
            body["callbackUrl"] = callback_url
        response = self._call("POST", "/v1/jobs", body)
        if not 200 <= response.status_code < 300:
            # Any refusal of a submit is final: a retried submit could start a second job.
            raise ProviderRejected(
                f"simulated provider refused the submit: HTTP {response.status_code}",
                status=response.status_code,
                body=response.text,
            )
        job_id = self._http.json(response, "submit").get("id")
        if not isinstance(job_id, str) or not job_id:
            raise self._http.malformed(response, "submit")
        return ProviderJob(provider_request_id=job_id)

    def verify_callback(self, request: CallbackRequest, *, job_ref: str, now: datetime) -> None:
        check_job(json_object(request, PROVIDER).get("id"), job_ref, PROVIDER)

    def poll(self, job_ref: str) -> PollResult:
        response = self._call("GET", f"/v1/jobs/{quote(job_ref, safe='')}")
        return self._http.parsed(response, "poll", _poll_result)

    def cancel(self, job_ref: str) -> None:
        response = self._call("POST", f"/v1/jobs/{quote(job_ref, safe='')}/cancel")
        self._http.checked(response, "cancel")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        if not self._http.base_url:
            raise ProviderRejected(NOT_CONFIGURED)
        return self._http.request(method, path, json=body)


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
