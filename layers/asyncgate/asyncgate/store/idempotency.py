"""Idempotency records: `IDEMPOTENCY#<tenant>#<sha256 of the key>`, written in the submit's own
transaction (never one without the other), deleted by TTL after the window; an expired record that TTL
has not removed yet is treated as gone, and may be taken over by a new request."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from asyncgate.domain.clock import format_ts, parse_ts
from asyncgate.domain.idempotency import IdempotencyRecord, SubmitReceipt

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    from asyncgate.store.items import Item

IDEMPOTENCY_SK = "IDEMPOTENCY"


def _key(tenant: str, key_hash: str) -> Item:
    return {"pk": {"S": f"IDEMPOTENCY#{tenant}#{key_hash}"}, "sk": {"S": IDEMPOTENCY_SK}}


def _epoch(moment: datetime) -> AttributeValueTypeDef:
    return {"N": str(int(moment.timestamp()))}


class IdempotencyStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put_operation(self, record: IdempotencyRecord) -> TransactWriteItemTypeDef:
        """The record's write inside the submit transaction: only if the key is free (or expired)."""
        item: Item = {
            **_key(record.tenant, record.key_hash),
            "fingerprint": {"S": record.fingerprint},
            "executionId": {"S": record.execution_id},
            "createdAt": {"S": format_ts(record.created_at)},
            "expiresAt": _epoch(record.expires_at),
        }
        if record.receipt is not None:
            item["receipt"] = {"S": record.receipt.model_dump_json()}
        return {
            "Put": {
                "TableName": self._table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk) OR expiresAt < :now",
                "ExpressionAttributeValues": {":now": _epoch(record.created_at)},
            }
        }

    def get(self, tenant: str, key_hash: str, *, now: datetime) -> IdempotencyRecord | None:
        answer = self._client.get_item(TableName=self._table, Key=_key(tenant, key_hash), ConsistentRead=True)
        item = answer.get("Item")
        if not item or int(item["expiresAt"]["N"]) < int(now.timestamp()):
            return None
        receipt = item.get("receipt")
        expires_at = datetime.fromtimestamp(int(item["expiresAt"]["N"]), tz=now.tzinfo)
        return IdempotencyRecord(
            tenant=tenant,
            key_hash=key_hash,
            fingerprint=item["fingerprint"]["S"],
            execution_id=item["executionId"]["S"],
            created_at=parse_ts(item["createdAt"]["S"]),
            expires_at=expires_at,
            receipt=SubmitReceipt.model_validate_json(receipt["S"]) if receipt else None,
        )

    def complete(self, record: IdempotencyRecord, receipt: SubmitReceipt) -> bool:
        """Record the answer of the request holding `record`; False if an answer was already recorded
        (then that one stands)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(record.tenant, record.key_hash),
                UpdateExpression="SET receipt = :receipt",
                ConditionExpression="executionId = :execution AND attribute_not_exists(receipt)",
                ExpressionAttributeValues={
                    ":receipt": {"S": receipt.model_dump_json()},
                    ":execution": {"S": record.execution_id},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
