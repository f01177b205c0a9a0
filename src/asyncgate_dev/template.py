"""The SAM template, read the way CloudFormation reads it, and its state provisioned on any AWS endpoint.

`load_template` parses `template.yaml` with every CloudFormation short-form tag (`!Ref`, `!GetAtt`,
`!Sub`, ...) turned into its long JSON form. `Resolver` evaluates the intrinsic functions against known
physical values, parameters and pseudo parameters, and raises `UnresolvableError` on anything it cannot
evaluate rather than guessing. `provision` creates the template's DynamoDB tables, SQS queues, S3
buckets and Secrets Manager secrets through the boto3 clients it is given (moto in the tests, the
embedded emulator in the local stack) and returns a `Stack` that answers what the deployed stack would:
physical names, function environments, HTTP routes, event source mappings and schedules.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, cast

import yaml

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "NO_VALUE",
    "CfnLoader",
    "DynamoDbEventSource",
    "FunctionSpec",
    "Resolver",
    "Route",
    "Schedule",
    "SqsEventSource",
    "Stack",
    "StateMachineSpec",
    "TemplateError",
    "UnresolvableError",
    "load_template",
    "provision",
]

DEFAULT_ACCOUNT_ID: Final = "123456789012"
TABLE_TYPE: Final = "AWS::DynamoDB::Table"
QUEUE_TYPE: Final = "AWS::SQS::Queue"
BUCKET_TYPE: Final = "AWS::S3::Bucket"
BUCKET_POLICY_TYPE: Final = "AWS::S3::BucketPolicy"
SECRET_TYPE: Final = "AWS::SecretsManager::Secret"  # noqa: S105 - a resource type, not a secret
FUNCTION_TYPE: Final = "AWS::Serverless::Function"
STATE_MACHINE_TYPES: Final = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


class TemplateError(Exception):
    """The template is malformed or asks for something this module does not support."""


class UnresolvableError(TemplateError):
    """An intrinsic function, reference or parameter that cannot be evaluated with what is known."""


# --------------------------------------------------------------------------------------------- loading


class CfnLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]  # untyped without types-PyYAML
    """A safe YAML loader that understands CloudFormation's short-form intrinsic function tags."""


def _construct_node(loader: CfnLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise TemplateError(f"unsupported YAML node {node!r}")  # pragma: no cover - yaml has only three


def _long_form(function: str) -> Callable[[CfnLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
        return {function: _construct_node(loader, node)}

    return construct


def _construct_get_att(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct_node(loader, node)
    if isinstance(value, str):
        logical_id, dot, attribute = value.partition(".")
        if not dot or not logical_id or not attribute:
            raise TemplateError(f"!GetAtt {value!r}: expected LogicalId.Attribute")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {"Fn::GetAtt": value}


_SHORT_FORMS: Final = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "Sub",
            "Join",
            "If",
            "Equals",
            "Select",
            "Split",
            "GetAZs",
            "ImportValue",
            "FindInMap",
            "Not",
            "And",
            "Or",
            "Base64",
            "Cidr",
            "Length",
            "ToJsonString",
        )
    },
}

for _tag, _function in _SHORT_FORMS.items():
    CfnLoader.add_constructor(f"!{_tag}", _long_form(_function))
CfnLoader.add_constructor("!GetAtt", _construct_get_att)


def load_template(path: Path) -> dict[str, Any]:
    """The template at `path` as CloudFormation sees it: short-form tags in their long JSON forms."""
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources mapping)")
    return cast("dict[str, Any]", document)


# --------------------------------------------------------------------------------------------- resolving


class _NoValue:
    """`AWS::NoValue`: the property it is the value of is removed."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Final = _NoValue()

_SUB_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")


def _sub_names(template: str) -> Iterator[str]:
    """The variable names a Fn::Sub string refers to (`${!Literal}` escapes excluded)."""
    for match in _SUB_VARIABLE.finditer(template):
        name = match.group(1).strip()
        if name and not name.startswith("!"):
            yield name


def _as_text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise UnresolvableError(f"{where}: expected a string, got {value!r}")


def _parameter_text(value: Any) -> str | list[str]:
    if isinstance(value, list):
        return [_as_text(item, "parameter") for item in value]
    return _as_text(value, "parameter")


def _single_key(value: Mapping[str, Any]) -> str | None:
    if len(value) != 1:
        return None
    (key,) = value
    return key if key == "Ref" or key.startswith("Fn::") else None


@dataclass
class Resolver:
    """Evaluates CloudFormation intrinsic functions.

    `refs` maps a logical id to what `Ref` returns, `attributes` maps (logical id, attribute) to what
    `Fn::GetAtt` returns. `parameters` overrides the template's parameter defaults; `pseudo` overrides the
    pseudo parameters (AWS::Region, AWS::AccountId, ...). Anything not known raises UnresolvableError.
    """

    template: Mapping[str, Any]
    refs: dict[str, Any] = field(default_factory=dict)
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    region: str = "us-east-1"
    account_id: str = DEFAULT_ACCOUNT_ID
    stack_name: str = "asyncgate"
    imports: Mapping[str, Any] = field(default_factory=dict)
    parameter_values: dict[str, str | list[str]] = field(init=False)
    _conditions: dict[str, bool] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.parameter_values = self._parameter_values()

    # ----------------------------------------------------------------------------------- parameters

    @property
    def pseudo(self) -> dict[str, Any]:
        partition = "aws-cn" if self.region.startswith("cn-") else "aws"
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:{partition}:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local"
            ),
            "AWS::Partition": partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }

    def _parameter_values(self) -> dict[str, str | list[str]]:
        declared: Mapping[str, Any] = self.template.get("Parameters") or {}
        unknown = set(self.parameters) - set(declared)
        if unknown:
            raise TemplateError(f"values given for undeclared parameters: {sorted(unknown)}")
        values: dict[str, str | list[str]] = {}
        for name, spec in declared.items():
            if name in self.parameters:
                raw = self.parameters[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                raise UnresolvableError(f"parameter {name} has no Default and no value was given")
            kind = str(spec.get("Type", "String"))
            if kind.startswith("List<") or kind == "CommaDelimitedList":
                raw = raw.split(",") if isinstance(raw, str) else raw
                values[name] = [item.strip() for item in _parameter_text(raw)]
            else:
                values[name] = _as_text(raw, f"parameter {name}")
            self._check_parameter(name, spec, values[name])
        return values

    @staticmethod
    def _check_parameter(name: str, spec: Mapping[str, Any], value: str | list[str]) -> None:
        items = value if isinstance(value, list) else [value]
        allowed = spec.get("AllowedValues")
        if allowed is not None and any(item not in [str(a) for a in allowed] for item in items):
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and any(re.fullmatch(str(pattern), item) is None for item in items):
            raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
        if spec.get("Type") == "Number":
            for item in items:
                try:
                    number = float(item)
                except ValueError:
                    raise TemplateError(f"parameter {name}={item!r} is not a number") from None
                if "MinValue" in spec and number < float(spec["MinValue"]):
                    raise TemplateError(f"parameter {name}={item} is below MinValue {spec['MinValue']}")
                if "MaxValue" in spec and number > float(spec["MaxValue"]):
                    raise TemplateError(f"parameter {name}={item} is above MaxValue {spec['MaxValue']}")

    # ----------------------------------------------------------------------------------- conditions

    def condition(self, name: str) -> bool:
        """The value of the template condition `name`."""
        if name not in self._conditions:
            declared: Mapping[str, Any] = self.template.get("Conditions") or {}
            if name not in declared:
                raise UnresolvableError(f"condition {name} is not declared in Conditions")
            self._conditions[name] = self._truth(declared[name], f"condition {name}")
        return self._conditions[name]

    def _truth(self, value: Any, where: str) -> bool:
        # `{"Condition": name}` is a function only where a condition is expected (inside And/Or/Not).
        if isinstance(value, Mapping) and list(value) == ["Condition"]:
            return self.condition(self.resolve_text(value["Condition"], where))
        resolved = self.resolve(value)
        if isinstance(resolved, bool):
            return resolved
        if resolved in ("true", "false"):
            return bool(resolved == "true")
        raise UnresolvableError(f"{where}: {value!r} is not a condition")

    def resource_enabled(self, logical_id: str) -> bool:
        """False when the resource's Condition is false (CloudFormation does not create it)."""
        resource = self.template["Resources"][logical_id]
        name = resource.get("Condition")
        return True if name is None else self.condition(str(name))

    # ----------------------------------------------------------------------------------- resolution

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function evaluated; `NO_VALUE` entries dropped from containers."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, Mapping):
            return value
        function = _single_key(value)
        if function is None:
            resolved = {key: self.resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not NO_VALUE}
        handler = self._FUNCTIONS.get(function)
        if handler is None:
            raise UnresolvableError(f"{function} is not supported: {value!r}")
        return handler(self, value[function])

    def resolve_text(self, value: Any, where: str = "value") -> str:
        """`value` resolved to a string, the way CloudFormation passes scalars on (numbers, booleans)."""
        return _as_text(self.resolve(value), where)

    def ref(self, name: str) -> Any:
        if not isinstance(name, str):
            raise UnresolvableError(f"Ref needs a name, got {name!r}")
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameter_values:
            return self.parameter_values[name]
        if name in self.refs:
            return self.refs[name]
        if name in self.template["Resources"]:
            kind = self.template["Resources"][name].get("Type")
            raise UnresolvableError(f"Ref {name}: the {kind} has no physical value here (not provisioned)")
        raise UnresolvableError(f"Ref {name}: no such parameter, pseudo parameter or resource")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if (logical_id, attribute) in self.attributes:
            return self.attributes[(logical_id, attribute)]
        if logical_id not in self.template["Resources"]:
            raise UnresolvableError(f"GetAtt {logical_id}.{attribute}: no such resource")
        kind = self.template["Resources"][logical_id].get("Type")
        raise UnresolvableError(f"GetAtt {logical_id}.{attribute}: not known for this {kind}")

    def _fn_ref(self, argument: Any) -> Any:
        return self.ref(self.resolve(argument))

    def _fn_get_att(self, argument: Any) -> Any:
        if isinstance(argument, str):
            logical_id, _, attribute = argument.partition(".")
            argument = [logical_id, attribute]
        if not isinstance(argument, list) or len(argument) != 2:
            raise UnresolvableError(f"Fn::GetAtt needs [LogicalId, Attribute], got {argument!r}")
        logical_id, attribute = (self.resolve_text(part, "Fn::GetAtt") for part in argument)
        return self.get_att(logical_id, attribute)

    def _fn_sub(self, argument: Any) -> str:
        variables: Mapping[str, Any] = {}
        if isinstance(argument, list):
            if len(argument) != 2 or not isinstance(argument[1], Mapping):
                raise UnresolvableError(f"Fn::Sub list form needs [String, {{Var: Value}}], got {argument!r}")
            text, variables = argument
        else:
            text = argument
        if not isinstance(text, str):
            raise UnresolvableError(f"Fn::Sub needs a string, got {text!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return self.resolve_text(variables[name], f"Fn::Sub ${{{name}}}")
            if name in self.pseudo or name in self.parameter_values or "." not in name:
                return _as_text(self.ref(name), f"Fn::Sub ${{{name}}}")
            logical_id, _, attribute = name.partition(".")
            return _as_text(self.get_att(logical_id, attribute), f"Fn::Sub ${{{name}}}")

        return _SUB_VARIABLE.sub(substitute, text)

    def _fn_join(self, argument: Any) -> str:
        if not isinstance(argument, list) or len(argument) != 2:
            raise UnresolvableError(f"Fn::Join needs [Delimiter, [Values]], got {argument!r}")
        delimiter = self.resolve_text(argument[0], "Fn::Join delimiter")
        items = self.resolve(argument[1])
        if not isinstance(items, list):
            raise UnresolvableError(f"Fn::Join needs a list of values, got {items!r}")
        return delimiter.join(_as_text(item, "Fn::Join") for item in items)

    def _fn_select(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 2:
            raise UnresolvableError(f"Fn::Select needs [Index, [Values]], got {argument!r}")
        index = int(self.resolve_text(argument[0], "Fn::Select index"))
        items = self.resolve(argument[1])
        if not isinstance(items, list) or not 0 <= index < len(items):
            raise UnresolvableError(f"Fn::Select index {index} out of range of {items!r}")
        return items[index]

    def _fn_split(self, argument: Any) -> list[str]:
        if not isinstance(argument, list) or len(argument) != 2:
            raise UnresolvableError(f"Fn::Split needs [Delimiter, String], got {argument!r}")
        delimiter = self.resolve_text(argument[0], "Fn::Split delimiter")
        return self.resolve_text(argument[1], "Fn::Split source").split(delimiter)

    def _fn_if(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 3:
            raise UnresolvableError(f"Fn::If needs [Condition, IfTrue, IfFalse], got {argument!r}")
        chosen = argument[1] if self.condition(str(argument[0])) else argument[2]
        return self.resolve(chosen)

    def _fn_equals(self, argument: Any) -> bool:
        if not isinstance(argument, list) or len(argument) != 2:
            raise UnresolvableError(f"Fn::Equals needs two values, got {argument!r}")
        left, right = (self.resolve(item) for item in argument)
        if isinstance(left, list) or isinstance(right, list):
            return bool(left == right)
        return _as_text(left, "Fn::Equals") == _as_text(right, "Fn::Equals")

    def _fn_not(self, argument: Any) -> bool:
        if not isinstance(argument, list) or len(argument) != 1:
            raise UnresolvableError(f"Fn::Not needs one condition, got {argument!r}")
        return not self._truth(argument[0], "Fn::Not")

    def _fn_and(self, argument: Any) -> bool:
        if not isinstance(argument, list) or not 2 <= len(argument) <= 10:
            raise UnresolvableError(f"Fn::And needs 2 to 10 conditions, got {argument!r}")
        return all(self._truth(item, "Fn::And") for item in argument)

    def _fn_or(self, argument: Any) -> bool:
        if not isinstance(argument, list) or not 2 <= len(argument) <= 10:
            raise UnresolvableError(f"Fn::Or needs 2 to 10 conditions, got {argument!r}")
        return any(self._truth(item, "Fn::Or") for item in argument)

    def _fn_find_in_map(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) not in (3, 4):
            raise UnresolvableError(f"Fn::FindInMap needs [Map, TopKey, SecondKey], got {argument!r}")
        name, top, second = (self.resolve_text(part, "Fn::FindInMap") for part in argument[:3])
        mappings: Mapping[str, Any] = self.template.get("Mappings") or {}
        try:
            return self.resolve(mappings[name][top][second])
        except KeyError:
            if len(argument) == 4 and isinstance(argument[3], Mapping) and "DefaultValue" in argument[3]:
                return self.resolve(argument[3]["DefaultValue"])
            raise UnresolvableError(f"Fn::FindInMap: no {name}.{top}.{second} in Mappings") from None

    def _fn_base64(self, argument: Any) -> str:
        return base64.b64encode(self.resolve_text(argument, "Fn::Base64").encode()).decode()

    def _fn_get_azs(self, argument: Any) -> list[str]:
        region = self.resolve(argument) or self.region
        return [f"{region}{zone}" for zone in "abc"]

    def _fn_import_value(self, argument: Any) -> Any:
        name = self.resolve_text(argument, "Fn::ImportValue")
        if name not in self.imports:
            raise UnresolvableError(f"Fn::ImportValue {name}: no such export is known")
        return self.imports[name]

    def _fn_cidr(self, argument: Any) -> list[str]:
        if not isinstance(argument, list) or len(argument) != 3:
            raise UnresolvableError(f"Fn::Cidr needs [IpBlock, Count, CidrBits], got {argument!r}")
        block = ipaddress.ip_network(self.resolve_text(argument[0], "Fn::Cidr"), strict=False)
        count = int(self.resolve_text(argument[1], "Fn::Cidr count"))
        prefix = block.max_prefixlen - int(self.resolve_text(argument[2], "Fn::Cidr bits"))
        if prefix < block.prefixlen:
            raise UnresolvableError(f"Fn::Cidr: /{prefix} subnets do not fit in {block}")
        subnets: list[str] = []
        for subnet in block.subnets(new_prefix=prefix):
            if len(subnets) == count:
                break
            subnets.append(str(subnet))
        if len(subnets) < count:
            raise UnresolvableError(f"Fn::Cidr: {block} holds fewer than {count} /{prefix} subnets")
        return subnets

    def _fn_length(self, argument: Any) -> int:
        items = self.resolve(argument)
        if not isinstance(items, list):
            raise UnresolvableError(f"Fn::Length needs a list, got {items!r}")
        return len(items)

    def _fn_to_json_string(self, argument: Any) -> str:
        return json.dumps(self.resolve(argument), separators=(",", ":"))

    _FUNCTIONS: ClassVar[Mapping[str, Callable[[Resolver, Any], Any]]] = {
        "Ref": _fn_ref,
        "Fn::GetAtt": _fn_get_att,
        "Fn::Sub": _fn_sub,
        "Fn::Join": _fn_join,
        "Fn::Select": _fn_select,
        "Fn::Split": _fn_split,
        "Fn::If": _fn_if,
        "Fn::Equals": _fn_equals,
        "Fn::Not": _fn_not,
        "Fn::And": _fn_and,
        "Fn::Or": _fn_or,
        "Fn::FindInMap": _fn_find_in_map,
        "Fn::Base64": _fn_base64,
        "Fn::GetAZs": _fn_get_azs,
        "Fn::ImportValue": _fn_import_value,
        "Fn::Cidr": _fn_cidr,
        "Fn::Length": _fn_length,
        "Fn::ToJsonString": _fn_to_json_string,
    }


def references(value: Any) -> set[str]:
    """The names `value` refers to through Ref, Fn::GetAtt and Fn::Sub (resources and parameters alike)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                target = item.partition(".")[0] if isinstance(item, str) else item[0]
                if isinstance(target, str):
                    found.add(target)
            elif key == "Fn::Sub":
                text, variables = (item[0], item[1]) if isinstance(item, list) else (item, {})
                if isinstance(text, str):
                    found |= {name.partition(".")[0] for name in _sub_names(text) if name not in variables}
                found |= references(variables)
            else:
                found |= references(item)
    return found


# --------------------------------------------------------------------------------------------- the stack


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function with Globals.Function applied (environment left unresolved)."""

    logical_id: str
    code_uri: str
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    events: Mapping[str, Mapping[str, Any]]
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class Route:
    """One HTTP API route: `method` is upper case or ANY, `path` like /v1/executions/{executionId}
    or `$default`."""

    method: str
    path: str
    function: str
    code_uri: str
    api: str | None = None

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class SqsEventSource:
    """An SQS event source mapping: `queue` is the queue's logical id."""

    function: str
    code_uri: str
    queue: str
    batch_size: int
    function_response_types: tuple[str, ...]
    maximum_batching_window_seconds: int = 0
    maximum_concurrency: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class DynamoDbEventSource:
    """A DynamoDB Streams event source mapping: `table` is the table's logical id, `on_failure_queue` the
    logical id of the OnFailure destination's SQS queue. `filter_patterns` are the FilterCriteria
    patterns as parsed JSON (a record passes when any one matches). `maximum_retry_attempts` is Lambda's
    value: -1 means "until the record expires"."""

    function: str
    code_uri: str
    table: str
    starting_position: str
    batch_size: int = 100
    maximum_batching_window_seconds: int = 0
    function_response_types: tuple[str, ...] = ()
    maximum_retry_attempts: int = -1
    bisect_batch_on_function_error: bool = False
    filter_patterns: tuple[Mapping[str, Any], ...] = ()
    on_failure_queue: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Schedule:
    """A Schedule (EventBridge rule) or ScheduleV2 (EventBridge Scheduler) event of a function."""

    function: str
    code_uri: str
    expression: str
    enabled: bool = True
    input: str | None = None


@dataclass(frozen=True)
class StateMachineSpec:
    """A provisioned state machine: its ARN and its definition with DefinitionSubstitutions applied."""

    logical_id: str
    arn: str
    definition: dict[str, Any]


def _get_att_target(value: Any, attribute: str) -> str | None:
    """The logical id `value` names when it is `!GetAtt <LogicalId>.<attribute>`, else None."""
    if not (isinstance(value, Mapping) and list(value) == ["Fn::GetAtt"]):
        return None
    target = value["Fn::GetAtt"]
    parts = target.split(".", 1) if isinstance(target, str) else list(target)
    if len(parts) != 2 or parts[1] != attribute or not isinstance(parts[0], str):
        return None
    return parts[0]


def _merge_globals(global_value: Any, own_value: Any) -> Any:
    """SAM's Globals rule: maps merge (the function wins), lists concatenate, scalars are overridden."""
    if isinstance(global_value, Mapping) and isinstance(own_value, Mapping):
        if _single_key(global_value) or _single_key(own_value):
            return own_value
        merged = dict(global_value)
        for key, item in own_value.items():
            merged[key] = _merge_globals(global_value[key], item) if key in global_value else item
        return merged
    if isinstance(global_value, list) and isinstance(own_value, list):
        return [*global_value, *own_value]
    return own_value


@dataclass
class Stack:
    """The provisioned template: physical values of what was created, and the template's own answers."""

    template: dict[str, Any]
    resolver: Resolver
    base_dir: Path | None = None
    created: list[str] = field(default_factory=list)
    # Filled by provision: function ARN -> logical id, and the state machines it created.
    function_arns: dict[str, str] = field(default_factory=dict)
    state_machine_specs: list[StateMachineSpec] = field(default_factory=list)

    # ----------------------------------------------------------------------------------- values

    def ref(self, logical_id: str) -> str:
        """What `!Ref logical_id` resolves to (table name, queue URL, parameter value, ...)."""
        return _as_text(self.resolver.ref(logical_id), f"Ref {logical_id}")

    def get_att(self, logical_id: str, attr: str) -> str:
        """What `!GetAtt logical_id.attr` resolves to (Arn, QueueName, StreamArn, ...)."""
        return _as_text(self.resolver.get_att(logical_id, attr), f"GetAtt {logical_id}.{attr}")

    def set_physical(self, logical_id: str, ref: str, **attributes: str) -> None:
        """Record the physical value of a resource created elsewhere (e.g. the local stack's HTTP API)."""
        self.resolver.refs[logical_id] = ref
        for name, value in attributes.items():
            self.resolver.attributes[(logical_id, name)] = value

    def resolve(self, value: Any) -> Any:
        return self.resolver.resolve(value)

    def outputs(self) -> dict[str, str]:
        """Every output whose value can be resolved now (others, e.g. an API not yet served, left out)."""
        answers: dict[str, str] = {}
        for name, output in (self.template.get("Outputs") or {}).items():
            if "Condition" in output and not self.resolver.condition(str(output["Condition"])):
                continue
            try:
                answers[name] = self.resolver.resolve_text(output["Value"], f"output {name}")
            except UnresolvableError:
                continue
        return answers

    def output(self, name: str) -> str:
        """One output, resolved; raises UnresolvableError when it cannot be."""
        outputs: Mapping[str, Any] = self.template.get("Outputs") or {}
        if name not in outputs:
            raise UnresolvableError(f"output {name} is not declared")
        return self.resolver.resolve_text(outputs[name]["Value"], f"output {name}")

    # ----------------------------------------------------------------------------------- functions

    def _resources(self, kind: str) -> dict[str, Mapping[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template["Resources"].items()
            if resource.get("Type") == kind and self.resolver.resource_enabled(logical_id)
        }

    def function_properties(self, logical_id: str) -> dict[str, Any]:
        """The function's properties with Globals.Function merged in, intrinsics left unresolved."""
        resource = self.template["Resources"].get(logical_id)
        if resource is None or resource.get("Type") != FUNCTION_TYPE:
            raise TemplateError(f"{logical_id} is not an {FUNCTION_TYPE}")
        merged: dict[str, Any] = dict((self.template.get("Globals") or {}).get("Function") or {})
        for key, value in (resource.get("Properties") or {}).items():
            merged[key] = _merge_globals(merged[key], value) if key in merged else value
        return merged

    def functions(self) -> dict[str, FunctionSpec]:
        """Every function, by logical id, with CodeUri, Handler, Timeout, MemorySize and Events."""
        specs: dict[str, FunctionSpec] = {}
        for logical_id in self._resources(FUNCTION_TYPE):
            properties = self.function_properties(logical_id)
            if "CodeUri" not in properties:
                raise TemplateError(f"{logical_id} has no CodeUri (inline code is not supported)")
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                code_uri=self.resolver.resolve_text(properties["CodeUri"], f"{logical_id} CodeUri"),
                handler=self.resolver.resolve_text(properties.get("Handler", ""), f"{logical_id} Handler"),
                runtime=self.resolver.resolve_text(properties.get("Runtime", ""), f"{logical_id} Runtime"),
                timeout=int(self.resolver.resolve_text(properties.get("Timeout", 3), "Timeout")),
                memory_size=int(self.resolver.resolve_text(properties.get("MemorySize", 128), "MemorySize")),
                events=dict(properties.get("Events") or {}),
                properties=properties,
            )
        return specs

    def function_dir(self, logical_id: str) -> Path:
        """The function's CodeUri as a directory, relative to the template's folder when known."""
        code_uri = Path(self.functions()[logical_id].code_uri)
        return code_uri if self.base_dir is None else self.base_dir / code_uri

    def function_for_arn(self, arn: str) -> str:
        """The logical id of the function an ARN (qualified or not) or a function name designates."""
        parts = arn.split(":")
        if len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
            arn = ":".join(parts[:7])  # without a version or alias qualifier
        for known, logical_id in self.function_arns.items():
            if arn in (known, known.rpartition(":")[2]):
                return logical_id
        raise TemplateError(f"no function of this template has the ARN or name {arn!r}")

    def state_machines(self) -> list[StateMachineSpec]:
        """Every state machine provision created (none when it was given no stepfunctions client)."""
        return list(self.state_machine_specs)

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """Globals.Function.Environment.Variables merged with the function's own, resolved to strings."""
        properties = self.function_properties(logical_id)
        variables = self.resolver.resolve(((properties.get("Environment") or {}).get("Variables")) or {})
        return {name: _as_text(value, f"{logical_id} {name}") for name, value in variables.items()}

    def _events(self, kind: str) -> Iterator[tuple[FunctionSpec, Mapping[str, Any]]]:
        for spec in self.functions().values():
            for event in spec.events.values():
                if event.get("Type") == kind:
                    yield spec, event.get("Properties") or {}

    def http_routes(self) -> list[Route]:
        """Every HttpApi event's route, once each, in template order."""
        routes: list[Route] = []
        seen: dict[tuple[str | None, str, str], str] = {}
        for spec, properties in self._events("HttpApi"):
            path = self.resolver.resolve_text(properties.get("Path", "$default"), "HttpApi Path")
            method = self.resolver.resolve_text(properties.get("Method", "ANY"), "HttpApi Method").upper()
            api_id = properties.get("ApiId")
            api = api_id["Ref"] if isinstance(api_id, Mapping) and "Ref" in api_id else None
            if path == "$default":
                method = "ANY"
            key = (api, method, path)
            if key in seen:
                raise TemplateError(
                    f"route {method} {path} is served by both {seen[key]} and {spec.logical_id}"
                )
            seen[key] = spec.logical_id
            routes.append(Route(method, path, spec.logical_id, spec.code_uri, api))
        return routes

    def sqs_event_sources(self) -> list[SqsEventSource]:
        sources: list[SqsEventSource] = []
        for spec, properties in self._events("SQS"):
            queue = properties.get("Queue")
            if not (isinstance(queue, Mapping) and "Fn::GetAtt" in queue):
                raise TemplateError(f"{spec.logical_id}: SQS event Queue must be !GetAtt <Queue>.Arn")
            target = queue["Fn::GetAtt"]
            queue_id = target.partition(".")[0] if isinstance(target, str) else str(target[0])
            scaling = properties.get("ScalingConfig") or {}
            sources.append(
                SqsEventSource(
                    function=spec.logical_id,
                    code_uri=spec.code_uri,
                    queue=queue_id,
                    batch_size=int(self.resolver.resolve_text(properties.get("BatchSize", 10), "BatchSize")),
                    function_response_types=tuple(
                        self.resolver.resolve(properties.get("FunctionResponseTypes", []))
                    ),
                    maximum_batching_window_seconds=int(
                        self.resolver.resolve_text(
                            properties.get("MaximumBatchingWindowInSeconds", 0),
                            "MaximumBatchingWindowInSeconds",
                        )
                    ),
                    maximum_concurrency=(
                        int(self.resolver.resolve_text(scaling["MaximumConcurrency"], "MaximumConcurrency"))
                        if "MaximumConcurrency" in scaling
                        else None
                    ),
                    enabled=self.resolver.resolve_text(properties.get("Enabled", True), "Enabled") == "true",
                )
            )
        return sources

    def dynamodb_event_sources(self) -> list[DynamoDbEventSource]:
        """Every DynamoDB event of a function, with Lambda's defaults for what the event leaves out."""
        sources: list[DynamoDbEventSource] = []
        for spec, properties in self._events("DynamoDB"):
            where = f"{spec.logical_id} DynamoDB event"
            table = _get_att_target(properties.get("Stream"), "StreamArn")
            if table is None:
                raise TemplateError(f"{where}: Stream must be !GetAtt <Table>.StreamArn")
            if self.template["Resources"].get(table, {}).get("Type") != TABLE_TYPE:
                raise TemplateError(f"{where}: Stream {table} is not an {TABLE_TYPE}")
            if "StreamSpecification" not in (self.template["Resources"][table].get("Properties") or {}):
                raise TemplateError(f"{where}: table {table} has no StreamSpecification")
            position = self.resolver.resolve_text(properties.get("StartingPosition", ""), "StartingPosition")
            if position not in ("TRIM_HORIZON", "LATEST"):
                raise TemplateError(f"{where}: StartingPosition must be TRIM_HORIZON or LATEST")
            number = partial(self._event_number, properties, where)
            flag = partial(self._event_flag, properties, where)
            sources.append(
                DynamoDbEventSource(
                    function=spec.logical_id,
                    code_uri=spec.code_uri,
                    table=table,
                    starting_position=position,
                    batch_size=number("BatchSize", 100),
                    maximum_batching_window_seconds=number("MaximumBatchingWindowInSeconds", 0),
                    function_response_types=tuple(
                        self.resolver.resolve(properties.get("FunctionResponseTypes", []))
                    ),
                    maximum_retry_attempts=number("MaximumRetryAttempts", -1),
                    bisect_batch_on_function_error=flag("BisectBatchOnFunctionError", False),
                    filter_patterns=self._filter_patterns(properties.get("FilterCriteria"), where),
                    on_failure_queue=self._on_failure_queue(properties.get("DestinationConfig"), where),
                    enabled=flag("Enabled", True),
                )
            )
        return sources

    def _event_number(self, properties: Mapping[str, Any], where: str, key: str, default: int) -> int:
        return int(self.resolver.resolve_text(properties.get(key, default), f"{where} {key}"))

    def _event_flag(self, properties: Mapping[str, Any], where: str, key: str, default: bool) -> bool:
        return self.resolver.resolve_text(properties.get(key, default), f"{where} {key}") == "true"

    def _filter_patterns(self, criteria: Any, where: str) -> tuple[Mapping[str, Any], ...]:
        filters = (self.resolver.resolve(criteria) or {}).get("Filters") or []
        patterns: list[Mapping[str, Any]] = []
        for entry in filters:
            try:
                pattern = json.loads(_as_text(entry.get("Pattern"), f"{where} FilterCriteria Pattern"))
            except json.JSONDecodeError as error:
                raise TemplateError(f"{where}: FilterCriteria Pattern is not JSON: {error}") from None
            if not isinstance(pattern, dict):
                raise TemplateError(f"{where}: FilterCriteria Pattern must be a JSON object")
            patterns.append(pattern)
        return tuple(patterns)

    def _on_failure_queue(self, config: Any, where: str) -> str | None:
        destination = ((config or {}).get("OnFailure") or {}).get("Destination")
        if destination is None:
            return None
        queue = _get_att_target(destination, "Arn")
        if queue is None or self.template["Resources"].get(queue, {}).get("Type") != QUEUE_TYPE:
            # Lambda also takes SNS topics and S3 buckets; the local stack runs SQS queues only.
            raise TemplateError(f"{where}: OnFailure Destination must be !GetAtt <SQS queue>.Arn")
        return queue

    def schedules(self) -> list[Schedule]:
        schedules: list[Schedule] = []
        for kind in ("Schedule", "ScheduleV2"):
            for spec, properties in self._events(kind):
                expression_key = "Schedule" if kind == "Schedule" else "ScheduleExpression"
                enabled: Any = properties.get("Enabled", True)
                if "State" in properties:
                    enabled = self.resolver.resolve_text(properties["State"], "State") == "ENABLED"
                schedules.append(
                    Schedule(
                        function=spec.logical_id,
                        code_uri=spec.code_uri,
                        expression=self.resolver.resolve_text(properties[expression_key], expression_key),
                        enabled=self.resolver.resolve_text(enabled, "Enabled") == "true",
                        input=(
                            self.resolver.resolve_text(properties["Input"], "Input")
                            if "Input" in properties
                            else None
                        ),
                    )
                )
        return schedules


# --------------------------------------------------------------------------------------------- provisioning


def _dependency_order(template: Mapping[str, Any], logical_ids: list[str]) -> list[str]:
    """`logical_ids` ordered so each comes after the ones (among them) it refers to or DependsOn."""
    resources = template["Resources"]
    wanted = set(logical_ids)
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(logical_id: str, path: tuple[str, ...]) -> None:
        if state.get(logical_id) == "done":
            return
        if state.get(logical_id) == "visiting":
            raise TemplateError(f"circular dependency: {' -> '.join((*path, logical_id))}")
        state[logical_id] = "visiting"
        resource = resources[logical_id]
        depends = resource.get("DependsOn") or []
        needed = references(resource.get("Properties") or {}) | set(
            [depends] if isinstance(depends, str) else depends
        )
        for other in sorted(needed & wanted):
            visit(other, (*path, logical_id))
        state[logical_id] = "done"
        order.append(logical_id)

    for logical_id in logical_ids:
        visit(logical_id, ())
    return order


def _physical_name(properties: Mapping[str, Any], key: str, name_prefix: str, logical_id: str) -> str:
    return str(properties[key]) if properties.get(key) else f"{name_prefix}-{logical_id}"


def _throughput(value: Mapping[str, Any]) -> dict[str, int]:
    return {key: int(item) for key, item in value.items()}


def _table_request(properties: Mapping[str, Any], table_name: str) -> dict[str, Any]:
    """CloudFormation's AWS::DynamoDB::Table properties as a CreateTable request."""
    supported = {
        "TableName",
        "KeySchema",
        "AttributeDefinitions",
        "BillingMode",
        "ProvisionedThroughput",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "StreamSpecification",
        "SSESpecification",
        "TimeToLiveSpecification",
        "PointInTimeRecoverySpecification",
        "Tags",
        "TableClass",
        "DeletionProtectionEnabled",
        "OnDemandThroughput",
        "ContributorInsightsSpecification",
    }
    unknown = set(properties) - supported
    if unknown:
        raise TemplateError(f"table {table_name}: unsupported properties {sorted(unknown)}")
    request: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": list(properties["KeySchema"]),
        "AttributeDefinitions": list(properties["AttributeDefinitions"]),
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in properties:
        request["ProvisionedThroughput"] = _throughput(properties["ProvisionedThroughput"])
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if properties.get(key):
            indexes = []
            for index in properties[key]:
                translated = {
                    name: value
                    for name, value in index.items()
                    if name in ("IndexName", "KeySchema", "Projection", "OnDemandThroughput")
                }
                if "ProvisionedThroughput" in index:
                    translated["ProvisionedThroughput"] = _throughput(index["ProvisionedThroughput"])
                indexes.append(translated)
            request[key] = indexes
    stream = properties.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = properties.get("SSESpecification")
    if sse:
        translated_sse: dict[str, Any] = {"Enabled": bool(sse.get("SSEEnabled", False))}
        if sse.get("SSEType"):
            translated_sse["SSEType"] = sse["SSEType"]
        if sse.get("KMSMasterKeyId"):
            translated_sse["KMSMasterKeyId"] = sse["KMSMasterKeyId"]
        request["SSESpecification"] = translated_sse
    if properties.get("Tags"):
        request["Tags"] = [{"Key": str(tag["Key"]), "Value": str(tag["Value"])} for tag in properties["Tags"]]
    if properties.get("TableClass"):
        request["TableClass"] = properties["TableClass"]
    if "DeletionProtectionEnabled" in properties:
        request["DeletionProtectionEnabled"] = bool(properties["DeletionProtectionEnabled"])
    return request


def _create_table(
    client: DynamoDBClient, properties: Mapping[str, Any], table_name: str
) -> tuple[str, dict[str, str]]:
    description = client.create_table(**_table_request(properties, table_name))["TableDescription"]
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and bool(ttl.get("Enabled")):
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"AttributeName": str(ttl["AttributeName"]), "Enabled": True},
        )
    recovery = properties.get("PointInTimeRecoverySpecification")
    if recovery and bool(recovery.get("PointInTimeRecoveryEnabled")):
        client.update_continuous_backups(
            TableName=table_name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    attributes = {"Arn": description["TableArn"]}
    if description.get("LatestStreamArn"):
        attributes["StreamArn"] = description["LatestStreamArn"]
    return table_name, attributes


_QUEUE_ATTRIBUTES: Final = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def _queue_attribute(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return json.dumps(value, separators=(",", ":"))
    return _as_text(value, "queue attribute")


def _create_queue(
    client: SQSClient, properties: Mapping[str, Any], queue_name: str
) -> tuple[str, dict[str, str]]:
    unknown = set(properties) - {*_QUEUE_ATTRIBUTES, "QueueName", "Tags"}
    if unknown:
        raise TemplateError(f"queue {queue_name}: unsupported properties {sorted(unknown)}")
    attributes = {key: _queue_attribute(properties[key]) for key in _QUEUE_ATTRIBUTES if key in properties}
    tags = {str(tag["Key"]): str(tag["Value"]) for tag in properties.get("Tags") or []}
    if tags:
        url = client.create_queue(QueueName=queue_name, Attributes=cast("Any", attributes), tags=tags)[
            "QueueUrl"
        ]
    else:
        url = client.create_queue(QueueName=queue_name, Attributes=cast("Any", attributes))["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, {"Arn": arn, "QueueName": queue_name, "QueueUrl": url}


_BUCKET_PROPERTIES: Final = frozenset(
    {
        "BucketName",
        "BucketEncryption",
        "PublicAccessBlockConfiguration",
        "OwnershipControls",
        "LifecycleConfiguration",
        "VersioningConfiguration",
        "Tags",
    }
)
_LIFECYCLE_RULE_PROPERTIES: Final = frozenset(
    {"Id", "Status", "Prefix", "ExpirationInDays", "AbortIncompleteMultipartUpload"}
)


def _lifecycle_rule(rule: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One CloudFormation lifecycle rule as the PutBucketLifecycleConfiguration API spells it."""
    unknown = set(rule) - _LIFECYCLE_RULE_PROPERTIES
    if unknown:
        raise TemplateError(f"{where}: unsupported lifecycle rule properties {sorted(unknown)}")
    translated: dict[str, Any] = {
        "Status": _as_text(rule["Status"], f"{where} Status"),
        "Filter": {"Prefix": _as_text(rule.get("Prefix", ""), f"{where} Prefix")},
    }
    if "Id" in rule:
        translated["ID"] = _as_text(rule["Id"], f"{where} Id")
    if "ExpirationInDays" in rule:
        translated["Expiration"] = {"Days": int(_as_text(rule["ExpirationInDays"], f"{where} Expiration"))}
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort:
        days = int(_as_text(abort["DaysAfterInitiation"], f"{where} DaysAfterInitiation"))
        translated["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return translated


def _bool(value: Any, where: str) -> bool:
    return _as_text(value, where) == "true"


def _create_bucket(
    client: S3Client, properties: Mapping[str, Any], bucket: str, partition: str
) -> tuple[str, dict[str, str]]:
    """CloudFormation's AWS::S3::Bucket: the bucket, then each configuration it declares, as S3's API
    has them (so the emulator holds what the deployed bucket would)."""
    where = f"bucket {bucket}"
    unknown = set(properties) - _BUCKET_PROPERTIES
    if unknown:
        raise TemplateError(f"{where}: unsupported properties {sorted(unknown)}")
    region = client.meta.region_name
    if region == "us-east-1":
        client.create_bucket(Bucket=bucket)
    else:
        client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": cast("Any", region)}
        )
    encryption = properties.get("BucketEncryption")
    if encryption:
        rules = []
        for rule in encryption["ServerSideEncryptionConfiguration"]:
            default = rule.get("ServerSideEncryptionByDefault") or {}
            translated: dict[str, Any] = {}
            if default:
                translated["ApplyServerSideEncryptionByDefault"] = {
                    key: _as_text(value, f"{where} {key}") for key, value in default.items()
                }
            if "BucketKeyEnabled" in rule:
                translated["BucketKeyEnabled"] = _bool(rule["BucketKeyEnabled"], f"{where} BucketKeyEnabled")
            rules.append(translated)
        client.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration=cast("Any", {"Rules": rules})
        )
    block = properties.get("PublicAccessBlockConfiguration")
    if block:
        flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        client.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration=cast(
                "Any", {flag: _bool(block.get(flag, False), f"{where} {flag}") for flag in flags}
            ),
        )
    ownership = properties.get("OwnershipControls")
    if ownership:
        client.put_bucket_ownership_controls(
            Bucket=bucket,
            OwnershipControls=cast(
                "Any",
                {"Rules": [{"ObjectOwnership": rule["ObjectOwnership"]} for rule in ownership["Rules"]]},
            ),
        )
    lifecycle = properties.get("LifecycleConfiguration")
    if lifecycle:
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration=cast(
                "Any", {"Rules": [_lifecycle_rule(rule, where) for rule in lifecycle["Rules"]]}
            ),
        )
    versioning = properties.get("VersioningConfiguration")
    if versioning:
        client.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration=cast("Any", {"Status": versioning["Status"]})
        )
    if properties.get("Tags"):
        tags = [{"Key": str(tag["Key"]), "Value": str(tag["Value"])} for tag in properties["Tags"]]
        client.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": cast("Any", tags)})
    return bucket, {
        "Arn": f"arn:{partition}:s3:::{bucket}",
        "DomainName": f"{bucket}.s3.amazonaws.com",
        "RegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com",
    }


def _denies_plain_http(statement: Mapping[str, Any]) -> bool:
    condition = statement.get("Condition") or {}
    return (
        statement.get("Effect") == "Deny"
        and condition
        == {"Bool": {"aws:SecureTransport": condition.get("Bool", {}).get("aws:SecureTransport")}}
        and _as_text(condition["Bool"]["aws:SecureTransport"], "aws:SecureTransport") == "false"
    )


def _put_bucket_policy(client: S3Client, properties: Mapping[str, Any], logical_id: str) -> None:
    """The bucket policy, but for its statements that deny requests without TLS: AWS's S3 endpoints
    are TLS, so such a statement only ever stops a misconfigured client there, whereas the emulator
    knows no `aws:SecureTransport` (and the local stack's endpoint is plain HTTP): it would deny every
    request. A policy left with no statement is not put."""
    unknown = set(properties) - {"Bucket", "PolicyDocument"}
    if unknown:
        raise TemplateError(f"bucket policy {logical_id}: unsupported properties {sorted(unknown)}")
    document = properties["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else dict(document)
    statements = document.get("Statement") or []
    statements = statements if isinstance(statements, list) else [statements]
    kept = [statement for statement in statements if not _denies_plain_http(statement)]
    if not kept:
        return
    policy = json.dumps({**document, "Statement": kept}, separators=(",", ":"))
    client.put_bucket_policy(Bucket=_as_text(properties["Bucket"], f"{logical_id} Bucket"), Policy=policy)


_SECRET_PROPERTIES: Final = frozenset(
    {"Name", "Description", "GenerateSecretString", "SecretString", "KmsKeyId", "Tags"}
)
# GenerateSecretString's options that are GetRandomPassword's own parameters, with their types.
_PASSWORD_OPTIONS: Final = {
    "PasswordLength": int,
    "ExcludeCharacters": str,
    "ExcludeNumbers": bool,
    "ExcludePunctuation": bool,
    "ExcludeUppercase": bool,
    "ExcludeLowercase": bool,
    "IncludeSpace": bool,
    "RequireEachIncludedType": bool,
}


def _generated_secret(client: SecretsManagerClient, options: Mapping[str, Any], where: str) -> str:
    """GenerateSecretString as CloudFormation does it: a GetRandomPassword with the same options, put
    under GenerateStringKey in SecretStringTemplate when a template is given."""
    unknown = set(options) - {*_PASSWORD_OPTIONS, "SecretStringTemplate", "GenerateStringKey"}
    if unknown:
        raise TemplateError(f"{where}: unsupported GenerateSecretString properties {sorted(unknown)}")
    request: dict[str, Any] = {}
    for name, kind in _PASSWORD_OPTIONS.items():
        if name in options:
            text = _as_text(options[name], f"{where} {name}")
            request[name] = text == "true" if kind is bool else kind(text)
    password = client.get_random_password(**request)["RandomPassword"]
    template_text = options.get("SecretStringTemplate")
    key = options.get("GenerateStringKey")
    if (template_text is None) != (key is None):
        raise TemplateError(f"{where}: SecretStringTemplate and GenerateStringKey go together")
    if template_text is None:
        return password
    document = json.loads(_as_text(template_text, f"{where} SecretStringTemplate"))
    document[_as_text(key, f"{where} GenerateStringKey")] = password
    return json.dumps(document)


def _create_secret(
    client: SecretsManagerClient, properties: Mapping[str, Any], name: str
) -> tuple[str, dict[str, str]]:
    """AWS::SecretsManager::Secret: Ref (and GetAtt Id) is the secret's ARN, as in CloudFormation."""
    where = f"secret {name}"
    unknown = set(properties) - _SECRET_PROPERTIES
    if unknown:
        raise TemplateError(f"{where}: unsupported properties {sorted(unknown)}")
    if "SecretString" in properties and "GenerateSecretString" in properties:
        raise TemplateError(f"{where}: SecretString and GenerateSecretString exclude each other")
    if "SecretString" in properties:
        value = _as_text(properties["SecretString"], f"{where} SecretString")
    else:
        value = _generated_secret(client, properties.get("GenerateSecretString") or {}, where)
    request: dict[str, Any] = {"Name": name, "SecretString": value}
    if properties.get("Description"):
        request["Description"] = _as_text(properties["Description"], f"{where} Description")
    if properties.get("KmsKeyId"):
        request["KmsKeyId"] = _as_text(properties["KmsKeyId"], f"{where} KmsKeyId")
    if properties.get("Tags"):
        request["Tags"] = [{"Key": str(tag["Key"]), "Value": str(tag["Value"])} for tag in properties["Tags"]]
    arn = client.create_secret(**request)["ARN"]
    return arn, {"Id": arn}


def provision(
    template: dict[str, Any],
    dynamodb_client: DynamoDBClient,
    sqs_client: SQSClient,
    *,
    parameters: Mapping[str, Any] | None = None,
    name_prefix: str = "asyncgate",
    account_id: str = DEFAULT_ACCOUNT_ID,
    base_dir: Path | None = None,
    stepfunctions: Any = None,
    s3: S3Client | None = None,
    secretsmanager: SecretsManagerClient | None = None,
) -> Stack:
    """Create the template's DynamoDB tables and SQS queues through the given clients.

    Resources of other types (functions, APIs, layers, log groups) are left to the caller. Physical names
    are the template's own (TableName, QueueName, BucketName, Name) or `{name_prefix}-{LogicalId}`
    (lower case for a bucket). Functions get ARNs (for `!Ref` and `!GetAtt .Arn`, nothing is created);
    given a `stepfunctions` client, state machines are created too, after the tables and queues their
    DefinitionSubstitutions may refer to; given an `s3` client, S3 buckets (with their encryption,
    public access block, ownership controls and lifecycle) and bucket policies; given a `secretsmanager`
    client, secrets (GenerateSecretString honoured). Without a client, its resources are left out (a
    `!Ref` to one then raises UnresolvableError).
    """
    resolver = Resolver(
        template,
        parameters=dict(parameters or {}),
        region=dynamodb_client.meta.region_name,
        account_id=account_id,
        stack_name=name_prefix,
    )
    stack = Stack(template=template, resolver=resolver, base_dir=base_dir)
    _register_functions(stack, name_prefix)
    kinds = {TABLE_TYPE, QUEUE_TYPE}
    if s3 is not None:
        kinds |= {BUCKET_TYPE, BUCKET_POLICY_TYPE}
    if secretsmanager is not None:
        kinds.add(SECRET_TYPE)
    wanted = [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") in kinds and resolver.resource_enabled(logical_id)
    ]
    for logical_id in _dependency_order(template, wanted):
        resource = template["Resources"][logical_id]
        properties = resolver.resolve(resource.get("Properties") or {})
        if resource["Type"] == TABLE_TYPE:
            name = _physical_name(properties, "TableName", name_prefix, logical_id)
            ref, attributes = _create_table(dynamodb_client, properties, name)
        elif resource["Type"] == BUCKET_TYPE:
            assert s3 is not None
            # Bucket names are lower case (CloudFormation lower-cases the names it makes, too).
            name = _physical_name(properties, "BucketName", name_prefix.lower(), logical_id.lower())
            ref, attributes = _create_bucket(s3, properties, name, resolver.pseudo["AWS::Partition"])
        elif resource["Type"] == BUCKET_POLICY_TYPE:
            assert s3 is not None
            _put_bucket_policy(s3, properties, logical_id)
            ref, attributes = logical_id, {}
        elif resource["Type"] == SECRET_TYPE:
            assert secretsmanager is not None
            name = _physical_name(properties, "Name", name_prefix, logical_id)
            ref, attributes = _create_secret(secretsmanager, properties, name)
        else:
            name = _physical_name(properties, "QueueName", name_prefix, logical_id)
            if properties.get("FifoQueue") in (True, "true") and not name.endswith(".fifo"):
                name += ".fifo"
            ref, attributes = _create_queue(sqs_client, properties, name)
        stack.set_physical(logical_id, ref, **attributes)
        stack.created.append(logical_id)
    if stepfunctions is not None:
        _create_state_machines(stack, stepfunctions, name_prefix)
    return stack


# --------------------------------------------------------------------------------------------- state machines

_STATE_MACHINE_PROPERTIES: Final = {
    "AWS::Serverless::StateMachine": frozenset(
        {
            "Definition",
            "DefinitionUri",
            "DefinitionSubstitutions",
            "Name",
            "Type",
            "Role",
            "RolePath",
            "Policies",
            "PermissionsBoundary",
            "Logging",
            "Tracing",
            "Tags",
            "Events",
        }
    ),
    "AWS::StepFunctions::StateMachine": frozenset(
        {
            "Definition",
            "DefinitionString",
            "DefinitionSubstitutions",
            "StateMachineName",
            "StateMachineType",
            "RoleArn",
            "LoggingConfiguration",
            "TracingConfiguration",
            "EncryptionConfiguration",
            "Tags",
        }
    ),
}


def _register_functions(stack: Stack, name_prefix: str) -> None:
    """Give every function its name (Ref) and ARN (GetAtt Arn): state machines and their callers need
    them, though nothing is deployed."""
    resolver = stack.resolver
    partition = resolver.pseudo["AWS::Partition"]
    for logical_id, resource in stack.template["Resources"].items():
        if resource.get("Type") != FUNCTION_TYPE or not resolver.resource_enabled(logical_id):
            continue
        properties = resource.get("Properties") or {}
        name = (
            resolver.resolve_text(properties["FunctionName"], f"{logical_id} FunctionName")
            if properties.get("FunctionName")
            else f"{name_prefix}-{logical_id}"
        )
        arn = f"arn:{partition}:lambda:{resolver.region}:{resolver.account_id}:function:{name}"
        stack.set_physical(logical_id, name, Arn=arn)
        stack.function_arns[arn] = logical_id


def _substitute_definition(text: str, substitutions: Mapping[str, Any], where: str) -> str:
    """DefinitionSubstitutions: each `${Name}` replaced by its value, as Step Functions does in the text."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in substitutions:
            raise TemplateError(f"{where}: ${{{name}}} is not in DefinitionSubstitutions")
        return _as_text(substitutions[name], f"{where} DefinitionSubstitutions {name}")

    return _SUB_VARIABLE.sub(substitute, text)


def _state_machine_definition(stack: Stack, logical_id: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    resolver = stack.resolver
    where = f"state machine {logical_id}"
    if "DefinitionUri" in properties:
        uri = properties["DefinitionUri"]
        if not isinstance(uri, str):
            raise TemplateError(f"{where}: only a local DefinitionUri path is supported, not {uri!r}")
        path = Path(uri) if stack.base_dir is None else stack.base_dir / uri
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise TemplateError(f"{where}: cannot read DefinitionUri {path}: {error.strerror}") from None
    elif "DefinitionString" in properties:
        text = resolver.resolve_text(properties["DefinitionString"], f"{where} DefinitionString")
    elif "Definition" in properties:
        text = json.dumps(resolver.resolve(properties["Definition"]))
    else:
        raise TemplateError(f"{where}: needs Definition, DefinitionUri or DefinitionString")
    substitutions = resolver.resolve(properties.get("DefinitionSubstitutions") or {})
    text = _substitute_definition(text, substitutions, where)
    try:
        is_yaml = "DefinitionUri" in properties and str(properties["DefinitionUri"]).endswith(
            (".yaml", ".yml")
        )
        definition = yaml.safe_load(text) if is_yaml else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        raise TemplateError(f"{where}: the definition is not valid JSON/YAML: {error}") from None
    if not isinstance(definition, dict):
        raise TemplateError(f"{where}: the definition is not an object")
    return cast("dict[str, Any]", definition)


def _create_state_machines(stack: Stack, client: Any, name_prefix: str) -> None:
    """Create each state machine (definition substituted, a dummy role) and record its ARN as its Ref."""
    resolver = stack.resolver
    wanted = [
        logical_id
        for logical_id, resource in stack.template["Resources"].items()
        if resource.get("Type") in STATE_MACHINE_TYPES and resolver.resource_enabled(logical_id)
    ]
    for logical_id in _dependency_order(stack.template, wanted):
        resource = stack.template["Resources"][logical_id]
        kind = resource["Type"]
        properties: Mapping[str, Any] = resource.get("Properties") or {}
        unknown = set(properties) - _STATE_MACHINE_PROPERTIES[kind]
        if unknown:
            raise TemplateError(f"state machine {logical_id}: unsupported properties {sorted(unknown)}")
        if properties.get("Events"):
            raise TemplateError(f"state machine {logical_id}: Events are not supported")
        serverless = kind == "AWS::Serverless::StateMachine"
        name_key, type_key = ("Name", "Type") if serverless else ("StateMachineName", "StateMachineType")
        name = (
            resolver.resolve_text(properties[name_key], f"{logical_id} {name_key}")
            if properties.get(name_key)
            else f"{name_prefix}-{logical_id}"
        )
        definition = _state_machine_definition(stack, logical_id, properties)
        request: dict[str, Any] = {
            "name": name,
            "definition": json.dumps(definition),
            # The emulator checks only the role ARN's shape; IAM is not simulated.
            "roleArn": f"arn:aws:iam::{resolver.account_id}:role/{name}-role",
        }
        if properties.get(type_key):
            request["type"] = resolver.resolve_text(properties[type_key], f"{logical_id} {type_key}")
        arn = client.create_state_machine(**request)["stateMachineArn"]
        stack.set_physical(logical_id, arn, Arn=arn, Name=name)
        stack.created.append(logical_id)
        stack.state_machine_specs.append(StateMachineSpec(logical_id, arn, definition))
