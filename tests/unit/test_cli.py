"""The `asyncgate` CLI in-process (and once under a pseudo-terminal) against the scripted loopback API."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncgate_dev.awsenv import DUMMY_AWS_ENV
from asyncgate_dev.cli import build_parser, main
from asyncgate_dev.localfile import LOCAL_FILE_ENV, LocalConnection
from tests.fakes import Answer, FakeApi
from tests.unit.test_client import (
    EXECUTION_ID,
    EXECUTION_PATH,
    accepted,
    closed_port,
    envelope,
    execution,
    failed,
    succeeded,
)

NOW = {"Retry-After": "0"}


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    yield fake
    fake.close()


def run(api: FakeApi, *argv: str) -> int:
    return main(["--base-url", api.url, "--api-key", "key-a", *argv])


@pytest.mark.parametrize(
    "argv",
    [["--json", "status", EXECUTION_ID], ["status", EXECUTION_ID, "--json"]],
    ids=["global", "command"],
)
def test_json_status_prints_parseable_json(
    api: FakeApi, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    api.on("GET", EXECUTION_PATH, Answer(body=execution("running", 42.0), headers={"Retry-After": "2"}))

    code = run(api, *argv)

    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (printed["executionId"], printed["status"], printed["progress"]) == (EXECUTION_ID, "running", 42.0)
    assert printed["createdAt"] == "2026-11-22T17:16:06.532Z"
    assert api.seen[0].headers["x-api-key"] == "key-a"


def test_human_status_names_the_fields(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("GET", EXECUTION_PATH, Answer(body=failed()))

    assert run(api, "status", EXECUTION_ID) == 0

    out = capsys.readouterr().out
    assert EXECUTION_ID in out
    assert "PROVIDER_FAILED: the provider reported failure" in out


@pytest.mark.parametrize(
    ("final", "exit_code", "shown"),
    [
        (succeeded(), 0, "https://cdn.example.com/fox.mp4"),
        (failed(), 1, "PROVIDER_FAILED"),
        (execution("cancelled", 50.0, completedAt="2026-11-22T17:16:10.000Z"), 1, "cancelled"),
    ],
    ids=["succeeded", "failed", "cancelled"],
)
def test_wait_exit_status_follows_the_outcome(
    api: FakeApi, capsys: pytest.CaptureFixture[str], final: dict[str, Any], exit_code: int, shown: str
) -> None:
    api.on(
        "GET",
        EXECUTION_PATH,
        Answer(body=execution("running", 10.0), headers=NOW),
        Answer(body=final),
    )

    code = run(api, "wait", EXECUTION_ID)

    lines = capsys.readouterr().out.splitlines()
    assert code == exit_code
    # Not a terminal: a plain line per change, then the outcome.
    assert "running  10%" in lines[0]
    assert final["status"] in lines[1]
    assert shown in "\n".join(lines[2:])


def test_api_error_exits_2_with_the_code_on_stderr(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("GET", EXECUTION_PATH, Answer(404, envelope("EXECUTION_NOT_FOUND", "no such execution")))

    code = run(api, "wait", EXECUTION_ID)

    captured = capsys.readouterr()
    assert code == 2
    assert "EXECUTION_NOT_FOUND" in captured.err
    assert "no such execution" in captured.err
    assert captured.out == ""


def test_submit_reads_input_from_a_file(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    payload = {"prompt": "a red fox", "sim": {"durationSeconds": 1, "outputs": 2}}
    (tmp_path / "input.json").write_text(json.dumps(payload), encoding="utf-8")
    api.on("POST", "/v1/executions", Answer(202, accepted()))

    code = run(
        api,
        "submit",
        "sim-video",
        "--input",
        f"@{tmp_path / 'input.json'}",
        "--metadata",
        '{"order": "A-17"}',
        "--webhook",
        "https://example.com/hook",
    )

    assert code == 0
    assert api.seen[0].body == {
        "model": "sim-video",
        "input": payload,
        "webhook": {"url": "https://example.com/hook"},
        "metadata": {"order": "A-17"},
    }
    assert EXECUTION_ID in capsys.readouterr().out


def test_submit_wait_json_ends_with_the_final_state(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("POST", "/v1/executions", Answer(202, accepted()))
    api.on(
        "GET",
        EXECUTION_PATH,
        Answer(body=execution("queued", None), headers=NOW),
        Answer(body=execution("running", 50.0), headers=NOW),
        Answer(body=succeeded()),
    )

    code = run(api, "submit", "sim-video", "--input", "{}", "--wait", "--json")

    values = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert values[0]["async"] is True
    assert [value["status"] for value in values[1:]] == ["queued", "running", "succeeded"]
    assert values[-1]["result"]["outputs"][0]["contentType"] == "video/mp4"


@pytest.mark.parametrize(
    ("input_arg", "complaint"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("@/nonexistent/in.json", "cannot read"),
    ],
)
def test_bad_input_is_a_usage_error(
    api: FakeApi, capsys: pytest.CaptureFixture[str], input_arg: str, complaint: str
) -> None:
    code = run(api, "submit", "sim-video", "--input", input_arg)

    captured = capsys.readouterr()
    assert code == 2
    assert "--input" in captured.err
    assert complaint in captured.err
    assert api.seen == []


def test_argparse_usage_errors_return_2(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(api, "list", "--status", "sleeping") == 2
    assert "invalid choice" in capsys.readouterr().err
    assert api.seen == []


def test_connection_refused_is_one_line_naming_the_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    url = f"http://127.0.0.1:{closed_port()}"

    code = main(["--base-url", url, "account"])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip() == f"asyncgate: cannot reach {url}: Connection refused"
    assert captured.out == ""
    # Reads are retried with backoff before the CLI gives up.
    assert len(sleeps) == 3


def test_list_models_account_and_webhooks_in_json(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("GET", "/v1/executions", Answer(body={"items": [execution()], "nextCursor": "c2"}))
    api.on("GET", "/v1/account", Answer(body=account_body()))
    api.on("GET", "/v1/webhooks/secret", Answer(body={"secret": "whsec_dGVuYW50"}))

    assert run(api, "--json", "list", "--status", "running", "--limit", "5") == 0
    assert json.loads(capsys.readouterr().out)["nextCursor"] == "c2"
    assert api.seen[0].query == {"status": "running", "limit": "5"}
    assert run(api, "account", "--json") == 0
    assert json.loads(capsys.readouterr().out)["reservedCredits"] == 10.0
    assert run(api, "webhooks", "secret", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"secret": "whsec_dGVuYW50"}


def test_webhooks_create_sends_the_events(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    created = {
        "id": "wh_1",
        "url": "https://example.com/hook",
        "events": ["execution.failed", "execution.cancelled"],
        "createdAt": "2026-11-22T17:00:00.000Z",
        "secret": "whsec_c2VjcmV0",
    }
    api.on("POST", "/v1/webhooks", Answer(201, created))

    code = run(
        api,
        "webhooks",
        "create",
        "https://example.com/hook",
        "--events",
        "execution.failed, execution.cancelled",
    )

    assert code == 0
    assert api.seen[0].body == {
        "url": "https://example.com/hook",
        "events": ["execution.failed", "execution.cancelled"],
    }
    assert "whsec_c2VjcmV0" in capsys.readouterr().out


def test_dev_hands_its_options_to_the_local_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    def run_dev(**options: Any) -> int:
        calls.append(options)
        return 0

    monkeypatch.setitem(sys.modules, "asyncgate_dev.localstack", types.SimpleNamespace(run_dev=run_dev))
    tenants = tmp_path / "tenants.json"

    assert main(["dev", "--port", "3999", "--tenants", str(tenants), "--time-scale", "0.01"]) == 0
    assert main(["dev"]) == 0
    assert calls == [
        {"host": "127.0.0.1", "port": 3999, "tenants_file": tenants, "time_scale": 0.01},
        {"host": "127.0.0.1", "port": 3000, "tenants_file": None, "time_scale": 1.0},
    ]


def test_wait_draws_a_progress_bar_on_a_terminal(api: FakeApi) -> None:
    api.on(
        "GET",
        EXECUTION_PATH,
        Answer(body=execution("running", 10.0), headers=NOW),
        Answer(body=execution("running", 60.0), headers=NOW),
        Answer(body=succeeded()),
    )
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncgate_dev.cli", "--base-url", api.url, "wait", EXECUTION_ID],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    raw = read_until_closed(controller, timeout=15.0)
    code = proc.wait(timeout=5)

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert code == 0, text
    # rich's live display: hidden cursor, a drawn bar, and the final percentage.
    assert "\x1b[?25l" in raw
    assert "━" in text
    assert "100%" in text
    assert f"succeeded {EXECUTION_ID}" in text


@pytest.fixture
def no_admin_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No table named, no local stack running, dummy credentials; the connection file's path."""
    for name in ("ASYNCGATE_TABLE", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    local_file = tmp_path / "local.json"
    monkeypatch.setenv(LOCAL_FILE_ENV, str(local_file))
    return local_file


def run_admin(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`asyncgate admin ... --json`: the exit status and the one line on stderr (nothing on stdout)."""
    code = main(["admin", *argv, "--json"])
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    return code, line


def test_admin_says_which_table_is_missing(
    no_admin_target: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore retries a refused connection (the stale file below): no real waits.
    monkeypatch.setattr(time, "sleep", lambda seconds: None)

    code, line = run_admin(capsys, "tenant", "show", "acme")
    assert (code, line.split(": ")[:2]) == (2, ["asyncgate", "NO_TABLE"])
    assert "ExecutionsTableName" in line

    code, line = run_admin(capsys, "tenant", "list", "--local")
    assert code == 2
    assert line.startswith(
        f"asyncgate: LOCAL_STACK_NOT_RUNNING: no local stack is running ({no_admin_target}"
    )

    code, line = run_admin(capsys, "--local", "tenant", "list", "--table", "asyncgate-table")
    assert (code, line.split(": ")[1]) == (2, "INVALID_ARGUMENT")

    # A file left behind by a stack that did not stop cleanly: its emulator no longer answers.
    stale = LocalConnection(
        api_url="http://127.0.0.1:3000",
        aws_endpoint=f"http://127.0.0.1:{closed_port()}",
        region="us-east-1",
        table_name="asyncgate-ExecutionsTable",
    )
    no_admin_target.write_text(stale.model_dump_json(by_alias=True))
    code, line = run_admin(capsys, "tenant", "list", "--local")
    assert code == 2
    assert line.startswith("asyncgate: LOCAL_STACK_NOT_RUNNING: the local stack does not answer")


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["tenant", "create", "Acme Corp"], "INVALID_TENANT_ID"),
        (["key", "list", "acme.corp"], "INVALID_TENANT_ID"),
        (["key", "issue", "acme", "--scopes", "execution:read,execution:delete"], "INVALID_SCOPE"),
        (["key", "issue", "acme", "--scopes", " , "], "INVALID_SCOPE"),
        (["ledger", "acme", "--limit", "0"], "INVALID_ARGUMENT"),
    ],
)
def test_admin_checks_its_arguments_before_reaching_the_table(
    no_admin_target: Path, capsys: pytest.CaptureFixture[str], argv: list[str], error: str
) -> None:
    # A table behind a closed port: a command that got as far as AWS would answer AWS_ERROR.
    table = ["--table", "t", "--region", "us-east-1", "--endpoint-url", f"http://127.0.0.1:{closed_port()}"]

    code, line = run_admin(capsys, *argv, *table)

    assert code == 2
    assert line.startswith(f"asyncgate: {error}: ")


def test_admin_options_parse_on_either_level_and_amounts_keep_their_type() -> None:
    parser = build_parser()
    assert parser.parse_args(["admin", "--local", "tenant", "list"]).local is True
    assert parser.parse_args(["admin", "tenant", "list", "--local"]).local is True
    create = parser.parse_args(["admin", "tenant", "create", "acme"])
    assert (create.admin_action, create.queue_limit, create.credits) == ("tenant create", 100_000, 0)
    correction = parser.parse_args(["admin", "credits", "add", "acme", "-50", "--note", "refund #17"])
    assert (correction.admin_action, correction.amount, correction.note) == ("credits add", -50, "refund #17")
    assert isinstance(correction.amount, int)
    assert parser.parse_args(["admin", "credits", "add", "acme", "2.5"]).amount == 2.5
    assert parser.parse_args(["admin", "ledger", "acme"]).limit == 20


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["credits", "add", "acme", "lots"], "not a number: 'lots'"),
        (["credits", "add", "acme", "nan"], "not a finite number"),
        (["queue-limit", "set", "acme", "many"], "invalid int value"),
        (["key"], "the following arguments are required: ACTION"),
    ],
)
def test_admin_usage_errors_return_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], complaint: str
) -> None:
    assert main(["admin", *argv]) == 2
    assert complaint in capsys.readouterr().err


def read_until_closed(fd: int, timeout: float) -> str:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its end of the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


def account_body() -> dict[str, Any]:
    return {
        "tenant": "tenant-a",
        "credits": 990.0,
        "reservedCredits": 10.0,
        "queueLimit": 100000,
        "liveExecutions": 1,
        "scopes": ["execution:write", "execution:read", "execution:cancel", "webhook:manage"],
    }
