"""The simulated provider's fault switches (SimFaults), which the chaos harness turns: broken answers
with the work done or not, a cancel that finds the job finished, callbacks repeated and early, and a
bound on how many faults are played."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from asyncgate_dev.receiver import WebhookReceiver
from asyncgate_dev.simprovider import GARBAGE, SimFaults, SimProviderServer

LONG_JOB: dict[str, object] = {"model": "sim-video", "input": {"sim": {"durationSeconds": 600, "outputs": 2}}}


@pytest.fixture
def sim() -> Iterator[SimProviderServer]:
    with SimProviderServer() as server:
        yield server


def submit(
    sim: SimProviderServer, body: dict[str, object] = LONG_JOB, timeout: float = 10
) -> requests.Response:
    return requests.post(f"{sim.url}/v1/jobs", json=body, timeout=timeout)


def test_an_error_answers_instead_of_the_work(sim: SimProviderServer) -> None:
    sim.faults = SimFaults(error_rate=1.0, error_status=502)
    assert submit(sim).status_code == 502
    assert sim.job_count == 0
    assert sim.faults_played["error"] == 1


def test_garbage_answers_after_the_work(sim: SimProviderServer) -> None:
    sim.faults = SimFaults(garbage_rate=1.0)
    answer = submit(sim)
    assert (answer.status_code, answer.content) == (200, GARBAGE)
    assert sim.job_count == 1


def test_a_slow_answer_outlasts_the_clients_wait_and_the_job_exists(sim: SimProviderServer) -> None:
    sim.faults = SimFaults(slow_rate=1.0, slow_seconds=60.0)
    with pytest.raises(requests.ReadTimeout):
        submit(sim, timeout=0.5)
    assert sim.job_count == 1


def test_a_hang_closes_the_connection_without_an_answer(sim: SimProviderServer) -> None:
    sim.faults = SimFaults(hang_rate=1.0, hang_seconds=0.01)
    with pytest.raises(requests.ConnectionError):
        submit(sim)
    assert sim.job_count == 1


def test_faults_stay_on_their_routes_and_within_their_bound(sim: SimProviderServer) -> None:
    sim.faults = SimFaults(error_rate=1.0, routes=frozenset({"poll"}), max_faults=1)
    job = submit(sim).json()["id"]
    assert requests.get(f"{sim.url}/v1/jobs/{job}", timeout=10).status_code == 503
    assert requests.get(f"{sim.url}/v1/jobs/{job}", timeout=10).status_code == 200
    sim.faults = SimFaults(error_rate=1.0, max_faults=1)
    assert submit(sim).status_code == 503


def test_a_cancel_finds_the_job_finished_and_its_callback_says_succeeded(sim: SimProviderServer) -> None:
    sim.faults = SimFaults(finish_on_cancel=True)
    with WebhookReceiver() as receiver:
        job = submit(sim, {**LONG_JOB, "callbackUrl": receiver.url}).json()["id"]
        assert requests.post(f"{sim.url}/v1/jobs/{job}/cancel", timeout=10).status_code == 409
        polled = requests.get(f"{sim.url}/v1/jobs/{job}", timeout=10).json()
        assert (polled["status"], len(polled["outputs"]), polled["progress"]) == ("succeeded", 2, 100.0)
        assert [item.body for item in receiver.wait_for(1)] == [
            b'{"id": "%s", "status": "succeeded"}' % job.encode()
        ]
    assert sim.faults_played["finished"] == 1


def test_callbacks_come_in_copies_and_while_the_job_runs(sim: SimProviderServer) -> None:
    sim.faults = SimFaults(callback_copies=3, early_callbacks=2)
    body = {"model": "sim-video", "input": {"sim": {"durationSeconds": 0.2}}}
    with WebhookReceiver() as receiver:
        submit(sim, {**body, "callbackUrl": receiver.url})
        statuses = sorted(item.body.decode().split('"status": ')[1] for item in receiver.wait_for(9))
    assert statuses == ['"running"}'] * 6 + ['"succeeded"}'] * 3
