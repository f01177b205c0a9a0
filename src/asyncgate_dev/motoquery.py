"""DynamoDB queries on moto (moto 5.2.5) that read only the items they can match, patched in place.

Written as it would be offered to moto:

    DynamoDB: a query reads its partition, or its index partition, not the whole table

    `Table.query` starts from `Table.all_items()`, every item of the table sorted by its keys, and
    then keeps those whose key matches; it also measures the size of every candidate before it
    compares its sort key. A query of a few items therefore costs O(table log table) plus the size of
    its whole partition: a table that grows (one item per job, a ledger entry per movement) makes
    every query slower than the last, and an index query (a sparse "due" index read every minute)
    walks everything.

    Now a query starts from a smaller candidate list, and the rest of `Table.query` is unchanged:
    - a query of the base table: the items of its partition (`Table.items[hash_key]`);
    - a query of a global secondary index whose partition key is one attribute: the items with that
      attribute's queried value, from a map kept per index (value -> primary keys), built on the
      index's first query and kept up to date by every write after it (put, update, delete, and what
      a transaction writes or rolls back), projected as the index holds them (moto deep-copied whole
      items, then projected them);
    - any other index query: every item, without the sort of the whole table (the matches are sorted
      by the index's own keys afterwards, as before).
    Candidates are narrowed by the sort-key condition too (a sorted list of each queried partition's
    sort keys, kept up to date the same way), except for a query with a Limit: moto then answers a
    LastEvaluatedKey whenever any candidate follows the last match, so it sees them all. Answers are
    unchanged: the same items in the same order, the same LastEvaluatedKey and counts, but for the 1 MB
    bound of a page, which is now measured on what a query reads, as in DynamoDB: an index's projected
    items (moto measured whole items), and only the candidates that meet the key condition.

    And `Item.project`, which converted the whole item to plain JSON once per projected attribute,
    copies top-level string attributes as they are.

`install()` is idempotent; `asyncgate_dev.motofix.install()` calls it (its transaction rollback calls
`reindex`). Every call here runs under motofix's lock, as all of moto's DynamoDB calls there.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_lock = threading.Lock()
_MARK = "_asyncgate_query_view"
# A table's index partitions and its partitions' sort-key orders, kept on the table object itself.
_PARTITIONS = "_asyncgate_index_partitions"
_ORDERS = "_asyncgate_partition_orders"
_originals: dict[str, Callable[..., Any]] = {}

# An item's primary key: its hash and range DynamoType (primary keys never change).
Key = tuple[Any, Any]


@dataclass
class IndexPartitions:
    """One global secondary index: the primary keys of the items by the value of its partition key."""

    attribute: str
    # The index's sort key (one attribute), if it has one.
    range_attribute: str | None
    members: dict[tuple[str, Any], set[Key]] = field(default_factory=dict)
    value_of: dict[Key, tuple[str, Any]] = field(default_factory=dict)

    def file(self, key: Key, item: Any | None) -> None:
        old = self.value_of.pop(key, None)
        if old is not None:
            keys = self.members[old]
            keys.discard(key)
            if not keys:
                del self.members[old]
        value = item.attrs.get(self.attribute) if item is not None else None
        if value is not None:
            scalar = _scalar(value)
            self.members.setdefault(scalar, set()).add(key)
            self.value_of[key] = scalar

    def keys(self, value: Any) -> set[Key]:
        return self.members.get(_scalar(value), set())


def install() -> None:
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415 - only where moto runs
    from moto.dynamodb.models.dynamo_type import Item  # noqa: PLC0415
    from moto.dynamodb.models.table import Table  # noqa: PLC0415

    with _lock:
        if getattr(Table, _MARK, False):
            return
        for owner, name, replacement in (
            (Table, "query", _query),
            (Table, "put_item", _put_item),
            (Table, "delete_item", _delete_item),
            (DynamoDBBackend, "update_item", _update_item),
            (Item, "project", _project),
        ):
            _originals[name] = getattr(owner, name)
            setattr(owner, name, replacement)
        setattr(Table, _MARK, True)


def reindex(table: Any, hash_key: Any, range_key: Any) -> None:
    """File the item now at this key (or its absence) in the table's index partitions and its
    partition's sort-key order, those that are built."""
    key = (hash_key, range_key if table.range_key_attr is not None else None)
    item = _item_at(table, key)
    for partitions in table.__dict__.get(_PARTITIONS, {}).values():
        partitions.file(key, item)
    order = table.__dict__.get(_ORDERS, {}).get(hash_key)
    if order is not None:
        at = bisect.bisect_left(order, range_key.cast_value, key=_sort_value)
        present = at < len(order) and order[at][0] == range_key.cast_value
        if item is not None and not present:
            order.insert(at, (range_key.cast_value, range_key))
        elif item is None and present:
            del order[at]


def _scalar(value: Any) -> tuple[str, Any]:
    """A key attribute's value as an immutable snapshot (an update may change the DynamoType in place)."""
    return value.type, value.cast_value


def _item_at(table: Any, key: Key) -> Any | None:
    partition = table.items.get(key[0])
    if partition is None or table.range_key_attr is None:
        return partition
    return partition.get(key[1])


def _keyed_items(table: Any) -> list[tuple[Key, Any]]:
    if table.range_key_attr is None:
        return [((hash_key, None), item) for hash_key, item in table.items.items()]
    return [
        ((hash_key, range_key), item)
        for hash_key, partition in table.items.items()
        for range_key, item in partition.items()
    ]


def _index_partitions(table: Any, index_name: str) -> IndexPartitions | None:
    """The index's partitions (built now if this is its first query), or None for an index whose
    partition key is not one attribute (or a local index)."""
    indexes: dict[str, IndexPartitions] = table.__dict__.setdefault(_PARTITIONS, {})
    if index_name not in indexes:
        index = next((found for found in table.global_indexes or [] if found.name == index_name), None)
        hashes = [key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH"] if index else []
        ranges = [key["AttributeName"] for key in index.schema if key["KeyType"] == "RANGE"] if index else []
        if len(hashes) != 1:
            return None
        partitions = IndexPartitions(hashes[0], ranges[0] if len(ranges) == 1 else None)
        for key, item in _keyed_items(table):
            partitions.file(key, item)
        indexes[index_name] = partitions
    return indexes[index_name]


class _QueryView:
    """A table as one query needs to see it: `all_items()` answers the candidates, in no particular
    order (the query sorts what it keeps); everything else is the table's own."""

    def __init__(self, table: Any, items: list[Any]) -> None:
        self._table = table
        self._items = items

    def all_items(self) -> list[Any]:
        return self._items

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def _query(
    table: Any, hash_key: Any, range_comparison: str | None, range_objs: list[Any], *args: Any, **kwargs: Any
) -> Any:
    # moto passes limit and index_name positionally (then the start key, the order and the projection).
    limit = args[0] if args else kwargs.get("limit")
    index_name = args[4] if len(args) > 4 else kwargs.get("index_name")
    # With a Limit, moto answers a LastEvaluatedKey when any candidate follows the last match, even one
    # the sort-key condition refuses: only then does it see every candidate of the partition.
    sort_condition = range_comparison if limit is None else None
    view = _QueryView(table, _candidates(table, index_name, hash_key, sort_condition, range_objs, kwargs))
    return _originals["query"](view, hash_key, range_comparison, range_objs, *args, **kwargs)


def _candidates(
    table: Any,
    index_name: str | None,
    hash_key: Any,
    range_comparison: str | None,
    range_objs: list[Any],
    kwargs: dict[str, Any],
) -> list[Any]:
    """The items a query can match, a superset of its answer (moto applies the whole condition after)."""
    if index_name is None and hash_key is not None:
        partition = table.items.get(hash_key)
        if partition is None:
            return []
        if table.range_key_attr is None:
            return [partition]
        # The key condition first: moto measures every candidate's size before it compares keys.
        if range_comparison:
            order = _partition_order(table, hash_key, partition)
            window = _window(order, range_comparison, [obj.cast_value for obj in range_objs])
            keys = [range_key for _, range_key in order[window]] if window is not None else list(partition)
            return [
                partition[range_key]
                for range_key in keys
                if range_key.compare(range_comparison, range_objs) and range_key in partition
            ]
        return list(partition.values())
    partitions = _index_partitions(table, index_name) if index_name is not None else None
    if partitions is None:
        return [item for _, item in _keyed_items(table)]
    conditions = dict(kwargs.get("hash_key_conditions") or [])
    value = conditions.get(partitions.attribute, hash_key)
    if value is None:
        return [item for _, item in _keyed_items(table)]
    items = [item for key in partitions.keys(value) if (item := _item_at(table, key)) is not None]
    if range_comparison and partitions.range_attribute is not None:
        attribute = partitions.range_attribute
        items = [
            item
            for item in items
            if (sort := item.attrs.get(attribute)) is not None and sort.compare(range_comparison, range_objs)
        ]
    # What the index holds of each item (moto copies the whole items, then projects what it keeps).
    index = next(found for found in table.global_indexes if found.name == index_name)
    return [index.project(item) for item in items]


def _project(item: Any, projection_expressions: list[list[str]]) -> Any:
    """moto's `Item.project` converts the whole item to plain JSON once per projected attribute; top-level
    string attributes (every key an index projects, here) are copied as they are."""
    names = [path[0] for path in projection_expressions if len(path) == 1 and "[" not in path[0]]
    kept = [name for name in names if name in item.attrs]
    if len(names) < len(projection_expressions) or any(item.attrs[name].type != "S" for name in kept):
        return _originals["project"](item, projection_expressions)
    return type(item)(item.hash_key, item.range_key, {name: {"S": item.attrs[name].value} for name in kept})


def _sort_value(entry: tuple[Any, Any]) -> Any:
    return entry[0]


def _partition_order(table: Any, hash_key: Any, partition: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """The partition's sort keys in order, as (cast value, key): built at its first query with a sort-key
    condition, then kept up to date by `reindex`."""
    orders: dict[Any, list[tuple[Any, Any]]] = table.__dict__.setdefault(_ORDERS, {})
    if hash_key not in orders:
        orders[hash_key] = sorted(
            ((range_key.cast_value, range_key) for range_key in partition), key=_sort_value
        )
    return orders[hash_key]


def _window(order: list[tuple[Any, Any]], comparison: str, values: list[Any]) -> slice | None:
    """The slice of a sorted partition that holds every key meeting the condition (None: look at all)."""

    def left(value: Any) -> int:
        return bisect.bisect_left(order, value, key=_sort_value)

    def right(value: Any) -> int:
        return bisect.bisect_right(order, value, key=_sort_value)

    if order and any(type(value) is not type(order[0][0]) for value in values):
        return None  # a condition of another type than the keys: moto decides

    match comparison, values:
        case (("EQ" | "="), [value]):
            return slice(left(value), right(value))
        case (("LT" | "<"), [value]):
            return slice(0, left(value))
        case (("LE" | "<="), [value]):
            return slice(0, right(value))
        case (("GT" | ">"), [value]):
            return slice(right(value), len(order))
        case (("GE" | ">="), [value]):
            return slice(left(value), len(order))
        case "BETWEEN", [low, high]:
            return slice(left(low), right(high))
        case "BEGINS_WITH", [str() | bytes() as prefix] if prefix:
            return slice(left(prefix), len(order) if (after := _after(prefix)) is None else left(after))
    return None


def _after(prefix: str | bytes) -> str | bytes | None:
    """The least value above every value that starts with `prefix` (None when there is none)."""
    if isinstance(prefix, str):
        last = ord(prefix[-1])
        return prefix[:-1] + chr(last + 1) if last < 0x10FFFF else None
    return prefix[:-1] + bytes([prefix[-1] + 1]) if prefix[-1] < 0xFF else None


def _put_item(table: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    item = _originals["put_item"](table, item_attrs, *args, **kwargs)
    reindex(table, item.hash_key, item.range_key)
    return item


def _delete_item(table: Any, hash_key: Any, range_key: Any) -> Any:
    item = _originals["delete_item"](table, hash_key, range_key)
    reindex(table, hash_key, range_key)
    return item


def _update_item(backend: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return _originals["update_item"](backend, table_name, key, *args, **kwargs)
    finally:
        # Also after a failure: moto creates a missing item before it applies the update expression.
        table = backend.tables.get(table_name)
        key_attributes = (
            [name for name in (table.hash_key_attr, table.range_key_attr) if name] if table else []
        )
        if (
            table is not None
            and table.__dict__.get(_PARTITIONS)
            and all(name in key for name in key_attributes)
        ):
            reindex(table, *backend.get_keys_value(table, key))
