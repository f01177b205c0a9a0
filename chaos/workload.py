"""What a fault's executions ask for, and a client that submits and cancels them over HTTP as a careful
client would: it retries what failed on the way (5xx, a lost connection) only where that cannot make a
second job (with its Idempotency-Key, or a cancel), and records every answer it got."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

# Client threads submitting at once.
CLIENTS = 8
# Tries of one submit (with an Idempotency-Key) or one cancel, and the longest it waits in all for a
# key still in flight (409 IDEMPOTENCY_KEY_IN_USE) before giving up.
TRIES = 4
IN_USE_PATIENCE_SECONDS = 60.0
# A request's own limit: an inline submit may wait on a hanging provider (10 s) and more.
REQUEST_SECONDS = 60.0


@dataclass(frozen=True)
class Mix:
    """The spread of a fault's executions."""

    # sim-video dispatches inline (in the submit), sim-image queued (by the first tick).
    inline_share: float = 0.5
    # The provider's job length, wall-clock seconds (some end before their dispatch is even recorded).
    durations: tuple[float, float] = (0.1, 2.0)
    outcomes: tuple[tuple[str, float], ...] = (("succeed", 0.75), ("fail", 0.15), ("incomplete", 0.1))
    max_outputs: int = 3
    webhook_share: float = 0.5
    cancel_share: float = 0.2
    # Seconds after its submit answered that an execution is cancelled.
    cancel_after: tuple[float, float] = (0.05, 2.5)
    keyed_share: float = 0.5


@dataclass(frozen=True)
class Plan:
    index: int
    model: str
    duration: float
    outcome: str
    outputs: int
    webhook: bool
    cancel_after: float | None
    idempotency_key: str | None

    def body(self, webhook_url: str) -> dict[str, Any]:
        sim = {"durationSeconds": self.duration, "outcome": self.outcome, "outputs": self.outputs}
        body: dict[str, Any] = {"model": self.model, "input": {"prompt": f"chaos {self.index}", "sim": sim}}
        if self.webhook:
            body["webhook"] = {"url": webhook_url}
        return body


def make_plans(rng: random.Random, count: int, mix: Mix, run: str) -> list[Plan]:
    outcomes, weights = zip(*mix.outcomes, strict=True)
    return [
        Plan(
            index=index,
            model="sim-video" if rng.random() < mix.inline_share else "sim-image",
            duration=round(rng.uniform(*mix.durations), 2),
            outcome=rng.choices(outcomes, weights)[0],
            outputs=rng.randint(1, mix.max_outputs),
            webhook=rng.random() < mix.webhook_share,
            cancel_after=round(rng.uniform(*mix.cancel_after), 2)
            if rng.random() < mix.cancel_share
            else None,
            idempotency_key=f"{run}-{index}" if rng.random() < mix.keyed_share else None,
        )
        for index in range(count)
    ]


@dataclass
class Submission:
    """What the client learnt of one plan: the statuses it was answered, every execution id an answer
    named, and its cancel's answers."""

    plan: Plan
    statuses: list[int | None] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    cancel_statuses: list[int | None] = field(default_factory=list)
    # The status an accepted cancel found the execution in (`previousStatus`).
    cancelled_from: str | None = None

    @property
    def execution_id(self) -> str | None:
        return self.ids[0] if self.ids else None

    @property
    def cancel_accepted(self) -> bool:
        return 200 in self.cancel_statuses

    @property
    def cancel_unknown(self) -> bool:
        """A cancel was sent and no answer told whether it took effect."""
        return any(status is None or status >= 500 for status in self.cancel_statuses)


class Client:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self._headers = {"X-API-Key": api_key}
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> requests.Response | None:
        """One request; None when no answer came (the connection failed)."""
        try:
            return self._session().request(
                method,
                self.base_url + path,
                json=json,
                headers={**self._headers, **(headers or {})},
                timeout=REQUEST_SECONDS,
            )
        except requests.RequestException:
            return None

    def submit(self, plan: Plan, webhook_url: str) -> Submission:
        submission = Submission(plan)
        headers = {"Idempotency-Key": plan.idempotency_key} if plan.idempotency_key else None
        give_up_at = time.monotonic() + IN_USE_PATIENCE_SECONDS
        tries = 0
        while tries < TRIES and time.monotonic() < give_up_at:
            answer = self.call("POST", "/v1/executions", json=plan.body(webhook_url), headers=headers)
            submission.statuses.append(answer.status_code if answer is not None else None)
            if answer is not None:
                _note_id(submission, answer)
            if answer is not None and answer.status_code == 409:
                time.sleep(float(answer.headers.get("Retry-After") or 1))
                continue  # the first request with this key is still in flight
            tries += 1
            # Without a key a second try could start a second job: a careful client does not.
            if headers is None or (answer is not None and answer.status_code < 500):
                break
            if answer is not None and _error_code(answer) == "PROVIDER_SUBMIT_FAILED":
                break  # the provider's refusal is the answer: a retry replays it
        return submission

    def cancel(self, submission: Submission) -> None:
        execution_id = submission.execution_id
        assert execution_id is not None
        for _ in range(TRIES):
            answer = self.call("POST", f"/v1/executions/{execution_id}/cancel")
            submission.cancel_statuses.append(answer.status_code if answer is not None else None)
            if answer is not None and answer.status_code == 200:
                submission.cancelled_from = answer.json().get("previousStatus")
            if answer is not None and answer.status_code < 500:
                return


def _error_code(answer: requests.Response) -> str | None:
    try:
        code = answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def _note_id(submission: Submission, answer: requests.Response) -> None:
    """The execution id the answer names: the submit answer's, or the error's details."""
    try:
        body = answer.json()
    except ValueError:
        return
    if not isinstance(body, dict):
        return
    found = body.get("executionId") or (body.get("error") or {}).get("details", {}).get("executionId")
    if isinstance(found, str) and found not in submission.ids:
        submission.ids.append(found)


def run_workload(
    client: Client, plans: list[Plan], webhook_url: str, on_submitted: Callable[[Submission], None]
) -> list[Submission]:
    """Submit every plan from CLIENTS threads, and cancel those that ask for it `cancel_after` seconds
    after their submit was answered; returns once every submit and cancel is answered."""
    cancels: list[threading.Timer] = []
    cancels_lock = threading.Lock()

    def submit(plan: Plan) -> Submission:
        submission = client.submit(plan, webhook_url)
        on_submitted(submission)
        if plan.cancel_after is not None and submission.execution_id is not None:
            cancel = threading.Timer(plan.cancel_after, client.cancel, args=(submission,))
            cancel.start()
            with cancels_lock:
                cancels.append(cancel)
        return submission

    with ThreadPoolExecutor(CLIENTS) as pool:
        submissions = list(pool.map(submit, plans))
    for cancel in cancels:
        cancel.join()
    return submissions
