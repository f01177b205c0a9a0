"""`make soak`'s checks (bench/soak.py) on a made-up run: a consistent one passes, and each broken
invariant is named (an execution live at the bound, as the bench mystery left 21, among them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from asyncgate.domain.accounts import LedgerEntry, grant_entry, release_entry, reservation_entry
from bench.soak import Answer, Delivery, Findings, Plan, Submitted, World, check, sweeper_rearms

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
PRICE = 10


def _plan(
    number: int, *, outcome: str = "succeed", webhook: str | None = "ok", key: str | None = None
) -> Plan:
    return Plan(
        number=number,
        tenant="soak-a",
        model="sim-video",
        sim={"durationSeconds": 1, "outcome": outcome, "outputs": 1},
        webhook=webhook,
        idempotency_key=key,
        simultaneous=2 if key else 1,
        cancel_after=None,
    )


def _execution(
    execution_id: str, status: str, *, cost: float, webhook_state: str = "delivered"
) -> dict[str, Any]:
    return {
        "executionId": execution_id,
        "status": status,
        "error": {"code": "PROVIDER_FAILED"} if status == "failed" else None,
        "result": {"outputs": [{"url": "https://x/1"}]} if status == "succeeded" else None,
        "cost": {"credits": cost},
        "webhook": {"state": webhook_state, "attempts": [{"statusCode": 200}]},
    }


def _world() -> World:
    """Two executions, one succeeded (charged), one failed (refunded), the first submitted twice with one
    key; each with its webhook delivered to the receiver that answers."""
    submitted = [
        Submitted(
            _plan(0, key="k0"), answers=[Answer(202, "e0", None, False), Answer(202, "e0", None, True)]
        ),
        Submitted(_plan(1, outcome="fail"), answers=[Answer(202, "e1", None, False)]),
    ]
    ledger: list[LedgerEntry] = [grant_entry(1000, NOW, "opening")]
    for execution_id, cost in (("e0", PRICE), ("e1", 0)):
        ledger += [reservation_entry(execution_id, PRICE, NOW), release_entry(execution_id, PRICE, cost, NOW)]
    return World(
        submitted=submitted,
        executions={
            "e0": _execution("e0", "succeeded", cost=PRICE),
            "e1": _execution("e1", "failed", cost=0),
        },
        ledgers={"soak-a": ledger},
        accounts={"soak-a": {"credits": 1000 - PRICE, "reservedCredits": 0, "liveExecutions": 0}},
        deliveries=[
            Delivery("ok", "w0", "execution.succeeded", "e0", signed=True, answered=200),
            Delivery("ok", "w1", "execution.failed", "e1", signed=True, answered=200),
        ],
        replays={0: [Answer(202, "e0", None, True)]},
    )


def _violations(world: World, stuck: frozenset[str] = frozenset()) -> dict[str, int]:
    findings = Findings()
    check(world, findings, set(stuck))
    return {name: failures for name, _, failures in findings.rows if failures}


def test_a_consistent_run_has_no_violation() -> None:
    assert _violations(_world()) == {}


def test_an_execution_live_at_the_bound_is_stuck_even_if_it_ended_later() -> None:
    assert _violations(_world(), frozenset({"e1"})) == {"stuck": 1}


def test_a_second_charge_is_found() -> None:
    world = _world()
    world.ledgers["soak-a"].append(release_entry("e0", PRICE, PRICE, NOW))
    assert _violations(world) == {"charges": 2}  # the execution's ledger and the tenant's balance


@pytest.mark.parametrize(
    ("change", "check_name"),
    [
        (lambda world: world.executions.pop("e1"), "lost"),
        (lambda world: world.executions["e0"].update(status="failed"), "outcomes"),
        (lambda world: world.submitted[0].answers.append(Answer(202, "e9", None, False)), "idempotency"),
        (lambda world: world.deliveries.append(Delivery("ok", "w9", "execution.succeeded", "e0", True, 200)),
         "webhook ids"),
        (lambda world: world.deliveries.pop(1), "webhook delivery"),
    ],
)  # fmt: skip
def test_each_broken_invariant_is_named(change: Any, check_name: str) -> None:
    world = _world()
    change(world)
    assert check_name in _violations(world)


def test_the_sweepers_rearms_are_summed_from_the_stack_log() -> None:
    log = "\n".join(
        [
            '{"level":"WARNING","message":"re-armed overdue executions","rearmed":3,"overdue":4}',
            '127.0.0.1 - - "POST / HTTP/1.1" 200 -',
            '{"level":"WARNING","message":"re-armed overdue executions","rearmed":2,"overdue":2}',
            '{"level":"WARNING","message":"re-armed overdue executions" cut short',
        ]
    )
    assert sweeper_rearms(log) == 5
