"""Credits, the queue limit and the account: every movement in the transition that justifies it, exact
under concurrency, explained by the ledger, never twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from asyncgate.api.http import forget_principals
from asyncgate.domain.accounts import ledger_totals
from asyncgate.domain.clock import format_ts
from asyncgate.domain.execution import advance
from asyncgate.domain.status import Event, Status
from asyncgate.errors import AsyncgateError
from asyncgate.scheduling import TickMessage
from asyncgate.services.audit import QUIET_PERIOD, audit_live_counters
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import SubmitCommand, submit
from asyncgate.services.tenants import add_credits, create_tenant, issue_key, set_queue_limit
from asyncgate.services.ticks import process_tick
from asyncgate.store.executions import StaleWrite
from asyncgate.store.items import tenant_key
from asyncgate.store.keys import ALL_SCOPES, Principal, Scope
from tests.integration.driver import KEY_A, KEY_A_READ_ONLY, TENANT_CREDITS, Gateway

PRICE = 10  # sim-video's price in the catalog
IMAGE_PRICE = 2  # sim-image's, per output (one unless its input asks for more)
LONG_JOB = {"durationSeconds": 600}


def _account(gateway: Gateway, key: str = KEY_A) -> dict[str, Any]:
    answer = gateway.call("account", key=key)
    assert answer.status == 200, answer.body
    account: dict[str, Any] = answer.json()
    return account


def _tenant(name: str, *, credits: float = 1_000, queue_limit: int = 100) -> str:
    """A fresh tenant and an all-scopes key for it (the key is returned)."""
    deps = default_deps()
    create_tenant(deps, name, credits=credits, queue_limit=queue_limit)
    return issue_key(deps, name, ALL_SCOPES).api_key


def _assert_ledger_explains(tenant: str) -> None:
    deps = default_deps()
    account = deps.accounts.get(tenant)
    assert account is not None
    totals = ledger_totals(deps.accounts.ledger(tenant))
    assert (totals.credits, totals.reserved) == (account.credits, account.reserved_credits)


def _parallel(count: int, call: Callable[[], Any]) -> list[Any]:
    """`count` calls at once from as many threads, released together."""
    barrier = threading.Barrier(count)

    def run() -> Any:
        barrier.wait()
        try:
            return call()
        except AsyncgateError as error:
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: run(), range(count)))


def test_the_account_route_shows_what_the_key_may_see(gateway: Gateway) -> None:
    account = _account(gateway)
    assert account == {
        "tenant": "tenant-a",
        "credits": TENANT_CREDITS,
        "reservedCredits": 0,
        "queueLimit": 100_000,
        "liveExecutions": 0,
        "scopes": sorted(scope.value for scope in ALL_SCOPES),
    }
    # Any valid key reads its own account, whatever its scopes.
    assert _account(gateway, KEY_A_READ_ONLY)["scopes"] == ["execution:read"]
    assert gateway.call("account", key=None).status == 401


def test_submit_reserves_and_success_settles_the_price(gateway: Gateway) -> None:
    accepted = gateway.submit(sim={"durationSeconds": 0.2})
    assert accepted.status == 202
    held = _account(gateway)
    assert (held["credits"], held["reservedCredits"], held["liveExecutions"]) == (
        TENANT_CREDITS - PRICE,
        PRICE,
        1,
    )
    done = gateway.run_to_end(accepted.json()["executionId"])
    assert done["status"] == "succeeded"
    assert done["cost"] == {"credits": PRICE}
    after = _account(gateway)
    assert (after["credits"], after["reservedCredits"], after["liveExecutions"]) == (
        TENANT_CREDITS - PRICE,
        0,
        0,
    )
    kinds = [entry.kind for entry in default_deps().accounts.ledger("tenant-a")]
    assert kinds == ["settle", "reserve", "grant"]
    _assert_ledger_explains("tenant-a")


@pytest.mark.parametrize(
    ("sim", "cancel"),
    [
        ({"durationSeconds": 0.2, "outcome": "fail"}, False),
        ({"durationSeconds": 0.2, "outcome": "incomplete"}, False),
        (LONG_JOB, True),
    ],
    ids=["provider-failed", "incomplete", "cancelled-while-running"],
)
def test_failure_incomplete_and_cancel_refund_the_reservation(
    gateway: Gateway, sim: dict[str, Any], cancel: bool
) -> None:
    execution_id = gateway.submit(sim=sim).json()["executionId"]
    if cancel:
        assert gateway.call("cancel", execution_id=execution_id).status == 200
    done = gateway.run_to_end(execution_id)
    assert done["status"] in {"failed", "cancelled"}
    assert done["cost"] == {"credits": 0}
    account = _account(gateway)
    assert (account["credits"], account["reservedCredits"], account["liveExecutions"]) == (
        TENANT_CREDITS,
        0,
        0,
    )
    assert [entry.kind for entry in default_deps().accounts.ledger("tenant-a")][:2] == ["refund", "reserve"]
    _assert_ledger_explains("tenant-a")


def test_a_refused_inline_dispatch_and_a_cancelled_queued_job_refund_at_once(gateway: Gateway) -> None:
    refused = gateway.submit(sim={"submitStatus": 503})
    assert refused.status == 500
    queued = gateway.submit(model="sim-image").json()["executionId"]
    assert gateway.call("cancel", execution_id=queued).json()["status"] == "cancelled"
    account = _account(gateway)
    assert (account["credits"], account["reservedCredits"], account["liveExecutions"]) == (
        TENANT_CREDITS,
        0,
        0,
    )
    _assert_ledger_explains("tenant-a")


def test_insufficient_credits_is_402_and_nothing_is_written(gateway: Gateway) -> None:
    key = _tenant("poor", credits=25)
    assert gateway.submit(key=key, sim=LONG_JOB).status == 202
    assert gateway.submit(key=key, sim=LONG_JOB).status == 202
    refused = gateway.submit(key=key, sim=LONG_JOB)
    assert refused.status == 402
    assert refused.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert refused.json()["error"]["details"] == {"required": PRICE, "available": 5}
    account = _account(gateway, key)
    assert (account["credits"], account["reservedCredits"], account["liveExecutions"]) == (5, 20, 2)
    listed = gateway.call("list_executions", key=key).json()["items"]
    assert len(listed) == 2
    _assert_ledger_explains("poor")
    # Credits added by an operator are spendable at once.
    add_credits(default_deps(), "poor", 5, note="top-up")
    assert gateway.submit(key=key, sim=LONG_JOB).status == 202
    assert _account(gateway, key)["credits"] == 0


def test_a_price_by_input_reserves_and_settles_the_price_of_that_input(gateway: Gateway) -> None:
    """sim-image costs IMAGE_PRICE per output: three outputs hold three times its listed price."""
    accepted = gateway.submit(model="sim-image", sim={"durationSeconds": 0.2, "outputs": 3})
    assert accepted.status == 202, accepted.body
    held = _account(gateway)
    assert (held["credits"], held["reservedCredits"]) == (TENANT_CREDITS - 3 * IMAGE_PRICE, 3 * IMAGE_PRICE)
    done = gateway.run_to_end(accepted.json()["executionId"])
    assert done["status"] == "succeeded"
    assert len(done["result"]["outputs"]) == 3
    assert done["cost"] == {"credits": 3 * IMAGE_PRICE}
    after = _account(gateway)
    assert (after["credits"], after["reservedCredits"]) == (TENANT_CREDITS - 3 * IMAGE_PRICE, 0)
    _assert_ledger_explains("tenant-a")


def test_402_names_the_price_of_the_input_when_only_the_listed_price_would_fit(gateway: Gateway) -> None:
    key = _tenant("frugal", credits=5)
    refused = gateway.submit(model="sim-image", key=key, sim={"outputs": 3})
    assert refused.status == 402
    assert refused.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert refused.json()["error"]["details"] == {"required": 3 * IMAGE_PRICE, "available": 5}
    account = _account(gateway, key)
    assert (account["credits"], account["reservedCredits"], account["liveExecutions"]) == (5, 0, 0)
    assert gateway.submit(model="sim-image", key=key, sim={"outputs": 2}).status == 202
    assert _account(gateway, key)["reservedCredits"] == 2 * IMAGE_PRICE
    _assert_ledger_explains("frugal")


def test_the_queue_limit_answers_429_with_retry_after_until_a_slot_frees(gateway: Gateway) -> None:
    key = _tenant("small", queue_limit=2)
    first = gateway.submit(model="sim-image", key=key).json()["executionId"]
    assert gateway.submit(key=key, sim=LONG_JOB).status == 202
    refused = gateway.submit(key=key, sim=LONG_JOB)
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "QUEUE_LIMIT_EXCEEDED"
    assert refused.json()["error"]["details"] == {"queueLimit": 2, "liveExecutions": 2}
    assert int(refused.headers["retry-after"]) >= 1
    # A queued execution turns cancelled at once: its slot frees with it.
    assert gateway.call("cancel", execution_id=first, key=key).json()["status"] == "cancelled"
    assert gateway.submit(key=key, sim=LONG_JOB).status == 202
    set_queue_limit(default_deps(), "small", 3)
    assert gateway.submit(key=key, sim=LONG_JOB).status == 202
    assert _account(gateway, key)["liveExecutions"] == 3


@pytest.mark.parametrize(
    ("credits", "queue_limit", "refusal"),
    [(1_000, 10, "QUEUE_LIMIT_EXCEEDED"), (10 * IMAGE_PRICE, 1_000, "INSUFFICIENT_CREDITS")],
    ids=["queue-limit", "balance"],
)
def test_parallel_submits_stop_exactly_at_the_limit(
    gateway: Gateway, credits: int, queue_limit: int, refusal: str
) -> None:
    """40 submits at once through the service on threads, where only 10 fit (by the queue limit, or by
    the balance): exactly 10 exist, the rest are refused, and the account holds exactly their price."""
    create_tenant(default_deps(), "burst", credits=credits, queue_limit=queue_limit)
    principal = Principal(tenant="burst", scopes=ALL_SCOPES)
    command = SubmitCommand(model="sim-image", input={}, metadata={}, webhook_url=None, webhook_events=None)
    outcomes = _parallel(40, lambda: submit(default_deps(), principal, command))
    codes = Counter(getattr(outcome, "code", "ACCEPTED") for outcome in outcomes)
    assert codes == {"ACCEPTED": 10, refusal: 30}
    account = default_deps().accounts.get("burst")
    assert account is not None
    assert (account.live_executions, account.credits, account.reserved_credits) == (
        10,
        credits - 10 * IMAGE_PRICE,
        10 * IMAGE_PRICE,
    )
    assert default_deps().executions.live_by_tenant()["burst"] == 10
    _assert_ledger_explains("burst")


def test_a_terminal_transition_applied_twice_charges_once(gateway: Gateway) -> None:
    """A duplicate tick carries the version it read: its write of the same transition loses, and with it
    the account's half of the transaction. The very same write sent again (a retry whose first answer
    was lost) is recognised as already done: it writes nothing either."""
    deps = default_deps()
    execution_id = gateway.submit(sim=LONG_JOB).json()["executionId"]
    running = deps.executions.get(execution_id)
    assert running is not None
    now = deps.clock()
    succeeded = advance(running, Event.PROVIDER_SUCCEEDED, now=now, retention=deps.retention)
    deps.executions.update(running, succeeded)
    deps.executions.update(running, succeeded)  # the same write again: already done, nothing more
    duplicate = advance(
        running, Event.PROVIDER_SUCCEEDED, now=now + timedelta(seconds=1), retention=deps.retention
    )
    with pytest.raises(StaleWrite):
        deps.executions.update(running, duplicate)
    failed = advance(running, Event.PROVIDER_FAILED, now=now, retention=deps.retention)
    with pytest.raises(StaleWrite):
        deps.executions.update(running, failed)
    account = _account(gateway)
    assert (account["credits"], account["reservedCredits"], account["liveExecutions"]) == (
        TENANT_CREDITS - PRICE,
        0,
        0,
    )
    assert [entry.kind for entry in deps.accounts.ledger("tenant-a")] == ["settle", "reserve", "grant"]


def test_duplicate_tick_deliveries_finish_an_execution_once(gateway: Gateway) -> None:
    """Eight copies of the tick that finds the job done run at once: one wins, the account moves once."""
    deps = default_deps()
    execution_id = gateway.submit(sim={"durationSeconds": 0.2}).json()["executionId"]
    time.sleep(0.5)  # the provider's job is over; no tick has seen it yet
    execution = deps.executions.get(execution_id)
    assert execution is not None
    assert execution.status is Status.RUNNING
    message = TickMessage(execution_id=execution_id, tick_id=execution.tick_id, due_at=deps.clock())
    outcomes = Counter(
        outcome.value for outcome in _parallel(8, lambda: process_tick(default_deps(), message))
    )
    assert outcomes["processed"] == 1, outcomes
    assert gateway.status(execution_id)["status"] == "succeeded"
    account = _account(gateway)
    assert (account["credits"], account["reservedCredits"], account["liveExecutions"]) == (
        TENANT_CREDITS - PRICE,
        0,
        0,
    )
    assert Counter(entry.kind for entry in deps.accounts.ledger("tenant-a")) == {
        "grant": 1,
        "reserve": 1,
        "settle": 1,
    }


def test_the_audit_repairs_a_drifted_counter_only_once_the_account_is_quiet(gateway: Gateway) -> None:
    deps = default_deps()
    for _ in range(2):
        assert gateway.submit(sim=LONG_JOB).status == 202
    table = deps.settings.table_name
    dynamodb = deps.accounts._client

    def corrupt(updated_at: str) -> None:
        dynamodb.update_item(
            TableName=table,
            Key=tenant_key("tenant-a"),
            UpdateExpression="SET liveExecutions = :wrong, accountUpdatedAt = :at",
            ExpressionAttributeValues={":wrong": {"N": "7"}, ":at": {"S": updated_at}},
        )

    corrupt(format_ts(deps.clock()))
    busy = audit_live_counters(deps)
    assert busy.drifts == [], "a moving account is never 'repaired'"
    assert busy.skipped_busy == 1
    quiet_since = deps.clock() - QUIET_PERIOD - timedelta(seconds=5)
    corrupt(format_ts(quiet_since))
    report = audit_live_counters(deps)
    assert [(d.tenant, d.counter, d.counted, d.repaired) for d in report.drifts] == [("tenant-a", 7, 2, True)]
    assert _account(gateway)["liveExecutions"] == 2
    assert audit_live_counters(deps).drifts == []


def test_keys_can_be_listed_and_revoked(gateway: Gateway) -> None:
    deps = default_deps()
    issued = issue_key(deps, "tenant-b", frozenset({Scope.EXECUTION_READ}), name="ci")
    assert gateway.call("account", key=issued.api_key).status == 200
    listed = {info.key_id: info for info in deps.api_keys.list("tenant-b")}
    assert listed[issued.info.key_id].name == "ci"
    assert issued.api_key not in repr(listed)
    assert deps.api_keys.revoke("tenant-b", issued.info.key_id)
    forget_principals()  # as a new container would: no cached key
    assert gateway.call("account", key=issued.api_key).status == 401
    assert not deps.api_keys.revoke("tenant-a", issued.info.key_id), "another tenant's key id is not found"


def test_an_expired_execution_reads_as_gone(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 0.1}).json()["executionId"]
    done = gateway.run_to_end(execution_id)
    assert done["cleanupAfter"] is not None
    deps = default_deps()
    later = deps.clock() + timedelta(days=7, minutes=1)
    monkeypatch.setattr(deps, "clock", lambda: later)
    gone = gateway.call("status", execution_id=execution_id)
    assert gone.status == 404
    assert gone.json()["error"]["code"] == "EXECUTION_NOT_FOUND"
    assert gateway.call("list_executions").json()["items"] == []
