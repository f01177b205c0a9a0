"""The chaos harness's invariants on made-up snapshots: each check passes a consistent state and names
what is wrong in a broken one (a double settlement, a free cancelled result, a stuck or lost execution,
two webhook-ids for one event, a secret in the logs)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from standardwebhooks import Webhook

from asyncgate.domain.accounts import Account, LedgerEntry
from asyncgate.domain.execution import (
    Cost,
    Execution,
    ExecutionError,
    OutputRef,
    Result,
    WebhookConfig,
    WebhookState,
)
from asyncgate.domain.status import Status
from asyncgate.domain.webhooks import new_webhook_secret
from asyncgate_dev.receiver import Received
from chaos.invariants import (
    Expectation,
    Snapshot,
    Violation,
    check_accounts,
    check_convergence,
    check_deliveries,
    check_outcomes,
    drifts_in,
    scan_secrets,
)
from chaos.workload import Plan, Submission

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PRICE = 10
GRANT = 1000


def execution(
    execution_id: str,
    status: Status,
    *,
    result: bool = False,
    cost: float | None = None,
    code: str | None = None,
    webhook_state: WebhookState = "none",
) -> Execution:
    terminal = status.terminal
    return Execution(
        execution_id=execution_id,
        tenant="t",
        model="sim-video",
        provider="sim",
        provider_model="sim-video",
        status=status,
        created_at=NOW,
        updated_at=NOW,
        reserved_credits=PRICE,
        result=Result(outputs=[OutputRef(url="http://x/1")]) if result else None,
        cost=Cost(credits=cost) if cost is not None else (Cost(credits=0) if terminal else None),
        error=ExecutionError(code=code, message="m") if code else None,
        webhook=WebhookConfig(
            url="http://r/hook/execution" if webhook_state != "none" else None, state=webhook_state
        ),
        next_poll_at=None if terminal else NOW,
    )


def ledger_for(*executions: Execution, extra: list[LedgerEntry] | None = None) -> list[LedgerEntry]:
    entries = [LedgerEntry(at=NOW, kind="grant", credits=GRANT)]
    for e in executions:
        entries.append(
            LedgerEntry(at=NOW, kind="reserve", credits=-PRICE, reserved=PRICE, execution_id=e.execution_id)
        )
        if e.terminal:
            charged = e.cost.credits if e.cost else 0
            kind = "settle" if charged else "refund"
            entries.append(
                LedgerEntry(
                    at=NOW,
                    kind=kind,
                    credits=PRICE - charged,
                    reserved=-PRICE,
                    charged=charged,
                    execution_id=e.execution_id,
                )
            )
    return entries + (extra or [])


def snapshot_of(
    *executions: Execution, ledger: list[LedgerEntry] | None = None, live: int | None = None
) -> Snapshot:
    entries = ledger if ledger is not None else ledger_for(*executions)
    account = Account(
        tenant="t",
        credits=sum(entry.credits for entry in entries),
        reserved_credits=sum(entry.reserved for entry in entries),
        live_executions=live if live is not None else sum(not e.terminal for e in executions),
    )
    return Snapshot("t", {e.execution_id: e for e in executions}, account, entries)


def checks(violations: list[Violation]) -> set[str]:
    return {violation.check for violation in violations}


def price(_: Execution) -> int:
    return PRICE


def consistent() -> list[Execution]:
    return [
        execution("ok", Status.SUCCEEDED, result=True, cost=PRICE),
        execution("failed", Status.FAILED, code="PROVIDER_FAILED"),
        execution("kept", Status.CANCELLED, result=True, cost=PRICE),
        execution("dropped", Status.CANCELLED),
    ]


def test_a_consistent_account_passes() -> None:
    assert check_accounts(snapshot_of(*consistent()), price) == []


def test_a_second_settlement_is_named() -> None:
    done = consistent()
    double = LedgerEntry(at=NOW, kind="settle", credits=0, reserved=-PRICE, charged=PRICE, execution_id="ok")
    found = checks(check_accounts(snapshot_of(*done, ledger=ledger_for(*done, extra=[double])), price))
    assert {"settled once", "credits"} <= found


def test_a_cancelled_execution_with_a_result_must_be_charged() -> None:
    free = execution("kept", Status.CANCELLED, result=True, cost=0)
    assert checks(check_accounts(snapshot_of(free), price)) == {"cost rule"}


def test_the_live_counter_must_match_the_live_executions() -> None:
    assert checks(check_accounts(snapshot_of(*consistent(), live=1), price)) == {"live counter"}


def test_a_reservation_at_the_wrong_price_is_named() -> None:
    assert checks(check_accounts(snapshot_of(*consistent()), lambda _: 12)) == {"price"}


def plan(index: int) -> Plan:
    return Plan(index, "sim-video", 1.0, "succeed", 1, False, None, None)


def submission(
    index: int, *ids: str, cancels: tuple[int | None, ...] = (), cancelled_from: str | None = None
) -> Submission:
    return Submission(
        plan(index),
        statuses=[202] if ids else [500],
        ids=list(ids),
        cancel_statuses=list(cancels),
        cancelled_from=cancelled_from,
    )


def test_convergence_names_stuck_lost_unaccounted_and_doubled_executions() -> None:
    stuck = execution("stuck", Status.RUNNING)
    orphan = execution("orphan", Status.SUCCEEDED, result=True, cost=PRICE)
    found = check_convergence(
        snapshot_of(stuck, orphan),
        [submission(0, "stuck"), submission(1, "lost"), submission(2, "a", "b")],
    )
    assert {(v.check, v.subject) for v in found} >= {
        ("stuck", "stuck"),
        ("lost", "lost"),
        ("idempotency", "plan 2"),
    }
    assert "accounting" in checks(found)


def test_an_execution_no_answer_named_is_fine_when_a_submit_went_unanswered() -> None:
    orphan = execution("orphan", Status.FAILED, code="PROVIDER_SUBMIT_FAILED")
    assert check_convergence(snapshot_of(orphan), [submission(0)]) == []


def test_outcomes_follow_the_plan_the_cancel_and_the_fault() -> None:
    snapshot = snapshot_of(
        execution("ok", Status.SUCCEEDED, result=True, cost=PRICE),
        execution("not cancelled", Status.SUCCEEDED, result=True, cost=PRICE),
        execution("unreachable", Status.FAILED, code="PROVIDER_UNREACHABLE"),
        execution("doomed", Status.FAILED, code="INTERNAL_ERROR"),
        execution("spared", Status.SUCCEEDED, result=True, cost=PRICE),
        execution("bare", Status.CANCELLED),
        execution("early", Status.CANCELLED),
    )
    submissions = [
        submission(0, "ok"),
        submission(1, "not cancelled", cancels=(200,)),
        submission(2, "unreachable"),
        submission(3, "doomed"),
        submission(4, "spared"),
        submission(5, "bare", cancels=(200,), cancelled_from="running"),
        submission(6, "early", cancels=(200,), cancelled_from="queued"),
    ]
    strict = Expectation(doomed=frozenset({"doomed", "spared"}), cancel_finds_result=True)
    found = {v.subject for v in check_outcomes(snapshot, submissions, strict)}
    assert found == {"not cancelled", "unreachable", "spared", "bare"}
    lenient = Expectation(allowed=frozenset({"PROVIDER_UNREACHABLE"}), doomed=frozenset({"doomed"}))
    assert {v.subject for v in check_outcomes(snapshot, submissions, lenient)} == {"not cancelled"}


def delivery(secret: str, execution_id: str, event: str, webhook_id: str, destination: str) -> Received:
    body = json.dumps({"type": event, "timestamp": "t", "data": {"executionId": execution_id}}).encode()
    stamp = datetime.fromtimestamp(time.time(), UTC)
    signature = Webhook(secret).sign(webhook_id, stamp, body.decode())
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": signature,
    }
    return Received(f"/hook/{destination}", headers, body, 0.0)


def test_deliveries_one_id_per_event_signed_and_delivered() -> None:
    secret, other = new_webhook_secret(), new_webhook_secret()
    secrets = {"execution": secret, "endpoint": secret}
    done = execution("e", Status.SUCCEEDED, result=True, cost=PRICE, webhook_state="delivered")
    good = [
        delivery(secret, "e", "execution.succeeded", "msg_1", "execution"),
        delivery(secret, "e", "execution.succeeded", "msg_1", "execution"),
        delivery(secret, "e", "execution.succeeded", "msg_2", "endpoint"),
    ]
    assert check_deliveries(snapshot_of(done), good, secrets, Expectation()) == []
    bad = [
        delivery(secret, "e", "execution.succeeded", "msg_1", "execution"),
        delivery(secret, "e", "execution.succeeded", "msg_3", "execution"),
        delivery(other, "e", "execution.failed", "msg_2", "endpoint"),
    ]
    assert checks(check_deliveries(snapshot_of(done), bad, secrets, Expectation())) == {
        "webhook-id",
        "signature",
        "webhook",
        "webhook delivered",
    }


def test_a_webhook_left_pending_or_unexpectedly_delivered_is_named() -> None:
    pending = execution("p", Status.FAILED, code="PROVIDER_FAILED", webhook_state="pending")
    assert "webhook state" in checks(
        check_deliveries(snapshot_of(pending), [], {}, Expectation(webhooks_end="either"))
    )
    delivered = execution("d", Status.FAILED, code="PROVIDER_FAILED", webhook_state="delivered")
    assert checks(check_deliveries(snapshot_of(delivered), [], {}, Expectation(webhooks_end="failed"))) == {
        "webhook state"
    }


def test_secrets_in_the_logs_are_found_without_being_printed() -> None:
    key = "chaos-abcdefghijklmnopqrstuvwxyz"
    text = "\n".join(
        [
            f"request with {key}",
            "callback http://h/v1/callbacks/sim/e?token=c2VjcmV0LXRva2VuLXZhbHVl",
            "callback http://h/v1/callbacks/sim/e?token=redacted",
            "GET https://bucket/k?X-Amz-Signature=abc",
            "secret whsec_YWNtZS1lMmUtc2lnbmluZy1zZWNyZXQh",
        ]
    )
    found = scan_secrets(text, [key])
    assert len(found) == 4
    assert all(key not in str(violation) for violation in found)
    assert scan_secrets("callback ...?token=redacted, nothing else", [key]) == []


def test_a_drift_the_audit_repaired_is_still_named() -> None:
    line = json.dumps(
        {
            "level": "ERROR",
            "message": "live-execution counter drift",
            "driftTenant": "chaos-01",
            "repaired": True,
        }
    )
    found = drifts_in(f"INFO other\n{line}\n")
    assert [(violation.check, violation.subject) for violation in found] == [("live counter", "chaos-01")]
    assert drifts_in('{"message": "execution transition"}') == []
