"""`make soak` (issue 13): N executions (10 000 by default) through the local stack over HTTP, then
"nothing stuck, nothing lost, nothing free" checked against the contract (API.md).

`asyncgate dev` runs in a child process with several tenants and a small time scale, so webhook retry
gaps pass within the run; webhook receivers on loopback answer 200, always 503, 503 to their first
deliveries, or 410. A bounded pool of clients submits a seeded mix: sim-video (inline dispatch) and
sim-image (queued), outcomes succeed / fail / incomplete, several outputs, poll errors, a provider
refusing the submit, cancels while running, per-execution webhooks and tenant endpoints, and
Idempotency-Keys sent several times at once and again at the end. Then, once every accepted execution
is terminal (within a bound), it checks:

- lost: accepted but not found; stuck: not terminal within the bound (each shown with its item and
  the poll queue's counts); every outcome the one its input asked for (cancelled when a cancel was
  accepted);
- idempotency: every answer to one key names one execution, a later retry replays it, and no
  execution exists that no answer named;
- money, from the tenants' ledgers (read from the table through the connection file `asyncgate dev`
  writes, as `asyncgate admin --local` does) and accounts: one reserve and one settle-or-refund per
  execution; a success costs its price, a cancel after the provider finished too, anything else 0;
  balance + reserved == grants - charged; nothing reserved and nothing live at the end;
- webhooks: every delivery signed with its destination's secret; one webhook-id per (execution,
  event, destination) and one event per webhook-id; every terminal event delivered to receivers that
  answer (at once or after failures); the execution's `webhook.state` `delivered` or `failed` after
  its attempts, never `pending` at the end.

It prints executions/s and a compact table, and exits 1 on any violation. `python -m bench.soak --n 300`
(`make soak N=300`) runs a short one; tests/e2e/test_soak.py runs that in `make test`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import requests
from standardwebhooks import Webhook

from asyncgate.store.accounts import AccountStore
from asyncgate_dev.awsenv import DUMMY_AWS_ENV
from asyncgate_dev.devprocess import DevProcess, free_port
from asyncgate_dev.localfile import LocalConnection
from asyncgate_dev.receiver import Received, Responder, WebhookReceiver, always

DEFAULT_N = 10_000
DEFAULT_CLIENTS = 16
# Webhook retry gaps (2, 4, 8, 16 min, +-25 %) pass in about 2 minutes; poll backoff, visibility timeouts
# and the schedules shrink alike (the sweeper every 3 s, the counter audit, which reads every live
# execution, every 30 s: smaller scales spend the stack on them). Job durations stay wall-clock.
DEFAULT_TIME_SCALE = 0.05
# The longest an execution may take to end after the last submit (a lost tick waits for the sweeper's
# 120 s grace plus its period); the webhook retry schedule has its own bound.
DEFAULT_TERMINAL_BOUND = 600.0
# Live executions the clients let pile up (see LiveCap): about a minute of the stack's work.
DEFAULT_MAX_LIVE = 400
TERMINAL = {"succeeded", "failed", "cancelled"}
MAX_WEBHOOK_ATTEMPTS = 5
RETRY_SCHEDULE_SECONDS = 30 * 60 * 1.25
HTTP_TIMEOUT = 60
TENANTS = ("soak-a", "soak-b", "soak-c", "soak-d")
# Receivers of per-execution webhooks, and the share of webhook-carrying executions each gets.
EXECUTION_RECEIVERS = {"ok": 0.55, "down": 0.15, "flaky": 0.15, "gone": 0.15}
# Tenant endpoints: soak-b's answers, soak-c's fails its first deliveries, soak-d's is gone (410).
ENDPOINTS = {"soak-b": "endpoint-ok", "soak-c": "endpoint-flaky", "soak-d": "endpoint-gone"}
# Receivers whose deliveries must all arrive in the end (those that answer 2xx, at once or later).
ANSWERING = {"ok", "flaky", "endpoint-ok", "endpoint-flaky"}
# The flaky receivers fail the first attempts of every event: its retries must bring it in.
FLAKY_FAILURES = 2


def _secret(tenant: str) -> str:
    return "whsec_" + base64.b64encode(f"{tenant}-soak-signing-secret!".encode()[:24]).decode()


def _key(tenant: str) -> str:
    return f"{tenant}-key"


# ---------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """One execution to submit, and what the contract says becomes of it."""

    number: int
    tenant: str
    model: str
    sim: dict[str, Any]
    webhook: str | None  # the receiver of the execution's own webhook
    idempotency_key: str | None
    simultaneous: int  # submits of this key at the same moment (1: just one)
    cancel_after: float | None

    def body(self, receivers: dict[str, WebhookReceiver]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": {"prompt": f"soak {self.number}", "sim": self.sim},
            "metadata": {"soak": str(self.number)},
        }
        if self.webhook is not None:
            body["webhook"] = {"url": receivers[self.webhook].url}
        return body

    def expected(self, cancelled: bool) -> tuple[str, str | None]:
        """The final status and error code its input asks for."""
        if "submitStatus" in self.sim:
            return "failed", "PROVIDER_SUBMIT_FAILED"
        if cancelled:
            return "cancelled", None
        return {
            "succeed": ("succeeded", None),
            "fail": ("failed", "PROVIDER_FAILED"),
            "incomplete": ("failed", "PROVIDER_RESPONSE_INCOMPLETE"),
        }[self.sim["outcome"]]


def make_plans(count: int, seed: int) -> list[Plan]:
    rng = random.Random(seed)
    plans = []
    for number in range(count):
        sim: dict[str, Any] = {
            "durationSeconds": round(rng.uniform(0.3, 2.5), 2),
            "outcome": rng.choices(["succeed", "fail", "incomplete"], [0.78, 0.12, 0.10])[0],
            "outputs": rng.choice([1, 1, 2, 3]),
        }
        if rng.random() < 0.2:
            sim["pollErrors"] = rng.randint(1, 3)  # within the error budget (5): the job still ends
        cancel_after = None
        if rng.random() < 0.04:
            sim["submitStatus"] = 500
        elif rng.random() < 0.06:
            sim["durationSeconds"] = 6.0  # long enough to be running when the cancel comes
            cancel_after = round(rng.uniform(0.5, 2.0), 2)
        webhook = None
        if rng.random() < 0.25:
            webhook = rng.choices(list(EXECUTION_RECEIVERS), list(EXECUTION_RECEIVERS.values()))[0]
        keyed = rng.random() < 0.12
        plans.append(
            Plan(
                number=number,
                tenant=TENANTS[number % len(TENANTS)],
                model=rng.choice(["sim-video", "sim-image"]),
                sim=sim,
                webhook=webhook,
                idempotency_key=f"soak-{seed}-{number}" if keyed else None,
                simultaneous=rng.choice([1, 2, 3]) if keyed else 1,
                cancel_after=cancel_after,
            )
        )
    return plans


# ------------------------------------------------------------------------------------------- running


@dataclass
class Answer:
    status: int
    execution_id: str | None
    code: str | None
    replayed: bool


@dataclass
class Submitted:
    plan: Plan
    answers: list[Answer] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    cancel_status: int | None = None

    @property
    def ids(self) -> set[str]:
        return {answer.execution_id for answer in self.answers if answer.execution_id}

    @property
    def execution_id(self) -> str | None:
        return next(iter(self.ids), None)


_sessions = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return session


def _headers(tenant: str, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"X-API-Key": _key(tenant)}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def _post_submit(url: str, plan: Plan, body: dict[str, Any]) -> Answer:
    """One submit; a key still held by a simultaneous request (409 IDEMPOTENCY_KEY_IN_USE) is asked again
    after its Retry-After, as a client would."""
    for _ in range(30):
        response = _session().post(
            f"{url}/v1/executions",
            json=body,
            headers=_headers(plan.tenant, plan.idempotency_key),
            timeout=HTTP_TIMEOUT,
        )
        payload = response.json()
        code = payload.get("error", {}).get("code") if response.status_code >= 400 else None
        if code == "IDEMPOTENCY_KEY_IN_USE":
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        if response.status_code == 202:
            execution_id = payload.get("executionId")
        else:
            execution_id = (payload.get("error", {}).get("details") or {}).get("executionId")
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        return Answer(response.status_code, execution_id, code, replayed)
    raise RuntimeError("the idempotency key stayed in use")


def submit(url: str, plan: Plan, receivers: dict[str, WebhookReceiver]) -> Submitted:
    done = Submitted(plan)
    body = plan.body(receivers)
    try:
        if plan.simultaneous > 1:
            start = threading.Barrier(plan.simultaneous)

            def at_once(_: int) -> Answer:
                start.wait()
                return _post_submit(url, plan, body)

            with ThreadPoolExecutor(plan.simultaneous) as together:
                done.answers.extend(together.map(at_once, range(plan.simultaneous)))
        else:
            done.answers.append(_post_submit(url, plan, body))
    except (requests.RequestException, ValueError, RuntimeError) as error:
        done.problems.append(f"submit: no answer ({type(error).__name__}: {error})")
        return done
    expected = {500} if "submitStatus" in plan.sim and plan.model == "sim-video" else {202}
    for answer in done.answers:
        if answer.status not in expected:
            done.problems.append(f"submit answered {answer.status} {answer.code}")
    return done


def cancel(url: str, done: Submitted) -> None:
    execution_id = done.execution_id
    if execution_id is None:
        return
    try:
        response = _session().post(
            f"{url}/v1/executions/{execution_id}/cancel",
            headers=_headers(done.plan.tenant),
            timeout=HTTP_TIMEOUT,
        )
    except requests.RequestException as error:
        done.problems.append(f"cancel: no answer ({error})")
        return
    done.cancel_status = response.status_code
    if response.status_code not in {200, 409}:
        done.problems.append(f"cancel answered {response.status_code}: {response.text[:200]}")


class Cancels:
    """Cancels due a moment after their submit, made by their own few threads so that submitting goes on."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._timers: list[threading.Timer] = []

    def later(self, done: Submitted, seconds: float) -> None:
        timer = threading.Timer(seconds, cancel, args=(self._url, done))
        timer.start()
        self._timers.append(timer)

    def join(self) -> None:
        for timer in self._timers:
            timer.join()


class LiveCap:
    """Clients that follow their jobs do not submit without end: submits wait while the tenants hold
    `cap` live executions (their accounts read a few times a second). Without it, a stack slower than
    the clients piles up a backlog until jobs outlive their maxDurationSeconds in the queue."""

    def __init__(self, url: str, cap: int) -> None:
        self._url = url
        self._cap = cap
        self._live = 0
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, name="soak-live-cap", daemon=True)

    def __enter__(self) -> LiveCap:
        self._reader.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._reader.join()

    def wait(self) -> None:
        while self._live >= self._cap and not self._done.is_set():
            time.sleep(0.05)

    def _read(self) -> None:
        while not self._done.wait(0.25):
            with contextlib.suppress(requests.RequestException):  # a missed reading: the next one counts
                self._live = sum(_account(self._url, tenant)["liveExecutions"] for tenant in TENANTS)


def _list(url: str, tenant: str, status: str | None = None) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {"limit": 100, **({"status": status} if status else {})}
    while True:
        response = _session().get(
            f"{url}/v1/executions", params=params, headers=_headers(tenant), timeout=HTTP_TIMEOUT
        )
        response.raise_for_status()
        page = response.json()
        yield from page["items"]
        if not page["nextCursor"]:
            return
        params["cursor"] = page["nextCursor"]


def _account(url: str, tenant: str) -> dict[str, Any]:
    response = _session().get(f"{url}/v1/account", headers=_headers(tenant), timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    account: dict[str, Any] = response.json()
    return account


def _none_live(url: str) -> bool:
    """Every execution terminal, by the accounts' live counters (one read per tenant, where listing the
    live executions would load the stack under test); the final listing checks it item by item."""
    return all(_account(url, tenant)["liveExecutions"] == 0 for tenant in TENANTS)


def _live_ids(url: str) -> set[str]:
    return {
        item["executionId"]
        for tenant in TENANTS
        for status in ("queued", "running", "cancel_requested")
        for item in _list(url, tenant, status)
    }


def _all_executions(url: str) -> dict[str, dict[str, Any]]:
    return {item["executionId"]: item for tenant in TENANTS for item in _list(url, tenant)}


@dataclass
class WebhookWait:
    """Until every execution webhook has settled and every terminal event reached the tenant endpoints
    that answer: each round reads only the executions whose webhook was still pending."""

    url: str
    executions: dict[str, dict[str, Any]]
    tenant_of: dict[str, str]
    receivers: dict[str, WebhookReceiver]
    pending: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.pending = {
            execution_id
            for execution_id, item in self.executions.items()
            if (item.get("webhook") or {}).get("state") not in {"none", "delivered", "failed"}
        }

    def settled(self) -> bool:
        for execution_id in list(self.pending):
            response = _session().get(
                f"{self.url}/v1/executions/{execution_id}",
                headers=_headers(self.tenant_of[execution_id]),
                timeout=HTTP_TIMEOUT,
            )
            if response.ok and response.json()["webhook"]["state"] != "pending":
                self.pending.discard(execution_id)
        if self.pending:
            return False
        arrived = {
            (json.loads(received.body).get("data", {}).get("executionId"), name)
            for name in ANSWERING & set(ENDPOINTS.values())
            for received, status in _answered(self.receivers[name])
            if 200 <= status < 300
        }
        return all(
            (execution_id, ENDPOINTS[tenant]) in arrived
            for execution_id, item in self.executions.items()
            if item["status"] in TERMINAL
            and (tenant := self.tenant_of.get(execution_id, "")) in ENDPOINTS
            and ENDPOINTS[tenant] in ANSWERING
        )


def wait_until(condition: Callable[[], bool], bound: float, every: float = 1.0) -> bool:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


# ------------------------------------------------------------------------------------------- checking


@dataclass
class Delivery:
    destination: str
    webhook_id: str
    event_type: str
    execution_id: str
    signed: bool
    answered: int  # the status the receiver answered


def _answered(receiver: WebhookReceiver) -> list[tuple[Received, int]]:
    """Each delivery with the status its receiver answered (recorded by `Answers`, in the same order)."""
    assert isinstance(receiver.responder, Answers)
    return list(zip(list(receiver.received), list(receiver.responder.statuses), strict=False))


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)
    rows: list[tuple[str, str, int]] = field(default_factory=list)  # (check, what, violations)

    def check(self, name: str, detail: str, failures: list[str], show: int = 5) -> None:
        self.rows.append((name, detail, len(failures)))
        self.violations.extend(f"{name}: {failure}" for failure in failures[:show])
        if len(failures) > show:
            self.violations.append(f"{name}: ... and {len(failures) - show} more")


def _signed(received: Received, secret: str) -> bool:
    """The Standard Webhooks signature, checked with the reference package's own signing (its verify
    also bounds the timestamp by the clock, which an after-the-run check cannot)."""
    headers = received.headers
    try:
        stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
        expected = Webhook(secret).sign(headers["webhook-id"], stamp, received.body)
    except (KeyError, ValueError):
        return False
    return expected in headers.get("webhook-signature", "").split(" ")


def deliveries(receivers: dict[str, WebhookReceiver], secret: Callable[[str, str], str]) -> list[Delivery]:
    """Every delivery each receiver got; `secret(destination, execution_id)` is what it is signed with."""
    found = []
    for name, receiver in receivers.items():
        for received, status in _answered(receiver):
            event = json.loads(received.body)
            execution_id = event.get("data", {}).get("executionId", "")
            found.append(
                Delivery(
                    destination=name,
                    webhook_id=received.headers.get("webhook-id", ""),
                    event_type=event.get("type", ""),
                    execution_id=execution_id,
                    signed=_signed(received, secret(name, execution_id)),
                    answered=status,
                )
            )
    return found


@dataclass
class World:
    """What the run left: the plans' answers, the executions as listed, ledgers, accounts, deliveries."""

    submitted: list[Submitted]
    executions: dict[str, dict[str, Any]]
    ledgers: dict[str, list[Any]]
    accounts: dict[str, dict[str, Any]]
    deliveries: list[Delivery]
    replays: dict[int, list[Answer]]


def check(world: World, findings: Findings, stuck: set[str]) -> None:
    _check_ends(world, findings, stuck)
    _check_idempotency(world, findings)
    _check_money(world, findings)
    _check_webhooks(world, findings)


def _check_ends(world: World, findings: Findings, stuck_at_bound: set[str]) -> None:
    answered = [done for done in world.submitted if done.execution_id]
    findings.check(
        "answers",
        f"{sum(len(done.answers) for done in world.submitted)} submits",
        [f"#{done.plan.number}: {problem}" for done in world.submitted for problem in done.problems],
    )
    lost = [done.execution_id for done in answered if done.execution_id not in world.executions]
    findings.check("lost", "accepted, never found", [str(execution_id) for execution_id in lost])
    stuck = [
        f"{execution_id} {execution['status']} (at the bound: {execution_id in stuck_at_bound})"
        for execution_id, execution in world.executions.items()
        if execution["status"] not in TERMINAL or execution_id in stuck_at_bound
    ]
    findings.check("stuck", "not terminal within the bound", stuck)
    wrong = []
    for done in answered:
        execution = world.executions.get(str(done.execution_id))
        if execution is None or execution["status"] not in TERMINAL:
            continue
        status, code = done.plan.expected(cancelled=done.cancel_status == 200)
        got = (execution["status"], (execution.get("error") or {}).get("code"))
        if got != (status, code):
            wrong.append(
                f"{done.execution_id} #{done.plan.number} {done.plan.sim}: {got}, expected {(status, code)}"
            )
    findings.check("outcomes", "as the input asked", wrong)


def _check_idempotency(world: World, findings: Findings) -> None:
    failures = []
    keyed = [done for done in world.submitted if done.plan.idempotency_key and done.execution_id]
    for done in keyed:
        if len(done.ids) > 1:
            failures.append(f"{done.plan.idempotency_key}: {len(done.ids)} executions {sorted(done.ids)}")
        first = done.answers[0]
        for replay in world.replays.get(done.plan.number, []):
            if (replay.execution_id, replay.status) != (
                done.execution_id,
                first.status,
            ) or not replay.replayed:
                failures.append(f"{done.plan.idempotency_key}: replayed {replay}, first {first}")
    named = {done.execution_id for done in world.submitted}
    orphans = [execution_id for execution_id in world.executions if execution_id not in named]
    failures.extend(f"{execution_id}: an execution no answer named" for execution_id in orphans)
    simultaneous = sum(done.plan.simultaneous for done in keyed)
    findings.check(
        "idempotency", f"{len(keyed)} keys, {simultaneous} submits -> one execution each", failures
    )


def _charge(execution: dict[str, Any], price: float) -> float:
    """What the contract says an execution costs: its price when it succeeded, or when it was cancelled
    after the provider had finished (result populated); nothing otherwise."""
    if execution["status"] == "succeeded" or (execution["status"] == "cancelled" and execution.get("result")):
        return price
    return 0


def _check_money(world: World, findings: Findings) -> None:
    failures: list[str] = []
    entries: dict[str, list[Any]] = defaultdict(list)
    for tenant, ledger in world.ledgers.items():
        for entry in ledger:
            if entry.execution_id:
                entries[entry.execution_id].append(entry)
        grants = sum(entry.credits for entry in ledger if entry.kind == "grant")
        charged = sum(entry.charged for entry in ledger)
        account = world.accounts[tenant]
        balance, reserved = account["credits"], account["reservedCredits"]
        if abs(balance + reserved - (grants - charged)) > 1e-6:
            failures.append(
                f"{tenant}: credits {balance} + reserved {reserved} != grants {grants} - charged {charged}"
            )
        if reserved or account["liveExecutions"]:
            failures.append(
                f"{tenant}: reservedCredits {reserved}, liveExecutions {account['liveExecutions']} at the end"
            )
    for execution_id, execution in world.executions.items():
        own = entries.get(execution_id, [])
        kinds = Counter(entry.kind for entry in own)
        price = sum(entry.reserved for entry in own if entry.kind == "reserve")
        releases = kinds["settle"] + kinds["refund"]
        if price and (kinds["reserve"], releases) != (1, 1):
            failures.append(f"{execution_id} {execution['status']}: ledger {dict(kinds)}")
            continue
        if execution["status"] not in TERMINAL:
            continue
        expected = _charge(execution, price)
        charged = sum(entry.charged for entry in own)
        cost = (execution.get("cost") or {}).get("credits")
        if abs(charged - expected) > 1e-6 or cost is None or abs(cost - expected) > 1e-6:
            failures.append(
                f"{execution_id} {execution['status']} result={bool(execution.get('result'))}: charged "
                f"{charged}, cost {cost}, expected {expected} (price {price})"
            )
    stray = [execution_id for execution_id in entries if execution_id not in world.executions]
    failures.extend(f"{execution_id}: ledger entries of no listed execution" for execution_id in stray)
    findings.check(
        "charges", "1 reserve + 1 settle/refund each; balance + held == granted - charged", failures
    )


def _check_webhooks(world: World, findings: Findings) -> None:
    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    events: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    unsigned = []
    for delivery in world.deliveries:
        event = (delivery.execution_id, delivery.event_type, delivery.destination)
        ids[event].add(delivery.webhook_id)
        events[delivery.webhook_id].add(event)
        if not delivery.signed:
            unsigned.append(f"{delivery.webhook_id} to {delivery.destination}: signature does not verify")
    forked = [f"{event}: webhook-ids {sorted(found)}" for event, found in ids.items() if len(found) > 1]
    shared = [f"{webhook_id}: {sorted(found)}" for webhook_id, found in events.items() if len(found) > 1]
    findings.check(
        "webhook ids",
        f"{len(world.deliveries)} deliveries, {len(ids)} (execution, event, destination)",
        unsigned + forked + shared,
    )

    delivered = {
        (delivery.execution_id, delivery.event_type, delivery.destination)
        for delivery in world.deliveries
        if 200 <= delivery.answered < 300
    }
    failures = []
    for done in world.submitted:
        execution = world.executions.get(str(done.execution_id))
        if execution is None or execution["status"] not in TERMINAL:
            continue
        execution_id, event_type = execution["executionId"], f"execution.{execution['status']}"
        wanted = [done.plan.webhook] if done.plan.webhook else []
        wanted += [ENDPOINTS[done.plan.tenant]] if done.plan.tenant in ENDPOINTS else []
        for destination in wanted:
            if (
                destination in ANSWERING
                and (execution["executionId"], event_type, destination) not in delivered
            ):
                failures.append(f"{execution_id} {event_type} never reached {destination}")
        failures.extend(_webhook_state(done.plan.webhook, execution))
    findings.check("webhook delivery", "every terminal event, every answering destination", failures)


def _webhook_state(receiver: str | None, execution: dict[str, Any]) -> list[str]:
    webhook = execution.get("webhook") or {}
    state, attempts = webhook.get("state"), len(webhook.get("attempts") or [])
    expected = {None: "none", "ok": "delivered", "flaky": "delivered", "down": "failed", "gone": "failed"}[
        receiver
    ]
    problems = []
    if state != expected:
        problems.append(
            f"{execution['executionId']} webhook to {receiver}: state {state}, expected {expected}"
        )
    if receiver == "down" and state == "failed" and attempts != MAX_WEBHOOK_ATTEMPTS:
        problems.append(f"{execution['executionId']} webhook to down: failed after {attempts} attempts")
    return problems


# ------------------------------------------------------------------------------------------- the run


@dataclass
class Report:
    count: int
    accepted: int
    submit_seconds: float
    terminal_seconds: float | None
    # CPU seconds the local stack's processes spent from the first submit to the last terminal execution
    # (a figure a busy machine does not change much, unlike the wall-clock rate); None without /proc.
    stack_cpu_seconds: float | None
    statuses: Counter[str]
    # Seconds from createdAt to completedAt of each terminal execution.
    lifetimes: list[float]
    # Per destination: events (distinct webhook ids), deliveries, and those its receiver answered 2xx.
    webhooks: list[tuple[str, int, int, int]]
    findings: Findings
    diagnostics: list[str]
    # Executions the sweeper gave a new tick: lost ticks, or ticks later than its (scaled) grace.
    sweeper_rearms: int = 0

    @property
    def violations(self) -> list[str]:
        return self.findings.violations


@dataclass
class Answers:
    """A receiver's responder that keeps what it answered: it is asked under the receiver's lock, right
    after the delivery is recorded, so `statuses[i]` answered `received[i]`."""

    respond: Responder
    statuses: list[int] = field(default_factory=list)

    def __call__(self, count: int) -> tuple[int, dict[str, str]]:
        status, headers = self.respond(count)
        self.statuses.append(status)
        return status, headers


def first_attempts_fail(receiver: WebhookReceiver, failures: int) -> Responder:
    """503 to the first `failures` attempts of each event (by webhook-id), 200 after."""
    attempts: Counter[str] = Counter()

    def respond(count: int) -> tuple[int, dict[str, str]]:
        webhook_id = receiver.received[count - 1].headers.get("webhook-id", "")
        attempts[webhook_id] += 1
        return (503, {}) if attempts[webhook_id] <= failures else (200, {})

    return respond


@contextmanager
def _receivers() -> Iterator[dict[str, WebhookReceiver]]:
    receivers = {name: WebhookReceiver() for name in (*EXECUTION_RECEIVERS, *ENDPOINTS.values())}
    for name, receiver in receivers.items():
        if name.endswith("flaky"):
            responder = first_attempts_fail(receiver, FLAKY_FAILURES)
        else:
            responder = always({"ok": 200, "down": 503, "gone": 410}[name.removeprefix("endpoint-")])
        receiver.responder = Answers(responder)
    with ExitStack() as stack:
        yield {name: stack.enter_context(receiver) for name, receiver in receivers.items()}


def _tenants_file(directory: Path) -> Path:
    path = directory / "tenants.json"
    entries = [
        {"tenant": tenant, "apiKey": _key(tenant), "credits": 10**9, "webhookSecret": _secret(tenant)}
        for tenant in TENANTS
    ]
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def _create_endpoints(url: str, receivers: dict[str, WebhookReceiver]) -> dict[str, str]:
    """Each tenant endpoint, subscribed to the terminal events; answers the secrets by destination."""
    secrets = {}
    for tenant, destination in ENDPOINTS.items():
        response = _session().post(
            f"{url}/v1/webhooks",
            json={"url": receivers[destination].url},
            headers=_headers(tenant),
            timeout=30,
        )
        response.raise_for_status()
        secrets[destination] = response.json()["secret"]
    return secrets


def _table(dev: DevProcess) -> tuple[Any, str]:
    connection = LocalConnection.model_validate_json(dev.local_file.read_bytes())
    client = boto3.session.Session(
        aws_access_key_id=DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=connection.region,
    ).client("dynamodb", endpoint_url=connection.aws_endpoint)
    return client, connection.table_name


def _diagnose(dev: DevProcess, stuck: list[str]) -> list[str]:
    """What a stuck execution looks like inside: its item's scheduling attributes and the poll queue."""
    client, table = _table(dev)
    lines = []
    for execution_id in stuck[:20]:
        item = client.get_item(
            TableName=table,
            Key={"pk": {"S": f"EXEC#{execution_id}"}, "sk": {"S": "EXEC"}},
            ConsistentRead=True,
        ).get("Item", {})
        shown = {
            name: next(iter(value.values()))
            for name, value in item.items()
            if name not in {"input", "result"}
        }
        wanted = ("status", "version", "nextPollAt", "tickId", "dueShard", "updatedAt", "pollCount",
                  "dispatchStartedAt", "consecutiveErrors")  # fmt: skip
        lines.append(f"{execution_id}: " + json.dumps({name: shown.get(name) for name in wanted}))
    sqs = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("sqs", endpoint_url=dev.aws_endpoint)
    for queue_url in sqs.list_queues().get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        counts = {
            name.removeprefix("ApproximateNumberOf"): value
            for name, value in attributes.items()
            if "Approx" in name
        }
        lines.append(f"queue {queue_url.rsplit('/', 1)[-1]}: {counts}")
    return lines


def run(
    count: int = DEFAULT_N,
    *,
    clients: int = DEFAULT_CLIENTS,
    time_scale: float = DEFAULT_TIME_SCALE,
    terminal_bound: float = DEFAULT_TERMINAL_BOUND,
    max_live: int = DEFAULT_MAX_LIVE,
    seed: int = 13,
    log: Callable[[str], None] = print,
) -> Report:
    plans = make_plans(count, seed)
    with tempfile.TemporaryDirectory() as tmp, _receivers() as receivers:
        tenants = _tenants_file(Path(tmp))
        dev = DevProcess.start(
            Path(tmp) / "dev.log",
            "--port", str(free_port()), "--time-scale", str(time_scale), "--tenants", str(tenants),
        )  # fmt: skip
        try:
            url = dev.wait_ready(60)
            endpoint_secrets = _create_endpoints(url, receivers)
            log(
                f"soak: {count} executions, {clients} clients, at most {max_live} live, time scale"
                f" {time_scale}, at {url}"
            )

            cancels = Cancels(url)
            cap = LiveCap(url, max_live)

            def one(plan: Plan) -> Submitted:
                cap.wait()
                done = submit(url, plan, receivers)
                if plan.cancel_after is not None:
                    cancels.later(done, plan.cancel_after)
                return done

            cpu_before = _cpu_seconds(dev.process.pid)
            started = time.monotonic()
            with cap, ThreadPoolExecutor(clients) as pool:
                submitted = list(pool.map(one, plans))
            submit_seconds = time.monotonic() - started
            cancels.join()
            accepted = {done.execution_id for done in submitted if done.execution_id}
            tenant_of = {done.execution_id: done.plan.tenant for done in submitted if done.execution_id}

            def secret(destination: str, execution_id: str) -> str:
                # Tenant endpoints sign with their own secret, execution webhooks with the tenant's.
                return endpoint_secrets.get(destination) or _secret(tenant_of.get(execution_id, ""))

            log(f"  submitted in {submit_seconds:.1f} s ({count / submit_seconds:.1f} submits/s); waiting")
            ended = wait_until(lambda: _none_live(url), terminal_bound)
            terminal_seconds = time.monotonic() - started if ended else None
            # Stuck: what is still live when the bound is over (it may end later; it is stuck all the same).
            stuck = set() if ended else _live_ids(url)
            cpu_after = _cpu_seconds(dev.process.pid)
            stack_cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
            # Webhook states settle within the retry schedule (scaled) once the last event is out.
            webhooks = WebhookWait(url, _all_executions(url), tenant_of, receivers)
            wait_until(webhooks.settled, RETRY_SCHEDULE_SECONDS * time_scale + 60, every=2.0)
            replays = {
                done.plan.number: [_post_submit(url, done.plan, done.plan.body(receivers))]
                for done in submitted
                if done.plan.idempotency_key and done.execution_id
            }
            executions = _all_executions(url)
            client, table = _table(dev)
            accounts_store = AccountStore(client, table)
            world = World(
                submitted=submitted,
                executions=executions,
                ledgers={tenant: accounts_store.ledger(tenant) for tenant in TENANTS},
                accounts={tenant: _account(url, tenant) for tenant in TENANTS},
                deliveries=deliveries(receivers, secret),
                replays=replays,
            )
            findings = Findings()
            check(world, findings, stuck)
            diagnostics = _diagnose(dev, sorted(stuck)) if stuck or findings.violations else []
            rearms = sweeper_rearms(dev.output())
        finally:
            dev.stop()
    return Report(
        count=count,
        accepted=len(accepted),
        submit_seconds=submit_seconds,
        terminal_seconds=terminal_seconds,
        stack_cpu_seconds=stack_cpu,
        statuses=Counter(item["status"] for item in executions.values()),
        lifetimes=sorted(
            _instant(item["completedAt"]) - _instant(item["createdAt"])
            for item in executions.values()
            if item.get("completedAt")
        ),
        webhooks=[
            (
                name,
                len({delivery.webhook_id for delivery in world.deliveries if delivery.destination == name}),
                sum(delivery.destination == name for delivery in world.deliveries),
                sum(
                    delivery.destination == name and 200 <= delivery.answered < 300
                    for delivery in world.deliveries
                ),
            )
            for name in receivers
        ],
        findings=findings,
        diagnostics=diagnostics,
        sweeper_rearms=rearms,
    )


def sweeper_rearms(stack_log: str) -> int:
    """What the sweeper's warnings in the stack's log add up to: each names how many it re-armed."""
    total = 0
    for line in stack_log.splitlines():
        if '"re-armed overdue executions"' in line:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                total += int(json.loads(line)["rearmed"])
    return total


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds so far of a process and its children (the stack and its emulator),
    from Linux's /proc; None elsewhere."""
    stats = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
    if pid not in stats:
        return None
    tree = [fields for process, fields in stats.items() if process == pid or int(fields[1]) == pid]
    return sum(int(fields[11]) + int(fields[12]) for fields in tree) / os.sysconf("SC_CLK_TCK")


def _instant(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def print_report(report: Report, log: Callable[[str], None] = print) -> None:
    if report.terminal_seconds is not None:
        rate = report.accepted / report.terminal_seconds
        log(
            f"  all {report.accepted} accepted executions terminal {report.terminal_seconds:.1f} s after the"
            f" first submit: {rate:.1f} executions/s end to end"
        )
    else:
        log(f"  NOT all {report.accepted} accepted executions terminal within the bound")
    if report.stack_cpu_seconds is not None:
        cpu = report.stack_cpu_seconds
        each = 1000 * cpu / max(1, report.accepted)
        log(f"  the stack's CPU meanwhile (emulator included): {cpu:.0f} s, {each:.0f} ms an execution")
    log(f"  statuses: {dict(sorted(report.statuses.items()))}")
    log(f"  ticks re-armed by the sweeper (lost, or later than its grace): {report.sweeper_rearms}")
    if report.lifetimes:
        lifetimes = report.lifetimes
        p50, p99 = (lifetimes[min(len(lifetimes) - 1, int(q * len(lifetimes)))] for q in (0.5, 0.99))
        log(f"  created to completed: p50 {p50:.1f} s, p99 {p99:.1f} s, max {lifetimes[-1]:.1f} s")
    log(f"  {'webhook destination':20} {'events':>7} {'deliveries':>11} {'per event':>10} {'2xx':>7}")
    for name, events, sent, answered in report.webhooks:
        log(f"  {name:20} {events:7} {sent:11} {sent / max(1, events):10.2f} {answered:7}")
    log(f"  {'check':18} {'what':58} violations")
    for name, detail, failures in report.findings.rows:
        log(f"  {name:18} {detail:58} {failures}")
    for violation in report.violations:
        log(f"  FAIL {violation}")
    for line in report.diagnostics:
        log(f"  diagnostic: {line}")
    log("  OK: no violation" if not report.violations else f"  {len(report.violations)} violation(s) shown")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="executions to submit")
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="client threads")
    parser.add_argument("--time-scale", type=float, default=DEFAULT_TIME_SCALE)
    parser.add_argument(
        "--bound", type=float, default=DEFAULT_TERMINAL_BOUND, help="seconds to end after submits"
    )
    parser.add_argument("--max-live", type=int, default=DEFAULT_MAX_LIVE, help="live executions at most")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    report = run(
        args.n,
        clients=args.clients,
        time_scale=args.time_scale,
        terminal_bound=args.bound,
        max_live=args.max_live,
        seed=args.seed,
    )
    print_report(report)
    sys.exit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
