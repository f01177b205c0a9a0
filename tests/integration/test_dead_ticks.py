"""The poll queue's dead-letter queue has an owner: `asyncgate admin dlq list` shows each dead tick with
its execution's state now, `asyncgate admin dlq redrive` sends them back; a stale one changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asyncgate.settings import get_settings
from asyncgate_dev.cli import main
from tests.integration.driver import Gateway


def _dlq_url(gateway: Gateway) -> str:
    arn = json.loads(
        gateway.sqs.get_queue_attributes(QueueUrl=gateway.poll_queue_url, AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )["deadLetterTargetArn"]
    url: str = gateway.sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
    return url


def _admin(capsys: pytest.CaptureFixture[str], dlq: str, *argv: str) -> Any:
    capsys.readouterr()  # what the handlers logged so far
    code = main(["admin", *argv, "--table", get_settings().table_name, "--dlq-url", dlq, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_dead_ticks_are_listed_with_their_executions_and_redriven_safely(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    dlq = _dlq_url(gateway)
    current_id = gateway.submit(sim={"durationSeconds": 30}).json()["executionId"]
    [tick] = gateway.sqs.receive_message(QueueUrl=gateway.poll_queue_url, WaitTimeSeconds=2)["Messages"]
    gateway.sqs.delete_message(QueueUrl=gateway.poll_queue_url, ReceiptHandle=tick["ReceiptHandle"])
    stale = {**json.loads(tick["Body"]), "tickId": "retired"}
    for body in (tick["Body"], json.dumps(stale), "not a tick"):
        gateway.sqs.send_message(QueueUrl=dlq, MessageBody=body)

    listed = _admin(capsys, dlq, "dlq", "list")["items"]
    by_kind = {(item["executionId"], item["current"]) for item in listed}
    assert by_kind == {(current_id, True), (current_id, False), (None, False)}
    assert {item["status"] for item in listed if item["executionId"]} == {"running"}
    assert len(_admin(capsys, dlq, "dlq", "list")["items"]) == 3, "listing leaves the queue as it was"

    assert _admin(capsys, dlq, "dlq", "redrive") == {"redriven": 3}
    assert _admin(capsys, dlq, "dlq", "list") == {"items": []}
    assert gateway.pending_ticks() == 3
    gateway.tick_once()  # the current tick polls; the stale one is dropped; the junk one fails alone
    assert gateway.status(current_id)["pollCount"] == 1


def test_without_a_dead_letter_queue_the_admin_says_which_is_missing(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASYNCGATE_POLL_DLQ_URL", raising=False)
    code = main(["admin", "dlq", "list", "--table", get_settings().table_name, "--json"])
    assert code == 2
    assert "NO_DLQ" in capsys.readouterr().err
