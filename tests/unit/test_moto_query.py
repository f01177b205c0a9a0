"""asyncgate_dev.motoquery: the answers of moto's own `Table.query`, from only the items a query can
match (its partition, its index partition) rather than the whole table sorted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

from asyncgate_dev import motofix, motoquery

INDEX = "ByShard"


@pytest.fixture
def client() -> Iterator[Any]:
    motofix.install()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        _create_table(dynamodb)
        yield dynamodb


def _create_table(client: Any) -> None:
    """Keys as the executions table's: a partition and sort key, and a sparse index on other attributes."""
    client.create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "shard", "due")
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": INDEX,
                "KeySchema": [
                    {"AttributeName": "shard", "KeyType": "HASH"},
                    {"AttributeName": "due", "KeyType": "RANGE"},
                ],
                # What the index holds: its keys, the table's, a number and a string (projected separately).
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["n", "label"]},
            }
        ],
    )


def _put_items(client: Any, items: list[tuple[int, int, int | None]]) -> None:
    for partition, sort, due in items:
        item = {
            "pk": {"S": f"P{partition}"},
            "sk": {"S": f"S{sort:03}"},
            "n": {"N": str(sort)},
            "label": {"S": f"item {partition}/{sort}"},
            "other": {"M": {"kept": {"BOOL": False}}},
        }
        if due is not None:  # only some items are in the (sparse) index
            item |= {"shard": {"S": f"D{partition % 2}"}, "due": {"S": f"{due:03}"}}
        client.put_item(TableName="t", Item=item)


def _queries(client: Any, request: dict[str, Any]) -> list[Any]:
    """Every page of a query, as (items, LastEvaluatedKey)."""
    pages, request = [], dict(request)
    while True:
        answer = client.query(TableName="t", **request)
        pages.append((answer["Items"], answer.get("LastEvaluatedKey")))
        if "LastEvaluatedKey" not in answer:
            return pages
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


REQUESTS: list[dict[str, Any]] = [
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "P1"}}},
    {
        "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
        "ExpressionAttributeValues": {":p": {"S": "P2"}, ":s": {"S": "S00"}},
        "ScanIndexForward": False,
        "Limit": 3,
    },
    {
        "KeyConditionExpression": "pk = :p AND sk > :s",
        "FilterExpression": "n > :n",
        "ExpressionAttributeValues": {":p": {"S": "P0"}, ":s": {"S": "S002"}, ":n": {"N": "4"}},
        "Limit": 2,
    },
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "missing"}}},
    {
        "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
        "ExpressionAttributeValues": {":p": {"S": "P1"}, ":a": {"S": "S003"}, ":b": {"S": "S009"}},
    },
    *(
        {
            "KeyConditionExpression": f"pk = :p AND sk {operator} :s",
            "ExpressionAttributeValues": {":p": {"S": "P3"}, ":s": {"S": "S005"}},
            "ScanIndexForward": operator != "<",
        }
        for operator in ("=", "<", "<=", ">=")
    ),
    {
        "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
        "ExpressionAttributeValues": {":p": {"S": "P0"}, ":s": {"S": "S01"}},
    },
    {
        "IndexName": INDEX,
        "KeyConditionExpression": "shard = :d AND due < :due",
        "ExpressionAttributeValues": {":d": {"S": "D1"}, ":due": {"S": "050"}},
        "Limit": 4,
    },
    {
        "IndexName": INDEX,
        "KeyConditionExpression": "shard = :d",
        "ExpressionAttributeValues": {":d": {"S": "D0"}},
        "ScanIndexForward": False,
    },
]

# Writes of (partition, sort key, due): a put (due None: not in the index), an update that moves the
# item in the index or out of it, a delete, and a transaction whose second half fails (rolled back).
writes = st.lists(
    st.tuples(
        st.sampled_from(["put", "update", "delete", "failed transaction"]),
        st.integers(0, 3),
        st.integers(0, 12),
        st.one_of(st.none(), st.integers(0, 99)),
    ),
    max_size=50,
)


def _write(client: Any, kind: str, partition: int, sort: int, due: int | None) -> None:
    key = {"pk": {"S": f"P{partition}"}, "sk": {"S": f"S{sort:03}"}}
    if kind == "put":
        _put_items(client, [(partition, sort, due)])
    elif kind == "delete":
        client.delete_item(TableName="t", Key=key)
    elif kind == "update" and due is None:
        client.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="REMOVE #s, due",
            ExpressionAttributeNames={"#s": "shard"},
        )
    elif kind == "update":
        client.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET #s = :d, due = :due",
            ExpressionAttributeNames={"#s": "shard"},
            ExpressionAttributeValues={":d": {"S": f"D{(partition + sort) % 2}"}, ":due": {"S": f"{due:03}"}},
        )
    else:
        update = {
            "Update": {
                "TableName": "t",
                "Key": key,
                "UpdateExpression": "SET #s = :d, due = :due",
                "ExpressionAttributeNames": {"#s": "shard"},
                "ExpressionAttributeValues": {":d": {"S": "D0"}, ":due": {"S": "000"}},
            }
        }
        refused = {
            "ConditionCheck": {
                "TableName": "t",
                "Key": {"pk": {"S": "nowhere"}, "sk": {"S": "x"}},
                "ConditionExpression": "attribute_exists(pk)",
            }
        }
        with pytest.raises(client.exceptions.TransactionCanceledException):
            client.transact_write_items(TransactItems=[update, refused])


def _all_answers(client: Any) -> list[Any]:
    return [_queries(client, request) for request in REQUESTS]


@settings(max_examples=60, deadline=None)
@given(steps=writes)
def test_every_query_answers_as_motos_own_through_writes(
    steps: list[tuple[str, int, int, int | None]],
) -> None:
    motofix.install()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        _create_table(dynamodb)
        _put_items(
            dynamodb, [(partition, sort, sort * 7 % 100) for partition in range(3) for sort in range(4)]
        )
        for number, step in enumerate(steps):
            _write(dynamodb, *step)
            if number % 5 == 0:  # the index is built at its first query, then kept up to date
                patched = _all_answers(dynamodb)
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(Table, "query", motoquery._originals["query"])
                    original = _all_answers(dynamodb)
                assert patched == original, step
        patched = _all_answers(dynamodb)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Table, "query", motoquery._originals["query"])
            assert patched == _all_answers(dynamodb)


def test_queries_read_only_their_partition(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _put_items(client, [(partition, sort, sort) for partition in range(50) for sort in range(5)])
    client.query(**_index_query("D0"))  # the index's first query builds its partitions

    def whole_table(table: Table) -> list[Any]:
        raise AssertionError("a query listed the whole table")

    monkeypatch.setattr(Table, "all_items", whole_table)
    answer = client.query(
        TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "P7"}}
    )
    assert [item["sk"]["S"] for item in answer["Items"]] == [f"S{sort:03}" for sort in range(5)]
    _put_items(client, [(51, 0, 500)])
    answer = client.query(**_index_query("D1"))
    assert len(answer["Items"]) == 25 * 5 + 1  # the odd partitions, and the one just put
    assert answer["Items"][-1]["due"]["S"] == "500"


def _index_query(shard: str) -> dict[str, Any]:
    return {
        "TableName": "t",
        "IndexName": INDEX,
        "KeyConditionExpression": "shard = :d",
        "ExpressionAttributeValues": {":d": {"S": shard}},
    }


def test_a_sort_key_condition_is_applied_before_items_are_measured(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant's partition holds its whole ledger beside its few webhook endpoints: finding the
    endpoints must not weigh every ledger entry."""
    for number in range(300):
        client.put_item(TableName="t", Item={"pk": {"S": "TENANT#a"}, "sk": {"S": f"LEDGER#{number:04}"}})
    for number in range(2):
        client.put_item(TableName="t", Item={"pk": {"S": "TENANT#a"}, "sk": {"S": f"WEBHOOK#{number}"}})
    measured = []
    original_size = Item.size

    def size(item: Item) -> int:
        measured.append(item)
        return int(original_size(item))

    monkeypatch.setattr(Item, "size", size)
    answer = client.query(
        TableName="t",
        KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
        ExpressionAttributeValues={":p": {"S": "TENANT#a"}, ":s": {"S": "WEBHOOK#"}},
    )
    assert [item["sk"]["S"] for item in answer["Items"]] == ["WEBHOOK#0", "WEBHOOK#1"]
    assert len(measured) <= 4, f"{len(measured)} items measured for a query of 2"


@pytest.mark.parametrize(
    "paths",
    [[["a"]], [["a"], ["b"]], [["a"], ["missing"]], [["n"]], [["m", "x"]], [["l[0]"]], [["a"], ["m"]]],
)
def test_a_projection_answers_as_motos_own(paths: list[list[str]]) -> None:
    motofix.install()
    item = Item(
        DynamoType({"S": "k"}),
        None,
        {
            "a": {"S": "1"},
            "b": {"S": "two"},
            "n": {"N": "1.50"},
            "m": {"M": {"x": {"S": "y"}, "z": {"N": "2"}}},
            "l": {"L": [{"S": "first"}, {"N": "2"}]},
        },
    )
    assert item.project(paths).to_json() == motoquery._originals["project"](item, paths).to_json()
