"""`make bench`, section 5: the local stack over real HTTP (`asyncgate dev` in a child process)."""

from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from asyncgate_dev.devprocess import DevProcess, free_port

HEADERS = {"X-API-Key": "dev-key"}
LATENCY_CALLS = 200
BURST = 1000
BURST_CLIENTS = 32
TIMED_JOBS = 5
JOB_SECONDS = 20.0
TERMINAL = {"succeeded", "failed", "cancelled"}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _submit(session: requests.Session, url: str, seconds: float) -> requests.Response:
    body = {"model": "sim-video", "input": {"sim": {"durationSeconds": seconds}}}
    return session.post(f"{url}/v1/executions", json=body, headers=HEADERS, timeout=60)


def _latency(url: str) -> None:
    session = requests.Session()
    for _ in range(10):  # warm every container the first calls create
        session.get(f"{url}/v1/models", headers=HEADERS, timeout=30)
        _submit(session, url, 1)
    models = [
        _timed(lambda: session.get(f"{url}/v1/models", headers=HEADERS, timeout=30))
        for _ in range(LATENCY_CALLS)
    ]
    submits = [_timed(lambda: _submit(session, url, 1)) for _ in range(LATENCY_CALLS)]
    for label, values in (("GET /v1/models (floor)", models), ("POST /v1/executions", submits)):
        p50, p99 = _percentile(values, 0.5) * 1000, _percentile(values, 0.99) * 1000
        print(f"  {label:24} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    ratio_50 = _percentile(submits, 0.5) / _percentile(models, 0.5)
    ratio_99 = _percentile(submits, 0.99) / _percentile(models, 0.99)
    print(f"  {'ratio':24} p50 {ratio_50:.2f}x   p99 {ratio_99:.2f}x")


def _all_terminal(session: requests.Session, url: str, ids: set[str], timeout: float) -> float:
    started = time.monotonic()
    pending = set(ids)
    while pending and time.monotonic() - started < timeout:
        params: dict[str, Any] = {"limit": 100}
        live: set[str] = set()
        for status in ("queued", "running", "cancel_requested"):
            params = {"limit": 100, "status": status}
            while True:
                page = session.get(f"{url}/v1/executions", params=params, headers=HEADERS, timeout=60).json()
                live.update(item["executionId"] for item in page["items"])
                if not page["nextCursor"]:
                    break
                params["cursor"] = page["nextCursor"]
        pending &= live
        if pending:
            time.sleep(1)
    return time.monotonic() - started if not pending else float("nan")


def _burst(url: str) -> None:
    session = requests.Session()
    started = time.monotonic()
    with ThreadPoolExecutor(BURST_CLIENTS) as pool:
        answers = list(pool.map(lambda _: _submit(requests.Session(), url, 2), range(BURST)))
    submitted = time.monotonic() - started
    accepted = {answer.json()["executionId"] for answer in answers if answer.status_code == 202}
    refused = BURST - len(accepted)
    settle = _all_terminal(session, url, accepted, timeout=300)
    # Lost: accepted but never found again, or left without a terminal status.
    lost = 0
    for execution_id in accepted:
        answer = session.get(f"{url}/v1/executions/{execution_id}", headers=HEADERS, timeout=60)
        if answer.status_code != 200 or answer.json()["status"] not in TERMINAL:
            lost += 1
    print(
        f"  {BURST} submits from {BURST_CLIENTS} clients in {submitted:.1f} s: accepted {len(accepted)}, "
        f"refused {refused}, lost {lost} (must be 0); all terminal {settle:.1f} s after the burst"
    )


def _timed_jobs(url: str) -> None:
    session = requests.Session()
    ids = [_submit(session, url, JOB_SECONDS).json()["executionId"] for _ in range(TIMED_JOBS)]
    deadline = time.monotonic() + JOB_SECONDS * 4
    done: list[dict[str, Any]] = []
    for execution_id in ids:
        while time.monotonic() < deadline:
            answer = session.get(
                f"{url}/v1/executions/{execution_id}", params={"waitSeconds": 20}, headers=HEADERS, timeout=60
            ).json()
            if answer["status"] in TERMINAL:
                done.append(answer)
                break
    polls = [execution["pollCount"] for execution in done]
    lags = [
        (_instant(execution["completedAt"]) - _instant(execution["startedAt"]) - JOB_SECONDS) / JOB_SECONDS
        for execution in done
    ]
    print(f"  {len(done)} x {JOB_SECONDS:.0f} s jobs with progress, real time:")
    print(f"    polls mean {statistics.mean(polls):.1f} max {max(polls)} (target <= 4)")
    print(f"    lag mean {statistics.mean(lags):.1%} max {max(lags):.1%} (target <= 5%)")


def _instant(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def bench_local_stack() -> None:
    print("\n## 5. The local stack over HTTP (asyncgate dev in a child process, time scale 1)")
    with tempfile.TemporaryDirectory() as tmp:
        dev = DevProcess.start(Path(tmp) / "dev.log", "--port", str(free_port()))
        started = time.monotonic()
        url = dev.wait_ready()
        print(f"  startup to the ready line: {time.monotonic() - started:.1f} s (target < 10 s)")
        try:
            _latency(url)
            _burst(url)
            _timed_jobs(url)
        finally:
            dev.stop()
