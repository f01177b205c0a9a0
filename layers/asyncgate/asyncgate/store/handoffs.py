"""Webhook deliveries on their way from a first attempt to the retry state machine.

| item | pk | sk |
| --- | --- | --- |
| delivery hand-off | `DELIVERY#<retry chain name>` | `DELIVERY` |

Written before a delivery's first attempt (a conditional put), so that a stream record delivered again
(a retried batch, an invocation that died) never makes that attempt twice: the attempt counts as made,
and the delivery goes straight on to its retry chain. When Step Functions does not take the chain, the
delivery is parked on the item (`task`) and put in the sparse due index under its own partition
(`dueShard = HANDOFF`, apart from the executions' `DUE#<n>` shards), where the sweeper finds it and
hands it off again. Items expire by TTL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from asyncgate.delivery.tasks import DeliveryTask
from asyncgate.domain.clock import format_ts

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from asyncgate.store.items import Item

HANDOFF_SK = "DELIVERY"
HANDOFF_SHARD = "HANDOFF"
BY_DUE_INDEX = "ByDue"
# A claim outlives every retry of its stream record (Lambda gives up on a record within a day); a parked
# delivery waits at most this long for Step Functions to take it.
CLAIM_LIFETIME = timedelta(days=2)
PARKED_LIFETIME = timedelta(days=7)


class Claim(StrEnum):
    FRESH = "fresh"  # no attempt was made yet: this one makes the first
    SEEN = "seen"  # an earlier run of this record made (or began) the first attempt
    PARKED = "parked"  # an earlier run parked it: the sweeper hands it off


def _key(chain_name: str) -> Item:
    return {"pk": {"S": f"DELIVERY#{chain_name}"}, "sk": {"S": HANDOFF_SK}}


def _epoch(moment: datetime) -> dict[str, str]:
    return {"N": str(int(moment.timestamp()))}


def _condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class HandoffStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def claim(self, chain_name: str, *, now: datetime) -> Claim:
        """Claim the first attempt of a delivery, once for all the runs of its stream record."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item={**_key(chain_name), "expiresAt": _epoch(now + CLAIM_LIFETIME)},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise
            item = self._client.get_item(TableName=self._table, Key=_key(chain_name), ConsistentRead=True)
            return Claim.PARKED if "task" in item.get("Item", {}) else Claim.SEEN
        return Claim.FRESH

    def park(self, task: DeliveryTask, *, now: datetime, due: datetime) -> None:
        """Keep a delivery Step Functions did not take, for the sweeper to hand off from `due` on."""
        self._client.update_item(
            TableName=self._table,
            Key=_key(task.delivery.chain_name),
            UpdateExpression="SET #task = :task, dueShard = :shard, nextPollAt = :due, expiresAt = :expires",
            ExpressionAttributeNames={"#task": "task"},
            ExpressionAttributeValues={
                ":task": {"S": task.model_dump_json(by_alias=True)},
                ":shard": {"S": HANDOFF_SHARD},
                ":due": {"S": format_ts(due)},
                ":expires": _epoch(now + PARKED_LIFETIME),
            },
        )

    def due(self, now: datetime, *, limit: int) -> list[str]:
        """The chain names of parked deliveries due by `now`, oldest first, at most `limit`."""
        answer = self._client.query(
            TableName=self._table,
            IndexName=BY_DUE_INDEX,
            KeyConditionExpression="dueShard = :shard AND nextPollAt <= :now",
            ExpressionAttributeValues={":shard": {"S": HANDOFF_SHARD}, ":now": {"S": format_ts(now)}},
            Limit=limit,
        )
        return [item["pk"]["S"].removeprefix("DELIVERY#") for item in answer.get("Items", [])]

    def parked(self, chain_name: str) -> DeliveryTask | None:
        item = self._client.get_item(TableName=self._table, Key=_key(chain_name), ConsistentRead=True).get(
            "Item"
        )
        if not item or "task" not in item:
            return None
        return DeliveryTask.model_validate_json(item["task"]["S"])

    def handed_off(self, chain_name: str) -> None:
        """The parked delivery's chain started: out of the due index (the claim stays until it expires)."""
        self._client.update_item(
            TableName=self._table,
            Key=_key(chain_name),
            UpdateExpression="REMOVE #task, dueShard, nextPollAt",
            ExpressionAttributeNames={"#task": "task"},
        )

    def postpone(self, chain_name: str, *, due: datetime) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=_key(chain_name),
            UpdateExpression="SET nextPollAt = :due",
            ConditionExpression="attribute_exists(#task)",
            ExpressionAttributeNames={"#task": "task"},
            ExpressionAttributeValues={":due": {"S": format_ts(due)}},
        )
