"""Least privilege, proven by running the functions. Real scenarios go through the real handlers on moto
while every AWS call each function makes is recorded (a botocore hook on the layer's clients and on the
clients Powertools reads secrets with), turned into the IAM actions and resources it needs, and checked
against that function's own policies in template.yaml, SAM's policy templates expanded to the statements
they stand for. And what the template grants: no Crud policy, secrets only under the stack's prefix."""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

from asyncgate import aws
from asyncgate.api.http import forget_principals
from asyncgate.domain.clock import utcnow
from asyncgate.providers.registry import forget_providers
from asyncgate.services.deps import default_deps
from asyncgate.services.ticks import MAX_FAILED_TICKS
from asyncgate.store.items import execution_key, tenant_key
from asyncgate_dev.apigw import HttpAnswer, http_event
from asyncgate_dev.handlers import TEMPLATE_PATH, load_event, load_handler
from asyncgate_dev.lambda_runtime import LambdaContext
from asyncgate_dev.receiver import WebhookReceiver, always
from asyncgate_dev.streams import lambda_record, passes_filters
from asyncgate_dev.template import FUNCTION_TYPE, Stack, load_template
from tests.fakes import Answer, FakeApi
from tests.integration.conftest import forget_container_state
from tests.integration.driver import ROUTES, Gateway

Statement = dict[str, Any]
Need = tuple[str, str]  # (IAM action, resource ARN)
TERMINAL = {"succeeded", "failed", "cancelled"}
LONG_JOB = {"durationSeconds": 60}


# --------------------------------------------------------------------------------------------- ARNs


@dataclass(frozen=True)
class Arns:
    partition: str
    region: str
    account: str

    @classmethod
    def of(cls, stack: Stack) -> Arns:
        pseudo = stack.resolver.pseudo
        return cls(pseudo["AWS::Partition"], pseudo["AWS::Region"], pseudo["AWS::AccountId"])

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"

    def table(self, name: str) -> str:
        return self._arn("dynamodb", f"table/{name}")

    def queue(self, name: str) -> str:
        return self._arn("sqs", name)

    def queue_of_url(self, url: str) -> str:
        account, name = urlsplit(url).path.strip("/").split("/")
        return f"arn:{self.partition}:sqs:{self.region}:{account}:{name}"

    def function(self, name: str) -> str:
        return self._arn("lambda", f"function:{name}")

    def state_machine(self, name: str) -> str:
        return self._arn("states", f"stateMachine:{name}")

    def secret(self, secret_id: str) -> str:
        # A secret asked for by name is authorized on its ARN, which ends in a random suffix.
        return (
            secret_id
            if secret_id.startswith("arn:")
            else self._arn("secretsmanager", f"secret:{secret_id}-??????")
        )

    def parameter(self, name: str) -> str:
        return self._arn("ssm", f"parameter/{name.lstrip('/')}")

    def object(self, bucket: str, key: str) -> str:
        return f"arn:{self.partition}:s3:::{bucket}/{key}"


# ----------------------------------------------------------------------------------------- what a call needs

# The item actions a transaction needs (it needs no permission of its own).
TRANSACTION_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}
# S3 operations and the action each is authorized by (a presigned GET is the signer's s3:GetObject).
S3_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
}


def needs(arns: Arns, service: str, operation: str, params: Mapping[str, Any]) -> list[Need]:
    """The IAM actions and resources one API call is authorized by. A call not mapped here is needed as
    `unmapped:...`, which no policy allows: the check then names it."""
    if service == "dynamodb":
        if operation in ("TransactWriteItems", "TransactGetItems"):
            return [
                (TRANSACTION_ITEM_ACTIONS[kind], arns.table(body["TableName"]))
                for item in params["TransactItems"]
                for kind, body in item.items()
            ]
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{operation}", arns.table(table)) for table in params["RequestItems"]]
        index = f"/index/{params['IndexName']}" if "IndexName" in params else ""
        return [(f"dynamodb:{operation}", arns.table(params["TableName"]) + index)]
    if service == "sqs" and "QueueUrl" in params:
        action = "SendMessage" if operation == "SendMessageBatch" else operation
        return [(f"sqs:{action}", arns.queue_of_url(params["QueueUrl"]))]
    if service == "s3" and operation in S3_ACTIONS:
        return [(S3_ACTIONS[operation], arns.object(params["Bucket"], params["Key"]))]
    if service == "stepfunctions" and operation == "StartExecution":
        return [("states:StartExecution", params["stateMachineArn"])]
    if service == "secretsmanager" and operation == "GetSecretValue":
        return [("secretsmanager:GetSecretValue", arns.secret(params["SecretId"]))]
    if service == "ssm" and operation == "GetParameter":
        return [("ssm:GetParameter", arns.parameter(params["Name"]))]
    return [(f"unmapped:{service}.{operation}", "*")]


# -------------------------------------------------------------------------------------- what a policy allows


def _allow(actions: list[str], resources: list[str]) -> Statement:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def _table_and_indexes(arns: Arns, table: str) -> list[str]:
    return [arns.table(table), f"{arns.table(table)}/index/*"]


# SAM's policy templates, as samtranslator's policy_templates.json defines them; a template used in
# template.yaml and missing here fails the check (KeyError) until it is added.
SAM_POLICY_TEMPLATES: dict[str, Callable[[Arns, Mapping[str, str]], list[Statement]]] = {
    "DynamoDBCrudPolicy": lambda arns, p: [
        _allow(
            [
                "dynamodb:GetItem",
                "dynamodb:DeleteItem",
                "dynamodb:PutItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:BatchGetItem",
                "dynamodb:DescribeTable",
                "dynamodb:ConditionCheckItem",
            ],
            _table_and_indexes(arns, p["TableName"]),
        )
    ],
    "DynamoDBReadPolicy": lambda arns, p: [
        _allow(
            [
                "dynamodb:GetItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:BatchGetItem",
                "dynamodb:DescribeTable",
            ],
            _table_and_indexes(arns, p["TableName"]),
        )
    ],
    "SQSSendMessagePolicy": lambda arns, p: [_allow(["sqs:SendMessage*"], [arns.queue(p["QueueName"])])],
    "LambdaInvokePolicy": lambda arns, p: [
        _allow(["lambda:InvokeFunction"], [arns.function(p["FunctionName"]) + "*"])
    ],
    "StepFunctionsExecutionPolicy": lambda arns, p: [
        _allow(["states:StartExecution"], [arns.state_machine(p["StateMachineName"])])
    ],
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(stack: Stack, logical_id: str) -> list[Statement]:
    """Every statement of the function's policies, resolved against the provisioned stack."""
    arns = Arns.of(stack)
    statements: list[Statement] = []
    for policy in _as_list(stack.template["Resources"][logical_id]["Properties"].get("Policies", [])):
        assert isinstance(policy, dict), f"{logical_id}: a managed policy {policy!r} is not checked here"
        if "Statement" in policy:
            statements.extend(_as_list(stack.resolve(policy["Statement"])))
            continue
        [(name, parameters)] = policy.items()
        statements.extend(SAM_POLICY_TEMPLATES[name](arns, stack.resolve(parameters)))
    return statements


def _table_actions(statements: list[Statement]) -> set[str]:
    return {
        action
        for statement in statements
        if statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"])
        if action.startswith("dynamodb:")
    }


def _wildcard(pattern: str, value: str, *, ignore_case: bool) -> bool:
    """IAM's matching: `*` any run of characters, `?` any one."""
    regex = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def allows(statements: list[Statement], action: str, resource: str) -> bool:
    allowed = False
    for statement in statements:
        unsupported = set(statement) - {"Sid", "Effect", "Action", "Resource"}
        assert not unsupported, f"not checked here: {sorted(unsupported)} in {statement}"
        if any(
            _wildcard(pattern, action, ignore_case=True) for pattern in _as_list(statement["Action"])
        ) and any(
            _wildcard(pattern, resource, ignore_case=False) for pattern in _as_list(statement["Resource"])
        ):
            if statement["Effect"] == "Deny":
                return False
            allowed = True
    return allowed


# --------------------------------------------------------------------------------------------- recording


class CallRecorder:
    """What each function needs, from the calls it made while it was the one invoked (the S3 transfer
    threads of a copy included: one function runs at a time here)."""

    EVENT = "provide-client-params"  # every call, and every presigned URL, passes through it

    def __init__(self, arns: Arns) -> None:
        self.arns = arns
        self.needs: dict[str, set[Need]] = defaultdict(set)
        self.invoked: set[str] = set()
        self._current: str | None = None
        self._lock = threading.Lock()

    def _record(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        function = self._current
        if function is not None:
            found = needs(self.arns, model.service_model.service_name, model.name, params)
            with self._lock:
                self.needs[function].update(found)

    @contextmanager
    def watching(self, clients: list[Any]) -> Iterator[CallRecorder]:
        for client in clients:
            client.meta.events.register(self.EVENT, self._record)
        try:
            yield self
        finally:
            for client in clients:
                client.meta.events.unregister(self.EVENT, self._record)

    @contextmanager
    def invoking(self, function: str) -> Iterator[None]:
        # A cold container: keys and secrets are read, never served from another function's cache.
        for provider in DEFAULT_PROVIDERS.values():
            provider.clear_cache()
        forget_providers()
        forget_principals()
        self._current = function
        self.invoked.add(function)
        try:
            yield
        finally:
            self._current = None


class RecordingGateway(Gateway):
    """The driver's gateway, each call attributed to the function that serves it."""

    def __init__(self, gateway: Gateway, recorder: CallRecorder, functions: dict[str, str]) -> None:
        super().__init__(gateway.sqs, gateway.poll_queue_url, gateway.poll_tick_timeout)
        self.recorder = recorder
        # function directory -> logical id
        self.functions = functions

    def call(self, operation: str, **kwargs: Any) -> HttpAnswer:
        with self.recorder.invoking(self.functions[ROUTES[operation][0]]):
            return super().call(operation, **kwargs)

    def tick_once(self) -> int:
        with self.recorder.invoking(self.functions["poll_tick"]):
            return super().tick_once()

    def invoke(self, directory: str, event: dict[str, Any]) -> Any:
        with self.recorder.invoking(self.functions[directory]):
            return load_handler(directory).lambda_handler(event, LambdaContext(function_name=directory))


# --------------------------------------------------------------------------------------------- scenarios


@pytest.fixture
def recorded(
    gateway: Gateway, aws_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RecordingGateway]:
    # Outputs and webhooks on loopback (the sim's files, the receivers).
    monkeypatch.setenv("ALLOW_LOOPBACK_WEBHOOKS", "true")
    forget_container_state()
    # Powertools reads secrets with clients of its own: give it clients the recorder watches.
    ssm, secrets = boto3.client("ssm"), boto3.client("secretsmanager")
    monkeypatch.setitem(DEFAULT_PROVIDERS, "ssm", SSMProvider(boto3_client=ssm))
    monkeypatch.setitem(DEFAULT_PROVIDERS, "secrets", SecretsProvider(boto3_client=secrets))
    functions = {
        PurePosixPath(spec.code_uri).name: logical_id for logical_id, spec in aws_stack.functions().items()
    }
    recorder = CallRecorder(Arns.of(aws_stack))
    clients = [aws.dynamodb(), aws.sqs(), aws.s3(), aws.stepfunctions(), ssm, secrets]
    with recorder.watching(clients):
        yield RecordingGateway(gateway, recorder, functions)


def _accepted(answer: HttpAnswer) -> str:
    assert answer.status in (200, 202), answer.body
    execution_id: str = answer.json()["executionId"]
    return execution_id


def _finished(gateway: Gateway, execution_id: str) -> dict[str, Any]:
    return gateway.drain_until(execution_id, lambda execution: execution["status"] in TERMINAL)


def _jobs_run_and_are_cancelled(gateway: RecordingGateway, webhook_url: str) -> str:
    """Inline and queued dispatch to the end (outputs copied), cancels of a running and a queued job."""
    inline = _accepted(gateway.submit(sim={"durationSeconds": 0.2}, webhook={"url": webhook_url}))
    queued = _accepted(gateway.submit("sim-image", sim={"durationSeconds": 0.2}))
    assert _finished(gateway, inline)["result"]["outputs"][0]["stored"]
    assert _finished(gateway, queued)["status"] == "succeeded"
    running = _accepted(gateway.submit(sim=LONG_JOB))
    assert gateway.call("cancel", execution_id=running).status == 200
    assert _finished(gateway, running)["status"] == "cancelled"
    waiting = _accepted(gateway.submit("sim-image", sim=LONG_JOB))
    assert gateway.call("cancel_delete", execution_id=waiting).status == 200
    once = {"Idempotency-Key": "iam-1"}
    first = _accepted(gateway.submit(sim={"durationSeconds": 0.2}, headers=once))
    assert _accepted(gateway.submit(sim={"durationSeconds": 0.2}, headers=once)) == first
    assert gateway.submit(sim={"submitStatus": 500}).status == 500
    return inline


def _reads(gateway: RecordingGateway, execution_id: str) -> None:
    for operation in ("list_executions", "account", "models", "webhooks_list", "webhooks_secret"):
        assert gateway.call(operation).status == 200, operation
    assert gateway.call("status", execution_id=execution_id, query="waitSeconds=1").status == 200
    unknown = http_event("GET", "/v1/nothing", route_key="$default", headers={"x-api-key": "k"})
    assert gateway.invoke("not_found", unknown)["statusCode"] == 404


def _endpoints(gateway: RecordingGateway, url: str) -> None:
    created = gateway.call("webhooks_create", body={"url": url})
    assert created.status == 201, created.body
    endpoint = created.json()["id"]
    assert gateway.call("webhooks_rotate", endpoint_id=endpoint).status == 200
    assert gateway.call("webhooks_delete", endpoint_id=endpoint).status == 204


def _terminal_write(stack: Stack, execution_id: str) -> dict[str, Any]:
    """The notify function's event for an execution's terminal write, as its stream record comes."""
    [source] = [source for source in stack.dynamodb_event_sources() if source.function == "NotifyFunction"]
    key = execution_key(execution_id)
    item = boto3.client("dynamodb").get_item(TableName=stack.ref(source.table), Key=key, ConsistentRead=True)
    change = {
        "Keys": key,
        "OldImage": {**item["Item"], "status": {"S": "running"}},
        "NewImage": item["Item"],
        "SequenceNumber": "1",
        "SizeBytes": 1,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    raw = {"eventID": "1", "eventName": "MODIFY", "dynamodb": change}
    record = lambda_record(raw, stack.get_att(source.table, "StreamArn"), stack.resolver.region)
    assert passes_filters(source.filter_patterns, record)
    return {"Records": [record]}


def _webhook_deliveries(gateway: RecordingGateway, stack: Stack, execution_id: str) -> None:
    """notify's first attempts (failing), the state machine's attempts 2-5 by deliver, then a redelivery."""
    assert gateway.invoke("notify", _terminal_write(stack, execution_id)) == {"batchItemFailures": []}
    stepfunctions = boto3.client("stepfunctions")
    machine = stack.ref("WebhookDeliveryStateMachine")
    [chain] = [
        json.loads(stepfunctions.describe_execution(executionArn=started["executionArn"])["input"])
        for started in stepfunctions.list_executions(stateMachineArn=machine)["executions"]
    ]
    assert chain["delivery"]["executionId"] == execution_id
    for attempt in range(2, 6):
        gateway.invoke("deliver", {**chain, "attempt": attempt})
    assert gateway.status(execution_id)["webhook"]["state"] == "failed"
    assert gateway.call("webhook_redeliver", execution_id=execution_id).status == 202


def _callbacks(gateway: RecordingGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider calling back (the callback key read from its secret), and one refused."""
    with WebhookReceiver() as provider_side:
        monkeypatch.setenv("PUBLIC_URL", provider_side.url.removesuffix("/hook"))
        monkeypatch.setenv("PROVIDER_CALLBACKS", "on")
        forget_container_state()
        execution_id = _accepted(gateway.submit(sim={"durationSeconds": 0.2}))
        queued = _accepted(gateway.submit("sim-image", sim={"durationSeconds": 0.2}))
        gateway.drain_until(queued, lambda execution: execution["status"] == "running")
        callbacks = provider_side.wait_for(2)
    for callback in callbacks:
        parts = urlsplit(callback.path)
        provider, callback_for = parts.path.strip("/").split("/")[-2:]
        answer = gateway.call(
            "callback",
            provider=provider,
            execution_id=callback_for,
            key=None,
            query=parts.query,
            raw_body=callback.body,
        )
        assert answer.status == 200, answer.body
    forged = gateway.call("callback", provider="sim", execution_id=execution_id, key=None, query="token=x")
    assert forged.status == 401
    _finished(gateway, execution_id)
    monkeypatch.setenv("PROVIDER_CALLBACKS", "off")
    forget_container_state()


def _sweeps(gateway: RecordingGateway, monkeypatch: pytest.MonkeyPatch, hopeless: str) -> None:
    """An hour from now (every live job overdue) the sweeper re-arms a job whose tick was lost and gives
    up `hopeless`, whose ticks kept being lost (cancelling its provider job); an hour later (the account
    quiet) the audit repairs a drifted counter."""
    _accepted(gateway.submit(sim=LONG_JOB))
    deps = default_deps()
    table = boto3.client("dynamodb")  # the test's own writes, nobody's calls
    table.update_item(
        TableName=deps.settings.table_name,
        Key=execution_key(hopeless),
        UpdateExpression="SET failedTicks = :lost",
        ExpressionAttributeValues={":lost": {"N": str(MAX_FAILED_TICKS - 1)}},
    )
    table.update_item(
        TableName=deps.settings.table_name,
        Key=tenant_key("tenant-a"),
        UpdateExpression="SET liveExecutions = :wrong",
        ExpressionAttributeValues={":wrong": {"N": "99"}},
    )
    with monkeypatch.context() as later:
        later.setattr(deps, "clock", lambda: utcnow() + timedelta(hours=1))
        swept = gateway.invoke("sweeper", load_event("sweeper"))
        assert (swept["rearmed"], swept["givenUp"]) == (1, 1), swept
        later.setattr(deps, "clock", lambda: utcnow() + timedelta(hours=2))
        assert gateway.invoke("sweeper", load_event("sweeper_audit"))["drifts"] == 1


def _provider_jobs(gateway: RecordingGateway, aws_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real provider's adapter (fal, faked on loopback) whose key is an SSM parameter of the stack: a
    job submitted, polled, cancelled; another given up by the sweeper."""
    name = f"/asyncgate/{aws_stack.resolver.stack_name}/fal-key"
    boto3.client("ssm").put_parameter(Name=name, Value="fal-key-id:fal-secret", Type="SecureString")
    with FakeApi() as fal:
        monkeypatch.setenv("FAL_KEY_PARAMETER", name)
        monkeypatch.setenv("ASYNCGATE_FAL_URL", fal.url)
        forget_container_state()
        fal.on(
            "POST",
            "/fal-ai/flux/schnell",
            Answer(200, {"request_id": "one"}),
            Answer(200, {"request_id": "two"}),
        )
        fal.on(
            "GET",
            "/fal-ai/flux/requests/one/status",
            Answer(200, {"status": "IN_QUEUE", "queue_position": 2}),
            Answer(200, {"status": "COMPLETED"}),
        )
        fal.on("GET", "/fal-ai/flux/requests/one", Answer(200, {"images": []}))
        for job in ("one", "two"):
            fal.on(
                "PUT",
                f"/fal-ai/flux/requests/{job}/cancel",
                Answer(202, {"status": "CANCELLATION_REQUESTED"}),
            )
        flux = {"model": "flux-schnell", "input": {"prompt": "a"}}
        execution_id = _accepted(gateway.call("submit", body=flux))
        gateway.drain_until(execution_id, lambda execution: execution["pollCount"] >= 1)
        assert gateway.call("cancel", execution_id=execution_id).status == 200
        _finished(gateway, execution_id)
        _sweeps(gateway, monkeypatch, hopeless=_accepted(gateway.call("submit", body=flux)))
        assert [seen.method for seen in fal.seen if seen.path.endswith("/two/cancel")] == ["PUT"]
        assert {seen.headers["authorization"] for seen in fal.seen} == {"Key fal-key-id:fal-secret"}


def test_every_call_a_function_makes_is_allowed_by_its_own_policies(
    recorded: RecordingGateway, aws_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver(always(500)) as failing_receiver:
        execution_id = _jobs_run_and_are_cancelled(recorded, failing_receiver.url)
        _reads(recorded, execution_id)
        _endpoints(recorded, failing_receiver.url)
        _webhook_deliveries(recorded, aws_stack, execution_id)
    _callbacks(recorded, monkeypatch)
    _provider_jobs(recorded, aws_stack, monkeypatch)

    recorder = recorded.recorder
    assert recorder.invoked == set(aws_stack.functions()), "every function ran"
    denied = {
        function: sorted(need for need in calls if not allows(policy_statements(aws_stack, function), *need))
        for function, calls in recorder.needs.items()
    }
    assert {function: found for function, found in denied.items() if found} == {}
    # Nor more than that: every table action a function may take, it took.
    unused = {
        function: sorted(granted - {action for action, _ in recorder.needs[function]})
        for function in recorder.invoked
        if (granted := _table_actions(policy_statements(aws_stack, function)))
    }
    assert {function: found for function, found in unused.items() if found} == {}
    # And the calls the scenarios are there for did happen.
    arns = Arns.of(aws_stack)
    table = arns.table(aws_stack.ref("ExecutionsTable"))
    provider_key = ("ssm:GetParameter", arns.parameter(f"/asyncgate/{aws_stack.resolver.stack_name}/fal-key"))
    for reader in ("SubmitFunction", "PollTickFunction", "SweeperFunction"):
        assert provider_key in recorder.needs[reader], reader
    callback_key = ("secretsmanager:GetSecretValue", aws_stack.ref("CallbackSecret"))
    for reader in ("SubmitFunction", "PollTickFunction", "CallbacksFunction"):
        assert callback_key in recorder.needs[reader], reader
    assert ("dynamodb:DeleteItem", table) in recorder.needs["WebhooksFunction"], "a transaction's items"
    assert ("dynamodb:Query", f"{table}/index/ByTenant") in recorder.needs["ListExecutionsFunction"]
    for renderer in (
        "StatusFunction",
        "ListExecutionsFunction",
        "NotifyFunction",
        "WebhookRedeliverFunction",
    ):
        assert any(action == "s3:GetObject" for action, _ in recorder.needs[renderer]), renderer
    assert any(action == "s3:PutObject" for action, _ in recorder.needs["PollTickFunction"])


# ---------------------------------------------------------------------------------- what the template grants

TEMPLATE = load_template(TEMPLATE_PATH)
FUNCTIONS = [name for name, resource in TEMPLATE["Resources"].items() if resource["Type"] == FUNCTION_TYPE]
# Who reads provider keys (submit, poll ticks, a given-up job's cancel, callback signatures) and the
# callback key.
SECRET_READERS = {"SubmitFunction", "PollTickFunction", "SweeperFunction", "CallbacksFunction"}
STACK_SECRETS = {
    "ssm:GetParameter": (
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/asyncgate/${AWS::StackName}/*"
    ),
    "secretsmanager:GetSecretValue": (
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:asyncgate/${AWS::StackName}/*"
    ),
}


def _policies(function: str) -> list[Any]:
    return _as_list(TEMPLATE["Resources"][function]["Properties"].get("Policies", []))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_function_has_a_crud_policy(function: str) -> None:
    """None needs Scan, batch writes or every item action (the scenarios above show what each needs)."""
    assert not [policy for policy in _policies(function) if "DynamoDBCrudPolicy" in policy]


def test_secrets_are_read_only_under_the_stacks_own_prefix() -> None:
    readers: dict[str, set[str]] = defaultdict(set)
    for function in FUNCTIONS:
        for policy in _policies(function):
            for statement in _as_list(policy.get("Statement", [])) if isinstance(policy, dict) else []:
                for action in _as_list(statement["Action"]):
                    if action.startswith(("ssm:", "secretsmanager:")):
                        assert statement["Resource"] == {"Fn::Sub": STACK_SECRETS[action]}, function
                        readers[function].add(action)
    assert readers == {function: set(STACK_SECRETS) for function in SECRET_READERS}


@pytest.mark.parametrize("key", [name for name in TEMPLATE["Parameters"] if name.endswith("KeyParameter")])
def test_key_parameters_name_the_stacks_own_secrets(key: str) -> None:
    pattern = TEMPLATE["Parameters"][key]["AllowedPattern"]
    for allowed in (
        "",
        "/asyncgate/prod/replicate",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:asyncgate/prod/fal-AbCdEf",
    ):
        assert re.fullmatch(pattern, allowed), allowed
    for refused in (
        "/asyncgate/replicate",
        "/other/prod/key",
        "arn:aws:secretsmanager:eu-west-1:1:secret:other-x",
    ):
        assert not re.fullmatch(pattern, refused), refused
