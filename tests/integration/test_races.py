"""Real races, made certain: another writer's move lands between what a path read and what it writes
(a botocore hook runs it just before the write goes out), so every "lost the race, read again" branch
runs: cancel, the dispatch, a provider callback and the sweeper."""

from __future__ import annotations

import time

import pytest

from asyncgate import aws
from asyncgate.domain.callbacks import callback_token
from asyncgate.domain.execution import Execution
from asyncgate.services.deps import default_deps
from asyncgate.services.lifecycle import commit, step
from asyncgate_dev.handlers import load_event, load_handler
from asyncgate_dev.lambda_runtime import LambdaContext
from asyncgate_dev.receiver import WebhookReceiver
from asyncgate_dev.simprovider import SimProviderServer
from tests.faults import interleaved, updates_of
from tests.integration.conftest import forget_container_state
from tests.integration.driver import TENANT_CREDITS, Gateway

PRICE = 10


def _stored(execution_id: str) -> Execution:
    execution = default_deps().executions.get(execution_id)
    assert execution is not None
    return execution


def _poll_now(execution_id: str) -> None:
    """What a tick does: poll the provider and commit what it says."""
    deps = default_deps()
    current = _stored(execution_id)
    commit(deps, current, step(deps, current, deps.spec(current.model), now=deps.clock()), now=deps.clock())


def test_a_cancel_that_loses_to_a_poll_reads_again_and_lands(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 30}).json()["executionId"]
    cancel_write = updates_of(execution_id, setting="status")
    with interleaved(
        aws.dynamodb(), "UpdateItem", lambda: _poll_now(execution_id), matches=cancel_write
    ) as race:
        answer = gateway.call("cancel", execution_id=execution_id)
    assert len(race.hits) == 1, "the poll landed between the cancel's read and its write"
    assert answer.status == 200
    assert answer.json()["status"] == "cancel_requested"
    cancelled = _stored(execution_id)
    assert cancelled.poll_count == 1, "written on top of the poll, not over it"
    assert gateway.run_to_end(execution_id)["status"] == "cancelled"


def test_a_cancel_that_loses_to_the_end_of_the_job_answers_409(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 0.2}).json()["executionId"]
    time.sleep(0.4)  # the provider is done; the poll that sees it races the cancel
    cancel_write = updates_of(execution_id, setting="status")
    with interleaved(
        aws.dynamodb(), "UpdateItem", lambda: _poll_now(execution_id), matches=cancel_write
    ) as race:
        answer = gateway.call("cancel", execution_id=execution_id)
    assert len(race.hits) == 1
    assert answer.status == 409
    assert answer.json()["error"]["details"] == {"status": "succeeded"}
    account = gateway.call("account").json()
    assert (account["credits"], account["reservedCredits"]) == (TENANT_CREDITS - PRICE, 0), "charged once"


def test_a_dispatch_beaten_by_an_early_callback_records_on_top_of_it(
    gateway: Gateway, provider_side: WebhookReceiver, sim_server: SimProviderServer
) -> None:
    """The provider calls back before the dispatch's write: the dispatch loses the race, reads again,
    finds only bookkeeping moved, and records its job on top (polling at once: the job may be done)."""
    execution_id = gateway.submit(model="sim-image", sim={"durationSeconds": 0.2}).json()["executionId"]
    token = callback_token(default_deps().callback_key() or b"", "sim", execution_id)

    def early_callback() -> None:
        answer = gateway.call(
            "callback", provider="sim", execution_id=execution_id, key=None, query=f"token={token}", body={}
        )
        assert answer.status == 200

    recording = updates_of(execution_id, setting="providerRequestId")
    with interleaved(aws.dynamodb(), "UpdateItem", early_callback, matches=recording) as race:
        gateway.tick_once()  # the dispatch
    assert len(race.hits) == 1
    running = _stored(execution_id)
    assert running.status == "running"
    assert running.provider_request_id is not None
    assert not running.early_callback, "spent on the first poll"
    assert (running.next_poll_at - running.updated_at).total_seconds() <= 1  # type: ignore[operator]
    assert sim_server.job_status(running.provider_request_id) != "cancelled", "its own job is kept"
    assert sim_server.jobs_for(execution_id) == [running.provider_request_id]


def test_a_dispatch_beaten_by_the_sweeper_records_on_top_of_it(
    gateway: Gateway, sim_server: SimProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_GRACE_SECONDS", "0.01")
    forget_container_state()
    execution_id = gateway.submit(model="sim-image", sim={"durationSeconds": 30}).json()["executionId"]
    sweeper = load_handler("sweeper").lambda_handler
    reports = []

    def sweep() -> None:
        time.sleep(0.05)  # the claimed dispatch is due now: past the grace, it looks lost
        reports.append(sweeper(load_event("sweeper"), LambdaContext(function_name="sweeper")))

    recording = updates_of(execution_id, setting="providerRequestId")
    with interleaved(aws.dynamodb(), "UpdateItem", sweep, matches=recording):
        gateway.tick_once()
    assert reports == [{"overdue": 1, "rearmed": 1, "givenUp": 0, "webhooksHandedOff": 0}]
    running = _stored(execution_id)
    assert running.status == "running"
    assert running.failed_ticks == 0, "the dispatch completed: no failed tick counted"
    assert sim_server.jobs_for(execution_id) == [running.provider_request_id], "submitted once"
    assert sim_server.job_status(running.provider_request_id or "") == "running"


def test_a_callback_that_loses_to_a_poll_reads_again_and_arms_the_tick(
    gateway: Gateway, provider_side: WebhookReceiver
) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 30}).json()["executionId"]
    token = callback_token(default_deps().callback_key() or b"", "sim", execution_id)
    job = _stored(execution_id).provider_request_id
    rearm = updates_of(execution_id, setting="tickId")
    with interleaved(aws.dynamodb(), "UpdateItem", lambda: _poll_now(execution_id), matches=rearm) as race:
        answer = gateway.call(
            "callback", provider="sim", execution_id=execution_id, key=None, query=f"token={token}",
            body={"id": job},
        )  # fmt: skip
    assert len(race.hits) == 1
    assert answer.status == 200
    after = _stored(execution_id)
    assert after.poll_count == 1, "the poll's write stands"
    assert (after.next_poll_at - after.updated_at).total_seconds() == 0  # type: ignore[operator]


def test_a_sweeper_that_loses_to_a_late_tick_leaves_the_execution_alone(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_GRACE_SECONDS", "0.01")
    forget_container_state()
    execution_id = gateway.submit(sim={"durationSeconds": 30}).json()["executionId"]
    time.sleep(0.2)  # overdue: its first tick was due after 0.1 s and nothing took it yet
    rearm = updates_of(execution_id, setting="tickId")
    sweeper = load_handler("sweeper").lambda_handler
    with interleaved(aws.dynamodb(), "UpdateItem", lambda: _poll_now(execution_id), matches=rearm) as race:
        report = sweeper(load_event("sweeper"), LambdaContext(function_name="sweeper"))
    assert len(race.hits) == 1
    assert report == {"overdue": 1, "rearmed": 0, "givenUp": 0, "webhooksHandedOff": 0}, (
        "it moved meanwhile: not stuck"
    )
    after = _stored(execution_id)
    assert (after.poll_count, after.failed_ticks) == (1, 0)
