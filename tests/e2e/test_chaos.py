"""A short fault matrix (issue 13) in `make test`: the faults marked short, 50 executions each, injected
into the real handlers on the local stack; every invariant holds and every fault converges in its
bound (`make chaos`: every fault). Its own process: the matrix runs the local stack in-process and
takes over its environment, stdout and logging."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asyncgate_dev.handlers import REPO_ROOT
from chaos.faults import FAULTS

pytestmark = pytest.mark.e2e

# Far past what the run takes (about a minute): only a hung run is stopped by it.
RUN_LIMIT_SECONDS = 600


def test_the_short_fault_matrix_converges_without_a_violation(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chaos", "--short", "--log-file", str(tmp_path / "chaos.log")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.strip()}
    for fault in (fault for fault in FAULTS if fault.short):
        executions, converged, _, injected, violations = rows[fault.name]
        assert int(executions) >= 50
        assert converged == executions
        assert int(injected) > 0, f"{fault.name} injected nothing"
        assert violations == "0"
