"""DynamoDB item shapes and their (de)serialisation, kept apart from the domain model.

Nested, free-form values (input, result, error, webhook, metadata) are stored as JSON strings: DynamoDB
would turn their floats into Decimals and refuses empty strings in key attributes of maps.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from asyncgate.domain.clock import format_ts, parse_ts
from asyncgate.domain.execution import Cost, Execution, ExecutionError, Result, WebhookAttempt, WebhookConfig
from asyncgate.domain.status import Status

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

Item = dict[str, "AttributeValueTypeDef"]

# Listing and the due index spread one tenant's executions over this many partitions, so a tenant with
# 100 000 live executions never writes to a single hot GSI partition. Changing it orphans listed items.
LIST_SHARDS = 8
DUE_SHARDS = 8
EXECUTION_SK = "EXEC"
TENANT_SK = "TENANT"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def execution_key(execution_id: str) -> Item:
    return {"pk": {"S": f"EXEC#{execution_id}"}, "sk": {"S": EXECUTION_SK}}


def tenant_key(tenant: str) -> Item:
    return {"pk": {"S": f"TENANT#{tenant}"}, "sk": {"S": TENANT_SK}}


def shard_of(execution_id: str, shards: int) -> int:
    return int(hashlib.sha256(execution_id.encode()).hexdigest()[:8], 16) % shards


def tenant_shard(tenant: str, shard: int) -> str:
    return f"{tenant}#{shard}"


def due_shard(shard: int) -> str:
    return f"DUE#{shard}"


def created_key(execution: Execution) -> str:
    return f"{format_ts(execution.created_at)}#{execution.execution_id}"


def _json(value: Any) -> str:
    # Unescaped UTF-8: an escaped non-ASCII body would grow up to 6x and could pass DynamoDB's 400 KB.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def stored_bytes(value: Any) -> int:
    """How many bytes a free-form value (an input) takes as the item stores it."""
    return len(_json(value).encode())


def _dump(model: Any) -> str:
    return _json(model.model_dump(mode="json"))


def to_attributes(execution: Execution) -> dict[str, Any]:
    """The execution as plain attribute values (before DynamoDB typing); None means absent."""
    live = not execution.terminal
    return {
        "pk": f"EXEC#{execution.execution_id}",
        "sk": EXECUTION_SK,
        "executionId": execution.execution_id,
        "tenant": execution.tenant,
        "tenantShard": tenant_shard(execution.tenant, shard_of(execution.execution_id, LIST_SHARDS)),
        "createdKey": created_key(execution),
        "model": execution.model,
        "provider": execution.provider,
        "providerModel": execution.provider_model,
        "status": execution.status.value,
        "version": execution.version,
        "input": _json(execution.input),
        "progress": execution.progress,
        "queuePosition": execution.queue_position,
        "etaSeconds": execution.eta_seconds,
        "createdAt": format_ts(execution.created_at),
        "startedAt": format_ts(execution.started_at) if execution.started_at else None,
        "completedAt": format_ts(execution.completed_at) if execution.completed_at else None,
        "updatedAt": format_ts(execution.updated_at),
        "providerRequestId": execution.provider_request_id,
        "providerJobRef": execution.provider_job_ref,
        "result": _dump(execution.result) if execution.result else None,
        "error": _dump(execution.error) if execution.error else None,
        "pollCount": execution.poll_count,
        "consecutiveErrors": execution.consecutive_errors,
        "failedTicks": execution.failed_ticks or None,
        "costCredits": execution.cost.credits if execution.cost else None,
        "reservedCredits": execution.reserved_credits,
        "metadata": _json(execution.metadata),
        # The configuration is written once; state and attempts are the notifier's, appended apart from
        # the lifecycle's versioned writes so the two never contend.
        "webhook": _json({"url": execution.webhook.url, "events": execution.webhook.events}),
        "webhookState": execution.webhook.state,
        "webhookAttempts": [attempt_attributes(attempt) for attempt in execution.webhook.attempts] or None,
        "cleanupAfter": format_ts(execution.cleanup_after) if execution.cleanup_after else None,
        # TTL deletes terminal items; live ones never expire.
        "expiresAt": int(execution.cleanup_after.timestamp()) if execution.cleanup_after else None,
        # The due index is sparse: only live executions are in it.
        "dueShard": due_shard(shard_of(execution.execution_id, DUE_SHARDS)) if live else None,
        "nextPollAt": format_ts(execution.next_poll_at) if execution.next_poll_at and live else None,
        "tickId": execution.tick_id,
        "cancelSent": execution.cancel_sent,
        "dispatchStartedAt": format_ts(execution.dispatch_started_at)
        if execution.dispatch_started_at
        else None,
        "callbackBase": execution.callback_base,
        "awaitsCallbacks": execution.awaits_callbacks or None,
        "earlyCallback": execution.early_callback or None,
        "copyRounds": execution.copy_rounds or None,
    }


def item_size(item: dict[str, Any]) -> int:
    """An upper bound of the item's size as DynamoDB counts it against its 400 KB limit: the UTF-8 bytes
    of every attribute name and string, numbers at their longest (21 bytes), 3 bytes per list or map and 1
    per element in it (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return 21
    if kind == "B":
        return len(inner)
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in inner)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + _value_size(element) for name, element in inner.items())
    if kind in {"SS", "NS", "BS"}:
        return sum(len(str(element).encode()) for element in inner)
    return 1  # BOOL, NULL


def serialize(attributes: dict[str, Any]) -> Item:
    item: Item = {}
    for name, value in attributes.items():
        if value is None:
            continue
        # DynamoDB numbers travel as Decimal; str() keeps the float's shortest exact spelling.
        typed = Decimal(str(value)) if isinstance(value, float) else value
        item[name] = _serializer.serialize(typed)
    return item


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def attempt_attributes(attempt: WebhookAttempt) -> dict[str, Any]:
    return {"at": format_ts(attempt.at), "statusCode": attempt.status_code, "error": attempt.error}


def _attempt(raw: dict[str, Any]) -> WebhookAttempt:
    status = raw.get("statusCode")
    return WebhookAttempt(
        at=parse_ts(raw["at"]),
        status_code=int(status) if status is not None else None,
        error=raw.get("error"),
    )


def _number(value: Decimal) -> int | float:
    """A DynamoDB number back as the int or float it was written as."""
    return int(value) if value == value.to_integral_value() else float(value)


def to_item(execution: Execution) -> Item:
    return serialize(to_attributes(execution))


def from_item(item: dict[str, Any]) -> Execution:
    raw = deserialize(item)

    def ts(name: str) -> Any:
        return parse_ts(raw[name]) if raw.get(name) else None

    return Execution(
        execution_id=raw["executionId"],
        tenant=raw["tenant"],
        model=raw["model"],
        provider=raw["provider"],
        provider_model=raw["providerModel"],
        status=Status(raw["status"]),
        version=int(raw["version"]),
        input=json.loads(raw.get("input") or "{}"),
        progress=float(raw["progress"]) if raw.get("progress") is not None else None,
        queue_position=int(raw["queuePosition"]) if raw.get("queuePosition") is not None else None,
        eta_seconds=int(raw["etaSeconds"]) if raw.get("etaSeconds") is not None else None,
        created_at=parse_ts(raw["createdAt"]),
        started_at=ts("startedAt"),
        completed_at=ts("completedAt"),
        updated_at=parse_ts(raw["updatedAt"]),
        provider_request_id=raw.get("providerRequestId"),
        provider_job_ref=raw.get("providerJobRef"),
        result=Result.model_validate_json(raw["result"]) if raw.get("result") else None,
        error=ExecutionError.model_validate_json(raw["error"]) if raw.get("error") else None,
        poll_count=int(raw.get("pollCount", 0)),
        consecutive_errors=int(raw.get("consecutiveErrors", 0)),
        failed_ticks=int(raw.get("failedTicks", 0)),
        cost=Cost(credits=_number(raw["costCredits"])) if raw.get("costCredits") is not None else None,
        reserved_credits=_number(raw.get("reservedCredits", Decimal(0))),
        metadata=json.loads(raw.get("metadata") or "{}"),
        webhook=WebhookConfig(
            **(json.loads(raw["webhook"]) if raw.get("webhook") else {}),
            state=raw.get("webhookState", "none"),
            attempts=[_attempt(attempt) for attempt in raw.get("webhookAttempts", [])],
        ),
        cleanup_after=ts("cleanupAfter"),
        next_poll_at=ts("nextPollAt"),
        tick_id=raw["tickId"],
        cancel_sent=bool(raw.get("cancelSent", False)),
        dispatch_started_at=ts("dispatchStartedAt"),
        callback_base=raw.get("callbackBase"),
        awaits_callbacks=bool(raw.get("awaitsCallbacks", False)),
        early_callback=bool(raw.get("earlyCallback", False)),
        copy_rounds=int(raw.get("copyRounds", 0)),
    )
