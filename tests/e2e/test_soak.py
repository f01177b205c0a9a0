"""A short soak (issue 13) in `make test`: 300 executions of every kind through the local stack over
HTTP, and not one lost, stuck, charged twice or delivered under two webhook ids (`make soak`: 10 000)."""

from __future__ import annotations

import pytest

from bench.soak import print_report, run

pytestmark = pytest.mark.e2e


def test_a_short_soak_leaves_no_violation() -> None:
    lines: list[str] = []
    report = run(300, clients=8, time_scale=0.005, terminal_bound=45, log=lines.append)
    print_report(report, log=lines.append)
    assert report.terminal_seconds is not None, "\n".join(lines)
    assert report.accepted == 300
    assert report.violations == [], "\n".join(lines)
