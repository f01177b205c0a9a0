"""`asyncgate admin`: tenants, API keys, credits and queue limits, written straight to a stack's table.

A deployed stack's table is reached through boto3's default credential chain (`--table` or
`ASYNCGATE_TABLE`, `--region`, `--endpoint-url` or `AWS_ENDPOINT_URL`); the running local stack's with
`--local`, from the connection file `asyncgate dev` writes. Every operation is the layer's own
(`asyncgate.services.tenants`), so the admin writes exactly what the API reads. A failure is one line on
standard error, `asyncgate: CODE: message`, and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from rich.table import Table

from asyncgate.domain.accounts import Account, LedgerEntry, is_tenant_id, ledger_totals
from asyncgate.domain.clock import format_ts, utcnow
from asyncgate.services import tenants
from asyncgate.services.dead_ticks import DeadTick, list_dead_ticks, redrive_dead_ticks
from asyncgate.settings import Settings
from asyncgate.store.accounts import AccountStore, BalanceTooLow, TenantNotFound
from asyncgate.store.executions import ExecutionStore
from asyncgate.store.keys import ALL_SCOPES, ApiKeyInfo, ApiKeyStore, Scope
from asyncgate.store.webhooks import WebhookStore
from asyncgate_dev.awsenv import DUMMY_AWS_ENV
from asyncgate_dev.cli import EXIT_OK, EXIT_USAGE, Output, display_number, display_time
from asyncgate_dev.localfile import LocalStackNotRunning, read_local_file

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TABLE_ENV = "ASYNCGATE_TABLE"
DLQ_ENV = "ASYNCGATE_POLL_DLQ_URL"
# An operator waits a little longer than a Lambda function would (a whole ledger is read in pages).
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=10)
# How long a warm API container keeps trusting a key it resolved: the layer's default, which the
# template does not override.
AUTH_CACHE_SECONDS: float = Settings.model_fields["auth_cache_seconds"].default


class AdminError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TableStores:
    """The tenant operations' stores (`TenantStores`) on one table: no queue or state machine needed."""

    accounts: AccountStore
    api_keys: ApiKeyStore
    webhooks: WebhookStore
    clock: Callable[[], datetime] = utcnow


def table_deps(client: DynamoDBClient, table: str) -> TableStores:
    return TableStores(AccountStore(client, table), ApiKeyStore(client, table), WebhookStore(client, table))


@dataclass(frozen=True)
class Target:
    """Where the admin works: a session on the stack's account (or the emulator's), its table, and its
    poll dead-letter queue when one is named."""

    session: boto3.session.Session
    endpoint_url: str | None
    table: str
    dlq_url: str | None

    def client(self, service: Literal["dynamodb", "sqs"]) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url, config=_CONFIG)


def target(args: argparse.Namespace) -> Target:
    """The chosen stack: the local stack's (`--local`) or a deployed one's."""
    region: str | None = getattr(args, "region", None)
    endpoint_url: str | None = getattr(args, "endpoint_url", None)
    table: str | None = getattr(args, "table", None)
    dlq_url: str | None = getattr(args, "dlq_url", None)
    if getattr(args, "local", False):
        if table or region or endpoint_url or dlq_url:
            raise AdminError(
                "INVALID_ARGUMENT",
                "--local takes the table, queues, region and endpoint from the local stack",
            )
        try:
            local = read_local_file()
        except LocalStackNotRunning as error:
            raise AdminError("LOCAL_STACK_NOT_RUNNING", str(error)) from None
        # The emulator's dummy credentials: an operator's real ones never leave for a local process.
        session = boto3.session.Session(
            aws_access_key_id=DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=local.region,
        )
        return Target(session, local.aws_endpoint, local.table_name, local.poll_dlq_url)
    table = table or os.environ.get(TABLE_ENV)
    if not table:
        raise AdminError(
            "NO_TABLE",
            f"which table? --table NAME or env {TABLE_ENV} (the stack's output ExecutionsTableName), "
            "or --local for the local stack",
        )
    # endpoint_url None: boto3 reads AWS_ENDPOINT_URL itself.
    return Target(
        boto3.session.Session(region_name=region), endpoint_url, table, dlq_url or os.environ.get(DLQ_ENV)
    )


def connect(args: argparse.Namespace) -> TableStores:
    """The chosen table's stores."""
    chosen = target(args)
    return table_deps(chosen.client("dynamodb"), chosen.table)


def run_admin(args: argparse.Namespace, out: Output) -> int:
    try:
        tenant: str | None = getattr(args, "tenant", None)
        if tenant is not None and not is_tenant_id(tenant):
            raise AdminError(
                "INVALID_TENANT_ID", f"{tenant!r}: use 1-63 of a-z, 0-9, '-' and '_', starting alphanumeric"
            )
        action = args.admin_action
        if action in QUEUE_ACTIONS:
            QUEUE_ACTIONS[action](target(args), args, out)
        else:
            ACTIONS[action](connect(args), args, out)
    except (AdminError, TenantNotFound, BalanceTooLow, ValueError, ClientError, BotoCoreError) as error:
        failure = _admin_error(error, args)
        out.error(f"asyncgate: {failure.code}: {failure}")
        return EXIT_USAGE
    return EXIT_OK


def _admin_error(error: Exception, args: argparse.Namespace) -> AdminError:
    match error:
        case AdminError():
            return error
        case TenantNotFound():
            return AdminError("TENANT_NOT_FOUND", f"no tenant {args.tenant!r}")
        case BalanceTooLow():
            return AdminError(
                "BALANCE_TOO_LOW",
                f"tenant {args.tenant!r} has fewer than {display_number(-args.amount)} spendable credits",
            )
        case ValueError():
            # The services' own checks (a zero amount, a negative limit).
            return AdminError("INVALID_ARGUMENT", str(error))
        case ClientError():
            aws = error.response.get("Error", {})
            return AdminError("AWS_ERROR", f"{aws.get('Code')}: {aws.get('Message')}")
        case EndpointConnectionError() if getattr(args, "local", False):
            return AdminError(
                "LOCAL_STACK_NOT_RUNNING",
                f"the local stack does not answer ({error}): is `make dev` running?",
            )
        case _:
            return AdminError("AWS_ERROR", str(error))


def _tenant_create(deps: TableStores, args: argparse.Namespace, out: Output) -> None:
    if not tenants.create_tenant(deps, args.tenant, queue_limit=args.queue_limit, credits=args.credits):
        raise AdminError("TENANT_EXISTS", f"tenant {args.tenant!r} already exists; nothing changed")
    _show_account(out, tenants.require_account(deps, args.tenant))


def _tenant_show(deps: TableStores, args: argparse.Namespace, out: Output) -> None:
    _show_account(out, tenants.require_account(deps, args.tenant))


def _tenant_list(deps: TableStores, args: argparse.Namespace, out: Output) -> None:
    accounts = [tenants.require_account(deps, tenant) for tenant in deps.accounts.tenants()]
    if out.as_json:
        out.json({"items": [_account_wire(account) for account in accounts]})
        return
    if not accounts:
        out.line("no tenants")
        return
    table = Table("TENANT", "CREDITS", "RESERVED", "LIVE", "QUEUE LIMIT", "CREATED", box=None)
    for account in accounts:
        table.add_row(
            account.tenant,
            display_number(account.credits),
            display_number(account.reserved_credits),
            str(account.live_executions),
            str(account.queue_limit),
            display_time(account.created_at),
        )
    out.console.print(table)


def _key_issue(deps: TableStores, args: argparse.Namespace, out: Output) -> None:
    issued = tenants.issue_key(deps, args.tenant, _scopes(args.scopes), name=args.name)
    if out.as_json:
        out.json({"apiKey": issued.api_key, **_key_wire(issued.info)})
    else:
        out.fields([("API key", issued.api_key), *_key_fields(issued.info)])
    out.warning("The API key is shown only now: the table keeps only its hash. Store it safely.")


def _key_list(deps: TableStores, args: argparse.Namespace, out: Output) -> None:
    keys = tenants.list_keys(deps, args.tenant)
    if out.as_json:
        out.json({"items": [_key_wire(key) for key in keys]})
        return
    if not keys:
        out.line(f"tenant {args.tenant} has no keys")
        return
    table = Table(box=None)
    table.add_column("KEY ID", no_wrap=True)
    for name in ("NAME", "SCOPES", "CREATED", "STATE"):
        table.add_column(name)
    for key in keys:
        table.add_row(
            key.key_id,
            key.name or "",
            ", ".join(sorted(key.scopes)),
            display_time(key.created_at),
            "revoked" if key.revoked else "active",
        )
    out.console.print(table)


def _key_revoke(deps: TableStores, args: argparse.Namespace, out: Output) -> None:
    if not tenants.revoke_key(deps, args.tenant, args.key_id):
        raise AdminError("KEY_NOT_FOUND", f"tenant {args.tenant!r} has no key {args.key_id!r}")
    if out.as_json:
        out.json({"tenant": args.tenant, "keyId": args.key_id, "revoked": True})
    else:
        out.line(f"revoked {args.key_id} of tenant {args.tenant}")
    out.warning(
        f"API functions that accepted this key in the last {AUTH_CACHE_SECONDS:g} s may go on accepting it "
        "until their key cache expires (AUTH_CACHE_SECONDS)."
    )


def _credits_add(deps: TableStores, args: argparse.Namespace, out: Output) -> None:
    _show_account(out, tenants.add_credits(deps, args.tenant, args.amount, note=args.note))


def _queue_limit_set(deps: TableStores, args: argparse.Namespace, out: Output) -> None:
    _show_account(out, tenants.set_queue_limit(deps, args.tenant, args.queue_limit))


def _ledger(deps: TableStores, args: argparse.Namespace, out: Output) -> None:
    _check_limit(args)
    account = tenants.require_account(deps, args.tenant)
    # All of it: the totals must explain the whole balance, whatever --limit shows.
    entries = tenants.ledger(deps, args.tenant)
    totals = ledger_totals(entries)
    balanced = math.isclose(totals.credits, account.credits, abs_tol=1e-6) and math.isclose(
        totals.reserved, account.reserved_credits, abs_tol=1e-6
    )
    shown = entries[: args.limit]
    if out.as_json:
        out.json(
            {
                "tenant": account.tenant,
                "items": [_entry_wire(entry) for entry in shown],
                "entries": len(entries),
                "totals": {"credits": totals.credits, "reservedCredits": totals.reserved},
                "account": _account_wire(account),
                "balanced": balanced,
            }
        )
        return
    table = Table("AT", "KIND", "CREDITS", "RESERVED", "CHARGED", "EXECUTION", "NOTE", box=None)
    for entry in shown:
        table.add_row(
            display_time(entry.at),
            entry.kind,
            display_number(entry.credits),
            display_number(entry.reserved),
            display_number(entry.charged),
            entry.execution_id or "",
            entry.note or "",
        )
    out.console.print(table)
    out.fields(
        [
            ("entries", f"{len(shown)} shown of {len(entries)}"),
            ("ledger totals", _balances(totals.credits, totals.reserved)),
            ("account", _balances(account.credits, account.reserved_credits)),
        ]
    )
    if balanced:
        out.line("the ledger explains the balance", style="green")
    else:
        out.warning("the ledger and the account differ (a movement between the two reads? run it again)")


ACTIONS: dict[str, Callable[[TableStores, argparse.Namespace, Output], None]] = {
    "tenant create": _tenant_create,
    "tenant show": _tenant_show,
    "tenant list": _tenant_list,
    "key issue": _key_issue,
    "key list": _key_list,
    "key revoke": _key_revoke,
    "credits add": _credits_add,
    "queue-limit set": _queue_limit_set,
    "ledger": _ledger,
}


def _check_limit(args: argparse.Namespace) -> None:
    if args.limit < 1:
        raise AdminError("INVALID_ARGUMENT", "--limit must be at least 1")


def _dlq_url(chosen: Target) -> str:
    if chosen.dlq_url is None:
        raise AdminError(
            "NO_DLQ",
            f"which dead-letter queue? --dlq-url URL or env {DLQ_ENV} (the stack's output "
            "PollDeadLetterQueueUrl), or --local for the local stack",
        )
    return chosen.dlq_url


def _dlq_list(chosen: Target, args: argparse.Namespace, out: Output) -> None:
    _check_limit(args)
    executions = ExecutionStore(chosen.client("dynamodb"), chosen.table)
    dead = list_dead_ticks(chosen.client("sqs"), _dlq_url(chosen), executions, limit=args.limit)
    if out.as_json:
        out.json({"items": [_dead_wire(tick) for tick in dead]})
        return
    if not dead:
        out.line("the poll dead-letter queue is empty")
        return
    table = Table("EXECUTION", "STATUS NOW", "TICK", "RECEIVES", "SENT", box=None)
    for tick in dead:
        table.add_row(
            tick.execution_id or f"(not a tick: message {tick.message_id})",
            tick.status or "gone",
            "current" if tick.current else "stale",
            str(tick.receives),
            display_time(tick.sent_at),
        )
    out.console.print(table)
    out.line("a stale tick is safe to drop or redrive: its execution moved on under a newer tick")


def _dlq_redrive(chosen: Target, args: argparse.Namespace, out: Output) -> None:
    _check_limit(args)
    moved = redrive_dead_ticks(chosen.client("sqs"), _dlq_url(chosen), limit=args.limit)
    if out.as_json:
        out.json({"redriven": moved})
    else:
        out.line(f"sent {moved} dead ticks back to the poll queue")


QUEUE_ACTIONS: dict[str, Callable[[Target, argparse.Namespace, Output], None]] = {
    "dlq list": _dlq_list,
    "dlq redrive": _dlq_redrive,
}


def _scopes(text: str | None) -> frozenset[Scope]:
    if text is None:
        return ALL_SCOPES
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {scope.value for scope in Scope}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise AdminError(
            "INVALID_SCOPE",
            f"{', '.join(map(repr, unknown)) or 'no scope given'}: the scopes are {', '.join(sorted(known))}",
        )
    return frozenset(Scope(name) for name in names)


def _show_account(out: Output, account: Account) -> None:
    if out.as_json:
        out.json(_account_wire(account))
        return
    out.fields(
        [
            ("tenant", account.tenant),
            ("credits", display_number(account.credits)),
            ("reserved", display_number(account.reserved_credits)),
            ("live", f"{account.live_executions} of {account.queue_limit}"),
            ("created", display_time(account.created_at)),
            ("updated", display_time(account.updated_at)),
        ]
    )


def _key_fields(key: ApiKeyInfo) -> list[tuple[str, str | None]]:
    return [
        ("key id", key.key_id),
        ("tenant", key.tenant),
        ("name", key.name),
        ("scopes", ", ".join(sorted(key.scopes))),
        ("created", display_time(key.created_at)),
        ("revoked", "yes" if key.revoked else None),
    ]


def _balances(credits: float, reserved: float) -> str:
    return f"credits {display_number(credits)}, reserved {display_number(reserved)}"


def _account_wire(account: Account) -> dict[str, Any]:
    return {
        "tenant": account.tenant,
        "credits": account.credits,
        "reservedCredits": account.reserved_credits,
        "queueLimit": account.queue_limit,
        "liveExecutions": account.live_executions,
        "createdAt": _wire_time(account.created_at),
        "updatedAt": _wire_time(account.updated_at),
    }


def _key_wire(key: ApiKeyInfo) -> dict[str, Any]:
    return {
        "keyId": key.key_id,
        "tenant": key.tenant,
        "name": key.name,
        "scopes": sorted(key.scopes),
        "createdAt": format_ts(key.created_at),
        "revoked": key.revoked,
    }


def _entry_wire(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "at": format_ts(entry.at),
        "kind": entry.kind,
        "credits": entry.credits,
        "reserved": entry.reserved,
        "charged": entry.charged,
        "executionId": entry.execution_id,
        "note": entry.note,
    }


def _dead_wire(tick: DeadTick) -> dict[str, Any]:
    return {
        "messageId": tick.message_id,
        "executionId": tick.execution_id,
        "tickId": tick.tick_id,
        "dueAt": _wire_time(tick.due_at),
        "receives": tick.receives,
        "sentAt": format_ts(tick.sent_at),
        "status": tick.status,
        "current": tick.current,
    }


def _wire_time(value: datetime | None) -> str | None:
    return None if value is None else format_ts(value)
