"""The ASL interpreter of the local stack, with fake Lambda functions."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from asyncgate_dev.handlers import REPO_ROOT, TEMPLATE_PATH
from asyncgate_dev.stepfunctions import (
    DYNAMODB_UPDATE_ITEM,
    LAMBDA_INVOKE,
    ExecutionOutcome,
    Interpreter,
    UnsupportedDefinitionError,
    check_definition,
    function_name_of,
    parse_path,
)
from asyncgate_dev.template import load_template

FN = "arn:aws:lambda:us-east-1:123456789012:function:asyncgate-Deliver"


class Recorder:
    """A fake `invoke`: records each call and answers from a script (a value, or an exception to raise)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, Any, float]] = []

    def __call__(self, function: str, payload: Any) -> Any:
        self.calls.append((function, payload, time.monotonic()))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer(payload) if callable(answer) else answer


class DeliveryError(Exception):
    pass


def machine(states: dict[str, Any], start: str | None = None, **top: Any) -> dict[str, Any]:
    return {"StartAt": start or next(iter(states)), "States": states, **top}


def run(definition: dict[str, Any], data: Any, invoke: Any = None, **options: Any) -> ExecutionOutcome:
    return Interpreter(definition, invoke or Recorder({}), **options).execute(data)


# --------------------------------------------------------------------------------------------- paths


def test_paths_in_the_supported_subset() -> None:
    assert parse_path("$") == ()
    assert parse_path("$.a.b") == ("a", "b")
    assert parse_path("$.a[0].b") == ("a", 0, "b")
    assert parse_path("$['odd key']") == ("odd key",)
    assert parse_path("$$.Execution.Id") == ("Execution", "Id")
    for unsupported in ("$..a", "$.a[*]", "$.a[?(@.b)]", "$.a[0:2]", "$.*"):
        with pytest.raises(UnsupportedDefinitionError, match="not supported"):
            parse_path(unsupported)
    with pytest.raises(UnsupportedDefinitionError, match="must start with"):
        parse_path("a.b")


def test_input_path_parameters_result_selector_result_path_output_path() -> None:
    definition = machine(
        {
            "Call": {
                "Type": "Task",
                "Resource": FN,
                "InputPath": "$.job",
                "Parameters": {
                    "id.$": "$.id",
                    "first.$": "$.items[0]",
                    "fixed": {"n": 1},
                    "name.$": "$$.Execution.Name",
                },
                "ResultSelector": {"code.$": "$.status", "constant": "x"},
                "ResultPath": "$.delivery.result",
                "OutputPath": "$.delivery",
                "End": True,
            }
        }
    )
    invoke = Recorder({"status": 200, "ignored": True})
    outcome = Interpreter(definition, invoke).execute(
        {"job": {"id": "j1", "items": ["a", "b"]}}, name="run-1"
    )
    assert invoke.calls[0][:2] == (
        "asyncgate-Deliver",
        {"id": "j1", "first": "a", "fixed": {"n": 1}, "name": "run-1"},
    )
    assert outcome == ExecutionOutcome("SUCCEEDED", output={"result": {"code": 200, "constant": "x"}})


def test_result_path_null_keeps_the_input_and_null_paths_give_empty_objects() -> None:
    definition = machine(
        {
            "Keep": {"Type": "Task", "Resource": FN, "ResultPath": None, "Next": "Empty"},
            "Empty": {"Type": "Pass", "InputPath": None, "ResultPath": "$.seen", "Next": "Out"},
            "Out": {"Type": "Succeed", "OutputPath": None},
        }
    )
    invoke = Recorder({"dropped": True})
    assert run(definition, {"a": 1}, invoke) == ExecutionOutcome("SUCCEEDED", output={})
    keep_only = machine({"Keep": {"Type": "Task", "Resource": FN, "ResultPath": None, "End": True}})
    assert run(keep_only, {"a": 1}, invoke).output == {"a": 1}


def test_a_missing_path_fails_the_execution_with_states_runtime_even_with_catch_all() -> None:
    definition = machine(
        {
            "Call": {
                "Type": "Task",
                "Resource": FN,
                "Parameters": {"id.$": "$.missing"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        }
    )
    outcome = run(definition, {"a": 1})
    assert outcome.status == "FAILED"
    assert outcome.error == "States.Runtime"
    assert "$.missing" in (outcome.cause or "")


# --------------------------------------------------------------------------------------------- states


def test_pass_result_and_parameters() -> None:
    definition = machine(
        {
            "Fixed": {"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.fixed", "Next": "Shaped"},
            "Shaped": {
                "Type": "Pass",
                "Parameters": {"both.$": "$.fixed.x", "list": [{"v.$": "$.a"}]},
                "End": True,
            },
        }
    )
    assert run(definition, {"a": "A"}).output == {"both": 1, "list": [{"v": "A"}]}


def test_lambda_invoke_integration_wraps_the_payload() -> None:
    definition = machine(
        {
            "Call": {
                "Type": "Task",
                "Resource": LAMBDA_INVOKE,
                "Parameters": {"FunctionName": FN, "Payload": {"id.$": "$.id"}},
                "ResultSelector": {"body.$": "$.Payload"},
                "End": True,
            }
        }
    )
    invoke = Recorder(lambda payload: {"echo": payload})
    outcome = run(definition, {"id": 7}, invoke)
    assert invoke.calls[0][:2] == ("asyncgate-Deliver", {"id": 7})
    assert outcome.output == {"body": {"echo": {"id": 7}}}


def test_function_id_maps_arns_to_the_callers_ids() -> None:
    definition = machine({"Call": {"Type": "Task", "Resource": FN + ":live", "End": True}})
    invoke = Recorder("ok")
    outcome = Interpreter(definition, invoke, function_id=lambda arn: f"id:{function_name_of(arn)}").execute(
        {}
    )
    assert outcome.output == "ok"
    assert invoke.calls[0][0] == "id:asyncgate-Deliver", "the qualifier is not part of the name"


def test_fail_state_error_and_cause_from_fields_or_paths() -> None:
    fixed = machine({"Stop": {"Type": "Fail", "Error": "Webhook.Gone", "Cause": "410"}})
    assert run(fixed, {}) == ExecutionOutcome("FAILED", error="Webhook.Gone", cause="410")
    from_input = machine({"Stop": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}})
    assert run(from_input, {"e": "E", "c": "C"}) == ExecutionOutcome("FAILED", error="E", cause="C")


CHOICE_CASES = [
    ({"Variable": "$.ok", "BooleanEquals": True}, {"ok": True}, True),
    ({"Variable": "$.ok", "BooleanEquals": True}, {"ok": "true"}, False),
    ({"Variable": "$.n", "NumericGreaterThanEquals": 3}, {"n": 3}, True),
    ({"Variable": "$.n", "NumericLessThan": 3}, {"n": 3}, False),
    ({"Variable": "$.n", "NumericLessThan": 3}, {"n": "2"}, False),
    ({"Variable": "$.s", "StringEquals": "gone"}, {"s": "gone"}, True),
    ({"Variable": "$.s", "StringMatches": "http*://*"}, {"s": "https://x"}, True),
    ({"Variable": "$.s", "StringMatches": "a\\*"}, {"s": "ab"}, False),
    ({"Variable": "$.s", "StringEqualsPath": "$.t"}, {"s": "x", "t": "x"}, True),
    (
        {"Variable": "$.at", "TimestampLessThan": "2030-01-01T00:00:00Z"},
        {"at": "2029-12-31T23:59:59+00:00"},
        True,
    ),
    ({"Variable": "$.maybe", "IsPresent": False}, {}, True),
    ({"Variable": "$.maybe", "IsPresent": True}, {"maybe": None}, True),
    ({"Variable": "$.maybe", "IsNull": True}, {"maybe": None}, True),
    ({"Variable": "$.n", "IsNumeric": True}, {"n": True}, False),
    ({"Variable": "$.n", "IsString": True}, {"n": "1"}, True),
    (
        {
            "And": [
                {"Variable": "$.n", "NumericGreaterThanEquals": 1},
                {
                    "Or": [
                        {"Variable": "$.s", "StringEquals": "a"},
                        {"Not": {"Variable": "$.x", "IsPresent": True}},
                    ]
                },
            ]
        },
        {"n": 2, "s": "b"},
        True,
    ),
]


@pytest.mark.parametrize(("rule", "data", "matches"), CHOICE_CASES)
def test_choice_rules(rule: dict[str, Any], data: dict[str, Any], matches: bool) -> None:
    definition = machine(
        {
            "Decide": {"Type": "Choice", "Choices": [{**rule, "Next": "Yes"}], "Default": "No"},
            "Yes": {"Type": "Pass", "Result": "yes", "End": True},
            "No": {"Type": "Pass", "Result": "no", "End": True},
        }
    )
    assert run(definition, data).output == ("yes" if matches else "no")


def test_choice_without_a_match_or_with_a_missing_variable_fails() -> None:
    states = {
        "Decide": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "Done"}]},
        "Done": {"Type": "Succeed"},
    }
    assert run(machine(states), {"n": 2}).error == "States.NoChoiceMatched"
    assert run(machine(states), {}).error == "States.Runtime"


def test_wait_seconds_path_is_scaled() -> None:
    definition = machine({"Hold": {"Type": "Wait", "SecondsPath": "$.delay", "End": True}})
    started = time.monotonic()
    outcome = run(definition, {"delay": 30}, time_scale=0.002)
    elapsed = time.monotonic() - started
    assert outcome == ExecutionOutcome("SUCCEEDED", output={"delay": 30})
    assert 0.05 <= elapsed < 1.0, "30 s at scale 0.002 is 60 ms"


def test_wait_timestamp_in_the_past_does_not_wait_and_bad_input_is_a_runtime_error() -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    definition = machine({"Hold": {"Type": "Wait", "TimestampPath": "$.at", "End": True}})
    started = time.monotonic()
    assert run(definition, {"at": past}).status == "SUCCEEDED"
    assert time.monotonic() - started < 0.5
    assert run(definition, {"at": "tomorrow"}).error == "States.Runtime"
    negative = machine({"Hold": {"Type": "Wait", "SecondsPath": "$.s", "End": True}})
    assert run(negative, {"s": -1}).error == "States.Runtime"


def test_stop_event_interrupts_a_long_wait() -> None:
    definition = machine({"Hold": {"Type": "Wait", "Seconds": 3600, "End": True}})
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    outcome = Interpreter(definition, Recorder({}), stop=stop).execute({})
    assert outcome.status == "ABORTED"
    assert time.monotonic() - started < 1.0


def test_stop_event_interrupts_a_task_that_is_still_running() -> None:
    release = threading.Event()
    definition = machine({"Call": {"Type": "Task", "Resource": FN, "End": True}})
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    outcome = Interpreter(definition, Recorder(lambda payload: release.wait(5)), stop=stop).execute({})
    release.set()
    assert outcome.status == "ABORTED"


def test_task_timeout_seconds() -> None:
    release = threading.Event()
    definition = machine({"Call": {"Type": "Task", "Resource": FN, "TimeoutSeconds": 0.1, "End": True}})
    outcome = run(definition, {}, Recorder(lambda payload: release.wait(5)))
    release.set()
    assert outcome.error == "States.Timeout"


def test_execution_timeout_is_scaled_and_not_caught() -> None:
    definition = machine(
        {
            "Call": {
                "Type": "Task",
                "Resource": FN,
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 100, "MaxAttempts": 5}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
        TimeoutSeconds=50,
    )
    started = time.monotonic()
    outcome = run(definition, {}, Recorder(DeliveryError("down")), time_scale=0.002)
    assert outcome.error == "States.Timeout"
    assert time.monotonic() - started < 1.0, "50 s at scale 0.002 is 0.1 s"


# --------------------------------------------------------------------------------------------- errors


def retrying(retry: list[dict[str, Any]], catch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"Type": "Task", "Resource": FN, "Retry": retry, "End": True}
    if catch is not None:
        task["Catch"] = catch
    return machine({"Deliver": task, "Failed": {"Type": "Pass", "End": True}})


def test_retry_backs_off_on_the_scaled_schedule_then_succeeds() -> None:
    definition = retrying(
        [{"ErrorEquals": ["DeliveryError"], "IntervalSeconds": 10, "BackoffRate": 2.0, "MaxAttempts": 3}]
    )
    invoke = Recorder(DeliveryError("503"), DeliveryError("503"), {"delivered": True})
    outcome = run(definition, {"id": 1}, invoke, time_scale=0.01)
    assert outcome == ExecutionOutcome("SUCCEEDED", output={"delivered": True})
    gaps = [later[2] - earlier[2] for earlier, later in pairwise(invoke.calls)]
    assert len(gaps) == 2
    # Sleeps are never shorter than asked; the upper bounds leave room for a busy machine.
    assert 0.1 <= gaps[0] < 0.18, "10 s at scale 0.01"
    assert 0.2 <= gaps[1] < 0.35, "then 20 s (BackoffRate 2)"


def test_retry_max_delay_caps_the_backoff() -> None:
    definition = retrying(
        [
            {
                "ErrorEquals": ["States.ALL"],
                "IntervalSeconds": 10,
                "BackoffRate": 10,
                "MaxDelaySeconds": 10,
                "MaxAttempts": 2,
            }
        ]
    )
    invoke = Recorder(DeliveryError("x"), DeliveryError("x"), "ok")
    run(definition, {}, invoke, time_scale=0.005)
    times = [call[2] for call in invoke.calls]
    assert times[2] - times[1] < 0.09, "capped at 10 s (50 ms), not 100 s (500 ms)"


def test_retries_exhausted_fail_with_the_handlers_error_type() -> None:
    definition = retrying(
        [
            {
                "ErrorEquals": ["States.TaskFailed"],
                "IntervalSeconds": 1,
                "MaxAttempts": 2,
                "JitterStrategy": "FULL",
            }
        ]
    )
    invoke = Recorder(RuntimeError("boom"))
    outcome = run(definition, {}, invoke, time_scale=0.001)
    assert len(invoke.calls) == 3, "the first try and two retries"
    assert outcome.status == "FAILED"
    assert outcome.error == "RuntimeError"
    cause = json.loads(outcome.cause or "")
    assert cause["errorType"] == "RuntimeError"
    assert cause["errorMessage"] == "boom"


def test_non_matching_retrier_and_max_attempts_zero_do_not_retry() -> None:
    invoke = Recorder(ValueError("bad"))
    outcome = run(retrying([{"ErrorEquals": ["Lambda.ServiceException"], "MaxAttempts": 5}]), {}, invoke)
    assert (len(invoke.calls), outcome.error) == (1, "ValueError")
    invoke = Recorder(ValueError("bad"))
    run(retrying([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}]), {}, invoke)
    assert len(invoke.calls) == 1


def test_catch_puts_the_error_at_its_result_path_and_moves_on() -> None:
    definition = retrying(
        [{"ErrorEquals": ["DeliveryError"], "IntervalSeconds": 1, "MaxAttempts": 1}],
        [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Failed"}],
    )
    invoke = Recorder(DeliveryError("connection refused"))
    outcome = run(definition, {"id": 1}, invoke, time_scale=0.001)
    assert len(invoke.calls) == 2
    assert outcome.status == "SUCCEEDED"
    assert outcome.output["id"] == 1
    assert outcome.output["failure"]["Error"] == "DeliveryError"
    assert json.loads(outcome.output["failure"]["Cause"])["errorMessage"] == "connection refused"


def test_catch_order_and_default_result_path() -> None:
    definition = machine(
        {
            "Call": {
                "Type": "Task",
                "Resource": FN,
                "Catch": [
                    {"ErrorEquals": ["KeyError"], "Next": "WrongOne"},
                    {"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"},
                ],
                "End": True,
            },
            "WrongOne": {"Type": "Fail", "Error": "wrong catcher"},
            "Caught": {"Type": "Pass", "End": True},
        }
    )
    outcome = run(definition, {"id": 1}, Recorder(DeliveryError("x")))
    assert outcome.status == "SUCCEEDED"
    assert outcome.output["Error"] == "DeliveryError", "ResultPath $ (the default) replaces the input"
    assert "id" not in outcome.output


def test_a_result_that_is_not_json_is_a_marshal_error() -> None:
    outcome = run(
        machine({"Call": {"Type": "Task", "Resource": FN, "End": True}}), {}, Recorder({"at": object()})
    )
    assert outcome.error == "Runtime.MarshalError"


# --------------------------------------------------------------------------------------------- intrinsics


def test_intrinsic_functions_in_parameters() -> None:
    definition = machine(
        {
            "Shape": {
                "Type": "Pass",
                "Parameters": {
                    "wait.$": "States.MathAdd(90, States.MathRandom(0, 60))",
                    "text.$": r"States.Format('\{{}\} it\'s {}', $.name, $.obj)",
                    "json.$": "States.JsonToString($.obj)",
                    "back.$": "States.StringToJson('{\"k\": [1]}')",
                    "list.$": "States.Array(1, $.name)",
                    "id.$": "States.UUID()",
                },
                "End": True,
            }
        }
    )
    output = run(definition, {"name": "x", "obj": {"k": 1}}).output
    assert 90 <= output["wait"] < 150, "MathRandom's end is exclusive"
    assert output["text"] == '{x} it\'s {"k": 1}'
    assert output["json"] == '{"k":1}'
    assert output["back"] == {"k": [1]}
    assert output["list"] == [1, "x"]
    assert len(output["id"]) == 36


def test_intrinsic_errors() -> None:
    wrong_type = machine(
        {"P": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.s, 1)"}, "End": True}}
    )
    assert run(wrong_type, {"s": "1"}).error == "States.IntrinsicFailure"
    for text in (
        "States.MathAdd(1, 2",
        "States.MathAdd(1 2)",
        "States.MathAdd(1, 2) extra",
        "States.MathAdd",
    ):
        bad = machine({"P": {"Type": "Pass", "Parameters": {"n.$": text}, "End": True}})
        with pytest.raises(UnsupportedDefinitionError, match=r"Parameters n\.\$"):
            check_definition(bad)


def test_array_get_item_and_nested_intrinsics() -> None:
    definition = machine(
        {
            "Shape": {
                "Type": "Pass",
                "Parameters": {
                    "second.$": "States.ArrayGetItem($.items, 1)",
                    "computed.$": "States.ArrayGetItem(States.Array(10, 20, 30), States.MathAdd($.n, -1))",
                    "deep.$": (
                        "States.MathAdd(States.ArrayGetItem(States.Array(90, 180), States.MathAdd($.n, -2)), "
                        "States.MathRandom(0, States.ArrayGetItem(States.Array(1, 60), 0)))"
                    ),
                },
                "End": True,
            }
        }
    )
    assert run(definition, {"items": ["a", {"b": 1}], "n": 2}).output == {
        "second": {"b": 1},
        "computed": 20,
        "deep": 90,
    }


@pytest.mark.parametrize("index", ["3", "-1", "'x'"])
def test_array_get_item_out_of_range_or_not_an_index_is_an_intrinsic_failure(index: str) -> None:
    definition = machine(
        {"P": {"Type": "Pass", "Parameters": {"v.$": f"States.ArrayGetItem($.items, {index})"}, "End": True}}
    )
    assert run(definition, {"items": [1, 2, 3]}).error == "States.IntrinsicFailure"


# --------------------------------------------------------------------------------------------- dynamodb


class FakeDynamoDB:
    """A boto3 DynamoDB client's update_item: records each call, raises each of `errors` first."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[dict[str, Any]] = []

    def update_item(self, **parameters: Any) -> dict[str, Any]:
        self.calls.append(parameters)
        if self.errors:
            raise self.errors.pop(0)
        return {"Attributes": {"n": {"N": "2"}}, "ResponseMetadata": {"HTTPStatusCode": 200}}


def _condition_failed() -> ClientError:
    return ClientError({"Error": {"Code": "ConditionalCheckFailedException", "Message": "no"}}, "UpdateItem")


def recording(**extra: Any) -> dict[str, Any]:
    """A machine whose one task increments a counter with dynamodb:updateItem."""
    task = {
        "Type": "Task",
        "Resource": DYNAMODB_UPDATE_ITEM,
        "Parameters": {
            "TableName": "items",
            "Key": {"pk": {"S.$": "States.Format('ITEM#{}', $.id)"}},
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
            "ReturnValues": "UPDATED_NEW",
        },
        "ResultPath": "$.updated",
        "End": True,
        **extra,
    }
    return machine({"Record": task, "Caught": {"Type": "Pass", "End": True}})


def test_dynamodb_update_item_calls_the_client_with_the_rendered_parameters() -> None:
    table = FakeDynamoDB()
    outcome = Interpreter(recording(), Recorder({}), aws_client=lambda service: table).execute({"id": 7})
    assert table.calls == [
        {
            "TableName": "items",
            "Key": {"pk": {"S": "ITEM#7"}},
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
            "ReturnValues": "UPDATED_NEW",
        }
    ]
    assert outcome.output == {"id": 7, "updated": {"Attributes": {"n": {"N": "2"}}}}, "no ResponseMetadata"


def test_dynamodb_errors_are_named_as_step_functions_names_them_and_caught() -> None:
    catch = [
        {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "ResultPath": "$.e", "Next": "Caught"}
    ]
    retry = [
        {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "MaxAttempts": 0},
        {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2},
    ]
    table = FakeDynamoDB(_condition_failed())
    outcome = Interpreter(
        recording(Retry=retry, Catch=catch), Recorder({}), aws_client=lambda service: table
    ).execute({"id": 1})
    assert len(table.calls) == 1, "MaxAttempts 0: never retried"
    assert outcome.output["e"]["Error"] == "DynamoDB.ConditionalCheckFailedException"
    flaky = FakeDynamoDB(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    recovered = Interpreter(
        recording(Retry=retry, Catch=catch), Recorder({}), aws_client=lambda service: flaky, time_scale=0.001
    ).execute({"id": 1})
    assert (recovered.status, len(flaky.calls)) == ("SUCCEEDED", 2), "an SDK error is retried by States.ALL"
    uncaught = FakeDynamoDB(_condition_failed())
    failed = Interpreter(recording(), Recorder({}), aws_client=lambda service: uncaught).execute({"id": 1})
    assert failed.error == "DynamoDB.ConditionalCheckFailedException"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"Key": {}}, r"needs Parameters \['Key', 'TableName'\]"),
        ({"TableName": "t", "Key": {}, "Item": {}}, r"parameter\(s\) \['Item'\] not supported"),
    ],
)
def test_dynamodb_update_item_parameters_are_checked(parameters: dict[str, Any], message: str) -> None:
    definition = machine(
        {"T": {"Type": "Task", "Resource": DYNAMODB_UPDATE_ITEM, "Parameters": parameters, "End": True}}
    )
    with pytest.raises(UnsupportedDefinitionError, match=message):
        check_definition(definition)


def test_the_repositorys_state_machines_run_here() -> None:
    """Every state machine definition of template.yaml uses only what this interpreter runs."""
    template = load_template(TEMPLATE_PATH)
    machines = [
        resource["Properties"]
        for resource in template["Resources"].values()
        if resource.get("Type") == "AWS::Serverless::StateMachine"
    ]
    for properties in machines:
        text = (REPO_ROOT / properties["DefinitionUri"]).read_text(encoding="utf-8")
        for name in properties.get("DefinitionSubstitutions") or {}:
            text = text.replace("${" + name + "}", FN)
        check_definition(json.loads(text))


# --------------------------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (machine({"Fan": {"Type": "Map", "End": True}}), "state type 'Map'"),
        (machine({"Both": {"Type": "Parallel", "Branches": [], "End": True}}), "state type 'Parallel'"),
        (
            machine(
                {"P": {"Type": "Pass", "Parameters": {"h.$": "States.Hash($.a, 'SHA-256')"}, "End": True}}
            ),
            "intrinsic function States.Hash is not supported",
        ),
        (machine({"P": {"Type": "Pass", "Assign": {"x": 1}, "End": True}}), r"\['Assign'\]"),
        (
            machine({"T": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": True}}),
            "sqs:sendMessage",
        ),
        (machine({"P": {"Type": "Pass", "InputPath": "$..a", "End": True}}), r"JSONPath '\$\.\.a'"),
        (machine({"P": {"Type": "Pass", "End": True}}, QueryLanguage="JSONata"), "JSONata"),
        (machine({"P": {"Type": "Pass", "Next": "Nowhere"}}), "'Nowhere' is not a state"),
        (machine({"P": {"Type": "Pass"}}), "Next and End"),
        (
            retrying([{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["DeliveryError"]}]),
            "States.ALL must appear alone",
        ),
        (
            machine({"C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "Next": "C"}]}}),
            "exactly one operator",
        ),
    ],
)
def test_unsupported_features_are_refused_by_name(definition: dict[str, Any], message: str) -> None:
    with pytest.raises(UnsupportedDefinitionError, match=message):
        check_definition(definition)
    with pytest.raises(UnsupportedDefinitionError, match=message):
        Interpreter(definition, Recorder({}))
