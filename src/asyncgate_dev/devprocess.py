"""`asyncgate dev` as a child process, for the end-to-end tests and the benchmarks: start it, wait for
its ready line, read the addresses it prints, stop it the way a terminal would."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from asyncgate_dev.awsenv import DUMMY_AWS_ENV
from asyncgate_dev.localfile import LOCAL_FILE_ENV

ASYNCGATE = Path(sys.executable).parent / "asyncgate"
READY = re.compile(r"asyncgate ready at (http://\S+)")
EMULATOR = re.compile(r"AWS emulator at (http://\S+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class DevProcess:
    process: subprocess.Popen[bytes]
    log: Path
    # Its connection file (`asyncgate admin --local`), beside the log: never the one of a developer's
    # own `make dev`.
    local_file: Path

    @classmethod
    def start(cls, log: Path, *arguments: str, env: dict[str, str] | None = None) -> DevProcess:
        local_file = log.with_suffix(".local.json")
        process = subprocess.Popen(  # noqa: S603 - our own console script
            [str(ASYNCGATE), "dev", *arguments],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **DUMMY_AWS_ENV, LOCAL_FILE_ENV: str(local_file), **(env or {})},
        )
        return cls(process, log, local_file)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> str:
        """The URL of the ready line; raises if the process exits or stays silent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = READY.search(self.output())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise RuntimeError(f"asyncgate dev exited {self.process.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise RuntimeError(f"no ready line after {timeout}s:\n{self.output()}")

    @property
    def aws_endpoint(self) -> str:
        found = EMULATOR.search(self.output())
        if not found:
            raise RuntimeError("asyncgate dev printed no AWS emulator address")
        return found.group(1)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, as a terminal or a supervisor sends; killed if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
