"""Where moto's DynamoDB is less faithful, or slower, than the code under test needs, fixed in place.

1. Atomicity. DynamoDB applies each conditional write and each transaction atomically; moto checks a
   condition and then writes, with nothing in between stopping another thread. Under concurrent requests
   (the local stack's threaded server, tests with threads) two conditional writes could then both win,
   and an exact queue limit could not be proven. Every call into the DynamoDB backend is serialized.
2. Cost of a transaction. moto deep-copies every table a transaction touches, before it starts, in case
   it must roll back: O(table) per transaction, and a rollback swaps in a new table object, orphaning
   stream iterators. Here conditions are all checked first; only if every one holds are the writes
   applied, and only the touched items are kept for a rollback on an unexpected error.
3. Parsing an update expression. moto parses an UpdateExpression twice per UpdateItem (the request's
   checks, then the update) and once more per transaction item. A parsed expression is only read (the
   update validates a deep copy of it), so each text is parsed once (the last 1024 kept).

`install()` is idempotent; the local stack, the test suite and the benchmark call it. It installs the
emulator's other fixes too: asyncgate_dev.motoquery (DynamoDB queries that read only what they can
match), asyncgate_dev.motoserialize (attribute values written as they are), asyncgate_dev.motosqs (SQS
queues indexed by message state) and asyncgate_dev.motodispatch (the server's backend found once per
host).
"""

from __future__ import annotations

import copy
import functools
import importlib
import threading
from collections.abc import Callable
from typing import Any

from asyncgate_dev import motodispatch, motoquery, motoserialize, motosqs

_lock = threading.RLock()
_MARK = "_asyncgate_fixed"

# Backend methods that read or write items: serialized so each one sees and leaves a consistent table.
_SERIALIZED = (
    "put_item",
    "get_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "transact_write_items",
    "transact_get_items",
    "batch_get_item",
    "batch_write_item",
)


def install() -> None:
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415 - only where moto runs

    # The parser's module is untyped (`# type: ignore` at its top).
    expressions: Any = importlib.import_module("moto.dynamodb.parsing.expressions")

    motosqs.install()
    motoquery.install()
    motoserialize.install()
    motodispatch.install()
    with _lock:
        if getattr(DynamoDBBackend, _MARK, False):
            return

        DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign,assignment]
        parser = expressions.UpdateExpressionParser
        parser.make = classmethod(_parsed_once(parser.make.__func__))
        for name in _SERIALIZED:
            original = getattr(DynamoDBBackend, name)
            setattr(DynamoDBBackend, name, _serialized(original))
        setattr(DynamoDBBackend, _MARK, True)


def _parsed_once(make: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    @functools.lru_cache(maxsize=1024)
    def parsed(cls: Any, expression: str) -> Any:
        return make(cls, expression)

    return parsed


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(*args, **kwargs)

    return locked


def _transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
    from moto.dynamodb.comparisons import get_filter_expression  # noqa: PLC0415
    from moto.dynamodb.exceptions import (  # noqa: PLC0415
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    operations: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException()
        op_type, op = next(iter(entry.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise ValueError("Unsupported transaction operation")
        table = backend.get_table(op["TableName"])
        if op_type == "Put":
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        identity = (op["TableName"], str(dict(sorted(key.items()))))
        if identity in seen:
            raise MultipleTransactionsException()
        seen.add(identity)
        operations.append((op_type, op, key))

    # Every condition first, against the table as it is: nothing is written unless all hold.
    reasons: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    for _, op, key in operations:
        current = backend.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        if condition is not None and not get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        ).expr(current):
            wants_old = op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
            old = current.to_json()["Attributes"] if wants_old and current else None
            reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            reasons.append((None, None, None))
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)

    touched = [
        (op["TableName"], key, copy.deepcopy(backend.get_item(op["TableName"], key)))
        for _, op, key in operations
    ]
    try:
        for op_type, op, key in operations:
            _apply(backend, op_type, op, key)
    except Exception:
        for table_name, key, before in touched:
            _restore(backend, table_name, key, before)
        raise


def _apply(backend: Any, op_type: str, op: dict[str, Any], key: dict[str, Any]) -> None:
    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    if op_type == "Put":
        backend.put_item(
            op["TableName"], op["Item"], expression_attribute_names=names, expression_attribute_values=values
        )
    elif op_type == "Delete":
        backend.delete_item(
            op["TableName"], key, expression_attribute_names=names, expression_attribute_values=values
        )
    elif op_type == "Update":
        backend.update_item(
            op["TableName"],
            key,
            update_expression=op["UpdateExpression"],
            expression_attribute_names=names,
            expression_attribute_values=values,
        )


def _restore(backend: Any, table_name: str, key: dict[str, Any], before: Any) -> None:
    """Put one item back as it was before the transaction (or remove it if it did not exist)."""
    table = backend.get_table(table_name)
    hash_value, range_value = backend.get_keys_value(table, key)
    bucket: Any = table.items
    if table.range_key_attr is not None:
        bucket = table.items[hash_value]
        slot = range_value
    else:
        slot = hash_value
    if before is None:
        bucket.pop(slot, None)
    else:
        bucket[slot] = before
    motoquery.reindex(table, hash_value, range_value)
