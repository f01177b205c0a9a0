"""asyncgate_dev.motofix, point 3: an update expression's text is parsed once, and every update that
uses it still applies its own values."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.parsing import tokens

from asyncgate_dev import motofix


def test_an_update_expression_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    motofix.install()
    tokenized: list[str] = []
    make_list = tokens.ExpressionTokenizer.make_list

    def counted(expression: str) -> object:
        tokenized.append(expression)
        return make_list(expression)

    monkeypatch.setattr(tokens.ExpressionTokenizer, "make_list", staticmethod(counted))
    expression = "SET counted = if_not_exists(counted, :zero) + :one, note = :note"
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        )
        for number in range(3):
            dynamodb.update_item(
                TableName="t",
                Key={"pk": {"S": "k"}},
                UpdateExpression=expression,
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":note": {"S": f"n{number}"},
                },
            )
        item = dynamodb.get_item(TableName="t", Key={"pk": {"S": "k"}})["Item"]
    assert item["counted"] == {"N": "3"}
    assert item["note"] == {"S": "n2"}
    assert tokenized.count(expression) == 1
