"""`make bench`, sections 5, 7 and 8b: the local stack over real HTTP (`asyncgate dev` in a child process)."""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from collections import Counter
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
    rate = len(accepted) / (submitted + settle)
    print(
        f"  {BURST} submits from {BURST_CLIENTS} clients in {submitted:.1f} s ({BURST / submitted:.1f}/s):"
        f" accepted {len(accepted)}, refused {refused}, lost {lost} (must be 0)"
    )
    print(
        f"  all terminal {settle:.1f} s after the burst: {rate:.1f} executions/s end to end"
        " (2 s jobs; `make soak` runs the whole mix)"
    )


def _timed_jobs(url: str, seconds: float = JOB_SECONDS) -> tuple[list[int], list[float]]:
    """Polls and completion lag (seconds past the job's own length) of TIMED_JOBS jobs run together."""
    session = requests.Session()
    ids = [_submit(session, url, seconds).json()["executionId"] for _ in range(TIMED_JOBS)]
    deadline = time.monotonic() + seconds * 4 + 60
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
        _instant(execution["completedAt"]) - _instant(execution["startedAt"]) - seconds for execution in done
    ]
    return polls, lags


def _print_timed_jobs(url: str) -> None:
    polls, lags = _timed_jobs(url)
    print(f"  {len(polls)} x {JOB_SECONDS:.0f} s jobs with progress, real time, callbacks off:")
    print(f"    polls mean {statistics.mean(polls):.1f} max {max(polls)} (target <= 4)")
    relative = [lag / JOB_SECONDS for lag in lags]
    print(f"    lag mean {statistics.mean(relative):.1%} max {max(relative):.1%} (target <= 5%)")


def bench_callbacks_local() -> None:
    print(
        f"\n## 8b. Callbacks on vs off on the local stack over HTTP"
        f" ({TIMED_JOBS} x {JOB_SECONDS:.0f} s jobs, real time)"
    )
    for mode in ("off", "on"):
        with tempfile.TemporaryDirectory() as tmp:
            dev = DevProcess.start(
                Path(tmp) / "dev.log", "--port", str(free_port()), env={"PROVIDER_CALLBACKS": mode}
            )
            try:
                polls, lags = _timed_jobs(dev.wait_ready())
            finally:
                dev.stop()
        print(
            f"  callbacks {mode:3}  polls/job mean {statistics.mean(polls):4.1f} max {max(polls):2}"
            f"   completion lag mean {statistics.mean(lags) * 1000:6.0f} ms max {max(lags) * 1000:6.0f} ms"
        )


def _instant(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def bench_local_stack() -> None:
    print("\n## 5. The local stack over HTTP (asyncgate dev in a child process, time scale 1)")
    with tempfile.TemporaryDirectory() as tmp:
        # Callbacks off: the polling figures of issue 3 (section 8 puts them next to callbacks on).
        dev = DevProcess.start(
            Path(tmp) / "dev.log", "--port", str(free_port()), env={"PROVIDER_CALLBACKS": "off"}
        )
        started = time.monotonic()
        url = dev.wait_ready()
        print(f"  startup to the ready line: {time.monotonic() - started:.1f} s (target < 10 s)")
        try:
            _latency(url)
            _burst(url)
            _print_timed_jobs(url)
        finally:
            dev.stop()


# Section 7: two tenants, one held by its queue limit, one by its balance.
QUEUE_LIMIT = 50
QUEUE_BURST = 200
PRICE = 10  # sim-video's price in credits
BUDGET_JOBS = 30
BUDGET_BURST = 100
LIMIT_TENANTS = [
    {"tenant": "limited", "apiKey": "limited-key", "queueLimit": QUEUE_LIMIT, "credits": 1_000_000},
    {"tenant": "budget", "apiKey": "budget-key", "queueLimit": 100_000, "credits": BUDGET_JOBS * PRICE},
]
# Long enough that no job finishes (and frees its slot or settles its reservation) during the check.
LONG_JOB = {"model": "sim-video", "input": {"sim": {"durationSeconds": 600}}}

_sessions = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return session


def _parallel_submits(url: str, api_key: str, count: int) -> tuple[Counter[str], list[str], float]:
    """Answers counted by status and error code ("202", "429 QUEUE_LIMIT_EXCEEDED"; "0 ...": no HTTP
    answer), a sample of the unexpected answers, and the burst's seconds."""

    def one(_: int) -> tuple[str, str]:
        try:
            answer = _session().post(
                f"{url}/v1/executions", json=LONG_JOB, headers={"X-API-Key": api_key}, timeout=60
            )
        except requests.RequestException as error:
            return f"0 {type(error).__name__}", repr(error)
        if answer.status_code == 202:
            return "202", ""
        try:
            code = answer.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "?"
        return f"{answer.status_code} {code}", answer.text[:300]

    started = time.monotonic()
    with ThreadPoolExecutor(BURST_CLIENTS) as pool:
        answers = list(pool.map(one, range(count)))
    elapsed = time.monotonic() - started
    labels = Counter(label for label, _ in answers)
    expected = {"202", "429 QUEUE_LIMIT_EXCEEDED", "402 INSUFFICIENT_CREDITS"}
    odd = [f"{label}: {body}" for label, body in answers if label not in expected][:3]
    return labels, odd, elapsed


def _account(url: str, api_key: str) -> dict[str, Any]:
    answer = requests.get(f"{url}/v1/account", headers={"X-API-Key": api_key}, timeout=60)
    answer.raise_for_status()
    account: dict[str, Any] = answer.json()
    return account


def _listed(url: str, api_key: str) -> Counter[str]:
    """The tenant's executions by status, through every page of GET /v1/executions (bounded)."""
    statuses: Counter[str] = Counter()
    params: dict[str, Any] = {"limit": 100}
    for _ in range(100):
        answer = requests.get(
            f"{url}/v1/executions", params=params, headers={"X-API-Key": api_key}, timeout=60
        )
        answer.raise_for_status()
        page = answer.json()
        statuses.update(item["status"] for item in page["items"])
        if not page["nextCursor"]:
            break
        params["cursor"] = page["nextCursor"]
    return statuses


def _check(failures: list[str], label: str, actual: object, expected: object) -> None:
    if actual != expected:
        failures.append(f"{label} is {actual}, expected {expected}")


def _limit_burst(
    url: str, failures: list[str], label: str, api_key: str, burst: int, fits: int, refusal: str, what: str
) -> dict[str, Any]:
    """`burst` parallel submits of which exactly `fits` may be created and the rest refused with
    `refusal`: prints what happened, records each broken invariant, and answers the account after."""
    labels, odd, elapsed = _parallel_submits(url, api_key, burst)
    account = _account(url, api_key)
    listed = _listed(url, api_key)
    created, refused = labels["202"], labels[refusal]
    print(
        f"  {burst} parallel submits {what}: created {created}, {refusal.split()[0]} {refused}, "
        f"other {burst - created - refused}; account credits {account['credits']} reservedCredits "
        f"{account['reservedCredits']} liveExecutions {account['liveExecutions']}"
    )
    print(
        f"    in {elapsed:.1f} s; answers {dict(sorted(labels.items()))}; listed "
        f"{sum(listed.values())} {dict(listed)}"
    )
    for sample in odd:
        print(f"    unexpected answer: {sample}")
    _check(failures, f"{label}: created", created, fits)
    _check(failures, f"{label}: {refusal}", refused, burst - fits)
    _check(failures, f"{label}: liveExecutions", account["liveExecutions"], fits)
    _check(failures, f"{label}: listed executions", sum(listed.values()), fits)
    _check(failures, f"{label}: reservedCredits", account["reservedCredits"], fits * PRICE)
    return account


def bench_account_limits() -> bool:
    """Section 7; True when every invariant held (each failure printed as a FAIL line)."""
    print(
        "\n## 7. Account limits under concurrency, local stack over HTTP "
        f"({BURST_CLIENTS} client threads, sim-video {json.dumps(LONG_JOB['input'])})"
    )
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tenants = Path(tmp) / "tenants.json"
        tenants.write_text(json.dumps(LIMIT_TENANTS), encoding="utf-8")
        dev = DevProcess.start(Path(tmp) / "dev.log", "--port", str(free_port()), "--tenants", str(tenants))
        try:
            url = dev.wait_ready()

            account = _limit_burst(
                url, failures, "limited", "limited-key", QUEUE_BURST, QUEUE_LIMIT, "429 QUEUE_LIMIT_EXCEEDED",
                f"against queueLimit {QUEUE_LIMIT}",
            )  # fmt: skip
            account = _limit_burst(
                url, failures, "budget", "budget-key", BUDGET_BURST, BUDGET_JOBS, "402 INSUFFICIENT_CREDITS",
                f"with credits for {BUDGET_JOBS} ({BUDGET_JOBS * PRICE} credits, price {PRICE})",
            )  # fmt: skip
            _check(failures, "budget: credits", account["credits"], 0)
        finally:
            dev.stop()
    for failure in failures:
        print(f"  FAIL: {failure}")
    if not failures:
        print("  OK: every invariant held")
    return not failures
