"""Lambda's FilterCriteria on DynamoDB stream records: the EventBridge pattern subset the local stack runs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asyncgate_dev.streams import check_pattern, matches, passes_filters

RECORD: dict[str, Any] = {
    "eventID": "e1",
    "eventName": "MODIFY",
    "eventVersion": "1.1",
    "eventSource": "aws:dynamodb",
    "awsRegion": "us-east-1",
    "dynamodb": {
        "ApproximateCreationDateTime": 1700000000,
        "Keys": {"pk": {"S": "EXEC#123"}, "sk": {"S": "EXEC"}},
        "NewImage": {
            "pk": {"S": "EXEC#123"},
            "sk": {"S": "EXEC"},
            "status": {"S": "SUCCEEDED"},
            "tags": {"SS": ["gpu", "fast"]},
            "done": {"BOOL": True},
            "note": {"NULL": True},
        },
        "OldImage": {"pk": {"S": "EXEC#123"}, "sk": {"S": "EXEC"}, "status": {"S": "RUNNING"}},
        "SequenceNumber": "1100000000017454423010",
        "SizeBytes": 120,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    },
    "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/label",
}


def image(**fields: Any) -> dict[str, Any]:
    return {"dynamodb": {"NewImage": fields}}


def test_the_notify_functions_filter() -> None:
    pattern = json.loads('{"eventName": ["MODIFY"], "dynamodb": {"Keys": {"sk": {"S": ["EXEC"]}}}}')
    check_pattern(pattern)
    assert matches(pattern, RECORD)
    assert not matches(pattern, RECORD | {"eventName": "INSERT"})
    other_key = RECORD | {"dynamodb": RECORD["dynamodb"] | {"Keys": {"pk": {"S": "x"}, "sk": {"S": "KEY"}}}}
    assert not matches(pattern, other_key)


def test_exact_values_any_of_a_list_and_types_must_agree() -> None:
    assert matches({"eventName": ["INSERT", "MODIFY"]}, RECORD)
    assert not matches({"eventName": ["INSERT", "REMOVE"]}, RECORD)
    assert matches({"dynamodb": {"NewImage": {"done": {"BOOL": [True]}}}}, RECORD)
    assert matches({"dynamodb": {"NewImage": {"note": {"NULL": [True]}}}}, RECORD)
    # 120 the number is not "120" the string, and true is not 1.
    assert matches({"dynamodb": {"SizeBytes": [120]}}, RECORD)
    assert not matches({"dynamodb": {"SizeBytes": ["120"]}}, RECORD)
    assert not matches({"dynamodb": {"NewImage": {"done": {"BOOL": [1]}}}}, RECORD)


def test_nested_objects_must_all_match() -> None:
    pattern = {
        "dynamodb": {"NewImage": {"status": {"S": ["SUCCEEDED"]}}, "OldImage": {"status": {"S": ["RUNNING"]}}}
    }
    assert matches(pattern, RECORD)
    pattern["dynamodb"]["OldImage"]["status"]["S"] = ["QUEUED"]
    assert not matches(pattern, RECORD)
    # A nested pattern where the record has a scalar does not match.
    assert not matches({"eventName": {"S": ["MODIFY"]}}, RECORD)


def test_a_missing_field_matches_nothing_but_exists_false() -> None:
    assert not matches({"dynamodb": {"NewImage": {"absent": {"S": ["x"]}}}}, RECORD)
    assert not matches({"missing": {"deeper": ["x"]}}, RECORD)


def test_exists() -> None:
    assert matches({"dynamodb": {"OldImage": [{"exists": True}]}}, RECORD)
    assert not matches({"dynamodb": {"OldImage": [{"exists": False}]}}, RECORD)
    insert = RECORD | {"dynamodb": {k: v for k, v in RECORD["dynamodb"].items() if k != "OldImage"}}
    assert matches({"dynamodb": {"OldImage": [{"exists": False}]}}, insert)
    # exists: false inside an object the record lacks altogether.
    assert matches({"dynamodb": {"OldImage": {"status": {"S": [{"exists": False}]}}}}, insert)


def test_prefix_and_suffix() -> None:
    assert matches({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "EXEC#"}]}}}}, RECORD)
    assert not matches({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "TENANT#"}]}}}}, RECORD)
    assert matches({"dynamodb": {"Keys": {"pk": {"S": [{"suffix": "#123"}]}}}}, RECORD)
    # prefix applies to strings only.
    assert not matches({"dynamodb": {"SizeBytes": [{"prefix": "1"}]}}, RECORD)


def test_anything_but() -> None:
    assert matches({"eventName": [{"anything-but": ["INSERT", "REMOVE"]}]}, RECORD)
    assert not matches({"eventName": [{"anything-but": ["MODIFY"]}]}, RECORD)
    assert matches({"eventName": [{"anything-but": "REMOVE"}]}, RECORD)
    assert not matches({"eventName": [{"anything-but": {"prefix": "MOD"}}]}, RECORD)
    assert matches({"eventName": [{"anything-but": {"prefix": "INS"}}]}, RECORD)
    # The field must be there to be "anything but" something.
    assert not matches({"absent": [{"anything-but": ["x"]}]}, RECORD)


def test_numeric() -> None:
    assert matches({"dynamodb": {"SizeBytes": [{"numeric": [">", 100]}]}}, RECORD)
    assert matches({"dynamodb": {"SizeBytes": [{"numeric": [">=", 120, "<", 121]}]}}, RECORD)
    assert not matches({"dynamodb": {"SizeBytes": [{"numeric": ["<", 120]}]}}, RECORD)
    assert matches({"dynamodb": {"SizeBytes": [{"numeric": ["=", 120]}]}}, RECORD)
    # DynamoDB numbers are strings in a record ({"N": "5"}): numeric never matches them.
    assert not matches({"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 1]}]}}}}, image(n={"N": "5"}))


def test_an_array_in_the_record_matches_when_any_element_does() -> None:
    assert matches({"dynamodb": {"NewImage": {"tags": {"SS": ["fast"]}}}}, RECORD)
    assert not matches({"dynamodb": {"NewImage": {"tags": {"SS": ["slow"]}}}}, RECORD)


def test_several_filters_pass_a_record_when_any_one_matches() -> None:
    inserts = {"eventName": ["INSERT"]}
    succeeded = {"dynamodb": {"NewImage": {"status": {"S": ["SUCCEEDED"]}}}}
    assert passes_filters([inserts, succeeded], RECORD)
    assert not passes_filters([inserts, {"eventName": ["REMOVE"]}], RECORD)
    assert passes_filters([], RECORD)


@pytest.mark.parametrize(
    "pattern",
    [
        {},
        {"eventName": "MODIFY"},
        {"eventName": []},
        {"eventName": [{"wildcard": "MOD*"}]},
        {"eventName": [{"exists": "yes"}]},
        {"eventName": [{"prefix": "a", "suffix": "b"}]},
        {"dynamodb": {"SizeBytes": [{"numeric": [">"]}]}},
        {"dynamodb": {"SizeBytes": [{"numeric": ["!=", 1]}]}},
        {"eventName": [{"anything-but": {"suffix": "x"}}]},
    ],
)
def test_what_the_matcher_does_not_implement_is_refused(pattern: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="pattern"):
        check_pattern(pattern)
