"""The sim adapter's callbacks: the callback URL it passes at submit, and its check of what the sim posts
(its submit, poll and cancel run against the real simulated provider in tests/unit/test_sim_provider.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from asyncgate.providers.base import CallbackRejected, CallbackRequest
from asyncgate.providers.sim import SimProvider
from tests.fakes import Answer, FakeApi

NOW = datetime(2026, 5, 2, 10, 0, tzinfo=UTC)
CALLBACK_URL = "http://127.0.0.1:3000/v1/callbacks/sim/exec-1?token=t0k3n"
JOB = "sim_0123456789abcdef01234567"


@pytest.fixture
def provider(api: FakeApi) -> Iterator[SimProvider]:
    api.on(
        "POST",
        "/v1/jobs",
        Answer(201, {"id": JOB, "status": "running", "createdAt": "2026-05-02T10:00:00.000Z"}),
    )
    with requests.Session() as session:
        yield SimProvider(api.url, session=session)


def test_submit_passes_the_callback_url(api: FakeApi, provider: SimProvider) -> None:
    provider.submit(
        execution_id="exec-1",
        provider_model="sim-video",
        input={"prompt": "a cat"},
        callback_url=CALLBACK_URL,
    )
    assert api.seen[0].body == {
        "model": "sim-video",
        "input": {"prompt": "a cat"},
        "reference": "exec-1",
        "callbackUrl": CALLBACK_URL,
    }
    assert provider.accepts_callbacks


def test_submit_without_a_callback_url_sends_none(api: FakeApi, provider: SimProvider) -> None:
    provider.submit(execution_id="exec-1", provider_model="sim-video", input={"prompt": "a cat"})
    assert api.seen[0].body == {"model": "sim-video", "input": {"prompt": "a cat"}, "reference": "exec-1"}


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_callback_about_the_job_is_accepted(provider: SimProvider, status: str) -> None:
    body = json.dumps({"id": JOB, "status": status}).encode()
    provider.verify_callback(CallbackRequest(body=body), job_ref=JOB, now=NOW)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"id": "sim_another", "status": "succeeded"}', id="another-job"),
        pytest.param(b'{"status": "succeeded"}', id="no-job"),
        pytest.param(b"succeeded", id="malformed-body"),
        pytest.param(f'["{JOB}"]'.encode(), id="not-an-object"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_foreign_or_malformed_callback_is_rejected(provider: SimProvider, body: bytes) -> None:
    with pytest.raises(CallbackRejected):
        provider.verify_callback(CallbackRequest(body=body), job_ref=JOB, now=NOW)
