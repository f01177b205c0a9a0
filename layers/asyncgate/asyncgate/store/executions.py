"""The executions table: one item per execution, every change a conditional write on its version."""

from __future__ import annotations

import base64
import binascii
import contextlib
import heapq
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from asyncgate.domain.clock import format_ts
from asyncgate.domain.execution import Execution, WebhookAttempt, WebhookState
from asyncgate.domain.status import Status
from asyncgate.store.accounts import AccountRefused, account_of, release_operations, reserve_operations
from asyncgate.store.items import (
    DUE_SHARDS,
    LIST_SHARDS,
    Item,
    attempt_attributes,
    created_key,
    due_shard,
    execution_key,
    from_item,
    item_size,
    serialize,
    tenant_shard,
    to_attributes,
    to_item,
)
from asyncgate.store.transactions import TransactionCancelled, transact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef, UpdateTypeDef

BY_TENANT_INDEX = "ByTenant"
BATCH_GET_ATTEMPTS = 5
# The execution's webhook attempt log is bounded (5 attempts per event, a few events per execution).
MAX_RECORDED_ATTEMPTS = 50
BY_DUE_INDEX = "ByDue"
# Attributes that identify an item and never change after creation.
_IMMUTABLE = frozenset({"pk", "sk", "executionId", "tenant", "tenantShard", "createdKey", "createdAt"})
# Attributes the notifier writes apart from the lifecycle's versioned writes.
_UNVERSIONED = frozenset({"webhookState", "webhookAttempts"})
# DynamoDB's item limit (400 KB) less room for what is appended to an item without the lifecycle's
# writes: the webhook attempt log (MAX_RECORDED_ATTEMPTS entries of a few hundred bytes) and its state.
ITEM_LIMIT_BYTES = 400 * 1024 - 20 * 1024


class StaleWrite(Exception):
    """Someone else changed the execution since it was read (the conditional write lost)."""


class ItemTooLarge(Exception):
    """The execution, as it would be written, does not fit in one DynamoDB item: nothing was written."""

    def __init__(self, execution_id: str, size: int) -> None:
        super().__init__(f"execution {execution_id} would take {size} bytes, over {ITEM_LIMIT_BYTES}")
        self.size = size


class IdempotencyKeyTaken(Exception):
    """The submit's idempotency key is held by an earlier request of the tenant."""


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class Page:
    items: list[Execution]
    next_cursor: str | None


def _is_condition_failure(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code")
    return code in {"ConditionalCheckFailedException", "TransactionCanceledException"}


def _versioned(execution: Execution) -> dict[str, Any]:
    return {name: value for name, value in to_attributes(execution).items() if name not in _UNVERSIONED}


def _checked_item(execution: Execution) -> Item:
    """The execution's item; ItemTooLarge when it would not fit."""
    item = to_item(execution)
    size = item_size(item)
    if size > ITEM_LIMIT_BYTES:
        raise ItemTooLarge(execution.execution_id, size)
    return item


def encode_cursor(position: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": 1, "before": position}).encode()).decode().rstrip("=")


def cursor_after(execution: Execution) -> str:
    """The cursor of the page that goes on after `execution` (newest first)."""
    return encode_cursor(created_key(execution))


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        position = decoded["before"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError) as error:
        raise InvalidCursor("cursor is not one this API issued") from error
    if decoded.get("v") != 1 or not isinstance(position, str) or "#" not in position:
        raise InvalidCursor("cursor is not one this API issued")
    return position


class ExecutionStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def create(
        self, execution: Execution, *, now: datetime, idempotency: TransactWriteItemTypeDef | None = None
    ) -> None:
        """Store a new (live) execution in one transaction with its reservation on the tenant's account
        (queue limit and credits) and, when the request has one, its idempotency record.

        Raises AccountRefused (the account would not take it) or IdempotencyKeyTaken (the record's key
        is held by an earlier request) or ItemTooLarge; nothing is written then.
        """
        item = _checked_item(execution)
        reservation = reserve_operations(self._table, execution, now)
        operations: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            *reservation,
        ]
        if idempotency is not None:
            operations.append(idempotency)
        try:
            transact(self._client, operations)
        except TransactionCancelled as cancelled:
            if idempotency is not None and cancelled.failed(len(operations) - 1):
                raise IdempotencyKeyTaken(execution.tenant) from cancelled
            if cancelled.failed(1):
                raise AccountRefused(account_of(execution.tenant, cancelled.reasons[1].item)) from cancelled
            raise

    def get(self, execution_id: str, *, consistent: bool = True) -> Execution | None:
        answer = self._client.get_item(
            TableName=self._table, Key=execution_key(execution_id), ConsistentRead=consistent
        )
        item = answer.get("Item")
        return from_item(item) if item else None

    def update(self, before: Execution, after: Execution) -> None:
        """Write what changed from `before` to `after`, only if the item is still at `before.version`.

        Only changed attributes are written, so writers of other attributes are never overwritten.
        Raises StaleWrite when another writer moved the execution first, ItemTooLarge (nothing written)
        when `after` does not fit in an item. An answer lost after the write committed (a timeout, or a
        retried request whose first try had committed and whose retry then failed its condition) is
        told apart by reading the item back: the write succeeded if the item holds `after`.
        """
        _checked_item(after)
        try:
            self._write(before, after)
        except StaleWrite:
            if self._holds(after):
                return
            raise
        except (ClientError, BotoCoreError) as error:
            if self._holds(after):
                return
            current = self.get(before.execution_id)
            if current is None or current.version != before.version:
                raise StaleWrite(before.execution_id) from error
            raise

    def _holds(self, execution: Execution) -> bool:
        """Whether the stored item is `execution` as the lifecycle writes it."""
        current = self.get(execution.execution_id)
        return current is not None and _versioned(current) == _versioned(execution)

    def _write(self, before: Execution, after: Execution) -> None:
        old, new = to_attributes(before), to_attributes(after)
        changed = {
            name: value
            for name, value in new.items()
            if name not in _IMMUTABLE and value is not None and value != old.get(name)
        }
        removed = [name for name, value in new.items() if value is None and old.get(name) is not None]
        names: dict[str, str] = {}
        values: Item = {":expected": {"N": str(before.version)}}
        sets, removes = [], []
        for index, (name, value) in enumerate(changed.items()):
            names[f"#a{index}"] = name
            values[f":v{index}"] = serialize({name: value})[name]
            sets.append(f"#a{index} = :v{index}")
        for index, name in enumerate(removed):
            names[f"#r{index}"] = name
            removes.append(f"#r{index}")
        names["#version"] = "version"
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        update: UpdateTypeDef = {
            "TableName": self._table,
            "Key": execution_key(before.execution_id),
            "UpdateExpression": expression,
            "ConditionExpression": "#version = :expected",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if before.terminal or not after.terminal:
            try:
                self._client.update_item(**update)
            except ClientError as error:
                if _is_condition_failure(error):
                    raise StaleWrite(before.execution_id) from error
                raise
            return
        # Turning terminal releases the execution's hold on its tenant's account, in the same write.
        now = after.completed_at or after.updated_at
        try:
            transact(self._client, [{"Update": update}, *release_operations(self._table, before, after, now)])
        except TransactionCancelled as cancelled:
            if cancelled.failed(0):
                raise StaleWrite(before.execution_id) from cancelled
            raise

    def record_webhook_attempt(
        self, execution_id: str, attempt: WebhookAttempt, *, state: WebhookState | None = None
    ) -> None:
        """Append one delivery attempt (bounded: past MAX_RECORDED_ATTEMPTS only the state moves) and
        set the webhook's state. Not versioned: no lifecycle write touches these attributes."""
        key = execution_key(execution_id)
        names = {"#attempts": "webhookAttempts"}
        values: Item = {
            ":one": serialize({"one": [attempt_attributes(attempt)]})["one"],
            ":none": {"L": []},
            ":max": {"N": str(MAX_RECORDED_ATTEMPTS)},
        }
        expression = "SET #attempts = list_append(if_not_exists(#attempts, :none), :one)"
        if state is not None:
            names["#state"] = "webhookState"
            values[":state"] = {"S": state}
            expression += ", #state = :state"
        try:
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression=expression,
                ConditionExpression=(
                    "attribute_exists(pk) AND (attribute_not_exists(#attempts) OR size(#attempts) < :max)"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            if state is not None:  # the log is full (or the item gone): the state still moves
                with contextlib.suppress(ClientError):
                    self._client.update_item(
                        TableName=self._table,
                        Key=key,
                        UpdateExpression="SET #state = :state",
                        ConditionExpression="attribute_exists(pk)",
                        ExpressionAttributeNames={"#state": "webhookState"},
                        ExpressionAttributeValues={":state": {"S": state}},
                    )

    def claim_redelivery(self, execution_id: str) -> int | None:
        """Turn a `failed` webhook back to `pending` and count one more redelivery, in one conditional
        write (of two concurrent requests only one wins); the redelivery's number, or None when the
        webhook's state is not `failed`. Unversioned, like the attempt log."""
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=execution_key(execution_id),
                UpdateExpression=("SET #state = :pending, #count = if_not_exists(#count, :zero) + :one"),
                ConditionExpression="#state = :failed",
                ExpressionAttributeNames={"#state": "webhookState", "#count": "webhookRedeliveries"},
                ExpressionAttributeValues={
                    ":pending": {"S": "pending"},
                    ":failed": {"S": "failed"},
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                },
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        return int(answer["Attributes"]["webhookRedeliveries"]["N"])

    def list_for_tenant(
        self, tenant: str, *, status: Status | None, model: str | None, limit: int, cursor: str | None
    ) -> Page:
        """Newest first. Every shard is sorted by the same `createdAt#id` key, so one position (the last
        key returned) continues all shards at once: that position is the whole cursor."""
        before = decode_cursor(cursor) if cursor else None
        with ThreadPoolExecutor(max_workers=LIST_SHARDS) as pool:
            shard_pages = list(
                pool.map(
                    lambda shard: self._query_shard(tenant, shard, status, model, limit, before),
                    range(LIST_SHARDS),
                )
            )
        # A shard that stopped early (read budget) bounds how far this page may safely reach.
        floor = max((reached for _, reached in shard_pages if reached is not None), default=None)
        merged = heapq.merge(*(keys for keys, _ in shard_pages), reverse=True)
        # Keys are unique and the floor key itself was read (it is the last key a stopped shard saw).
        page_keys = [key for key in merged if floor is None or key >= floor][:limit]
        if len(page_keys) == limit:
            next_cursor: str | None = encode_cursor(page_keys[-1])
        elif floor is not None:
            next_cursor = encode_cursor(floor)
        else:
            next_cursor = None
        executions = self._batch_get([key.rsplit("#", 1)[1] for key in page_keys])
        # The index is eventually consistent: an item whose status moved since is not what was asked for.
        matching = [
            e
            for e in executions
            if (status is None or e.status is status) and (model is None or e.model == model)
        ]
        return Page(items=matching, next_cursor=next_cursor)

    def _query_shard(
        self,
        tenant: str,
        shard: int,
        status: Status | None,
        model: str | None,
        limit: int,
        before: str | None,
    ) -> tuple[list[str], str | None]:
        """Up to `limit` matching createdKeys of one shard, newest first, and where the read stopped
        short of the shard's end because of the per-request read budget (None if it did not)."""
        names = {"#shard": "tenantShard"}
        values: Item = {":shard": {"S": tenant_shard(tenant, shard)}}
        condition = "#shard = :shard"
        if before:
            names["#created"] = "createdKey"
            condition += " AND #created < :before"
            values[":before"] = {"S": before}
        filters = []
        if status:
            names["#status"] = "status"
            values[":status"] = {"S": status.value}
            filters.append("#status = :status")
        if model:
            names["#model"] = "model"
            values[":model"] = {"S": model}
            filters.append("#model = :model")
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_TENANT_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": max(limit, 25),
        }
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        keys: list[str] = []
        pages_left = 4  # bounded read per shard; sparse filters continue on the next page
        while True:
            answer = self._client.query(**request)
            keys.extend(item["createdKey"]["S"] for item in answer.get("Items", []))
            last = answer.get("LastEvaluatedKey")
            pages_left -= 1
            if len(keys) >= limit or not last:
                return keys[:limit], None
            if pages_left == 0:
                return keys, last["createdKey"]["S"]
            request["ExclusiveStartKey"] = last

    def _batch_get(self, execution_ids: list[str]) -> list[Execution]:
        if not execution_ids:
            return []
        pending: list[dict[str, Any]] = [execution_key(execution_id) for execution_id in execution_ids]
        found: dict[str, Execution] = {}
        for attempt in range(BATCH_GET_ATTEMPTS):
            if attempt:
                time.sleep(0.05 * 2**attempt)  # DynamoDB asks for backoff on unprocessed keys
            answer = self._client.batch_get_item(
                RequestItems={self._table: {"Keys": pending, "ConsistentRead": False}}
            )
            for item in answer.get("Responses", {}).get(self._table, []):
                execution = from_item(item)
                found[execution.execution_id] = execution
            unprocessed = answer.get("UnprocessedKeys", {}).get(self._table)
            if not unprocessed:
                break
            pending = list(unprocessed["Keys"])
        else:
            # Never answer a page with holes: the cursor would move past what was not read.
            raise RuntimeError(
                f"{len(pending)} executions still unprocessed after {BATCH_GET_ATTEMPTS} reads"
            )
        return [found[execution_id] for execution_id in execution_ids if execution_id in found]

    def overdue(self, now: datetime, *, limit: int) -> list[str]:
        """Ids of live executions whose next tick was due before `now`, oldest first, at most `limit`."""
        ids: list[str] = []
        for shard in range(DUE_SHARDS):
            answer = self._client.query(
                TableName=self._table,
                IndexName=BY_DUE_INDEX,
                KeyConditionExpression="#shard = :shard AND #due < :now",
                ExpressionAttributeNames={"#shard": "dueShard", "#due": "nextPollAt"},
                ExpressionAttributeValues={":shard": {"S": due_shard(shard)}, ":now": {"S": format_ts(now)}},
                Limit=limit - len(ids),
            )
            ids.extend(item["pk"]["S"].removeprefix("EXEC#") for item in answer.get("Items", []))
            if len(ids) >= limit:
                break
        return ids

    def live_by_tenant(self) -> Counter[str]:
        """How many live executions each tenant has, from the sparse due index (live items only)."""
        counts: Counter[str] = Counter()
        for shard in range(DUE_SHARDS):
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": BY_DUE_INDEX,
                "KeyConditionExpression": "#shard = :shard",
                "ExpressionAttributeNames": {"#shard": "dueShard", "#tenant": "tenant"},
                "ExpressionAttributeValues": {":shard": {"S": due_shard(shard)}},
                "ProjectionExpression": "#tenant",
            }
            while True:
                answer = self._client.query(**request)
                counts.update(item["tenant"]["S"] for item in answer.get("Items", []))
                if "LastEvaluatedKey" not in answer:
                    break
                request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return counts
