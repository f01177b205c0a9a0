"""The emulator's process (asyncgate_dev.motoserver) keeps no copy of every item and message moto made."""

from __future__ import annotations

import copy

import pytest
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.sqs.models import Message

from asyncgate_dev import motoserver


def _made() -> list[object]:
    item = Item(DynamoType({"S": "k"}), None, {"pk": {"S": "k"}, "n": {"N": "1"}})
    return [item, copy.deepcopy(item), Message("id", "body")]


def test_items_and_messages_are_not_tracked(monkeypatch: pytest.MonkeyPatch) -> None:
    for model in (Item, Message):
        monkeypatch.setattr(model, "instances_tracked", [])
    _made()
    assert len(Item.instances_tracked) == 2, "moto itself tracks each one, copies too"  # type: ignore[attr-defined]
    motoserver.keep_no_instances()
    _made()
    assert list(Item.instances_tracked) == []  # type: ignore[attr-defined]
    assert list(Message.instances_tracked) == []  # type: ignore[attr-defined]
