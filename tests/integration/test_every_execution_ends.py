"""Every execution ends, whatever fails inside the gateway: an item that would outgrow DynamoDB's 400 KB,
ticks that fail again and again, lost ticks, and a dispatch whose outcome could not be recorded. Each
ends terminal, its credits and queue slot released, its provider job never left running unfollowed."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from asyncgate import aws
from asyncgate.domain.catalog import Catalog
from asyncgate.providers.base import Output, PollResult, ProviderJob, ProviderMalformed, ProviderState
from asyncgate.services.deps import default_deps
from asyncgate.services.ticks import BACKLOG_TICKS, MAX_FAILED_TICKS
from asyncgate.settings import get_settings
from asyncgate.store.items import item_size
from asyncgate.store.results import NoResults
from asyncgate_dev.handlers import load_event, load_handler
from asyncgate_dev.lambda_runtime import LambdaContext
from asyncgate_dev.simprovider import SimProviderServer
from tests.fakes import PollingProvider
from tests.faults import failing, updates_of
from tests.integration.conftest import forget_container_state
from tests.integration.driver import TENANT_CREDITS, Gateway

PRICE = 10  # sim-video's


class ScriptedJob(PollingProvider):
    """A provider that takes the job and answers every poll with `answer`; cancels are counted."""

    name = "sim"

    def __init__(self, answer: PollResult) -> None:
        self.answer = answer
        self.cancelled: list[str] = []

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,
    ) -> ProviderJob:
        return ProviderJob(provider_request_id=f"job-{execution_id}")

    def poll(self, job_ref: str) -> PollResult:
        return self.answer

    def cancel(self, job_ref: str) -> None:
        self.cancelled.append(job_ref)


@pytest.fixture
def scripted(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> ScriptedJob:
    provider = ScriptedJob(PollResult(state=ProviderState.RUNNING, progress=10.0))
    monkeypatch.setattr(default_deps(), "providers", lambda _: provider)
    return provider


def _stored_item(execution_id: str) -> dict[str, Any]:
    answer = boto3.client("dynamodb").get_item(
        TableName=get_settings().table_name, Key={"pk": {"S": f"EXEC#{execution_id}"}, "sk": {"S": "EXEC"}}
    )
    item: dict[str, Any] = answer["Item"]
    return item


def _assert_released(gateway: Gateway, *, charged: int = 0) -> None:
    """Nothing held any more: the live counter and the reservation back to zero, only `charged` spent."""
    account = gateway.call("account").json()
    assert (account["liveExecutions"], account["reservedCredits"]) == (0, 0)
    assert account["credits"] == TENANT_CREDITS - charged


def _run_ticks(gateway: Gateway, execution_id: str, timeout: float = 20.0) -> dict[str, Any]:
    return gateway.run_to_end(execution_id, timeout=timeout)


# ---------------------------------------------------------------- the item stays within 400 KB


def test_a_large_text_result_lives_in_the_results_bucket_not_in_the_item(
    gateway: Gateway, scripted: ScriptedJob
) -> None:
    """An OpenAI text result of ~320 KB comes as a `data:` URL: once copied, the item keeps only its
    digest (before, the 430 KB base64 URL made every write fail and the execution stayed running)."""
    text = ("a long answer " * 23_000).encode()
    data_url = "data:text/plain;charset=utf-8;base64," + base64.b64encode(text).decode()
    scripted.answer = PollResult(
        state=ProviderState.SUCCEEDED, outputs=[Output(url=data_url, content_type="text/plain")]
    )
    execution_id = gateway.submit(sim={"durationSeconds": 1}).json()["executionId"]
    done = _run_ticks(gateway, execution_id)
    assert done["status"] == "succeeded"
    [output] = done["result"]["outputs"]
    assert output["stored"] is True
    assert item_size(_stored_item(execution_id)) < 20_000
    stored = json.loads(_stored_item(execution_id)["result"]["S"])["outputs"][0]
    body = boto3.client("s3").get_object(Bucket=get_settings().results_bucket, Key=stored["stored_key"])
    assert body["Body"].read() == text
    _assert_released(gateway, charged=PRICE)


def test_a_huge_provider_error_message_is_bounded(gateway: Gateway, scripted: ScriptedJob) -> None:
    scripted.answer = PollResult(state=ProviderState.FAILED, error_message="boom " * 100_000)
    execution_id = gateway.submit(sim={"durationSeconds": 1}).json()["executionId"]
    done = _run_ticks(gateway, execution_id)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "PROVIDER_FAILED"
    assert 0 < len(done["error"]["message"]) <= 1024
    _assert_released(gateway)


def test_an_input_that_grows_when_stored_is_refused_413(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`1e5` is stored as `100000.0`: a body within the 256 KiB limit could make an item that never fits."""
    deps = default_deps()
    open_model = deps.spec("sim-video").model_copy(update={"input_schema": None})
    monkeypatch.setattr(deps, "catalog", Catalog(models=[open_model]))
    raw = b'{"model": "sim-video", "input": {"numbers": [' + b",".join([b"1e5"] * 60_000) + b"]}}"
    assert len(raw) < 256 * 1024
    answer = gateway.call("submit", raw_body=raw)
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert answer.json()["error"]["details"]["field"] == "input"
    _assert_released(gateway)


def test_an_execution_that_would_outgrow_its_item_ends_internal_error_refunded(
    gateway: Gateway, scripted: ScriptedJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big input and a hundred long provider URLs that cannot be copied: the success can never be
    written, so the execution ends INTERNAL_ERROR at once (refunded, its job cancelled), not in a loop."""
    monkeypatch.setattr(default_deps(), "results", NoResults())
    scripted.answer = PollResult(
        state=ProviderState.SUCCEEDED,
        outputs=[Output(url=f"https://cdn.example.com/{index}?sig={'x' * 2000}") for index in range(100)],
    )
    answer = gateway.submit(sim={"durationSeconds": 1}, input_extra="p" * 200_000)
    assert answer.status == 202
    execution_id = answer.json()["executionId"]
    done = _run_ticks(gateway, execution_id)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "INTERNAL_ERROR"
    assert done["result"] is None
    assert done["cost"] == {"credits": 0}
    assert scripted.cancelled == [f"job-{execution_id}"]
    _assert_released(gateway)


# ---------------------------------------------------------------- ticks that keep failing


def test_ticks_that_keep_failing_end_the_execution_internal_error(
    gateway: Gateway, sim_server: SimProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model leaves the catalog while its job runs: every tick raises. After MAX_FAILED_TICKS the
    execution ends (refunded, the provider's job cancelled) instead of looping through the sweeper."""
    execution_id = gateway.submit(sim={"durationSeconds": 60}).json()["executionId"]
    job = gateway.status(execution_id)["providerRequestId"]
    deps = default_deps()
    monkeypatch.setattr(deps, "catalog", Catalog(models=[], providers={}))
    counted: list[int] = []
    while (stored := deps.executions.get(execution_id)) is not None and not stored.terminal:
        if stored.failed_ticks not in counted:
            counted.append(stored.failed_ticks)
        assert len(counted) <= MAX_FAILED_TICKS, "it must end, not loop"
        gateway.tick_once()
    assert counted == list(range(MAX_FAILED_TICKS)), "one more failed tick each time, then the end"
    done = gateway.status(execution_id)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "INTERNAL_ERROR"
    assert f"{MAX_FAILED_TICKS} ticks in a row failed" in done["error"]["message"]
    assert sim_server.job_status(job) == "cancelled", "its provider job does not run on unfollowed"
    assert gateway.pending_ticks() == 0
    _assert_released(gateway)


def test_a_write_that_can_never_succeed_ends_the_execution(gateway: Gateway) -> None:
    """Every poll's write is refused (as a table would refuse an item it cannot take): the failed ticks
    are still counted (their bookkeeping write is small and different), and the execution ends."""
    execution_id = gateway.submit(sim={"durationSeconds": 60}).json()["executionId"]
    refused = updates_of(execution_id, setting="pollCount")
    with failing(
        aws.dynamodb(), "UpdateItem", matches=refused, times=None, code="ValidationException"
    ) as fault:
        done = _run_ticks(gateway, execution_id)
    assert len(fault.hits) >= MAX_FAILED_TICKS - 1
    assert done["status"] == "failed"
    assert done["error"]["code"] == "INTERNAL_ERROR"
    assert done["pollCount"] == 0
    _assert_released(gateway)


def test_a_completed_tick_ends_the_count_of_failed_ones(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 60}).json()["executionId"]
    refused = updates_of(execution_id, setting="pollCount")
    with failing(aws.dynamodb(), "UpdateItem", matches=refused, times=2, code="ValidationException") as fault:
        gateway.drain_until(execution_id, lambda _: len(fault.hits) == 2)
    assert _failed_ticks(execution_id) == 2
    gateway.drain_until(execution_id, lambda execution: execution["pollCount"] >= 1)
    assert _failed_ticks(execution_id) == 0
    assert gateway.status(execution_id)["status"] == "running"


def _failed_ticks(execution_id: str) -> int:
    stored = default_deps().executions.get(execution_id)
    assert stored is not None
    return stored.failed_ticks


@pytest.fixture
def sweeper(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Callable[[], dict[str, int]]:
    monkeypatch.setenv("SWEEP_GRACE_SECONDS", "0.2")
    forget_container_state()
    handler = load_handler("sweeper").lambda_handler
    return lambda: handler(load_event("sweeper"), LambdaContext(function_name="sweeper"))


def _lose_tick(gateway: Gateway) -> None:
    """Receive the due tick and drop it: its handler died without a word."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = gateway.sqs.receive_message(QueueUrl=gateway.poll_queue_url, WaitTimeSeconds=1)
        for message in answer.get("Messages", []):
            gateway.sqs.delete_message(
                QueueUrl=gateway.poll_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            return
    raise AssertionError("no tick arrived")


def test_ticks_lost_again_and_again_are_given_up_by_the_sweeper(
    gateway: Gateway, sweeper: Callable[[], dict[str, int]]
) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 60}).json()["executionId"]
    reports = []
    for _ in range(MAX_FAILED_TICKS):
        _lose_tick(gateway)
        time.sleep(0.3)  # past the sweeper's grace
        reports.append(sweeper())
    assert [report["rearmed"] for report in reports] == [1] * (MAX_FAILED_TICKS - 1) + [0]
    assert reports[-1]["givenUp"] == 1
    done = gateway.status(execution_id)
    assert (done["status"], done["error"]["code"]) == ("failed", "INTERNAL_ERROR")
    _assert_released(gateway)


def test_a_backlog_on_the_poll_queue_is_not_counted_as_lost_ticks(
    gateway: Gateway, sweeper: Callable[[], dict[str, int]]
) -> None:
    """Overdue because the consumers are behind: re-armed, but no failure counted against the job."""
    execution_id = gateway.submit(sim={"durationSeconds": 60}).json()["executionId"]
    _lose_tick(gateway)
    for _ in range(BACKLOG_TICKS + 1):
        gateway.sqs.send_message(QueueUrl=gateway.poll_queue_url, MessageBody="{}")
    time.sleep(0.3)
    assert sweeper()["rearmed"] == 1
    stored = default_deps().executions.get(execution_id)
    assert stored is not None
    assert stored.failed_ticks == 0


# ---------------------------------------------------------------- a dispatch whose outcome is lost


def _only_execution(gateway: Gateway) -> str:
    [execution] = gateway.call("list_executions").json()["items"]
    execution_id: str = execution["executionId"]
    return execution_id


def test_a_dispatch_whose_write_fails_cancels_its_orphan_job_and_ends_failed(
    gateway: Gateway, sim_server: SimProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider took the job, then DynamoDB refused every try to record it: the job is cancelled
    (a re-read shows the execution does not hold it), and a replay of the request's Idempotency-Key
    once its in-flight window has passed answers the execution's real state: the failed submit."""
    monkeypatch.setenv("IDEMPOTENCY_IN_FLIGHT_SECONDS", "0.5")
    forget_container_state()
    recording = updates_of(setting="providerRequestId")
    headers = {"Idempotency-Key": "lost-dispatch"}
    with failing(aws.dynamodb(), "UpdateItem", matches=recording, times=None) as fault:
        first = gateway.submit(sim={"durationSeconds": 30}, headers=headers)
    assert first.status == 500
    assert len(fault.hits) == 3, "recorded three times before giving up"
    execution_id = _only_execution(gateway)
    [job] = sim_server.jobs_for(execution_id)
    assert sim_server.job_status(job) == "cancelled", "no job left billing with nobody following it"
    time.sleep(0.6)
    replay = gateway.submit(sim={"durationSeconds": 30}, headers=headers)
    assert replay.status == 500
    assert replay.json()["error"]["code"] == "PROVIDER_SUBMIT_FAILED"
    assert replay.headers["idempotent-replayed"] == "true"
    done = gateway.status(execution_id)
    assert (done["status"], done["error"]["code"]) == ("failed", "PROVIDER_SUBMIT_FAILED")
    assert sim_server.jobs_for(execution_id) == [job], "never submitted twice"
    _assert_released(gateway)


def test_a_queued_dispatch_whose_write_fails_is_failed_by_its_next_tick(
    gateway: Gateway, sim_server: SimProviderServer
) -> None:
    execution_id = gateway.submit(model="sim-image", sim={"durationSeconds": 30}).json()["executionId"]
    recording = updates_of(execution_id, setting="providerRequestId")
    with failing(aws.dynamodb(), "UpdateItem", matches=recording, times=None):
        gateway.tick_once()
    [job] = sim_server.jobs_for(execution_id)
    assert sim_server.job_status(job) == "cancelled"
    done = _run_ticks(gateway, execution_id)
    assert (done["status"], done["error"]["code"]) == ("failed", "PROVIDER_SUBMIT_FAILED")
    assert sim_server.jobs_for(execution_id) == [job]
    _assert_released(gateway)


@pytest.mark.parametrize("code", ["InternalServerError", "ConditionalCheckFailedException"])
def test_a_dispatch_whose_write_committed_keeps_its_job(
    gateway: Gateway, sim_server: SimProviderServer, code: str
) -> None:
    """The write committed but its answer was lost (a 500 after the commit; or botocore's retry of it,
    whose condition then fails): the re-read shows the job is the execution's own, so it is never
    cancelled, and the client gets its 202."""
    recording = updates_of(setting="providerRequestId")
    with failing(aws.dynamodb(), "UpdateItem", matches=recording, after_commit=True, code=code) as fault:
        answer = gateway.submit(sim={"durationSeconds": 0.5})
    assert len(fault.hits) == 1
    assert answer.status == 202
    assert answer.json()["status"] == "running"
    execution_id = answer.json()["executionId"]
    [job] = sim_server.jobs_for(execution_id)
    assert answer.json()["providerRequestId"] == job
    assert _run_ticks(gateway, execution_id)["status"] == "succeeded"
    assert sim_server.job_status(job) == "succeeded"
    _assert_released(gateway, charged=PRICE)


class GarbledThenDone(ScriptedJob):
    """A provider whose first polls come back as a proxy's HTML page with a 200."""

    def __init__(self, garbled: int) -> None:
        super().__init__(
            PollResult(state=ProviderState.SUCCEEDED, outputs=[Output(url="https://cdn.example.com/a")])
        )
        self.garbled = garbled

    def poll(self, job_ref: str) -> PollResult:
        if self.garbled:
            self.garbled -= 1
            raise ProviderMalformed("answered poll with an unexpected body", status=200, body="<html>")
        return self.answer


def test_a_garbled_poll_answer_is_tried_again_not_the_end_of_the_job(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A garbled answer says nothing of the job, which the provider may still finish (and bill): like a
    transient error, it is tried again within the model's error budget."""
    provider = GarbledThenDone(garbled=2)
    monkeypatch.setattr(default_deps(), "providers", lambda _: provider)
    monkeypatch.setattr(default_deps(), "results", NoResults())
    execution_id = gateway.submit(sim={"durationSeconds": 1}).json()["executionId"]
    done = _run_ticks(gateway, execution_id)
    assert done["status"] == "succeeded"
    assert provider.garbled == 0
    _assert_released(gateway, charged=PRICE)
