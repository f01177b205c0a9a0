"""Tenant accounts and their ledger, on the tenant item and beside it.

| item | pk | sk |
| --- | --- | --- |
| tenant (account attributes, plus the webhook secret) | `TENANT#<tenant>` | `TENANT` |
| ledger entry | `TENANT#<tenant>` | `LEDGER#<at>#<id>` |

The account attributes change only inside transactions that also write the execution (or the grant)
that justifies the change, each with its ledger entry: the live-execution counter and the balances can
never drift from the executions. Tenant items also sit in the `ByTenant` index under one partition
(`TENANTS`), so tenants can be listed without a scan.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from asyncgate.domain.accounts import (
    Account,
    LedgerEntry,
    grant_entry,
    release_entry,
    reservation_entry,
)
from asyncgate.domain.catalog import Number
from asyncgate.domain.clock import format_ts, parse_ts
from asyncgate.domain.execution import Execution
from asyncgate.store.items import Item, serialize, tenant_key
from asyncgate.store.transactions import TransactionCancelled, transact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

TENANTS_PARTITION = "TENANTS"
BY_TENANT_INDEX = "ByTenant"
LEDGER_PREFIX = "LEDGER#"

_deserializer = TypeDeserializer()


class AccountRefused(Exception):
    """The reservation did not fit: the queue limit is reached or the credits do not cover the price.
    `account` is the account as the refused transaction saw it (None: the tenant has no account)."""

    def __init__(self, account: Account | None) -> None:
        super().__init__("account refused the reservation")
        self.account = account


class TenantNotFound(Exception):
    pass


class BalanceTooLow(Exception):
    """A negative grant (a correction) larger than the spendable balance."""


def _n(value: Number) -> dict[str, str]:
    return {"N": str(Decimal(str(value)))}


def _number(value: Any) -> Number:
    decimal = Decimal(value)
    return int(decimal) if decimal == decimal.to_integral_value() else float(decimal)


def account_of(tenant: str, item: dict[str, Any] | None) -> Account | None:
    """The account held by a tenant item (typed attributes), or None if it has none."""
    if not item or "queueLimit" not in item:
        return None
    raw = {name: _deserializer.deserialize(value) for name, value in item.items()}
    return Account(
        tenant=tenant,
        credits=_number(raw.get("credits", 0)),
        reserved_credits=_number(raw.get("reservedCredits", 0)),
        queue_limit=int(raw["queueLimit"]),
        live_executions=int(raw.get("liveExecutions", 0)),
        created_at=parse_ts(raw["accountCreatedAt"]) if raw.get("accountCreatedAt") else None,
        updated_at=parse_ts(raw["accountUpdatedAt"]) if raw.get("accountUpdatedAt") else None,
    )


def _ledger_put(table: str, tenant: str, entry: LedgerEntry, entry_id: str) -> TransactWriteItemTypeDef:
    item: Item = {
        "pk": {"S": f"TENANT#{tenant}"},
        "sk": {"S": f"{LEDGER_PREFIX}{format_ts(entry.at)}#{entry_id}"},
        **serialize(
            {
                "at": format_ts(entry.at),
                "kind": entry.kind,
                "credits": entry.credits,
                "reserved": entry.reserved,
                "charged": entry.charged,
                "executionId": entry.execution_id,
                "note": entry.note,
            }
        ),
    }
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}


def _ledger_entry(item: dict[str, Any]) -> LedgerEntry:
    raw = {name: _deserializer.deserialize(value) for name, value in item.items()}
    return LedgerEntry(
        at=parse_ts(raw["at"]),
        kind=raw["kind"],
        credits=_number(raw["credits"]),
        reserved=_number(raw.get("reserved", 0)),
        charged=_number(raw.get("charged", 0)),
        execution_id=raw.get("executionId"),
        note=raw.get("note"),
    )


def reserve_operations(table: str, execution: Execution, now: datetime) -> list[TransactWriteItemTypeDef]:
    """What submit writes beside the new execution: one more live execution and its price moved from
    spendable to reserved, only while under the queue limit and covered by the balance."""
    price = execution.reserved_credits
    operations: list[TransactWriteItemTypeDef] = [
        {
            "Update": {
                "TableName": table,
                "Key": tenant_key(execution.tenant),
                "UpdateExpression": (
                    "SET credits = credits - :price, reservedCredits = reservedCredits + :price, "
                    "liveExecutions = liveExecutions + :one, accountUpdatedAt = :now"
                ),
                "ConditionExpression": "liveExecutions < queueLimit AND credits >= :price",
                "ExpressionAttributeValues": {
                    ":price": _n(price),
                    ":one": _n(1),
                    ":now": {"S": format_ts(now)},
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
    ]
    if price:
        entry = reservation_entry(execution.execution_id, price, now)
        operations.append(_ledger_put(table, execution.tenant, entry, f"{execution.execution_id}#reserve"))
    return operations


def release_operations(
    table: str, before: Execution, after: Execution, now: datetime
) -> list[TransactWriteItemTypeDef]:
    """What the terminal transition writes beside the execution: one live execution fewer, and its
    reservation settled (the cost kept, the rest given back). Unconditional: nothing may keep an
    execution from finishing; the execution's own versioned write makes the whole transaction once-only."""
    reserved = before.reserved_credits
    entry = release_entry(after.execution_id, reserved, after.cost.credits if after.cost else 0, now)
    operations: list[TransactWriteItemTypeDef] = [
        {
            "Update": {
                "TableName": table,
                "Key": tenant_key(after.tenant),
                "UpdateExpression": (
                    "SET liveExecutions = if_not_exists(liveExecutions, :zero) - :one, "
                    "reservedCredits = if_not_exists(reservedCredits, :zero) - :reserved, "
                    "credits = if_not_exists(credits, :zero) + :back, accountUpdatedAt = :now"
                ),
                "ExpressionAttributeValues": {
                    ":zero": _n(0),
                    ":one": _n(1),
                    ":reserved": _n(reserved),
                    ":back": _n(entry.credits),
                    ":now": {"S": format_ts(now)},
                },
            }
        }
    ]
    if reserved:
        operations.append(_ledger_put(table, after.tenant, entry, f"{after.execution_id}#{entry.kind}"))
    return operations


class AccountStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, tenant: str) -> Account | None:
        answer = self._client.get_item(TableName=self._table, Key=tenant_key(tenant), ConsistentRead=True)
        return account_of(tenant, answer.get("Item"))

    def create(self, tenant: str, *, queue_limit: int, credits: Number, now: datetime) -> bool:
        """Open the tenant's account with `credits` granted; False if it already has one."""
        operations: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": tenant_key(tenant),
                    "UpdateExpression": (
                        "SET queueLimit = :limit, credits = :credits, reservedCredits = :zero, "
                        "liveExecutions = :zero, accountCreatedAt = :now, accountUpdatedAt = :now, "
                        "tenant = :tenant, tenantShard = :tenants, createdKey = :tenant"
                    ),
                    "ConditionExpression": "attribute_not_exists(queueLimit)",
                    "ExpressionAttributeValues": {
                        ":limit": _n(queue_limit),
                        ":credits": _n(credits),
                        ":zero": _n(0),
                        ":now": {"S": format_ts(now)},
                        ":tenant": {"S": tenant},
                        ":tenants": {"S": TENANTS_PARTITION},
                    },
                }
            }
        ]
        if credits:
            entry = grant_entry(credits, now, "opening balance")
            operations.append(_ledger_put(self._table, tenant, entry, uuid.uuid4().hex))
        try:
            transact(self._client, operations)
        except TransactionCancelled as cancelled:
            if cancelled.failed(0):
                return False
            raise
        return True

    def grant(self, tenant: str, amount: Number, *, note: str | None, now: datetime) -> None:
        """Add `amount` to the spendable credits (negative: take it away, never below zero), with its
        ledger entry, in one transaction."""
        values: dict[str, Any] = {":amount": _n(amount), ":now": {"S": format_ts(now)}}
        condition = "attribute_exists(queueLimit)"
        if amount < 0:
            condition += " AND credits >= :needed"
            values[":needed"] = _n(-amount)
        update: TransactWriteItemTypeDef = {
            "Update": {
                "TableName": self._table,
                "Key": tenant_key(tenant),
                "UpdateExpression": "SET credits = credits + :amount, accountUpdatedAt = :now",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        entry = grant_entry(amount, now, note)
        try:
            transact(self._client, [update, _ledger_put(self._table, tenant, entry, uuid.uuid4().hex)])
        except TransactionCancelled as cancelled:
            if account_of(tenant, cancelled.reasons[0].item) is None:
                raise TenantNotFound(tenant) from cancelled
            raise BalanceTooLow(tenant) from cancelled

    def set_queue_limit(self, tenant: str, limit: int, *, now: datetime) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=tenant_key(tenant),
                UpdateExpression="SET queueLimit = :limit, accountUpdatedAt = :now",
                ConditionExpression="attribute_exists(queueLimit)",
                ExpressionAttributeValues={":limit": _n(limit), ":now": {"S": format_ts(now)}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise TenantNotFound(tenant) from error
            raise

    def ledger(self, tenant: str, *, limit: int | None = None) -> list[LedgerEntry]:
        """The tenant's ledger, newest first (all of it when `limit` is None)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": f"TENANT#{tenant}"}, ":prefix": {"S": LEDGER_PREFIX}},
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        entries: list[LedgerEntry] = []
        while limit is None or len(entries) < limit:
            if limit is not None:
                request["Limit"] = limit - len(entries)
            answer = self._client.query(**request)
            entries.extend(_ledger_entry(item) for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return entries

    def tenants(self) -> list[str]:
        """Every tenant with an account (from the index: a tenant created a moment ago may be missing)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_TENANT_INDEX,
            "KeyConditionExpression": "tenantShard = :tenants",
            "ExpressionAttributeValues": {":tenants": {"S": TENANTS_PARTITION}},
        }
        tenants: list[str] = []
        while True:
            answer = self._client.query(**request)
            tenants.extend(item["createdKey"]["S"] for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return tenants
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def repair_live_count(self, account: Account, counted: int, *, now: datetime) -> bool:
        """Set the live-execution counter to `counted`, only if the account is still exactly as read
        (nothing moved it since); False if it had moved."""
        assert account.updated_at is not None
        try:
            self._client.update_item(
                TableName=self._table,
                Key=tenant_key(account.tenant),
                UpdateExpression="SET liveExecutions = :counted, accountUpdatedAt = :now",
                ConditionExpression="liveExecutions = :seen AND accountUpdatedAt = :seenAt",
                ExpressionAttributeValues={
                    ":counted": _n(counted),
                    ":seen": _n(account.live_executions),
                    ":seenAt": {"S": format_ts(account.updated_at)},
                    ":now": {"S": format_ts(now)},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
