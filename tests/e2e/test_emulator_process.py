"""The local stack's AWS emulator in a process of its own (asyncgate_dev.motoserver): it serves the
stack's table and queues, Step Functions stays with the stack, and it never outlives the stack."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import boto3
import pytest

from asyncgate_dev.devprocess import DevProcess, free_port

pytestmark = pytest.mark.e2e


def _children(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.add(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("ending", ["stop", "kill"])
def test_the_emulator_serves_from_its_own_process_and_ends_with_the_stack(
    tmp_path: Path, ending: str
) -> None:
    dev = DevProcess.start(tmp_path / "dev.log", "--port", str(free_port()))
    dev.wait_ready()
    try:
        [emulator] = _children(dev.process.pid)
        session = boto3.session.Session(region_name="us-east-1")
        tables = session.client("dynamodb", endpoint_url=dev.aws_endpoint).list_tables()["TableNames"]
        assert tables == ["asyncgate-ExecutionsTable"]
        queues = session.client("sqs", endpoint_url=dev.aws_endpoint).list_queues()["QueueUrls"]
        assert any(url.endswith("PollQueue") for url in queues)
        # The state machines are the stack's own, not the emulator process's.
        machines = session.client("stepfunctions", endpoint_url=dev.aws_endpoint).list_state_machines()
        assert machines["stateMachines"] == []
    finally:
        if ending == "stop":
            assert dev.stop() == 0
        else:
            os.kill(dev.process.pid, signal.SIGKILL)
            dev.process.wait()
    # Its standard input closes with the stack, however the stack ended.
    deadline = time.monotonic() + 10
    while _alive(emulator) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(emulator), f"the emulator ({emulator}) outlived the stack ({ending})"
