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
from asyncgate_dev.template import (
    Resolver,
    Route,
    Stack,
    TemplateError,
    UnresolvableError,
    load_template,
    provision,
)


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


def test_results_bucket_is_private_encrypted_and_expires(aws_stack: Stack) -> None:
    s3 = boto3.client("s3")
    bucket = aws_stack.ref("ResultsBucket")
    assert bucket == aws_stack.output("ResultsBucketName") == "asyncgate-resultsbucket"
    assert aws_stack.get_att("ResultsBucket", "Arn") == f"arn:aws:s3:::{bucket}"
    assert aws_stack.function_environment("PollTickFunction")["RESULTS_BUCKET"] == bucket
    assert aws_stack.function_environment("StatusFunction")["RESULT_MAX_BYTES"] == str(512 * 1024 * 1024)
    assert aws_stack.function_environment("StatusFunction")["RESULT_URL_SECONDS"] == "3600"
    [rule] = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert ownership == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    [lifecycle] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    # An output is written at or before its execution turns terminal; the execution lives 7 days more.
    assert lifecycle["Status"] == "Enabled"
    assert lifecycle["Expiration"] == {"Days": 8}
    assert lifecycle["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    policy = aws_stack.resolve(aws_stack.template["Resources"]["ResultsBucketPolicy"]["Properties"])
    assert policy["Bucket"] == bucket
    [statement] = policy["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(statement["Resource"]) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    # The emulator has no TLS context (the local stack's endpoint is plain HTTP): that deny would
    # deny everything there, so it is the one statement not put on the emulated bucket.
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=bucket)


def test_a_bucket_policy_is_put_but_for_its_plain_http_deny(aws_stack: Stack) -> None:
    deny_http = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": "arn:aws:s3:::policed/*",
        "Condition": {"Bool": {"aws:SecureTransport": False}},
    }
    deny_delete = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:DeleteObject",
        "Resource": {"Fn::Sub": "${B.Arn}/*"},
    }
    template = {
        "Resources": {
            "B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "policed"}},
            "P": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": {"Ref": "B"},
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": [deny_http, deny_delete]},
                },
            },
        }
    }
    s3 = boto3.client("s3")
    provision(template, boto3.client("dynamodb"), boto3.client("sqs"), s3=s3)
    [statement] = json.loads(s3.get_bucket_policy(Bucket="policed")["Policy"])["Statement"]
    assert statement == {**deny_delete, "Resource": "arn:aws:s3:::policed/*"}


def test_a_generated_secret_honours_its_options(aws_stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "t.yaml"
    source.write_text(
        "Resources:\n"
        "  Generated:\n"
        "    Type: AWS::SecretsManager::Secret\n"
        "    Properties:\n"
        "      GenerateSecretString: {PasswordLength: 40, ExcludePunctuation: true, ExcludeCharacters: abc}\n"
        "  Templated:\n"
        "    Type: AWS::SecretsManager::Secret\n"
        "    Properties:\n"
        "      Name: !Sub '${AWS::StackName}/templated'\n"
        "      GenerateSecretString:\n"
        '        SecretStringTemplate: \'{"user": "u"}\'\n'
        "        GenerateStringKey: password\n"
        "  Given:\n"
        "    Type: AWS::SecretsManager::Secret\n"
        "    Properties: {SecretString: s3cret}\n",
        encoding="utf-8",
    )
    client = boto3.client("secretsmanager")
    stack = provision(
        load_template(source),
        boto3.client("dynamodb"),
        boto3.client("sqs"),
        secretsmanager=client,
        name_prefix="secrets",
    )

    def value(logical_id: str) -> str:
        arn = stack.ref(logical_id)
        assert arn.startswith("arn:aws:secretsmanager:us-east-1:"), "Ref of a secret is its ARN"
        assert stack.get_att(logical_id, "Id") == arn
        return client.get_secret_value(SecretId=arn)["SecretString"]

    generated = value("Generated")
    assert len(generated) == 40
    assert generated.isalnum()
    assert not set(generated) & set("abc")
    templated = json.loads(value("Templated"))
    assert templated["user"] == "u"
    assert len(templated["password"]) == 32
    assert client.describe_secret(SecretId=stack.ref("Templated"))["Name"] == "secrets/templated"
    assert value("Given") == "s3cret"


def test_unknown_bucket_properties_are_refused(aws_stack: Stack) -> None:
    template = {"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"WebsiteConfiguration": {}}}}}
    with pytest.raises(TemplateError, match="WebsiteConfiguration"):
        provision(template, boto3.client("dynamodb"), boto3.client("sqs"), s3=boto3.client("s3"))


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
        "POST /v1/callbacks/{provider}/{executionId}": "CallbacksFunction",
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


def test_the_results_are_written_by_poll_ticks_and_read_by_whoever_renders_executions(
    template: dict[str, Any],
) -> None:
    """A presigned URL of a copied output has exactly its signer's rights: whoever renders an execution
    may read the results, and nothing else of them; only the poll tick writes them. (What each function
    needs of the table is proven by running them: test_iam.py.)"""
    results = {"Fn::Sub": "${ResultsBucket.Arn}/results/*"}
    granted: dict[str, set[str]] = {}
    for logical_id, resource in template["Resources"].items():
        for statement in _statements(resource.get("Properties") or {}):
            if results in _as_list(statement["Resource"]):
                granted.setdefault(logical_id, set()).update(_as_list(statement["Action"]))
    renderers = ("StatusFunction", "ListExecutionsFunction", "CancelFunction", "NotifyFunction")
    assert granted == {
        **{renderer: {"s3:GetObject"} for renderer in (*renderers, "WebhookRedeliverFunction")},
        "PollTickFunction": {"s3:PutObject", "s3:AbortMultipartUpload"},
    }


def _resolved(stack: Stack, logical_id: str, name: str) -> Any:
    """One property of a function, resolved; None where it resolves to AWS::NoValue (left out)."""
    return stack.resolve({name: stack.function_properties(logical_id)[name]}).get(name)


RESERVING = {
    "PollTickFunction": "PollTickReservedConcurrency",
    "NotifyFunction": "NotifyReservedConcurrency",
    "DeliverFunction": "DeliverReservedConcurrency",
}


def test_background_functions_reserve_no_concurrency_by_default(template: dict[str, Any]) -> None:
    """A new account (a concurrency limit of 10) cannot reserve any: the defaults deploy anywhere."""
    stack = Stack(template=template, resolver=Resolver(template))
    for logical_id in RESERVING:
        assert _resolved(stack, logical_id, "ReservedConcurrentExecutions") is None, logical_id
    [source] = stack.sqs_event_sources()
    assert source.maximum_concurrency == 50


def test_reserved_concurrency_is_reserved_and_caps_the_poll_queue(template: dict[str, Any]) -> None:
    parameters = {parameter: str(10 + index) for index, parameter in enumerate(RESERVING.values())}
    stack = Stack(template=template, resolver=Resolver(template, parameters=parameters))
    for logical_id, parameter in RESERVING.items():
        assert _resolved(stack, logical_id, "ReservedConcurrentExecutions") == parameters[parameter]
    [source] = stack.sqs_event_sources()
    assert source.maximum_concurrency == 10, "never more ticks at once than the function may run"


def test_public_routes_are_throttled_the_callbacks_route_more(template: dict[str, Any]) -> None:
    stack = Stack(template=template, resolver=Resolver(template))
    default = stack.resolve(template["Resources"]["AsyncgateHttpApi"]["Properties"]["DefaultRouteSettings"])
    assert default == {"ThrottlingBurstLimit": "2000", "ThrottlingRateLimit": "1000"}
    throttled = {
        f"{event['Properties']['Method']} {event['Properties']['Path']}": stack.resolve(
            event["Properties"]["RouteSettings"]
        )
        for spec in stack.functions().values()
        for event in spec.events.values()
        if "RouteSettings" in event.get("Properties", {})
    }
    assert throttled == {
        "POST /v1/callbacks/{provider}/{executionId}": {
            "ThrottlingBurstLimit": "200",
            "ThrottlingRateLimit": "100",
        }
    }


def test_no_function_puts_what_it_returns_in_its_traces(aws_stack: Stack) -> None:
    for logical_id in aws_stack.functions():
        environment = aws_stack.function_environment(logical_id)
        assert environment["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false", logical_id
