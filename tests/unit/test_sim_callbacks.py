"""The simulated provider calls back: one POST of `{"id", "status"}` to a job's callbackUrl when it ends,
received by a loopback fake."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from asyncgate_dev.simprovider import SimProviderServer
from tests.fakes import Answer, FakeApi, wait_until

CALLBACK_PATH = "/v1/callbacks/sim/exec-1"


@pytest.fixture
def receiver() -> Iterator[FakeApi]:
    with FakeApi() as running:
        running.on("POST", CALLBACK_PATH, Answer(202))
        yield running


@pytest.fixture
def server() -> Iterator[SimProviderServer]:
    with SimProviderServer() as running:
        yield running


def submit(server: SimProviderServer, callback_url: Any, **sim: Any) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/jobs",
        json={"model": "sim-image", "input": {"sim": sim}, "callbackUrl": callback_url},
        timeout=5,
    )


def callbacks(receiver: FakeApi) -> list[Any]:
    return [seen.body for seen in receiver.seen if seen.path == CALLBACK_PATH]


@pytest.mark.parametrize(
    ("outcome", "status"), [("succeed", "succeeded"), ("incomplete", "succeeded"), ("fail", "failed")]
)
def test_a_finished_job_calls_back_once(
    server: SimProviderServer, receiver: FakeApi, outcome: str, status: str
) -> None:
    created = submit(server, f"{receiver.url}{CALLBACK_PATH}?token=abc", durationSeconds=0.2, outcome=outcome)
    assert created.status_code == 201
    job_id = created.json()["id"]

    wait_until(lambda: server.callbacks_sent == 1)
    [seen] = receiver.seen
    assert seen.method == "POST"
    assert seen.query == {"token": "abc"}
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {"id": job_id, "status": status}
    assert server.job_status(job_id) == status


def test_a_cancelled_job_calls_back_once_at_the_cancel(server: SimProviderServer, receiver: FakeApi) -> None:
    job_id = submit(server, f"{receiver.url}{CALLBACK_PATH}", durationSeconds=0.5).json()["id"]
    assert requests.post(f"{server.url}/v1/jobs/{job_id}/cancel", timeout=5).status_code == 200

    wait_until(lambda: server.callbacks_sent == 1)
    time.sleep(0.7)  # past the job's duration: the end-of-run callback must not come as well
    assert callbacks(receiver) == [{"id": job_id, "status": "cancelled"}]
    assert server.callbacks_sent == 1

    # Cancelling again (a finished job) sends nothing more.
    requests.post(f"{server.url}/v1/jobs/{job_id}/cancel", timeout=5)
    time.sleep(0.1)
    assert server.callbacks_sent == 1


def test_a_job_without_a_callback_url_calls_nobody(server: SimProviderServer, receiver: FakeApi) -> None:
    created = requests.post(
        f"{server.url}/v1/jobs",
        json={"model": "sim-image", "input": {"sim": {"durationSeconds": 0.1}}},
        timeout=5,
    )
    assert created.status_code == 201
    time.sleep(0.3)
    assert server.callbacks_sent == 0
    assert receiver.seen == []


def test_dropped_callbacks_are_counted_not_sent(receiver: FakeApi) -> None:
    with SimProviderServer(drop_callbacks=True) as server:
        submit(server, f"{receiver.url}{CALLBACK_PATH}", durationSeconds=0.1)
        wait_until(lambda: server.callbacks_dropped == 1)

        server.drop_callbacks = False
        submit(server, f"{receiver.url}{CALLBACK_PATH}", durationSeconds=0.1)
        wait_until(lambda: server.callbacks_sent == 1)

        server.drop_callbacks = True
        job_id = submit(server, f"{receiver.url}{CALLBACK_PATH}", durationSeconds=5).json()["id"]
        requests.post(f"{server.url}/v1/jobs/{job_id}/cancel", timeout=5)
        wait_until(lambda: server.callbacks_dropped == 2)
    assert len(callbacks(receiver)) == 1


@pytest.mark.parametrize("callback_url", ["ftp://127.0.0.1/cb", "127.0.0.1:8080/cb", "", 42, ["http://x"]])
def test_a_bad_callback_url_is_refused_400(server: SimProviderServer, callback_url: Any) -> None:
    jobs_before = server.job_count
    refused = submit(server, callback_url, durationSeconds=0.1)
    assert refused.status_code == 400
    assert "callbackUrl" in refused.json()["error"]["message"]
    assert server.job_count == jobs_before


def test_an_unreachable_receiver_is_ignored(server: SimProviderServer) -> None:
    with FakeApi() as gone:
        url = f"{gone.url}{CALLBACK_PATH}"
    submit(server, url, durationSeconds=0.1)
    wait_until(lambda: server.callbacks_sent == 1)
    assert requests.get(f"{server.url}/v1/jobs/nope", timeout=5).status_code == 404, (
        "the server still answers"
    )


def test_stop_does_not_wait_for_pending_callbacks(receiver: FakeApi) -> None:
    server = SimProviderServer().start()
    submit(server, f"{receiver.url}{CALLBACK_PATH}", durationSeconds=0.3)
    # Had stop() waited for its callbacks, this one would have been sent before it returned.
    submit(server, f"{receiver.url}{CALLBACK_PATH}", durationSeconds=20)
    server.stop()
    time.sleep(0.5)  # past the short job's end
    assert receiver.seen == [], "a stopped server calls nobody back"
    assert server.callbacks_sent == 0
