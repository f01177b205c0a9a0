"""What must hold once a fault's executions have converged, checked from the table itself (read with a
client of the harness's own, never the product's), the client's answers and the receiver's log.

- Nothing lost, nothing stuck: every execution an answer named exists and is terminal; every execution
  of the tenant is accounted for by one submit (no submit made two).
- Nothing free, nothing charged twice: balance + reserved = grants - settled; the ledger's columns sum to
  the balance and the reservations; the live counter equals the live executions; each execution has
  exactly one reservation (at its input's price) and, once terminal, exactly one settlement or refund,
  which charged what its cost says; succeeded costs its price, failed nothing, cancelled its price iff
  it kept a result.
- Outcomes: each execution ends as it asked the provider to (or as the fault may make it end).
- Webhooks: one webhook-id per execution, event and destination; every delivery signed; every
  terminal event at a healthy receiver delivered; `webhook.state` ends delivered or failed.
- Nothing secret in logs, and no counter drift the audit had to repair.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from standardwebhooks import Webhook, WebhookVerificationError

from asyncgate.domain.accounts import Account, LedgerEntry
from asyncgate.domain.catalog import Number
from asyncgate.domain.execution import TERMINAL_EVENTS, Execution
from asyncgate.domain.status import Status
from asyncgate.domain.webhook_events import MAX_ATTEMPTS, terminal_event
from asyncgate.store.accounts import AccountStore
from asyncgate.store.items import LIST_SHARDS, execution_key, from_item, tenant_shard
from asyncgate_dev.receiver import Received
from chaos.workload import Submission

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BY_TENANT_INDEX = "ByTenant"
EXECUTION_PATH = "/execution"
ENDPOINT_PATH = "/endpoint"
# Where a redirecting receiver points: nothing may ever arrive there (redirects are never followed).
REDIRECT_PATH = "/redirected"
NATURAL_CODES = {"fail": "PROVIDER_FAILED", "incomplete": "PROVIDER_RESPONSE_INCOMPLETE"}
SECRET_PATTERNS = (
    re.compile(r"whsec_[A-Za-z0-9+/=]{16,}"),
    re.compile(r"[?&]token=(?!redacted)[A-Za-z0-9_%-]{8,}"),
    re.compile(r"X-Amz-Signature=", re.IGNORECASE),
)
WebhooksEnd = Literal["delivered", "failed", "either"]
# What the counter audit (services/audit.py) logs when a tenant's live counter is not what it counted.
DRIFT_MESSAGE = "live-execution counter drift"


@dataclass(frozen=True)
class Violation:
    check: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: {self.detail}"


@dataclass(frozen=True)
class Snapshot:
    tenant: str
    executions: dict[str, Execution]
    account: Account | None
    ledger: list[LedgerEntry]

    @property
    def live(self) -> list[Execution]:
        return [execution for execution in self.executions.values() if not execution.terminal]


@dataclass(frozen=True)
class Expectation:
    """How a fault may bend the outcomes, and how its receiver behaves."""

    # Error codes an execution may end with besides the one its plan asked for.
    allowed: frozenset[str] = frozenset()
    # Executions the fault dooms: they must end INTERNAL_ERROR (cancelled, when cancel was asked).
    doomed: frozenset[str] = frozenset()
    # A cancel accepted while the provider ran the job finds the job done: the execution is cancelled
    # with its result (and charged for it).
    cancel_finds_result: bool = False
    # How the receiver's webhooks end: delivered (a healthy receiver, or one that recovers), failed (a
    # receiver that never takes them), or either.
    webhooks_end: WebhooksEnd = "delivered"
    # The tenant endpoint is disabled by a 410 and gets nothing more.
    endpoint_gone: bool = False


def describe(execution: Execution) -> str:
    """An execution's state as a diagnosis needs it."""
    parts = [
        f"status {execution.status.value}",
        f"version {execution.version}",
        f"failedTicks {execution.failed_ticks}",
        f"nextPollAt {execution.next_poll_at.isoformat() if execution.next_poll_at else None}",
        f"tickId {execution.tick_id[:8]}",
        f"dispatchStarted {execution.dispatch_started_at is not None}",
        f"providerRequestId {execution.provider_request_id}",
        f"error {execution.error.code if execution.error else None}",
        f"cost {execution.cost.credits if execution.cost else None}",
        f"reserved {execution.reserved_credits}",
        f"webhook {execution.webhook.state}/{len(execution.webhook.attempts)} attempts",
    ]
    return ", ".join(parts)


def check_convergence(snapshot: Snapshot, submissions: list[Submission]) -> list[Violation]:
    violations = []
    named: set[str] = set()
    for submission in submissions:
        named.update(submission.ids)
        if len(submission.ids) > 1:
            violations.append(
                Violation(
                    "idempotency", f"plan {submission.plan.index}", f"one submit, executions {submission.ids}"
                )
            )
        for execution_id in submission.ids:
            if execution_id not in snapshot.executions:
                violations.append(
                    Violation(
                        "lost",
                        execution_id,
                        f"answers {submission.statuses} named it; the table has no such item",
                    )
                )
    for execution in snapshot.live:
        violations.append(Violation("stuck", execution.execution_id, describe(execution)))
    unnamed = sorted(set(snapshot.executions) - named)
    unanswered = sum(1 for submission in submissions if not submission.ids)
    if len(unnamed) > unanswered:
        violations.append(
            Violation(
                "accounting",
                snapshot.tenant,
                f"{len(unnamed)} executions no answer named, from only {unanswered} submits left without "
                f"an answer: {unnamed[:5]}",
            )
        )
    return violations


def check_accounts(snapshot: Snapshot, price_of: Callable[[Execution], Number]) -> list[Violation]:
    account = snapshot.account
    if account is None:
        return [Violation("credits", snapshot.tenant, "the tenant has no account")]
    violations = []

    def against(check: str, what: str, found: Number, expected: Number) -> None:
        if abs(found - expected) > 1e-6:
            violations.append(Violation(check, snapshot.tenant, f"{what}: {found} != {expected}"))

    ledger = snapshot.ledger
    grants = sum(entry.credits for entry in ledger if entry.kind == "grant")
    settled = sum(entry.charged for entry in ledger if entry.kind == "settle")
    against(
        "credits",
        "balance + reserved vs grants - settled",
        account.credits + account.reserved_credits,
        grants - settled,
    )
    against(
        "ledger", "ledger credits column vs balance", sum(entry.credits for entry in ledger), account.credits
    )
    against(
        "ledger",
        "ledger reserved column vs reserved",
        sum(entry.reserved for entry in ledger),
        account.reserved_credits,
    )
    against(
        "credits",
        "reserved vs what live executions hold",
        account.reserved_credits,
        sum(e.reserved_credits for e in snapshot.live),
    )
    against("live counter", "liveExecutions vs live executions", account.live_executions, len(snapshot.live))

    by_execution: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in ledger:
        if entry.kind != "grant":
            by_execution[entry.execution_id or ""].append(entry)
    for execution_id in sorted(set(by_execution) - set(snapshot.executions)):
        violations.append(
            Violation("ledger", execution_id, f"entries for no execution: {by_execution[execution_id]}")
        )
    for execution in snapshot.executions.values():
        violations.extend(
            _execution_ledger(execution, by_execution.get(execution.execution_id, []), price_of)
        )
    return violations


def _execution_ledger(
    execution: Execution, entries: list[LedgerEntry], price_of: Callable[[Execution], Number]
) -> list[Violation]:
    subject = execution.execution_id
    reserved = execution.reserved_credits
    violations = []
    price = price_of(execution)
    if reserved != price:
        violations.append(Violation("price", subject, f"reserved {reserved}, its input's price is {price}"))
    reserves = [entry for entry in entries if entry.kind == "reserve"]
    releases = [entry for entry in entries if entry.kind in ("settle", "refund")]
    expected_reserves = 1 if reserved else 0
    expected_releases = expected_reserves if execution.terminal else 0
    if len(reserves) != expected_reserves or any(
        entry.credits != -reserved or entry.reserved != reserved for entry in reserves
    ):
        violations.append(
            Violation("reserved once", subject, f"reservations {reserves}, reserved {reserved}")
        )
    if len(releases) != expected_releases:
        violations.append(
            Violation(
                "settled once",
                subject,
                f"{len(releases)} settlements/refunds: {releases}; {describe(execution)}",
            )
        )
    if not execution.terminal:
        return violations
    cost = execution.cost.credits if execution.cost else None
    expected_cost = _expected_cost(execution)
    if cost != expected_cost:
        violations.append(
            Violation("cost rule", subject, f"cost {cost}, expected {expected_cost}; {describe(execution)}")
        )
    for entry in releases:
        if (
            entry.charged != (cost or 0)
            or entry.reserved != -reserved
            or entry.credits != reserved - entry.charged
        ):
            violations.append(
                Violation("settled once", subject, f"settlement {entry} does not match cost {cost}")
            )
    return violations


def _expected_cost(execution: Execution) -> Number:
    """Succeeded costs what was reserved; cancelled too when it kept a result (the provider finished and
    billed the job); anything else nothing."""
    if execution.status is Status.SUCCEEDED:
        return execution.reserved_credits
    if execution.status is Status.CANCELLED and execution.result is not None:
        return execution.reserved_credits
    return 0


def check_outcomes(
    snapshot: Snapshot, submissions: list[Submission], expectation: Expectation
) -> list[Violation]:
    violations = []
    for submission in submissions:
        execution = snapshot.executions.get(submission.execution_id or "")
        if execution is None or not execution.terminal:
            continue  # lost or stuck: told by check_convergence
        problem = _outcome_problem(submission, execution, expectation)
        if problem:
            violations.append(
                Violation("outcome", execution.execution_id, f"{problem}; {describe(execution)}")
            )
    return violations


def _outcome_problem(submission: Submission, execution: Execution, expectation: Expectation) -> str | None:
    plan = submission.plan
    status = execution.status
    code = execution.error.code if execution.error else None
    if submission.cancel_accepted and status is not Status.CANCELLED:
        return f"cancel was accepted, it ended {status.value}"
    # A cancel that found the job running at the provider, which had finished it.
    finished_first = expectation.cancel_finds_result and submission.cancelled_from == "running"
    if finished_first and plan.outcome == "succeed" and execution.result is None:
        return "cancelled after its job finished, without the job's result"
    if execution.execution_id in expectation.doomed:
        if status is Status.CANCELLED and (submission.cancel_accepted or submission.cancel_unknown):
            return None
        return (
            None
            if code == "INTERNAL_ERROR"
            else f"doomed: expected INTERNAL_ERROR, got {status.value}/{code}"
        )
    if status is Status.CANCELLED:
        asked = submission.cancel_accepted or submission.cancel_unknown
        return None if asked else "cancelled, but no cancel was accepted"
    if status is Status.FAILED and code in expectation.allowed:
        return None
    if plan.outcome == "succeed":
        if status is not Status.SUCCEEDED:
            return f"asked to succeed, ended {status.value}/{code}"
        outputs = len(execution.result.outputs) if execution.result else 0
        return None if outputs == plan.outputs else f"succeeded with {outputs} outputs, asked {plan.outputs}"
    expected = NATURAL_CODES[plan.outcome]
    return (
        None
        if status is Status.FAILED and code == expected
        else f"asked to {plan.outcome}, ended {status.value}/{code}"
    )


@dataclass(frozen=True)
class Delivery:
    destination: str
    webhook_id: str
    event_type: str
    execution_id: str
    received: Received = field(repr=False)


def parse_deliveries(received: Iterable[Received]) -> tuple[list[Delivery], list[Violation]]:
    deliveries, violations = [], []
    for item in received:
        destination = item.path.rsplit("/", 1)[-1]
        try:
            body = json.loads(item.body)
            delivery = Delivery(
                destination, item.headers["webhook-id"], body["type"], body["data"]["executionId"], item
            )
        except (ValueError, KeyError, TypeError) as error:
            violations.append(Violation("webhook", item.path, f"unreadable delivery ({error!r})"))
            continue
        deliveries.append(delivery)
    return deliveries, violations


def check_deliveries(
    snapshot: Snapshot,
    received: list[Received],
    secrets: Mapping[str, str],
    expectation: Expectation,
) -> list[Violation]:
    """`secrets`: each destination's signing secret ("execution": the tenant's, "endpoint": the
    endpoint's)."""
    deliveries, violations = parse_deliveries(received)
    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    seen: set[tuple[str, str, str]] = set()
    for delivery in deliveries:
        key = (delivery.execution_id, delivery.event_type, delivery.destination)
        ids[key].add(delivery.webhook_id)
        seen.add(key)
        if delivery.destination == REDIRECT_PATH.strip("/"):
            violations.append(Violation("webhook", delivery.execution_id, "a redirect was followed"))
            continue
        secret = secrets.get(delivery.destination)
        if secret is not None and not _signed(secret, delivery.received):
            violations.append(
                Violation("signature", delivery.execution_id, f"{delivery.destination}: not verified")
            )
        execution = snapshot.executions.get(delivery.execution_id)
        terminal = delivery.event_type in TERMINAL_EVENTS
        if execution is not None and terminal and delivery.event_type != terminal_event(execution):
            violations.append(
                Violation(
                    "webhook",
                    delivery.execution_id,
                    f"{delivery.event_type} for a {execution.status.value} execution",
                )
            )
    for (execution_id, event_type, destination), webhook_ids in sorted(ids.items()):
        if len(webhook_ids) > 1:
            violations.append(
                Violation(
                    "webhook-id",
                    execution_id,
                    f"{event_type} to {destination}: {len(webhook_ids)} ids {sorted(webhook_ids)}",
                )
            )
    for execution in snapshot.executions.values():
        violations.extend(_webhook_end(execution, seen, expectation))
    return violations


def _webhook_end(
    execution: Execution, seen: set[tuple[str, str, str]], expectation: Expectation
) -> list[Violation]:
    event = terminal_event(execution)
    if event is None:
        return []
    violations = []
    subject = execution.execution_id
    destinations = ["endpoint"] if not expectation.endpoint_gone else []
    if execution.webhook.url is not None:
        destinations.append("execution")
        state = execution.webhook.state
        attempts = len(execution.webhook.attempts)
        expected = (
            ("delivered", "failed") if expectation.webhooks_end == "either" else (expectation.webhooks_end,)
        )
        if state not in expected:
            violations.append(
                Violation(
                    "webhook state",
                    subject,
                    f"{state} after {attempts} attempts, expected {expectation.webhooks_end}",
                )
            )
        if attempts > MAX_ATTEMPTS:
            violations.append(
                Violation(
                    "webhook attempts",
                    subject,
                    f"{attempts} attempts, at most {MAX_ATTEMPTS}: {_attempt_log(execution)}",
                )
            )
    if expectation.webhooks_end == "delivered":
        for destination in destinations:
            if (subject, event, destination) not in seen:
                violations.append(
                    Violation("webhook delivered", subject, f"{event} never reached {destination}")
                )
    return violations


def _attempt_log(execution: Execution) -> str:
    """Each attempt's answer (or error) and when, in seconds after the first."""
    attempts = execution.webhook.attempts
    entries = []
    for attempt in attempts:
        answer = attempt.status_code or (attempt.error or "?")[:40]
        entries.append(f"{answer} at +{(attempt.at - attempts[0].at).total_seconds():.1f}s")
    return ", ".join(entries)


def _signed(secret: str, received: Received) -> bool:
    try:
        Webhook(secret).verify(received.body, received.headers)
    except WebhookVerificationError:
        return False
    return True


def settled(snapshot: Snapshot, received: list[Received], expectation: Expectation) -> bool:
    """Whether the fault's work is over: every execution terminal, its webhook state final and, where
    the receiver takes deliveries, its terminal event there."""
    if snapshot.live:
        return False
    seen = {(d.execution_id, d.event_type, d.destination) for d in parse_deliveries(received)[0]}
    for execution in snapshot.executions.values():
        if execution.webhook.url is not None and execution.webhook.state not in ("delivered", "failed"):
            return False
        if expectation.webhooks_end == "delivered" and any(
            violation.check == "webhook delivered" for violation in _webhook_end(execution, seen, expectation)
        ):
            return False
    return True


def scan_secrets(text: str, secrets: Iterable[str]) -> list[Violation]:
    """Known secrets (keys, signing secrets) and anything shaped like one, in the logs."""
    found: Counter[str] = Counter()
    for secret in secrets:
        found[f"{secret[:6]}... (a known secret)"] += text.count(secret)
    for pattern in SECRET_PATTERNS:
        found[f"something shaped like one ({pattern.pattern})"] += len(pattern.findall(text))
    return [
        Violation("secret in logs", what, f"{count} times") for what, count in sorted(found.items()) if count
    ]


def drifts_in(text: str) -> list[Violation]:
    """Counter drifts the audit found (and repaired) in the logs: a live counter that had gone wrong,
    even if it is right again by the time it is checked."""
    violations = []
    for line in text.splitlines():
        if DRIFT_MESSAGE not in line:
            continue
        try:
            drift = json.loads(line)
        except ValueError:
            drift = {}
        violations.append(
            Violation("live counter", drift.get("driftTenant", "?"), f"the audit found a drift: {line[:300]}")
        )
    return violations


class TableReader:
    """The table as it is, read with the harness's own client (consistent reads)."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table
        self._accounts = AccountStore(client, table)

    def snapshot(self, tenant: str, known: Iterable[str] = ()) -> Snapshot:
        ids = self._listed(tenant) | set(known)
        return Snapshot(
            tenant=tenant,
            executions={execution.execution_id: execution for execution in self._get(sorted(ids))},
            account=self._accounts.get(tenant),
            ledger=self._accounts.ledger(tenant),
        )

    def _listed(self, tenant: str) -> set[str]:
        ids: set[str] = set()
        for shard in range(LIST_SHARDS):
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": BY_TENANT_INDEX,
                "KeyConditionExpression": "tenantShard = :shard",
                "ExpressionAttributeValues": {":shard": {"S": tenant_shard(tenant, shard)}},
            }
            while True:
                answer = self._client.query(**request)
                ids.update(item["createdKey"]["S"].rsplit("#", 1)[1] for item in answer.get("Items", []))
                if "LastEvaluatedKey" not in answer:
                    break
                request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return ids

    def _get(self, ids: list[str]) -> list[Execution]:
        found: list[Execution] = []
        for start in range(0, len(ids), 100):
            pending: list[Any] = [execution_key(execution_id) for execution_id in ids[start : start + 100]]
            while pending:
                answer = self._client.batch_get_item(
                    RequestItems={self._table: {"Keys": pending, "ConsistentRead": True}}
                )
                found.extend(from_item(item) for item in answer.get("Responses", {}).get(self._table, []))
                unprocessed: Any = answer.get("UnprocessedKeys", {}).get(self._table) or {}
                pending = list(unprocessed.get("Keys", []))
        return found
