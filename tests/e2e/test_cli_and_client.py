"""The `asyncgate` console script and the typed client against `asyncgate dev`."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from asyncgate_client import ApiError, Client, Status
from asyncgate_dev.devprocess import ASYNCGATE
from tests.e2e.conftest import ACME_WEBHOOK_SECRET, DevStack

pytestmark = pytest.mark.e2e


def cli(stack: DevStack, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ASYNCGATE), "--base-url", stack.url, "--api-key", "acme-key", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def last_json(stdout: str) -> Any:
    return json.loads(stdout.strip().splitlines()[-1])


def test_submit_wait_json_ends_with_the_final_state_and_exit_0(dev_stack: DevStack) -> None:
    done = cli(
        dev_stack, "submit", "sim-video", "--input", '{"sim": {"durationSeconds": 1}}', "--wait", "--json"
    )
    assert done.returncode == 0, done.stderr
    final = last_json(done.stdout)
    assert final["status"] == "succeeded"
    assert all(json.loads(line) for line in done.stdout.strip().splitlines()), "JSON only on stdout"


def test_a_failed_execution_exits_1(dev_stack: DevStack) -> None:
    done = cli(
        dev_stack,
        "submit",
        "sim-video",
        "--input",
        '{"sim": {"outcome": "fail", "durationSeconds": 0.3}}',
        "--wait",
        "--json",
    )
    assert done.returncode == 1
    assert last_json(done.stdout)["error"]["code"] == "PROVIDER_FAILED"


def test_api_errors_exit_2_with_the_code_on_stderr(dev_stack: DevStack) -> None:
    missing = cli(dev_stack, "status", "6a4fd5b2-0c1e-4c55-9d1b-0d4a3e0f9e11", "--json")
    assert missing.returncode == 2
    assert "EXECUTION_NOT_FOUND" in missing.stderr
    assert missing.stdout == ""
    unknown = cli(dev_stack, "submit", "no-such-model", "--input", "{}")
    assert unknown.returncode == 2
    assert "UNKNOWN_MODEL" in unknown.stderr


def test_models_list_and_cancel_commands(dev_stack: DevStack) -> None:
    models = cli(dev_stack, "models", "--json")
    assert models.returncode == 0
    assert "sim-video" in {item["model"] for item in last_json(models.stdout)["items"]}
    accepted = last_json(
        cli(dev_stack, "submit", "sim-video", "--input", '{"sim": {"durationSeconds": 30}}', "--json").stdout
    )
    cancelled = cli(dev_stack, "cancel", accepted["executionId"], "--json")
    assert cancelled.returncode == 0
    assert last_json(cancelled.stdout)["status"] == "cancel_requested"
    listed = cli(dev_stack, "list", "--limit", "5", "--json")
    assert listed.returncode == 0
    assert accepted["executionId"] in {item["executionId"] for item in last_json(listed.stdout)["items"]}


def test_the_typed_client_lives_through_a_lifecycle(dev_stack: DevStack) -> None:
    client = Client(dev_stack.url, "acme-key")
    accepted = client.submit(
        "sim-video", {"sim": {"durationSeconds": 1.5, "outputs": 3}}, metadata={"k": "v"}
    )
    seen: list[tuple[Status, float | None]] = []
    done = client.wait(
        accepted.execution_id, timeout=30, on_change=lambda e: seen.append((e.status, e.progress))
    )
    assert done.status is Status.SUCCEEDED
    assert done.result is not None
    assert len(done.result.outputs) == 3
    assert seen[-1][0] is Status.SUCCEEDED
    assert accepted.execution_id in {
        execution.execution_id for execution in client.iter_executions(page_size=2)
    }
    with pytest.raises(ApiError) as refused:
        client.cancel(accepted.execution_id)
    assert (refused.value.status, refused.value.code) == (409, "EXECUTION_NOT_CANCELLABLE")
    assert refused.value.details == {"status": "succeeded"}


def test_webhooks_commands(dev_stack: DevStack) -> None:
    created = cli(dev_stack, "webhooks", "create", "http://127.0.0.1:9/hook", "--json")
    assert created.returncode == 0, created.stderr
    endpoint = last_json(created.stdout)
    assert endpoint["url"] == "http://127.0.0.1:9/hook", "loopback http is allowed in the local stack"
    assert endpoint["events"] == ["execution.succeeded", "execution.failed", "execution.cancelled"]
    assert endpoint["secret"].startswith("whsec_")
    listed = cli(dev_stack, "webhooks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    items = {item["id"]: item for item in last_json(listed.stdout)["items"]}
    assert endpoint["id"] in items
    assert items[endpoint["id"]].get("secret") is None, "the secret is shown only when created"
    secret = cli(dev_stack, "webhooks", "secret", "--json")
    assert secret.returncode == 0, secret.stderr
    assert last_json(secret.stdout) == {"secret": ACME_WEBHOOK_SECRET}, "the tenants file's secret"
    deleted = cli(dev_stack, "webhooks", "delete", endpoint["id"])
    assert deleted.returncode == 0, deleted.stderr
    again = cli(dev_stack, "webhooks", "delete", endpoint["id"])
    assert again.returncode == 2
    assert "NOT_FOUND" in again.stderr
