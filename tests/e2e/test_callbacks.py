"""Provider callbacks over real HTTP on the local stack: the route, its token (keyed by the template's own
secret, generated on the emulator), the re-armed tick on SQS, and the one 401 for every refusal."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import requests

from asyncgate.domain.callbacks import callback_url
from tests.e2e.conftest import SAFETY_NET_SECONDS, TIME_SCALE, DevStack
from tests.e2e.test_local_stack import ACME, follow, stored_item, submit


def _callback_key(stack: DevStack) -> bytes:
    secrets = stack.aws("secretsmanager")
    [entry] = [s for s in secrets.list_secrets()["SecretList"] if s["Name"].endswith("/callback-key")]
    value: str = secrets.get_secret_value(SecretId=entry["ARN"])["SecretString"]
    return value.encode()


def _execution(stack: DevStack, execution_id: str) -> dict[str, Any]:
    answer = requests.get(f"{stack.url}/v1/executions/{execution_id}", headers=ACME, timeout=30)
    assert answer.status_code == 200
    execution: dict[str, Any] = answer.json()
    return execution


def test_a_short_job_ends_by_its_callback_long_before_the_safety_net(dev_stack: DevStack) -> None:
    execution_id = submit(dev_stack, {"durationSeconds": 0.5}).json()["executionId"]
    done = follow(dev_stack, execution_id)
    assert done["status"] == "succeeded"
    assert done["pollCount"] == 1  # the one poll its callback asked for
    took = _instant(done["completedAt"]) - _instant(done["startedAt"])
    # Without the callback, the first poll would have come at the safety net: 30 s here.
    assert took < SAFETY_NET_SECONDS * TIME_SCALE / 3


def _instant(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_a_valid_callback_over_http_polls_the_job_at_once_and_forged_ones_are_refused(
    dev_stack: DevStack,
) -> None:
    execution_id = submit(dev_stack, {"durationSeconds": 60}).json()["executionId"]
    try:
        valid = callback_url(dev_stack.url, _callback_key(dev_stack), "sim", execution_id)
        before = _execution(dev_stack, execution_id)["pollCount"]

        forged = [
            requests.post(valid.replace("token=", "token=x"), json={}, timeout=30),
            requests.post(valid.split("?")[0], json={}, timeout=30),
            requests.post(valid.replace("/sim/", "/fal/"), json={}, timeout=30),
            requests.post(valid, json={"id": "sim_another_job", "status": "succeeded"}, timeout=30),
        ]
        assert [answer.status_code for answer in forged] == [401] * 4
        assert {answer.json()["error"]["code"] for answer in forged} == {"UNAUTHORIZED"}
        assert len({answer.text for answer in forged}) == 1, "one answer whatever failed"

        job = _execution(dev_stack, execution_id)["providerRequestId"]
        armed = stored_item(dev_stack, execution_id)["item"]["tickId"]["S"]
        answer = requests.post(valid, json={"id": job, "status": "succeeded"}, timeout=30)
        assert answer.status_code == 200
        assert answer.json() == {"received": True}
        # Answered once the tick was re-armed: a new tick id, due now (the poll tick takes it from there).
        assert stored_item(dev_stack, execution_id)["item"]["tickId"]["S"] != armed
        deadline = time.monotonic() + 10
        while _execution(dev_stack, execution_id)["pollCount"] == before:
            assert time.monotonic() < deadline, "the callback's poll never came"
            time.sleep(0.05)
        # The body said "succeeded": a hint only, the poll found the job still running.
        assert _execution(dev_stack, execution_id)["status"] == "running"
    finally:
        requests.post(f"{dev_stack.url}/v1/executions/{execution_id}/cancel", headers=ACME, timeout=30)
