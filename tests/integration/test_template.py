"""template.yaml: the loader, the provisioner, and the shape of the stack the handlers are written for."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from asyncgate_dev.handlers import FUNCTIONS_DIR, REPO_ROOT
from asyncgate_dev.template import Resolver, Route, Stack, UnresolvableError, load_template


def test_loader_turns_short_forms_into_long_forms(tmp_path: Path) -> None:
    source = tmp_path / "t.yaml"
    source.write_text(
        "Conditions:\n"
        "  IsProd: !Equals [!Ref Env, prod]\n"
        "Resources:\n"
        "  Q:\n"
        "    Type: AWS::SQS::Queue\n"
        "    Properties:\n"
        "      A: !GetAtt Dlq.Arn\n"
        "      B: !GetAtt [Dlq, QueueName]\n"
        "      C: !Sub 'arn:${AWS::Partition}:x:${Dlq.Arn}'\n"
        "      D: !Sub ['${X}-y', {X: !Ref Env}]\n"
        "      E: !If [IsProd, !Join ['-', [a, b]], !Select [1, !Split [',', 'p,q']]]\n"
        "      F: !And [!Not [!Condition IsProd], !Or [!Equals [1, 1], !Equals [1, 2]]]\n"
        "      G: !Base64 hi\n",
        encoding="utf-8",
    )
    properties = load_template(source)["Resources"]["Q"]["Properties"]
    assert properties["A"] == {"Fn::GetAtt": ["Dlq", "Arn"]}
    assert properties["B"] == {"Fn::GetAtt": ["Dlq", "QueueName"]}
    assert properties["C"] == {"Fn::Sub": "arn:${AWS::Partition}:x:${Dlq.Arn}"}
    assert properties["D"] == {"Fn::Sub": ["${X}-y", {"X": {"Ref": "Env"}}]}
    assert properties["F"] == {
        "Fn::And": [
            {"Fn::Not": [{"Condition": "IsProd"}]},
            {"Fn::Or": [{"Fn::Equals": [1, 1]}, {"Fn::Equals": [1, 2]}]},
        ]
    }

    template = {
        "Parameters": {"Env": {"Type": "String", "Default": "dev", "AllowedValues": ["dev", "prod"]}},
        "Conditions": load_template(source)["Conditions"],
        "Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": properties}, "Dlq": {}},
    }
    attributes = {("Dlq", "Arn"): "arn:aws:sqs:eu-west-1:1:dlq", ("Dlq", "QueueName"): "dlq"}
    dev = Resolver(template, attributes=attributes, region="eu-west-1")
    assert dev.resolve(properties) == {
        "A": "arn:aws:sqs:eu-west-1:1:dlq",
        "B": "dlq",
        "C": "arn:aws:x:arn:aws:sqs:eu-west-1:1:dlq",
        "D": "dev-y",
        "E": "q",
        "F": True,
        "G": "aGk=",
    }
    prod = Resolver(template, attributes=attributes, parameters={"Env": "prod"})
    assert prod.resolve(properties["E"]) == "a-b"
    assert prod.resolve(properties["F"]) is False
    assert dev.resolve({"Fn::Sub": "${!Literal}"}) == "${Literal}"


def test_resolver_fails_loudly() -> None:
    template = {"Parameters": {"P": {"Type": "String"}}, "Resources": {"T": {"Type": "AWS::X::Y"}}}
    with pytest.raises(UnresolvableError, match="no Default"):
        Resolver(template)
    resolver = Resolver(template, parameters={"P": "v"})
    with pytest.raises(UnresolvableError, match="not provisioned"):
        resolver.resolve({"Ref": "T"})
    with pytest.raises(UnresolvableError, match=r"T\.Arn"):
        resolver.resolve({"Fn::Sub": "${T.Arn}"})
    with pytest.raises(UnresolvableError, match="Fn::Nope"):
        resolver.resolve({"Fn::Nope": 1})


def test_template_resolves_outputs_and_environment(aws_stack: Stack) -> None:
    with pytest.raises(UnresolvableError, match="AsyncgateHttpApi"):
        aws_stack.output("ApiUrl")
    aws_stack.set_physical("AsyncgateHttpApi", "abc123")
    assert aws_stack.output("ApiUrl") == "https://abc123.execute-api.us-east-1.amazonaws.com"

    environment = aws_stack.function_environment("StatusFunction")
    assert environment["TABLE_NAME"] == aws_stack.ref("ExecutionsTable") == "asyncgate-ExecutionsTable"
    assert environment["POLL_QUEUE_URL"] == aws_stack.ref("PollQueue")
    assert environment["RETENTION_DAYS"] == "7"
    assert environment["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert environment["SIM_PROVIDER_URL"] == ""
    assert aws_stack.functions()["StatusFunction"].timeout == 30
    assert aws_stack.functions()["ModelsFunction"].timeout == 10, "Globals default"
    assert aws_stack.functions()["SubmitFunction"].timeout == 29


def test_table_has_both_indexes_ttl_and_stream(aws_stack: Stack) -> None:
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.describe_table(TableName=aws_stack.ref("ExecutionsTable"))["Table"]
    assert {key["AttributeName"]: key["KeyType"] for key in table["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"ByTenant", "ByDue"}
    assert [key["AttributeName"] for key in indexes["ByTenant"]["KeySchema"]] == ["tenantShard", "createdKey"]
    assert indexes["ByTenant"]["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["status", "model"],
    }
    assert [key["AttributeName"] for key in indexes["ByDue"]["KeySchema"]] == ["dueShard", "nextPollAt"]
    # The counter audit reads tenants from the due index alone.
    assert indexes["ByDue"]["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["tenant"]}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert aws_stack.get_att("ExecutionsTable", "StreamArn") == table["LatestStreamArn"]

    ttl = dynamodb.describe_time_to_live(TableName=aws_stack.ref("ExecutionsTable"))
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}


def test_poll_queue_redrives_to_the_dead_letter_queue(aws_stack: Stack) -> None:
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=aws_stack.ref("PollQueue"), AttributeNames=["All"])[
        "Attributes"
    ]
    dlq_arn = aws_stack.get_att("PollDeadLetterQueue", "Arn")
    assert dlq_arn.endswith(":asyncgate-PollDeadLetterQueue")
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == 5
    assert attributes["VisibilityTimeout"] == "720"
    assert attributes["MessageRetentionPeriod"] == "345600"
    dlq = sqs.get_queue_attributes(
        QueueUrl=aws_stack.ref("PollDeadLetterQueue"), AttributeNames=["MessageRetentionPeriod"]
    )
    assert dlq["Attributes"]["MessageRetentionPeriod"] == "1209600"


def test_aws_stack_puts_the_function_environment_in_os_environ(aws_stack: Stack) -> None:
    assert os.environ["TABLE_NAME"] == aws_stack.ref("ExecutionsTable")
    assert os.environ["POLL_QUEUE_URL"] == aws_stack.ref("PollQueue")


def test_every_function_directory_exists(aws_stack: Stack) -> None:
    if not any(FUNCTIONS_DIR.glob("*/app.py")):
        pytest.skip("functions/ is not written yet")
    for logical_id, function in aws_stack.functions().items():
        directory = aws_stack.function_dir(logical_id)
        assert directory.resolve().parent == FUNCTIONS_DIR, f"{logical_id}: {function.code_uri}"
        assert (directory / "app.py").is_file(), f"{logical_id}: no {function.code_uri}app.py"
        assert function.handler == "app.lambda_handler"
    assert (REPO_ROOT / "layers" / "asyncgate" / "requirements.txt").is_file()


def test_http_routes(aws_stack: Stack) -> None:
    routes = aws_stack.http_routes()
    assert (
        Route("POST", "/v1/executions", "SubmitFunction", "functions/submit/", "AsyncgateHttpApi") in routes
    )
    by_key = {route.route_key: route.function for route in routes}
    assert len(by_key) == len(routes), "no route is listed twice"
    assert by_key == {
        "POST /v1/executions": "SubmitFunction",
        "GET /v1/executions": "ListExecutionsFunction",
        "GET /v1/executions/{executionId}": "StatusFunction",
        "POST /v1/executions/{executionId}/cancel": "CancelFunction",
        "DELETE /v1/executions/{executionId}": "CancelFunction",
        "GET /v1/models": "ModelsFunction",
        "GET /v1/account": "AccountFunction",
        "GET /v1/webhooks": "WebhooksFunction",
        "POST /v1/webhooks": "WebhooksFunction",
        "DELETE /v1/webhooks/{endpointId}": "WebhooksFunction",
        "POST /v1/webhooks/{endpointId}/rotate-secret": "WebhooksFunction",
        "GET /v1/webhooks/secret": "WebhooksFunction",
        "POST /v1/executions/{executionId}/webhook-redeliver": "WebhookRedeliverFunction",
        "$default": "NotFoundFunction",
    }
    assert {route.api for route in routes} == {"AsyncgateHttpApi"}


def test_event_sources_and_schedules(aws_stack: Stack) -> None:
    sources = aws_stack.sqs_event_sources()
    assert sources, "the poll queue drives a function"
    for source in sources:
        assert source.function_response_types == ("ReportBatchItemFailures",), source.function
        timeout = aws_stack.functions()[source.function].timeout
        visibility = aws_stack.resolve(
            aws_stack.template["Resources"][source.queue]["Properties"]["VisibilityTimeout"]
        )
        assert int(visibility) >= 6 * timeout, "AWS's advice: visibility timeout six times the function's"
    assert [(s.function, s.queue, s.batch_size) for s in sources] == [("PollTickFunction", "PollQueue", 10)]
    assert [(s.function, s.expression, s.input) for s in aws_stack.schedules()] == [
        ("SweeperFunction", "rate(1 minute)", None),
        ("SweeperFunction", "rate(10 minutes)", '{"task": "audit"}'),
    ]


def _statements(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        for item in value:
            yield from _statements(item)
    elif isinstance(value, dict):
        statements = value.get("Statement")
        if statements is not None:
            yield from statements if isinstance(statements, list) else [statements]
        for item in value.values():
            yield from _statements(item)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_policy_grants_every_action_on_every_resource(template: dict[str, Any]) -> None:
    for logical_id, resource in template["Resources"].items():
        for statement in _statements(resource.get("Properties") or {}):
            actions, resources = (
                _as_list(statement.get("Action", [])),
                _as_list(statement.get("Resource", [])),
            )
            assert not ("*" in actions and "*" in resources), f"{logical_id}: {statement}"
        for policy in _as_list((resource.get("Properties") or {}).get("Policies", [])):
            assert not (
                isinstance(policy, str) and policy.endswith(("AdministratorAccess", "PowerUserAccess"))
            ), logical_id


def test_functions_get_least_privilege_table_access(template: dict[str, Any]) -> None:
    def policy_names(logical_id: str) -> set[str]:
        policies = template["Resources"][logical_id]["Properties"].get("Policies", [])
        return {name for policy in policies if isinstance(policy, dict) for name in policy}

    for reader in ("StatusFunction", "ListExecutionsFunction", "ModelsFunction"):
        assert policy_names(reader) == {"DynamoDBReadPolicy"}, reader
    for writer in ("CancelFunction", "SweeperFunction"):
        assert policy_names(writer) == {"DynamoDBCrudPolicy", "SQSSendMessagePolicy"}, writer
    # The two that call providers may also read their keys, and only keys named under asyncgate/.
    for caller in ("SubmitFunction", "PollTickFunction"):
        assert policy_names(caller) == {"DynamoDBCrudPolicy", "SQSSendMessagePolicy", "Statement"}, caller
        [keys] = [
            p["Statement"]
            for p in template["Resources"][caller]["Properties"]["Policies"]
            if "Statement" in p
        ]
        assert [(s["Action"], s["Resource"]["Fn::Sub"].split("}:")[-1]) for s in keys] == [
            ("ssm:GetParameter", "parameter/asyncgate/*"),
            ("secretsmanager:GetSecretValue", "secret:asyncgate/*"),
        ]
    assert policy_names("WebhooksFunction") == {"DynamoDBCrudPolicy"}
    assert policy_names("WebhookRedeliverFunction") == {"DynamoDBCrudPolicy", "StepFunctionsExecutionPolicy"}
    assert policy_names("NotFoundFunction") == set()
