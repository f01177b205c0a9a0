"""Runs faults on one local stack in this process: each fault gets a tenant of its own (so its account,
ledger and executions are its alone), a webhook receiver and a tenant endpoint, then its executions are
submitted with the fault in force, awaited (bounded) and checked."""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from asyncgate.domain.catalog import Number
from asyncgate.domain.execution import Execution
from asyncgate_dev.devprocess import free_port
from asyncgate_dev.localstack import LocalStack
from asyncgate_dev.receiver import WebhookReceiver, always
from asyncgate_dev.simprovider import SimFaults
from chaos.faults import Fault, ReceiverMode, doom_rule
from chaos.injection import Injector
from chaos.invariants import (
    ENDPOINT_PATH,
    EXECUTION_PATH,
    REDIRECT_PATH,
    Expectation,
    Snapshot,
    TableReader,
    Violation,
    check_accounts,
    check_convergence,
    check_deliveries,
    check_outcomes,
    drifts_in,
    scan_secrets,
    settled,
)
from chaos.logs import Capture, redirect_stream_handlers
from chaos.workload import Client, Submission, make_plans, run_workload

if TYPE_CHECKING:
    from asyncgate.services.deps import Deps

# Each fault's tenant: enough credits for any run.
CREDITS = 10_000_000
# Between two looks at the table while waiting; and the wait after convergence for late deliveries.
POLL_SECONDS = 0.5
QUIET_SECONDS = 1.0
# The receiver of a down-then-up fault comes back this long after the last submit.
DOWN_SECONDS = 5.0
HUGE_ANSWER_BYTES = 64 * 1024 * 1024
# The environment of the stack: an idempotency key's first request is taken for dead after this long
# (real seconds; past the slowest submit a fault makes: a provider timeout).
STACK_ENVIRONMENT = {"IDEMPOTENCY_IN_FLIGHT_SECONDS": "15", "POWERTOOLS_METRICS_DISABLED": "true"}


@dataclass
class FaultResult:
    fault: Fault
    executions: int
    converged: int
    # Seconds from the last submit until everything converged; None: not within the fault's bound.
    seconds: float | None
    injected: int
    violations: list[Violation] = field(default_factory=list)


@dataclass
class _Run:
    """One fault's run: its tenant, its client, its receiver and what it learnt."""

    fault: Fault
    tenant: str
    client: Client
    receiver: WebhookReceiver
    secrets: dict[str, str]
    doomed: set[str] = field(default_factory=set)
    misbehaved: Counter[str] = field(default_factory=Counter)


class Matrix:
    def __init__(self, *, time_scale: float, seed: int, capture: Capture) -> None:
        self._time_scale = time_scale
        self._rng = random.Random(seed)
        self._seed = seed
        self._capture = capture
        self._stack: LocalStack | None = None
        self._injector: Injector | None = None
        self._reader: TableReader | None = None
        self._deps: Deps | None = None
        # Every secret the runs made: none may appear in the logs.
        self._secrets: list[str] = []

    def start(self) -> None:
        os.environ.update(STACK_ENVIRONMENT)
        # Requests that publish no metric of their own (a 404, a stale tick) are normal (`asyncgate dev`).
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        self._stack = LocalStack(port=0, time_scale=self._time_scale).start()
        # The Powertools logger was made by the handlers' import: it writes to the capture too.
        redirect_stream_handlers(self._capture)
        # Imported once the stack has set the functions' environment (Powertools reads it on import).
        from asyncgate import aws  # noqa: PLC0415
        from asyncgate.services.deps import default_deps  # noqa: PLC0415

        # The one Deps every function container of this process shares: its clock, settings and
        # catalog are what a fault bends.
        self._deps = default_deps()

        clients: dict[str, Any] = {
            "dynamodb": aws.dynamodb(),
            "sqs": aws.sqs(),
            "s3": aws.s3(),
            "sfn": aws.stepfunctions(),
        }
        path_style = Config(s3={"addressing_style": "path"})
        clean: dict[str, Any] = {
            "dynamodb": boto3.client("dynamodb"),
            "sqs": boto3.client("sqs"),
            "s3": boto3.client("s3", config=path_style),
            "sfn": boto3.client("stepfunctions"),
        }
        self._injector = Injector(clients, clean, seed=self._seed)
        self._injector.install()
        self._reader = TableReader(clean["dynamodb"], self._stack.connection().table_name)

    def stop(self) -> None:
        if self._injector is not None:
            self._injector.uninstall()
        if self._stack is not None:
            self._stack.stop()

    def run(self, fault: Fault, number: int, executions: int) -> FaultResult:
        run = self._open(fault, number)
        plans = make_plans(self._rng, executions, fault.mix, run.tenant)
        doomed_plans = {plan.index for plan in plans if self._rng.random() < fault.doom_share}

        def submitted(submission: Submission) -> None:
            if submission.plan.index in doomed_plans and submission.execution_id:
                run.doomed.add(submission.execution_id)

        assert self._stack is not None
        assert self._injector is not None
        rules = fault.rules + ((doom_rule(run.doomed),) if fault.doom_share else ())
        played_before = self._stack.sim.faults_played
        try:
            with self._injector.active(rules) as injected, self._bent(fault, run):
                submissions = run_workload(run.client, plans, run.receiver.url + EXECUTION_PATH, submitted)
                last_submit = time.monotonic()
                expectation = Expectation(
                    allowed=fault.allowed,
                    doomed=frozenset(run.doomed),
                    cancel_finds_result=bool(fault.sim and fault.sim.finish_on_cancel),
                    webhooks_end=fault.webhooks_end,
                    endpoint_gone=fault.receiver is ReceiverMode.GONE,
                )
                if fault.receiver is ReceiverMode.DOWN_THEN_UP:
                    threading.Timer(DOWN_SECONDS, run.receiver.start).start()
                with self._dropped(fault.drop_model, run, submissions):
                    snapshot, seconds = self._await(run, submissions, expectation, last_submit)
            played = self._stack.sim.faults_played - played_before
            if fault.receiver is ReceiverMode.DOWN_THEN_UP:
                # Nothing answered them: the attempts on record without a status were refused.
                run.misbehaved["refused"] = sum(
                    attempt.status_code is None
                    for execution in snapshot.executions.values()
                    for attempt in execution.webhook.attempts
                )
            time.sleep(QUIET_SECONDS)
            snapshot = self._snapshot(run, submissions)
            violations = self._check(run, snapshot, submissions, expectation)
        finally:
            self._stack.sim.faults = SimFaults()
            run.receiver.stop()
        return FaultResult(
            fault=fault,
            executions=len(snapshot.executions),
            converged=sum(1 for execution in snapshot.executions.values() if execution.terminal),
            seconds=seconds,
            injected=sum(injected.values()) + sum(played.values()) + sum(run.misbehaved.values()),
            violations=violations,
        )

    def _open(self, fault: Fault, number: int) -> _Run:
        """The fault's tenant (its account, key and signing secret), receiver and tenant endpoint."""
        from asyncgate.domain.webhooks import new_webhook_secret  # noqa: PLC0415 - after the stack's env
        from asyncgate.services.tenants import create_tenant, issue_key  # noqa: PLC0415
        from asyncgate.store.keys import ALL_SCOPES  # noqa: PLC0415

        assert self._stack is not None
        assert self._deps is not None
        tenant = f"chaos-{number:02d}-{fault.name}"[:63]
        api_key = f"chaos-{secrets.token_urlsafe(24)}"
        signing_secret = new_webhook_secret()
        create_tenant(self._deps, tenant, credits=CREDITS, webhook_secret=signing_secret)
        issue_key(self._deps, tenant, ALL_SCOPES, api_key=api_key)
        misbehaved: Counter[str] = Counter()
        receiver = self._receiver(fault.receiver, misbehaved)
        client = Client(self._stack.url, api_key)
        answer = client.call("POST", "/v1/webhooks", json={"url": receiver.url + ENDPOINT_PATH})
        if answer is None or answer.status_code != 201:
            raise RuntimeError(
                f"{fault.name}: the tenant endpoint was not created ({answer and answer.text})"
            )
        endpoint_secret = answer.json()["secret"]
        self._secrets += [api_key, signing_secret, endpoint_secret]
        return _Run(
            fault,
            tenant,
            client,
            receiver,
            {"execution": signing_secret, "endpoint": endpoint_secret},
            misbehaved=misbehaved,
        )

    def _receiver(self, mode: ReceiverMode, misbehaved: Counter[str]) -> WebhookReceiver:
        """A receiver behaving as the fault wants (started, but for one that is down at first); each
        answer that is not a prompt 2xx is counted."""
        rng = random.Random(self._rng.random())

        def counted(kind: str, answer: Any) -> Any:
            misbehaved[kind] += 1
            return answer

        match mode:
            case ReceiverMode.FLAKY:
                # The first attempt of every delivery fails: every one goes through the retry chain.
                receiver = WebhookReceiver()
                receiver.responder = (
                    lambda _: counted("503", (503, {})) if _first_try(receiver) else (200, {})
                )
            case ReceiverMode.FAILING:
                receiver = WebhookReceiver(responder=lambda _: counted("503", (503, {})))
            case ReceiverMode.SLOW:
                receiver = WebhookReceiver(
                    pause=lambda _: counted("late", rng.uniform(10.5, 13.0)) if rng.random() < 0.3 else 0.0
                )
            case ReceiverMode.DOWN_THEN_UP:
                return WebhookReceiver(port=free_port())
            case ReceiverMode.REDIRECT:
                receiver = WebhookReceiver()
                receiver.responder = lambda _: counted(
                    "307", (307, {"Location": receiver.url + REDIRECT_PATH})
                )
            case ReceiverMode.GONE:
                receiver = WebhookReceiver(responder=lambda _: counted("410", (410, {})))
            case ReceiverMode.HUGE:
                receiver = WebhookReceiver(
                    responder=lambda _: counted("huge", (200, {})), answer_bytes=HUGE_ANSWER_BYTES
                )
            case _:
                receiver = WebhookReceiver(responder=always(200))
        return receiver.start()

    @contextmanager
    def _bent(self, fault: Fault, run: _Run) -> Iterator[None]:
        """The fault's changes to the gateway's own settings and clock, for the time of the run."""
        assert self._stack is not None
        assert self._deps is not None
        deps = self._deps
        settings, clock = deps.settings, deps.clock
        deps.settings = settings.model_copy(update={"sweep_grace_seconds": fault.sweep_grace_seconds})
        if fault.sim is not None:
            self._stack.sim.faults = replace(fault.sim, seed=self._rng.randrange(1 << 30))
        if fault.clock_skew_seconds:
            deps.clock = self._skewed(clock, fault.clock_skew_seconds, run.misbehaved)
        try:
            yield
        finally:
            deps.settings, deps.clock = settings, clock

    def _skewed(
        self, clock: Callable[[], datetime], seconds: float, misbehaved: Counter[str]
    ) -> Callable[[], datetime]:
        rng = random.Random(self._rng.random())

        def skewed() -> datetime:
            if rng.random() < 0.5:
                return clock()
            misbehaved["skewed"] += 1
            return clock() + timedelta(seconds=rng.uniform(-seconds, seconds))

        return skewed

    @contextmanager
    def _dropped(self, model: str | None, run: _Run, submissions: list[Submission]) -> Iterator[None]:
        """The model gone from the catalog (once every execution is submitted), for the wait; its live
        executions then are counted as injected."""
        assert self._deps is not None
        deps = self._deps
        catalog = deps.catalog
        if model is not None:
            deps.catalog = catalog.model_copy(
                update={"models": [m for m in catalog.models if m.model != model]}
            )
            live = self._snapshot(run, submissions).live
            run.misbehaved["dropped"] = sum(execution.model == model for execution in live)
        try:
            yield
        finally:
            deps.catalog = catalog

    def _await(
        self, run: _Run, submissions: list[Submission], expectation: Expectation, since: float
    ) -> tuple[Snapshot, float | None]:
        """Wait (up to the fault's bound) until every execution has converged; the seconds it took."""
        deadline = since + run.fault.bound_seconds
        while True:
            snapshot = self._snapshot(run, submissions)
            if settled(snapshot, list(run.receiver.received), expectation):
                return snapshot, time.monotonic() - since
            if time.monotonic() > deadline:
                return snapshot, None
            time.sleep(POLL_SECONDS)

    def _snapshot(self, run: _Run, submissions: list[Submission]) -> Snapshot:
        assert self._reader is not None
        return self._reader.snapshot(run.tenant, (i for s in submissions for i in s.ids))

    def _check(
        self, run: _Run, snapshot: Snapshot, submissions: list[Submission], expectation: Expectation
    ) -> list[Violation]:
        assert self._deps is not None
        catalog = self._deps.catalog
        logged = self._capture.take()

        def price_of(execution: Execution) -> Number:
            spec = catalog.get(execution.model)
            assert spec is not None
            return spec.price_of(execution.input)

        return [
            *check_convergence(snapshot, submissions),
            *check_accounts(snapshot, price_of),
            *check_outcomes(snapshot, submissions, expectation),
            *check_deliveries(snapshot, list(run.receiver.received), run.secrets, expectation),
            *scan_secrets(logged, self._secrets),
            *drifts_in(logged),
        ]


def _first_try(receiver: WebhookReceiver) -> bool:
    """Whether the delivery the receiver is answering (the last it received) is its first with that
    webhook-id (called under the receiver's lock, as responders are)."""
    webhook_id = receiver.received[-1].headers.get("webhook-id")
    return sum(item.headers.get("webhook-id") == webhook_id for item in receiver.received) == 1
