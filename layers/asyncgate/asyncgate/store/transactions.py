"""DynamoDB transactions: written all or not at all, retried when they only collided with another one."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

# A transaction that collides with another on the same item (the tenant's account, under a burst of
# submits) is cancelled with TransactionConflict and nothing written: it is safe to run it again.
CONFLICT_ATTEMPTS = 8
CONFLICT_BACKOFF_SECONDS = 0.02


@dataclass(frozen=True)
class Reason:
    code: str
    item: dict[str, Any] | None


class TransactionCancelled(Exception):
    """A condition of the transaction did not hold; `reasons` has one entry per item, in order."""

    def __init__(self, reasons: list[Reason]) -> None:
        super().__init__(", ".join(reason.code for reason in reasons))
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index].code == "ConditionalCheckFailed"


def cancellation_reasons(error: ClientError) -> list[Reason]:
    return [
        Reason(code=reason.get("Code", "None"), item=dict(reason["Item"]) if "Item" in reason else None)
        for reason in error.response.get("CancellationReasons") or []
    ]


def transact(client: DynamoDBClient, items: Sequence[TransactWriteItemTypeDef]) -> None:
    """Write `items` as one transaction. Raises TransactionCancelled when a condition fails; retries
    (with jittered backoff) while it only conflicted with concurrent transactions."""
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            client.transact_write_items(TransactItems=list(items))
            return
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code not in {"TransactionCanceledException", "TransactionConflictException"}:
                raise
            reasons = cancellation_reasons(error)
            if any(reason.code == "ConditionalCheckFailed" for reason in reasons):
                raise TransactionCancelled(reasons) from error
            if attempt == CONFLICT_ATTEMPTS - 1:
                raise
        time.sleep(random.uniform(0, CONFLICT_BACKOFF_SECONDS * 2**attempt))  # noqa: S311 - jitter
