"""asyncgate_dev.motoserialize: DynamoDB answers written as moto's generic serializer writes them,
without walking the AttributeValue shape member by member."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.core import serialize
from moto.core.serialize import BaseJSONSerializer

from asyncgate_dev import motofix, motoserialize

scalars = st.one_of(
    st.builds(lambda text: {"S": text}, st.text(max_size=8)),
    st.builds(lambda number: {"N": str(number)}, st.integers(-1000, 1000)),
    st.builds(lambda flag: {"BOOL": flag}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda blob: {"B": base64.b64encode(blob).decode()}, st.binary(min_size=1, max_size=8)),
    st.builds(
        lambda texts: {"SS": sorted(texts)}, st.sets(st.text(min_size=1, max_size=4), min_size=1, max_size=3)
    ),
    st.builds(
        lambda numbers: {"NS": sorted(map(str, numbers))}, st.sets(st.integers(0, 99), min_size=1, max_size=3)
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.builds(
            lambda entries: {"M": entries},
            st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=4),
        ),
        st.builds(lambda elements: {"L": elements}, st.lists(inner, max_size=4)),
    ),
    max_leaves=12,
)
items = st.dictionaries(st.sampled_from(["a", "b", "input", "result", "attempts"]), values, max_size=5)


@pytest.fixture
def table() -> Iterator[Any]:
    motofix.install()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        _create_table(dynamodb)
        yield dynamodb


def _create_table(client: Any) -> None:
    client.create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )


def _answers(client: Any, number: int) -> list[Any]:
    """The item as GetItem, Query and UpdateItem (its old image) answer it."""
    key = {"pk": {"S": f"k{number}"}}
    return [
        client.get_item(TableName="t", Key=key)["Item"],
        client.query(
            TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": key["pk"]}
        )["Items"],
        client.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET touched = :t",
            ExpressionAttributeValues={":t": {"BOOL": True}},
            ReturnValues="ALL_OLD",
        )["Attributes"],
    ]


@settings(max_examples=80, deadline=None)
@given(item=items)
def test_items_are_answered_as_the_generic_serializer_answers(item: dict[str, Any]) -> None:
    motofix.install()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        _create_table(dynamodb)
        for number in (1, 2):
            dynamodb.put_item(TableName="t", Item={"pk": {"S": f"k{number}"}, **item})
        patched = _answers(dynamodb, 1)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                BaseJSONSerializer, "_serialize_type_structure", motoserialize._originals["structure"]
            )
            original = _answers(dynamodb, 2)
    for answer in (patched, original):
        answer[0].pop("pk")
        answer[1][0].pop("pk")
        answer[2].pop("pk")
    assert patched == original


def test_attribute_values_skip_the_generic_walk(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    nested = {"M": {f"k{number}": {"L": [{"S": "x"}, {"N": "1"}, {"NULL": True}]} for number in range(20)}}
    table.put_item(TableName="t", Item={"pk": {"S": "k"}, "nested": nested})
    picked = []
    original = serialize.XFormedAttributePicker.get_possible_keys

    def counted(picker: Any, context: Any) -> Any:
        picked.append(context.key)
        return original(picker, context)

    monkeypatch.setattr(serialize.XFormedAttributePicker, "get_possible_keys", counted)
    item = table.get_item(TableName="t", Key={"pk": {"S": "k"}})["Item"]
    assert item["nested"] == nested
    assert len(picked) < 10, f"{len(picked)} attribute look-ups for one item"
