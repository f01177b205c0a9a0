"""Provider callbacks through the real handlers on moto: the simulated provider calls back to a loopback
receiver standing in for API Gateway, and each callback it made is handed to the callbacks function as
API Gateway would. Valid, forged, replayed, late, duplicate, early and lost callbacks."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from asyncgate.domain.callbacks import callback_token
from asyncgate.domain.schedule import MIN_DELAY_SECONDS
from asyncgate.providers.base import Output, PollResult, ProviderState
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import retry_after_seconds
from asyncgate.services.lifecycle import step
from asyncgate_dev.apigw import HttpAnswer
from asyncgate_dev.receiver import Received, WebhookReceiver
from asyncgate_dev.simprovider import SimProviderServer
from tests.fakes import PollingProvider
from tests.integration.conftest import forget_container_state
from tests.integration.driver import KEY_A, Gateway

TERMINAL = {"succeeded", "failed", "cancelled"}


def deliver(gateway: Gateway, callback: Received, **overrides: Any) -> HttpAnswer:
    """Hand a callback the provider made to the callbacks function, as API Gateway would."""
    parts = urlsplit(callback.path)
    _, _, provider, execution_id = parts.path.strip("/").split("/")
    return gateway.call(
        "callback",
        provider=overrides.get("provider", provider),
        execution_id=overrides.get("execution_id", execution_id),
        key=None,
        query=overrides.get("query", parts.query),
        headers={"content-type": callback.headers.get("content-type", "application/json")},
        raw_body=overrides.get("body", callback.body),
    )


def stored(execution_id: str) -> Any:
    execution = default_deps().executions.get(execution_id)
    assert execution is not None
    return execution


def submitted(gateway: Gateway, **sim: Any) -> str:
    answer = gateway.submit(sim={"durationSeconds": 0.3, **sim})
    assert answer.status == 202, answer.body
    execution_id: str = answer.json()["executionId"]
    return execution_id


def test_a_callback_makes_the_job_finish_without_waiting_for_polls(
    gateway: Gateway, provider_side: WebhookReceiver
) -> None:
    execution_id = submitted(gateway)
    running = stored(execution_id)
    assert running.status == "running"
    assert running.awaits_callbacks
    # The safety net (300 s, scaled 0.02: 6 s) rather than the usual first poll (5 s of a 20 s model).
    gap = (running.next_poll_at - running.updated_at).total_seconds()
    assert gap == pytest.approx(300 * 0.02, rel=0.01)

    [callback] = provider_side.wait_for(1)
    assert urlsplit(callback.path).path == f"/v1/callbacks/sim/{execution_id}"
    answer = deliver(gateway, callback)
    assert answer.status == 200
    assert answer.json() == {"received": True}

    done = gateway.drain_until(execution_id, lambda e: e["status"] in TERMINAL, timeout=5)
    assert done["status"] == "succeeded"
    assert done["pollCount"] == 1  # the one poll the callback asked for


def test_a_refused_callback_answers_the_same_401_whatever_failed_and_changes_nothing(
    gateway: Gateway, provider_side: WebhookReceiver
) -> None:
    execution_id = submitted(gateway)
    [callback] = provider_side.wait_for(1)
    before = stored(execution_id)
    token = dict(parse_qsl(urlsplit(callback.path).query))["token"]
    other = submitted(gateway)
    forged = [
        deliver(gateway, callback, query=""),  # no token
        deliver(gateway, callback, query="token=" + "A" * 43),  # a made-up token
        deliver(gateway, callback, query=f"token={token[:-1]}"),  # one character off
        deliver(gateway, callback, execution_id=other),  # another execution's callback URL
        deliver(gateway, callback, provider="replicate"),  # the same id under another provider
        deliver(gateway, callback, execution_id="0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a10"),  # no such execution
        # A valid URL with a body about another job: the adapter's check of the body refuses it.
        deliver(gateway, callback, body=b'{"id": "sim_someone_else", "status": "succeeded"}'),
    ]
    assert {answer.status for answer in forged} == {401}
    assert {answer.body for answer in forged} == {forged[0].body}
    assert forged[0].json()["error"]["code"] == "UNAUTHORIZED"
    after = stored(execution_id)
    assert (after.version, after.tick_id, after.next_poll_at) == (
        before.version,
        before.tick_id,
        before.next_poll_at,
    )


def test_duplicate_and_late_callbacks_change_nothing_more(
    gateway: Gateway, provider_side: WebhookReceiver
) -> None:
    execution_id = submitted(gateway)
    [callback] = provider_side.wait_for(1)
    account_before = gateway.call("account").json()
    assert deliver(gateway, callback).status == 200
    assert deliver(gateway, callback).status == 200  # the provider retried: one tick supersedes the other
    done = gateway.drain_until(execution_id, lambda e: e["status"] in TERMINAL, timeout=5)
    assert done["status"] == "succeeded"
    assert done["pollCount"] == 1
    finished = stored(execution_id)

    ticks = gateway.pending_ticks()  # the superseded ones, dropped as stale when they come due
    late = deliver(gateway, callback)  # after the end: answered, so the provider stops retrying
    assert late.status == 200
    assert stored(execution_id).version == finished.version
    assert gateway.pending_ticks() == ticks  # and no new tick
    account = gateway.call("account").json()
    assert account["reservedCredits"] == account_before["reservedCredits"] - 10  # charged once
    assert account["credits"] == account_before["credits"]


def test_a_lost_callback_is_caught_by_the_safety_net_poll(
    gateway: Gateway, provider_side: WebhookReceiver, sim_server: SimProviderServer
) -> None:
    sim_server.drop_callbacks = True
    try:
        execution_id = submitted(gateway)
        done = gateway.drain_until(execution_id, lambda e: e["status"] in TERMINAL, timeout=15)
    finally:
        sim_server.drop_callbacks = False
    assert done["status"] == "succeeded"
    assert done["pollCount"] == 1  # one safety-net poll found it done
    assert provider_side.received == []


def test_a_callback_before_the_dispatch_is_recorded_makes_the_first_poll_immediate(
    gateway: Gateway, provider_side: WebhookReceiver
) -> None:
    answer = gateway.submit(model="sim-image", sim={"durationSeconds": 0.2})  # dispatched by a tick
    execution_id = answer.json()["executionId"]
    token = callback_token(default_deps().callback_key() or b"", "sim", execution_id)
    early = gateway.call(
        "callback", provider="sim", execution_id=execution_id, key=None, query=f"token={token}", body={}
    )
    assert early.status == 200
    assert stored(execution_id).early_callback
    gateway.tick_once()  # the dispatch
    running = stored(execution_id)
    assert running.status == "running"
    # Its first poll at the shortest gap (1 s, scaled 0.02), not the safety net's 6 s.
    gap = running.next_poll_at - running.updated_at
    assert gap.total_seconds() == pytest.approx(
        default_deps().scaled(MIN_DELAY_SECONDS).total_seconds(), abs=0.001
    )
    done = gateway.drain_until(execution_id, lambda e: e["status"] in TERMINAL, timeout=5)
    assert done["status"] == "succeeded"


def test_with_callbacks_off_no_callback_url_is_given_and_polling_follows_the_job(
    gateway: Gateway, provider_side: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVIDER_CALLBACKS", "off")
    forget_container_state()
    execution_id = submitted(gateway)
    assert not stored(execution_id).awaits_callbacks
    done = gateway.run_to_end(execution_id)
    assert done["status"] == "succeeded"
    assert provider_side.received == []


def test_status_retry_after_follows_the_eta_not_the_far_safety_net(
    gateway: Gateway, provider_side: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBACK_SAFETY_NET_SECONDS", "3000")  # 60 s at the tests' time scale
    forget_container_state()
    execution_id = submitted(gateway, durationSeconds=30)
    running = stored(execution_id)
    assert (running.next_poll_at - running.updated_at).total_seconds() == pytest.approx(60, rel=0.01)
    assert running.eta_seconds == 20  # the model's expected duration, until a poll tells more
    with monkeypatch.context() as frozen:
        frozen.setattr(default_deps(), "clock", lambda: running.updated_at + timedelta(seconds=0.5))
        answer = gateway.call("status", execution_id=execution_id, key=KEY_A)
    assert answer.headers["retry-after"] == "20"  # the ETA's 19.5 s left, rounded up

    def hint_at(seconds: float) -> int | None:
        later = dataclasses.replace(
            default_deps(), clock=lambda: running.updated_at + timedelta(seconds=seconds)
        )
        return retry_after_seconds(later, running)

    assert hint_at(5) == 15  # the estimated end, still ahead
    # Past it, the cadence polling alone would keep for a job 5 s overdue (about 2 s), not 1 s on end,
    # nor the safety-net tick 35 s away.
    assert hint_at(25) in (2, 3)
    assert hint_at(59.5) == 1  # the tick itself is due


class FinishedLate(PollingProvider):
    """A job at the provider that is `state` by now; its cancels are counted."""

    name = "sim"

    def __init__(self, state: ProviderState) -> None:
        self.state = state
        self.cancels = 0

    def poll(self, job_ref: str) -> PollResult:
        outputs = [Output(url="https://cdn.example/v.mp4")] if self.state is ProviderState.SUCCEEDED else []
        return PollResult(state=self.state, outputs=outputs)

    def cancel(self, job_ref: str) -> None:
        self.cancels += 1


@pytest.mark.parametrize(
    ("state", "status", "cancels"),
    [(ProviderState.SUCCEEDED, "succeeded", 0), (ProviderState.RUNNING, "failed", 1)],
)
def test_a_job_past_its_time_gets_a_last_look_before_it_times_out(
    gateway: Gateway, provider_side: WebhookReceiver, state: ProviderState, status: str, cancels: int
) -> None:
    """Its callback lost while the next poll was the far safety net, a job that did finish keeps its
    result; one still running times out, and is cancelled."""
    execution_id = submitted(gateway, durationSeconds=60)
    provider = FinishedLate(state)
    deps = dataclasses.replace(default_deps(), providers=lambda _: provider)
    running = stored(execution_id)
    spec = deps.spec(running.model)
    late = (running.started_at or running.created_at) + timedelta(seconds=spec.max_duration_seconds + 1)
    after = step(deps, running, spec, now=late)
    assert after.status.value == status
    assert after.poll_count == running.poll_count + 1
    assert provider.cancels == cancels
    if status == "failed":
        assert after.error is not None
        assert after.error.code == "EXECUTION_TIMEOUT"
