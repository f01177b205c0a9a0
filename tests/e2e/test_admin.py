"""`asyncgate admin --local` against `asyncgate dev`: what an operator writes to the table, the API
answers at once; a revoked key within the key cache's lifetime."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from asyncgate_dev.cli import main
from asyncgate_dev.devprocess import ASYNCGATE
from asyncgate_dev.localfile import LOCAL_FILE_ENV
from tests.e2e.conftest import AUTH_CACHE_SECONDS, DevStack

pytestmark = pytest.mark.e2e


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


Admin = Callable[..., Ran]


@pytest.fixture
def admin(dev_stack: DevStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Admin:
    """`asyncgate admin --local ... --json`, in-process, against the session's local stack."""
    monkeypatch.setenv(LOCAL_FILE_ENV, str(dev_stack.dev.local_file))

    def run(*argv: str) -> Ran:
        code = main(["admin", "--local", *argv, "--json"])
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def new_tenant() -> str:
    # The stack lives for the whole session: every test opens tenants of its own.
    return f"ops-{uuid.uuid4().hex[:10]}"


def api_account(stack: DevStack, api_key: str) -> requests.Response:
    return requests.get(f"{stack.url}/v1/account", headers={"X-API-Key": api_key}, timeout=10)


def open_tenant_with_key(admin: Admin, *create_options: str) -> tuple[str, str, str]:
    tenant = new_tenant()
    assert admin("tenant", "create", tenant, *create_options).code == 0
    issued = admin("key", "issue", tenant)
    assert issued.code == 0, issued.err
    return tenant, issued.json["apiKey"], issued.json["keyId"]


def test_what_the_operator_sets_the_api_answers_at_once(dev_stack: DevStack, admin: Admin) -> None:
    tenant = new_tenant()
    created = admin("tenant", "create", tenant, "--credits", "50", "--queue-limit", "7")
    assert created.code == 0, created.err
    assert created.json | {"createdAt": None, "updatedAt": None} == {
        "tenant": tenant,
        "credits": 50,
        "reservedCredits": 0,
        "queueLimit": 7,
        "liveExecutions": 0,
        "createdAt": None,
        "updatedAt": None,
    }

    issued = admin("key", "issue", tenant, "--scopes", "execution:write, execution:read", "--name", "ci")
    assert issued.code == 0, issued.err
    key = issued.json
    assert key["apiKey"].startswith("ag_")
    assert (key["tenant"], key["name"], key["scopes"]) == (
        tenant,
        "ci",
        ["execution:read", "execution:write"],
    )
    assert "shown only now" in issued.err

    answer = api_account(dev_stack, key["apiKey"])
    assert answer.status_code == 200
    assert answer.json() == {
        "tenant": tenant,
        "credits": 50,
        "reservedCredits": 0,
        "queueLimit": 7,
        "liveExecutions": 0,
        "scopes": ["execution:read", "execution:write"],
    }

    assert admin("credits", "add", tenant, "25", "--note", "top-up").json["credits"] == 75
    assert api_account(dev_stack, key["apiKey"]).json()["credits"] == 75
    # A negative amount is a correction.
    assert admin("credits", "add", tenant, "-2.5").json["credits"] == 72.5
    assert api_account(dev_stack, key["apiKey"]).json()["credits"] == 72.5

    assert admin("queue-limit", "set", tenant, "3").json["queueLimit"] == 3
    assert api_account(dev_stack, key["apiKey"]).json()["queueLimit"] == 3

    shown = admin("tenant", "show", tenant).json
    assert (shown["credits"], shown["queueLimit"]) == (72.5, 3)
    assert tenant in {account["tenant"] for account in admin("tenant", "list").json["items"]}
    [listed] = admin("key", "list", tenant).json["items"]
    assert (listed["keyId"], listed["revoked"]) == (key["keyId"], False)
    assert "apiKey" not in listed


def test_a_revoked_key_is_refused_within_the_key_cache(dev_stack: DevStack, admin: Admin) -> None:
    tenant, api_key, key_id = open_tenant_with_key(admin)
    # Used once: the API's key cache now holds it.
    assert api_account(dev_stack, api_key).status_code == 200

    revoked = admin("key", "revoke", tenant, key_id)
    assert revoked.code == 0, revoked.err
    assert revoked.json == {"tenant": tenant, "keyId": key_id, "revoked": True}
    assert "AUTH_CACHE_SECONDS" in revoked.err
    [listed] = admin("key", "list", tenant).json["items"]
    assert listed["revoked"] is True

    # Warm functions may trust their cached copy of the key until it expires, not longer.
    deadline = time.monotonic() + AUTH_CACHE_SECONDS + 2.0
    while (answer := api_account(dev_stack, api_key)).status_code == 200:
        assert time.monotonic() < deadline, "the revoked key is still accepted past the key cache's lifetime"
        time.sleep(0.1)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHORIZED"


def test_the_ledger_explains_the_balance_through_a_reservation_and_its_refund(
    dev_stack: DevStack, admin: Admin
) -> None:
    tenant, api_key, _ = open_tenant_with_key(admin, "--credits", "100")
    headers = {"X-API-Key": api_key}
    submitted = requests.post(
        f"{dev_stack.url}/v1/executions",
        json={"model": "sim-video", "input": {"sim": {"durationSeconds": 60}}},
        headers=headers,
        timeout=30,
    )
    assert submitted.status_code == 202, submitted.text
    execution_id = submitted.json()["executionId"]

    held = admin("ledger", tenant).json
    assert held["balanced"] is True
    assert held["totals"] == {"credits": 90, "reservedCredits": 10}
    assert (held["account"]["credits"], held["account"]["reservedCredits"]) == (90, 10)
    assert [(entry["kind"], entry["executionId"]) for entry in held["items"]] == [
        ("reserve", execution_id),
        ("grant", None),
    ]
    latest = admin("ledger", tenant, "--limit", "1").json
    assert (len(latest["items"]), latest["entries"]) == (1, 2)

    # Cancelled: the reservation comes back, and the ledger says so.
    cancel = requests.post(
        f"{dev_stack.url}/v1/executions/{execution_id}/cancel", headers=headers, timeout=30
    )
    assert cancel.status_code == 200
    deadline = time.monotonic() + 30
    while (
        requests.get(
            f"{dev_stack.url}/v1/executions/{execution_id}",
            params={"waitSeconds": 2},
            headers=headers,
            timeout=30,
        ).json()["status"]
        != "cancelled"
    ):
        assert time.monotonic() < deadline, "the cancel never finished"
    settled = admin("ledger", tenant).json
    assert settled["balanced"] is True
    assert settled["totals"] == {"credits": 100, "reservedCredits": 0}
    assert [entry["kind"] for entry in settled["items"]] == ["refund", "reserve", "grant"]


def test_errors_are_one_coded_line_and_change_nothing(admin: Admin) -> None:
    tenant, _, _ = open_tenant_with_key(admin, "--credits", "10")
    for argv, code in [
        (("tenant", "show", new_tenant()), "TENANT_NOT_FOUND"),
        (("credits", "add", new_tenant(), "5"), "TENANT_NOT_FOUND"),
        (("tenant", "create", tenant), "TENANT_EXISTS"),
        (("key", "revoke", tenant, "key_0000000000000000"), "KEY_NOT_FOUND"),
        (("credits", "add", tenant, "-10.5"), "BALANCE_TOO_LOW"),
        (("credits", "add", tenant, "0"), "INVALID_ARGUMENT"),
        (("queue-limit", "set", tenant, "-1"), "INVALID_ARGUMENT"),
    ]:
        ran = admin(*argv)
        assert ran.code == 2, argv
        assert ran.out == "", argv
        assert ran.err.startswith(f"asyncgate: {code}: "), (argv, ran.err)
        assert len(ran.err.strip().splitlines()) == 1, ran.err
    account = admin("tenant", "show", tenant).json
    assert (account["credits"], account["queueLimit"]) == (10, 100_000)
    assert [entry["kind"] for entry in admin("ledger", tenant).json["items"]] == ["grant"]


def test_the_console_script_reads_the_connection_file_and_speaks_human(
    dev_stack: DevStack, admin: Admin
) -> None:
    connection = json.loads(dev_stack.dev.local_file.read_text())
    assert (connection["apiUrl"], connection["awsEndpoint"]) == (dev_stack.url, dev_stack.dev.aws_endpoint)
    tenant = new_tenant()
    assert admin("tenant", "create", tenant, "--credits", "1000000").code == 0

    shown = admin_script(dev_stack.dev.local_file, "tenant", "show", tenant)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^credits\s+1000000\s*$", shown.stdout, re.MULTILINE), shown.stdout
    issued = admin_script(dev_stack.dev.local_file, "key", "issue", tenant)
    assert re.search(r"^API key\s+ag_\S+", issued.stdout, re.MULTILINE), issued.stdout
    assert "shown only now" in issued.stderr
    ledger = admin_script(dev_stack.dev.local_file, "ledger", tenant)
    assert "opening balance" in ledger.stdout
    assert "the ledger explains the balance" in ledger.stdout


def admin_script(local_file: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ASYNCGATE), "admin", *argv, "--local"],
        env={**os.environ, LOCAL_FILE_ENV: str(local_file)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
