"""The results bucket on moto: outputs copied from the provider into S3 (streamed, bounded, retried),
read back by presigned URLs made afresh on every read, and never a reason for a job to fail."""

from __future__ import annotations

import base64
import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests

from asyncgate import aws
from asyncgate.domain.execution import Execution
from asyncgate.providers.base import Output, PollResult, Provider, ProviderState
from asyncgate.services import outputs
from asyncgate.services.deps import Deps, default_deps
from asyncgate.services.lifecycle import COPY_ROUNDS, commit, step
from asyncgate.settings import get_settings
from asyncgate.store.results import OUT_OF_TIME, ResultStore
from asyncgate_dev.simprovider import FAKE_CONTENT
from tests.fakes import wait_until
from tests.integration.conftest import forget_container_state
from tests.integration.driver import Gateway

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
LIMIT = 4096


class Origin:
    """A provider's file server on loopback: scripted paths, every request counted."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        # path -> how many first requests answer 503
        self.failures: dict[str, int] = {}
        # path -> how many times the client went away before a trickled body ended
        self.abandoned: Counter[str] = Counter()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                origin.hits[path] += 1
                if origin.hits[path] <= origin.failures.get(path, 0) or path == "/down":
                    self._send(503, b"busy", "text/plain")
                elif path == "/image" or (path == "/slow-once" and origin.hits[path] > 1):
                    self._send(200, PNG, "image/png")
                elif path in ("/slow-once", "/slow"):
                    # Trickles: a byte every 50 ms of a body it says is 4 KiB, for 20 s (far past the copy
                    # budgets here) unless the client goes away first.
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", "4096")
                    self.end_headers()
                    for _ in range(400):
                        try:
                            self.wfile.write(b"z")
                            self.wfile.flush()
                        except OSError:
                            origin.abandoned[path] += 1
                            return
                        time.sleep(0.05)
                    self.close_connection = True
                elif path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/image")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/big-declared":
                    # Says it is too big: refused before a byte of the body is read.
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(LIMIT * 100))
                    self.end_headers()
                    self.wfile.write(b"x" * LIMIT)
                    self.close_connection = True
                elif path == "/big-streamed":
                    # No length: only the count of what streams in can tell.
                    self.protocol_version = "HTTP/1.0"
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.end_headers()
                    for _ in range(10):
                        self.wfile.write(b"y" * LIMIT)
                    self.close_connection = True
                else:
                    self._send(404, b"no", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ScriptedProvider:
    """Answers each poll with the next scripted result (the last one repeats)."""

    name = "scripted"
    accepts_callbacks = False

    def __init__(self, *answers: PollResult) -> None:
        self.answers = list(answers)

    def poll(self, job_ref: str) -> PollResult:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def cancel(self, job_ref: str) -> None:
        """Nothing to stop."""


@pytest.fixture
def results(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    # The sim's and the origin's outputs are on loopback, as in the local stack.
    monkeypatch.setenv("ALLOW_LOOPBACK_WEBHOOKS", "true")
    # Jobs followed by polling alone: these tests drive the polls themselves.
    monkeypatch.setenv("PROVIDER_CALLBACKS", "off")
    forget_container_state()
    yield gateway
    forget_container_state()


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.close()


def _outputs(*urls: str) -> list[Output]:
    return [Output(url=url) for url in urls]


def _running(*urls: str) -> PollResult:
    return PollResult(state=ProviderState.RUNNING, progress=50.0, outputs=_outputs(*urls))


def _succeeded(*urls: str) -> PollResult:
    return PollResult(state=ProviderState.SUCCEEDED, outputs=_outputs(*urls), raw={"from": "provider"})


def _started(gateway: Gateway) -> tuple[Deps, Execution]:
    """A running sim execution, to be polled by hand through a scripted provider."""
    execution_id = gateway.submit(sim={"durationSeconds": 60}).json()["executionId"]
    deps = default_deps()
    execution = deps.executions.get(execution_id)
    assert execution is not None
    assert execution.status.value == "running"
    return deps, execution


def _tick(deps: Deps, execution: Execution, answer: PollResult, *, max_bytes: int | None = None) -> Execution:
    """One poll tick of `execution` whose provider answers `answer`; committed, and read back."""
    settings = get_settings()
    store = ResultStore(
        aws.s3(),
        settings.results_bucket,
        max_bytes=max_bytes or settings.result_max_bytes,
        url_seconds=settings.result_url_seconds,
        allow_loopback=True,
    )
    provider = ScriptedProvider(answer)
    scripted = dataclasses.replace(deps, results=store, providers=lambda name: cast(Provider, provider))
    now = deps.clock()
    after = step(scripted, execution, deps.spec(execution.model), now=now + timedelta(seconds=1))
    commit(scripted, execution, after, now=now)
    stored = deps.executions.get(execution.execution_id)
    assert stored is not None
    return stored


def _object(key: str | None) -> tuple[str, bytes]:
    """The stored object's content type and bytes."""
    assert key is not None
    answer = boto3.client("s3").get_object(Bucket=get_settings().results_bucket, Key=key)
    return answer["ContentType"], answer["Body"].read()


def test_a_sim_output_is_copied_and_read_by_a_fresh_presigned_url(results: Gateway) -> None:
    execution_id = results.submit(sim={"durationSeconds": 0.2, "outputs": 2}).json()["executionId"]
    done = results.run_to_end(execution_id)
    assert done["status"] == "succeeded"
    outputs = done["result"]["outputs"]
    assert [(output["stored"], output["contentType"]) for output in outputs] == [(True, "video/mp4")] * 2
    bucket = get_settings().results_bucket
    assert all(f"/{bucket}/" in o["url"] or f"//{bucket}." in o["url"] for o in outputs), outputs
    assert outputs[0]["url"] != outputs[1]["url"]
    # The provider's own URLs stay in the raw result.
    assert done["result"]["raw"]["outputs"][0]["url"].startswith("http://127.0.0.1:")

    execution = default_deps().executions.get(execution_id)
    assert execution is not None
    assert execution.result is not None
    first = execution.result.outputs[0]
    assert first.url.startswith("http://127.0.0.1:"), "the execution keeps the provider's URL"
    assert first.stored_key is not None
    assert first.stored_key.startswith(f"results/tenant-a/{execution_id}/0-")
    assert first.stored_key.endswith(".mp4")
    assert (first.size, first.copy_error) == (len(FAKE_CONTENT["video/mp4"]), None)
    assert _object(first.stored_key) == ("video/mp4", FAKE_CONTENT["video/mp4"])

    fetched = requests.get(outputs[0]["url"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == FAKE_CONTENT["video/mp4"]
    assert fetched.headers["content-type"] == "video/mp4"
    query = parse_qs(urlsplit(outputs[0]["url"]).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["3600"]

    time.sleep(1.1)  # SigV4 dates are whole seconds
    again = results.status(execution_id)["result"]["outputs"][0]
    assert again["url"] != outputs[0]["url"], "renewed on every read"
    assert requests.get(again["url"], timeout=10).content == FAKE_CONTENT["video/mp4"]
    listed = results.call("list_executions").json()["items"]
    assert next(item for item in listed if item["executionId"] == execution_id)["result"]["outputs"][0][
        "stored"
    ]


def test_partial_outputs_are_copied_while_running_and_never_twice(results: Gateway, origin: Origin) -> None:
    deps, execution = _started(results)
    first, second = origin.url("/image?token=1"), origin.url("/redirect")
    execution = _tick(deps, execution, _running(first))
    assert execution.status.value == "running"
    assert execution.result is not None
    assert execution.result.outputs[0].stored
    view = results.status(execution.execution_id)["result"]["outputs"]
    assert [(o["stored"], o["contentType"]) for o in view] == [(True, "image/png")]

    # The provider signs its URL anew on each poll: the same output, not copied again.
    execution = _tick(deps, execution, _running(origin.url("/image?token=2"), second))
    execution = _tick(deps, execution, _succeeded(origin.url("/image?token=3"), second, "data:text/plain,hi"))
    assert execution.status.value == "succeeded"
    assert origin.hits == Counter({"/image": 2, "/redirect": 1}), "each output fetched once (one redirect)"
    assert execution.result is not None
    outputs = execution.result.outputs
    assert [o.stored for o in outputs] == [True, True, True]
    assert outputs[0].url == origin.url("/image?token=3"), "the provider's latest URL is kept"
    assert _object(outputs[0].stored_key) == ("image/png", PNG)
    assert _object(outputs[1].stored_key) == ("image/png", PNG), "the redirect's target is stored"
    assert outputs[0].stored_key != outputs[1].stored_key
    assert _object(outputs[2].stored_key) == ("text/plain", b"hi")
    assert execution.result.raw == {"from": "provider"}


def test_a_data_url_is_stored(results: Gateway) -> None:
    deps, execution = _started(results)
    payload = base64.b64encode(b'{"answer": 42}').decode()
    execution = _tick(deps, execution, _succeeded(f"data:application/json;base64,{payload}"))
    assert execution.result is not None
    [output] = execution.result.outputs
    assert output.stored_key is not None
    assert output.stored_key.endswith(".json")
    assert _object(output.stored_key) == ("application/json", b'{"answer": 42}')


def test_a_failed_copy_while_running_is_tried_again_at_the_next_tick(
    results: Gateway, origin: Origin
) -> None:
    deps, execution = _started(results)
    origin.failures["/image"] = 1
    execution = _tick(deps, execution, _running(origin.url("/image")))
    assert execution.result is not None
    [output] = execution.result.outputs
    assert (output.stored, output.copy_error) == (False, "the source answered HTTP 503")
    assert origin.hits["/image"] == 1, "no retry within a running tick"
    view = results.status(execution.execution_id)["result"]["outputs"]
    assert view == [{"url": origin.url("/image"), "contentType": None, "stored": False}]

    execution = _tick(deps, execution, _running(origin.url("/image")))
    assert execution.result is not None
    assert execution.result.outputs[0].stored
    assert execution.result.outputs[0].copy_error is None
    assert origin.hits["/image"] == 2


def test_a_transient_failure_on_success_is_retried_then_stored(results: Gateway, origin: Origin) -> None:
    deps, execution = _started(results)
    origin.failures["/image"] = 2
    execution = _tick(deps, execution, _succeeded(origin.url("/image")))
    assert execution.status.value == "succeeded"
    assert execution.result is not None
    assert execution.result.outputs[0].stored
    assert origin.hits["/image"] == 3


def test_exhausted_copies_leave_a_succeeded_job_with_the_providers_url(
    results: Gateway, origin: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    deps, execution = _started(results)
    execution = _tick(deps, execution, _succeeded(origin.url("/down?sig=secret"), origin.url("/image")))
    assert execution.status.value == "succeeded"
    assert origin.hits["/down"] == 3, "three attempts, then given up"
    [warning] = [record for record in caplog.records if record.getMessage().startswith("output not copied")]
    assert vars(warning)["source"] == origin.url("/down")
    assert "sig=secret" not in repr(vars(warning)), "a URL's query string may hold a token: never logged"
    done = results.status(execution.execution_id)
    assert done["status"] == "succeeded"
    assert done["cost"] == {"credits": 10.0}
    first, second = done["result"]["outputs"]
    assert first == {"url": origin.url("/down?sig=secret"), "contentType": None, "stored": False}
    assert second["stored"] is True
    assert execution.result is not None
    assert execution.result.outputs[0].copy_error == "the source answered HTTP 503"


def test_too_large_outputs_are_refused_and_not_retried(results: Gateway, origin: Origin) -> None:
    deps, execution = _started(results)
    declared, streamed = origin.url("/big-declared"), origin.url("/big-streamed")
    execution = _tick(deps, execution, _succeeded(declared, streamed, origin.url("/image")), max_bytes=LIMIT)
    assert execution.status.value == "succeeded"
    assert execution.result is not None
    big_declared, big_streamed, image = execution.result.outputs
    for output in (big_declared, big_streamed):
        assert not output.stored
        assert output.copy_refused
        assert f"larger than {LIMIT} bytes" in (output.copy_error or "")
    assert image.stored, "a small output of the same job is copied"
    assert origin.hits == Counter({"/big-declared": 1, "/big-streamed": 1, "/image": 1})
    bucket = get_settings().results_bucket
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in listed] == [image.stored_key], "nothing half-written"
    assert not boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_private_and_non_https_sources_are_refused(results: Gateway) -> None:
    deps, execution = _started(results)
    private = ["https://10.1.2.3/out.png", "https://169.254.169.254/latest", "http://example.com/out.png"]
    execution = _tick(deps, execution, _succeeded(*private))
    assert execution.status.value == "succeeded"
    assert execution.result is not None
    for output in execution.result.outputs:
        assert (output.stored, output.copy_refused) == (False, True), output
    view = results.status(execution.execution_id)["result"]["outputs"]
    assert [o["url"] for o in view] == private


def test_a_trickling_source_is_stopped_at_the_budget_and_copied_in_another_tick(
    results: Gateway, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outputs, "COPY_BUDGET_SECONDS", 0.5)
    deps, execution = _started(results)
    answer = _succeeded(origin.url("/slow-once"), origin.url("/image"))
    execution = _tick(deps, execution, answer)
    # The copy stopped at its budget, not when the source ends: the source saw it go away mid-body.
    wait_until(lambda: origin.abandoned["/slow-once"] == 1)
    # Done at the provider, not yet in the bucket: another tick before the success is written.
    assert execution.status.value == "running"
    assert (execution.progress, execution.copy_rounds) == (100.0, 1)
    assert execution.result is not None
    assert [output.copy_error for output in execution.result.outputs] == [OUT_OF_TIME, OUT_OF_TIME]
    execution = _tick(deps, execution, answer)
    assert execution.status.value == "succeeded"
    assert execution.result is not None
    assert all(output.stored for output in execution.result.outputs)


def test_a_source_too_slow_for_every_round_leaves_the_providers_url(
    results: Gateway, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outputs, "COPY_BUDGET_SECONDS", 0.2)
    deps, execution = _started(results)
    answer = _succeeded(origin.url("/slow"))
    for _ in range(COPY_ROUNDS):
        execution = _tick(deps, execution, answer)
        assert execution.status.value == "running"
    execution = _tick(deps, execution, answer)
    assert execution.status.value == "succeeded"
    assert execution.result is not None
    [output] = execution.result.outputs
    assert (output.stored, output.copy_error, output.url) == (False, OUT_OF_TIME, origin.url("/slow"))
