"""The API.md lifecycle over real HTTP against `asyncgate dev`, plus the stack's own promises."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from asyncgate_dev.devprocess import DevProcess, free_port
from tests.e2e.conftest import DevStack
from tests.fakes import wait_until

pytestmark = pytest.mark.e2e
ACME = {"X-API-Key": "acme-key"}
TERMINAL = {"succeeded", "failed", "cancelled"}
# What the sweeper logs when it re-arms overdue executions (and nothing else does).
REARM_LOG = "re-armed overdue executions"


def submit(stack: DevStack, sim: dict[str, Any], model: str = "sim-video", **extra: Any) -> requests.Response:
    body = {"model": model, "input": {"prompt": "a red fox", "sim": sim}, **extra}
    return requests.post(f"{stack.url}/v1/executions", json=body, headers=ACME, timeout=30)


def follow(stack: DevStack, execution_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Long-poll until terminal, as a client would."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(
            f"{stack.url}/v1/executions/{execution_id}", params={"waitSeconds": 5}, headers=ACME, timeout=30
        )
        assert answer.status_code == 200
        execution: dict[str, Any] = answer.json()
        if execution["status"] in TERMINAL:
            assert "retry-after" not in answer.headers
            return execution
        assert int(answer.headers["retry-after"]) >= 1
    raise AssertionError(f"{execution_id} not terminal after {timeout}s")


def test_a_job_runs_to_success_with_outputs(dev_stack: DevStack) -> None:
    answer = submit(dev_stack, {"durationSeconds": 1.5, "outputs": 2}, metadata={"order": "A-17"})
    assert answer.status_code == 202
    assert answer.headers["location"] == f"/v1/executions/{answer.json()['executionId']}"
    assert answer.json()["status"] == "running"
    done = follow(dev_stack, answer.json()["executionId"])
    assert done["status"] == "succeeded"
    assert done["progress"] == 100.0
    assert [output["contentType"] for output in done["result"]["outputs"]] == ["video/mp4", "video/mp4"]
    assert done["cost"] == {"credits": 10.0}
    assert done["metadata"] == {"order": "A-17"}
    # The simulated provider's output URLs are real and served on loopback.
    fetched = requests.get(done["result"]["outputs"][0]["url"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "video/mp4"


@pytest.mark.parametrize(
    ("outcome", "code"), [("fail", "PROVIDER_FAILED"), ("incomplete", "PROVIDER_RESPONSE_INCOMPLETE")]
)
def test_failures_end_failed_and_uncharged(dev_stack: DevStack, outcome: str, code: str) -> None:
    execution_id = submit(dev_stack, {"durationSeconds": 0.5, "outcome": outcome}).json()["executionId"]
    done = follow(dev_stack, execution_id)
    assert done["status"] == "failed"
    assert done["error"]["code"] == code
    assert done["cost"] == {"credits": 0.0}


def test_provider_submit_failure_is_500_with_details(dev_stack: DevStack) -> None:
    answer = submit(dev_stack, {"submitStatus": 503})
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "PROVIDER_SUBMIT_FAILED"
    assert answer.json()["error"]["details"]["providerStatus"] == 503


def test_cancel_queued_running_and_terminal(dev_stack: DevStack) -> None:
    queued = submit(dev_stack, {"durationSeconds": 30}, model="sim-image").json()["executionId"]
    running = submit(dev_stack, {"durationSeconds": 30}).json()["executionId"]
    cancel_queued = requests.post(f"{dev_stack.url}/v1/executions/{queued}/cancel", headers=ACME, timeout=30)
    # The queued one may already have been dispatched by its tick: both answers are correct.
    assert cancel_queued.status_code == 200
    assert cancel_queued.json()["status"] in {"cancelled", "cancel_requested"}
    cancel_running = requests.delete(f"{dev_stack.url}/v1/executions/{running}", headers=ACME, timeout=30)
    assert cancel_running.json()["status"] == "cancel_requested"
    assert follow(dev_stack, running)["status"] == "cancelled"
    assert follow(dev_stack, queued)["status"] == "cancelled"
    again = requests.post(f"{dev_stack.url}/v1/executions/{running}/cancel", headers=ACME, timeout=30)
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "EXECUTION_NOT_CANCELLABLE",
        "message": again.json()["error"]["message"],
        "details": {"status": "cancelled"},
    }


def test_list_pages_newest_first_for_the_caller_only(dev_stack: DevStack) -> None:
    globex = {"X-API-Key": "globex-key"}
    ids = []
    for _ in range(3):
        answer = requests.post(
            f"{dev_stack.url}/v1/executions",
            json={"model": "sim-video", "input": {"sim": {"durationSeconds": 0.2}}},
            headers=globex,
            timeout=30,
        )
        ids.append(answer.json()["executionId"])
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(5):
        page = requests.get(
            f"{dev_stack.url}/v1/executions", params=params, headers=globex, timeout=30
        ).json()
        seen.extend(item["executionId"] for item in page["items"])
        if not page["nextCursor"]:
            break
        params["cursor"] = page["nextCursor"]
    assert seen == list(reversed(ids))


def test_auth_and_not_found_answers(dev_stack: DevStack) -> None:
    url = f"{dev_stack.url}/v1/executions"
    assert requests.get(url, timeout=30).status_code == 401
    assert (
        requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=30).json()["error"]["code"]
        == "UNAUTHORIZED"
    )
    forbidden = requests.post(
        url, json={"model": "sim-video"}, headers={"X-API-Key": "acme-reader"}, timeout=30
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "FORBIDDEN"
    execution_id = submit(dev_stack, {"durationSeconds": 5}).json()["executionId"]
    foreign = requests.get(f"{url}/{execution_id}", headers={"X-API-Key": "globex-key"}, timeout=30)
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "EXECUTION_NOT_FOUND"
    unknown = requests.get(f"{dev_stack.url}/v2/anything", headers=ACME, timeout=30)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NOT_FOUND"
    assert (
        requests.post(
            url, data=b"{", headers={**ACME, "content-type": "application/json"}, timeout=30
        ).status_code
        == 422
    )


def stored_item(stack: DevStack, execution_id: str) -> dict[str, Any]:
    dynamodb = stack.aws("dynamodb")
    table = dynamodb.list_tables()["TableNames"][0]
    key = {"pk": {"S": f"EXEC#{execution_id}"}, "sk": {"S": "EXEC"}}
    return {
        "table": table,
        "key": key,
        "item": dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"],
    }


def _poll_queue_url(stack: DevStack) -> str:
    sqs = stack.aws("sqs")
    url: str = next(url for url in sqs.list_queues()["QueueUrls"] if url.endswith("PollQueue"))
    return url


def _log_records(stack: DevStack, since: int) -> list[dict[str, Any]]:
    """The stack's structured log records (Powertools' JSON lines) written after offset `since`."""
    records = []
    for line in stack.dev.output()[since:].splitlines():
        with contextlib.suppress(ValueError):  # not a record, or one still being written
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def _chain_after(stack: DevStack, done: dict[str, Any], since: int) -> tuple[Counter[str], int]:
    """Once the last tick of the finished execution `done` is in the log: the outcomes of the ticks since
    `since`, and how many executions the sweeper re-armed meanwhile. On the polled stack one test's
    execution runs at a time, so they are all its own (a record's `execution_id` is not to be trusted:
    the local stack's functions share one process, and so the logger's keys)."""
    polls = int(done["pollCount"])
    outcomes: Counter[str] = Counter()
    rearms = 0

    def read() -> bool:
        nonlocal outcomes, rearms
        records = _log_records(stack, since)
        outcomes = Counter(record["outcome"] for record in records if record.get("message") == "tick done")
        rearms = sum(record["rearmed"] for record in records if record.get("message") == REARM_LOG)
        return outcomes["processed"] == polls

    wait_until(read, timeout=10)
    return outcomes, rearms


def test_duplicate_deliveries_of_a_tick_keep_one_chain(polled_stack: DevStack) -> None:
    since = len(polled_stack.dev.output())
    execution_id = submit(polled_stack, {"durationSeconds": 4}).json()["executionId"]
    sqs = polled_stack.aws("sqs")
    tick_id = stored_item(polled_stack, execution_id)["item"]["tickId"]["S"]
    due = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    body = json.dumps({"executionId": execution_id, "tickId": tick_id, "dueAt": due})
    for _ in range(3):  # SQS's at-least-once delivery, exaggerated
        sqs.send_message(QueueUrl=_poll_queue_url(polled_stack), MessageBody=body)
    done = follow(polled_stack, execution_id)
    assert done["status"] == "succeeded"
    ticks, rearms = _chain_after(polled_stack, done, since)
    # Four messages carried that tick: one was polled, three dropped without a poll. A forked chain
    # would drop (or poll behind the record's back) one more at each step. A re-arm, had the chain
    # been late, retires one message more.
    assert ticks["stale"] + ticks["lost_race"] == 3 + rearms, ticks


def test_a_crashing_tick_is_redriven_to_the_dead_letter_queue(dev_stack: DevStack) -> None:
    sqs = dev_stack.aws("sqs")
    sqs.send_message(QueueUrl=_poll_queue_url(dev_stack), MessageBody="{not a tick")
    dlq = next(url for url in sqs.list_queues()["QueueUrls"] if url.endswith("PollDeadLetterQueue"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        received = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages", [])
        if received:
            assert received[0]["Body"] == "{not a tick"
            return
    raise AssertionError("the crashing message never reached the DLQ")


def test_the_sweeper_rearms_a_lost_tick(polled_stack: DevStack) -> None:
    since = len(polled_stack.dev.output())
    execution_id = submit(polled_stack, {"durationSeconds": 2}).json()["executionId"]
    found = stored_item(polled_stack, execution_id)
    assert "awaitsCallbacks" not in found["item"], "polled alone: no provider callback re-arms its tick"
    dynamodb = polled_stack.aws("dynamodb")
    # Retire the message in flight: the tick it carries no longer matches (and a tick already under way
    # loses its write to the new version), so the chain is lost.
    dynamodb.update_item(
        TableName=found["table"], Key=found["key"],
        UpdateExpression="SET tickId = :lost, version = version + :one",
        ExpressionAttributeValues={":lost": {"S": "lost"}, ":one": {"N": "1"}},
    )  # fmt: skip
    done = follow(polled_stack, execution_id, timeout=40)
    assert done["status"] == "succeeded"
    ticks, rearms = _chain_after(polled_stack, done, since)
    assert rearms >= 1, "the sweeper re-armed it"
    # The lost message was dropped without a poll, and so was each message a later re-arm retired (the
    # chain late under load): never a second chain beside the re-armed one.
    assert ticks["stale"] + ticks["lost_race"] == rearms, ticks


def test_ready_line_clean_stop_and_busy_port(tmp_path: Path) -> None:
    port = free_port()
    dev = DevProcess.start(tmp_path / "first.log", "--port", str(port))
    url = dev.wait_ready()
    assert url == f"http://127.0.0.1:{port}"
    assert "tenant dev: API key dev-key" in dev.output()
    assert json.loads(dev.local_file.read_text())["apiUrl"] == url
    assert requests.get(f"{url}/v1/models", headers={"X-API-Key": "dev-key"}, timeout=10).status_code == 200

    busy = DevProcess.start(tmp_path / "second.log", "--port", str(port))
    assert busy.process.wait(timeout=30) != 0
    assert (
        busy.output().strip().splitlines()[-1] == f"asyncgate dev: port {port} on 127.0.0.1 is already in use"
    )

    assert dev.stop() == 0, "stopped by its SIGTERM, not killed after the wait"
    assert "Traceback" not in dev.output()
    assert not dev.local_file.exists(), "the connection file for `asyncgate admin --local` outlived the stack"
