"""The sim adapter against the simulated provider, over real loopback HTTP."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from asyncgate.providers.base import ProviderRejected, ProviderState, ProviderUnavailable
from asyncgate.providers.sim import NOT_CONFIGURED, SimProvider
from asyncgate_dev.simprovider import SimProviderServer
from tests.fakes import poll_until

TERMINAL = {ProviderState.SUCCEEDED, ProviderState.FAILED, ProviderState.CANCELLED}


@pytest.fixture(scope="module")
def server() -> Iterator[SimProviderServer]:
    with SimProviderServer() as running:
        yield running


@pytest.fixture
def provider(server: SimProviderServer) -> Iterator[SimProvider]:
    with requests.Session() as session:
        yield SimProvider(server.url, session=session)


def submit(provider: SimProvider, execution_id: str = "exec-1", **sim: Any) -> str:
    return provider.submit(
        execution_id=execution_id, provider_model="sim-video", input={"prompt": "a cat", "sim": sim}
    ).provider_request_id


def test_submit_runs_and_progress_grows(provider: SimProvider, server: SimProviderServer) -> None:
    jobs_before = server.job_count
    job_id = submit(provider, execution_id="exec-progress", durationSeconds=1.0)
    assert job_id.startswith("sim_")
    assert server.job_count == jobs_before + 1

    first = provider.poll(job_id)
    assert first.state is ProviderState.RUNNING
    assert first.progress is not None
    assert 0.0 <= first.progress < 100.0
    assert first.outputs == []
    assert first.raw["reference"] == "exec-progress", "the execution id travels as the reference"
    assert first.raw["createdAt"].endswith("Z")
    assert first.raw["completedAt"] is None

    later = poll_until(provider, job_id, lambda p: (p.progress or 0.0) > (first.progress or 0.0))
    assert later.state is ProviderState.RUNNING
    assert server.poll_count(job_id) >= 2


def test_outputs_finish_one_by_one(provider: SimProvider, server: SimProviderServer) -> None:
    job_id = submit(provider, durationSeconds=1.2, outputs=3)

    partial = poll_until(provider, job_id, lambda p: bool(p.outputs) or p.state in TERMINAL)
    assert partial.state is ProviderState.RUNNING
    assert 1 <= len(partial.outputs) < 3
    assert 0.0 < (partial.progress or 0.0) < 100.0
    not_ready = requests.get(f"{server.url}/v1/jobs/{job_id}/outputs/3", timeout=5)
    assert not_ready.status_code == 404

    done = poll_until(provider, job_id, lambda p: p.state in TERMINAL)
    assert done.state is ProviderState.SUCCEEDED
    assert done.progress == 100.0
    assert not done.incomplete
    assert [output.content_type for output in done.outputs] == ["video/mp4"] * 3
    assert all(output.url.startswith(f"{server.url}/v1/jobs/{job_id}/outputs/") for output in done.outputs)
    assert done.raw["completedAt"].endswith("Z")
    fetched = requests.get(done.outputs[2].url, timeout=5)
    assert fetched.status_code == 200
    assert fetched.headers["Content-Type"] == "video/mp4"
    assert fetched.content


def test_failing_job_ends_failed_with_its_message(provider: SimProvider) -> None:
    job_id = submit(provider, durationSeconds=0.2, outcome="fail")
    done = poll_until(provider, job_id, lambda p: p.state in TERMINAL)
    assert done.state is ProviderState.FAILED
    assert done.error_message
    assert done.error_message == done.raw["error"]["message"]
    assert done.outputs == []


def test_incomplete_job_succeeds_without_outputs(provider: SimProvider) -> None:
    job_id = submit(provider, durationSeconds=0.2, outcome="incomplete", outputs=2)
    done = poll_until(provider, job_id, lambda p: p.state in TERMINAL)
    assert done.state is ProviderState.SUCCEEDED
    assert done.outputs == []
    assert done.incomplete


def test_submit_status_is_rejected_with_status_and_body(
    provider: SimProvider, server: SimProviderServer
) -> None:
    jobs_before = server.job_count
    with pytest.raises(ProviderRejected) as rejected:
        submit(provider, submitStatus=422)
    assert rejected.value.status == 422
    assert rejected.value.body is not None
    assert '"error"' in rejected.value.body
    assert server.job_count == jobs_before, "a refused submit creates no job"


def test_poll_errors_are_unavailable_then_the_job_answers(
    provider: SimProvider, server: SimProviderServer
) -> None:
    job_id = submit(provider, durationSeconds=1.0, pollErrors=2)
    for _ in range(2):
        with pytest.raises(ProviderUnavailable) as unavailable:
            provider.poll(job_id)
        assert unavailable.value.status == 503
        assert unavailable.value.body is not None
        assert "temporarily unavailable" in unavailable.value.body
    assert provider.poll(job_id).state is ProviderState.RUNNING
    assert server.poll_count(job_id) == 3


def test_cancel_midway_stops_the_job_and_keeps_finished_outputs(
    provider: SimProvider, server: SimProviderServer
) -> None:
    job_id = submit(provider, durationSeconds=0.6, outputs=2)
    poll_until(provider, job_id, lambda p: bool(p.outputs))
    provider.cancel(job_id)

    cancelled = provider.poll(job_id)
    assert cancelled.state is ProviderState.CANCELLED
    assert len(cancelled.outputs) == 1
    assert (cancelled.progress or 0.0) < 100.0
    assert cancelled.raw["completedAt"].endswith("Z")
    time.sleep(0.4)  # past the job's own end: a cancelled job stays as it was stopped
    assert provider.poll(job_id).outputs == cancelled.outputs
    assert server.job_status(job_id) == "cancelled"


def test_cancel_after_finish_changes_nothing(provider: SimProvider) -> None:
    job_id = submit(provider, durationSeconds=0.2)
    done = poll_until(provider, job_id, lambda p: p.state in TERMINAL)
    assert done.state is ProviderState.SUCCEEDED

    provider.cancel(job_id)
    after = provider.poll(job_id)
    assert after.state is ProviderState.SUCCEEDED
    assert after.outputs == done.outputs
    assert after.raw["completedAt"] == done.raw["completedAt"]


def test_unknown_job_is_rejected_404(provider: SimProvider) -> None:
    with pytest.raises(ProviderRejected) as polled:
        provider.poll("sim_doesnotexist")
    with pytest.raises(ProviderRejected) as cancelled:
        provider.cancel("sim_doesnotexist")
    assert polled.value.status == cancelled.value.status == 404


@pytest.mark.parametrize(
    ("sim", "mentions"),
    [
        ({"outcome": "explode"}, "outcome"),
        ({"durationSeconds": 0}, "durationSeconds"),
        ({"durationSeconds": "3"}, "durationSeconds"),
        ({"outputs": 17}, "outputs"),
        ({"pollErrors": -1}, "pollErrors"),
        ({"submitStatus": 200}, "submitStatus"),
        ({"duration": 3}, "unknown input.sim fields: duration"),
    ],
)
def test_bad_sim_input_is_rejected_400(
    provider: SimProvider, server: SimProviderServer, sim: dict[str, Any], mentions: str
) -> None:
    jobs_before = server.job_count
    with pytest.raises(ProviderRejected) as rejected:
        submit(provider, **sim)
    assert rejected.value.status == 400
    assert rejected.value.body is not None
    assert mentions in rejected.value.body
    assert server.job_count == jobs_before


def test_unconfigured_provider_rejects_every_call() -> None:
    provider = SimProvider("")
    calls: list[Callable[[], object]] = [
        lambda: submit(provider),
        lambda: provider.poll("sim_x"),
        lambda: provider.cancel("sim_x"),
    ]
    for call in calls:
        with pytest.raises(ProviderRejected, match=NOT_CONFIGURED) as rejected:
            call()
        assert rejected.value.status is None


def test_connection_refused_is_unavailable() -> None:
    # A port that was free a moment ago and has nobody listening now.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with requests.Session() as session:
        provider = SimProvider(f"http://127.0.0.1:{port}", session=session)
        with pytest.raises(ProviderUnavailable) as submitted:
            submit(provider)
        with pytest.raises(ProviderUnavailable) as polled:
            provider.poll("sim_x")
    assert submitted.value.status is None
    assert polled.value.status is None
