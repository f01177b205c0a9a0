"""Step Functions for the local stack: the template's own ASL definitions, executed as written.

`Interpreter` runs one execution of a definition (Amazon States Language, JSONPath query language) whose
Lambda tasks call an `invoke(logical_id, payload)` callable, i.e. the in-process handlers. Supported:
Task (a Lambda function ARN, or `arn:aws:states:::lambda:invoke` with FunctionName/Payload, or
`arn:aws:states:::dynamodb:updateItem` called through boto3, i.e. the emulator; Retry, Catch,
TimeoutSeconds), Wait (Seconds, SecondsPath, Timestamp, TimestampPath), Choice (every comparison
operator, And/Or/Not), Pass, Succeed and Fail; InputPath, Parameters (`.$` keys, `$$` context object),
ResultSelector, ResultPath and OutputPath with the JSONPath forms `$`, `$.a.b`, `$.a[0]` and `$['a']`.
The intrinsic functions States.MathAdd, States.MathRandom, States.Format, States.StringToJson,
States.JsonToString, States.Array, States.ArrayGetItem and States.UUID are evaluated in `.$` values,
nested in one another as in Step Functions. Anything else (Map, Parallel, other service integrations,
other intrinsics, JSONata, variables) is refused by `check_definition` with an error naming it, before
an execution starts.

`--time-scale` multiplies every scheduled wait: Wait states, Retry intervals and the execution's
TimeoutSeconds (it bounds those waits). A task's own TimeoutSeconds is real handler time and not scaled.

`StateMachineRunner` connects this to moto. Without its `execute_state_machine` config, moto's
StartExecution only records the execution as RUNNING and runs nothing (with it, moto would run the
definition itself but its Lambda tasks would need Docker). The runner polls ListExecutions for RUNNING
executions through the public API, runs each new one in a worker thread, and writes the outcome into
moto's execution object - the local stack runs moto in this process - so DescribeExecution reports
SUCCEEDED or FAILED with output, error and cause as Step Functions would. Against a moto in another
process the outcome is kept by the runner only (`outcome`, `wait`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import random
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from asyncgate_dev.template import Stack, StateMachineSpec, TemplateError

__all__ = [
    "DYNAMODB_UPDATE_ITEM",
    "LAMBDA_INVOKE",
    "ExecutionOutcome",
    "ExecutionStopped",
    "Interpreter",
    "StateMachineRunner",
    "StatesError",
    "UnsupportedDefinitionError",
    "check_definition",
    "function_name_of",
    "parse_intrinsic",
    "parse_path",
    "start_state_machine_runner",
]

log = logging.getLogger("asyncgate.dev.stepfunctions")
# Listings of the running executions begun again after an expired page token before giving up this poll.
LISTING_ATTEMPTS = 3

Invoke = Callable[[str, Any], Any]
LAMBDA_INVOKE: Final = "arn:aws:states:::lambda:invoke"
DYNAMODB_UPDATE_ITEM: Final = "arn:aws:states:::dynamodb:updateItem"
_LAMBDA_ARN: Final = re.compile(r"^arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:([^:]+)(?::[^:]+)?$")
_PATH_SEGMENT: Final = re.compile(r"\.([^.\[\]'\"*?@()$\s]+)|\[(\d+)\]|\['([^']*)'\]")
_MISSING: Final = object()
# How often a thread blocked on a task re-checks the stop event and the deadline.
_TASK_CHECK_SECONDS: Final = 0.05


class UnsupportedDefinitionError(TemplateError):
    """The definition uses a state type, field, resource, path or intrinsic this interpreter does not run."""


class StatesError(Exception):
    """An ASL runtime error: `error` is the name Retry and Catch match, `cause` its detail."""

    def __init__(self, error: str, cause: str = "", *, task_failed: bool = False) -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause
        # Errors a task raised (not States.Timeout or a data error) also match States.TaskFailed.
        self.task_failed = task_failed


class ExecutionStopped(Exception):
    """The stop event was set while the execution ran."""


@dataclass(frozen=True)
class ExecutionOutcome:
    """How an execution ended: SUCCEEDED with its output, FAILED with error and cause, or ABORTED."""

    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None


@dataclass(frozen=True)
class _ServiceTask:
    """An AWS SDK service integration: the boto3 client and method it calls with the task's Parameters."""

    service: str
    method: str
    # Step Functions names the service's errors `<error_prefix>.<error code>`.
    error_prefix: str
    required: frozenset[str]
    optional: frozenset[str]


_SERVICE_TASKS: Final[Mapping[str, _ServiceTask]] = {
    DYNAMODB_UPDATE_ITEM: _ServiceTask(
        "dynamodb",
        "update_item",
        "DynamoDB",
        required=frozenset({"TableName", "Key"}),
        optional=frozenset(
            {
                "UpdateExpression",
                "ConditionExpression",
                "ExpressionAttributeNames",
                "ExpressionAttributeValues",
                "ReturnValues",
                "ReturnValuesOnConditionCheckFailure",
                "ReturnConsumedCapacity",
                "ReturnItemCollectionMetrics",
            }
        ),
    ),
}


class _Clients:
    """boto3 clients by service, made on first use (after the local stack has set AWS_ENDPOINT_URL)
    and one at a time: boto3's default session is not safe to make clients from concurrently."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        with self._lock:
            if service not in self._made:
                import boto3  # noqa: PLC0415 - the endpoint comes from the environment at first use

                self._made[service] = boto3.client(service)  # type: ignore[call-overload]
            return self._made[service]


# --------------------------------------------------------------------------------------------- JSONPath


def parse_path(path: Any, where: str = "path") -> tuple[str | int, ...]:
    """The segments of a JSONPath in the supported subset (`$`, `$.a.b`, `$.a[0]`, `$['a']`)."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise UnsupportedDefinitionError(f"{where}: {path!r} is not a JSONPath (it must start with $)")
    rest = path[2:] if path.startswith("$$") else path[1:]
    segments: list[str | int] = []
    position = 0
    while position < len(rest):
        match = _PATH_SEGMENT.match(rest, position)
        if match is None:
            raise UnsupportedDefinitionError(
                f"{where}: JSONPath {path!r} is not supported (only $, $.a.b, $.a[0] and $['a'])"
            )
        name, index, quoted = match.groups()
        segments.append(int(index) if index is not None else (name if name is not None else quoted))
        position = match.end()
    return tuple(segments)


def _lookup(data: Any, segments: Iterable[str | int]) -> Any:
    for segment in segments:
        if isinstance(segment, int):
            if not isinstance(data, list) or segment >= len(data):
                return _MISSING
            data = data[segment]
        else:
            if not isinstance(data, dict) or segment not in data:
                return _MISSING
            data = data[segment]
    return data


def _with_result(raw: Any, result_path: Any, result: Any) -> Any:
    """The state's raw input with `result` placed at ResultPath (null: the input unchanged)."""
    if result_path is None:
        return raw
    segments = parse_path(result_path, "ResultPath")
    if not segments:
        return result
    if not isinstance(raw, dict):
        raise StatesError("States.ResultPathMatchFailure", f"ResultPath {result_path} needs an object input")
    output = copy.deepcopy(raw)
    node = output
    for segment in segments[:-1]:
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise StatesError("States.ResultPathMatchFailure", f"{result_path}: {segment} is not an object")
        node = child
    node[segments[-1]] = result
    return output


def function_name_of(resource: str) -> str:
    """A Lambda function's name from its ARN (with or without a qualifier); a plain name as is."""
    found = _LAMBDA_ARN.match(resource)
    return found.group(1) if found else resource


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _string_matches(value: str, pattern: str) -> bool:
    # StringMatches: `*` is the only wildcard; `\*` is a literal star.
    parts = re.split(r"(\\\*|\*)", pattern)
    regex = "".join(".*" if part == "*" else re.escape("*" if part == "\\*" else part) for part in parts)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


_ORDER: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "Equals": lambda a, b: bool(a == b),
    "LessThan": lambda a, b: bool(a < b),
    "GreaterThan": lambda a, b: bool(a > b),
    "LessThanEquals": lambda a, b: bool(a <= b),
    "GreaterThanEquals": lambda a, b: bool(a >= b),
}
_KIND_CHECK: Final[Mapping[str, Callable[[Any], bool]]] = {
    "String": lambda value: isinstance(value, str),
    "Numeric": _is_number,
    "Boolean": lambda value: isinstance(value, bool),
    "Timestamp": lambda value: _timestamp(value) is not None,
}
_TYPE_TESTS: Final[Mapping[str, Callable[[Any], bool]]] = {
    "IsNull": lambda value: value is None,
    **{f"Is{kind}": check for kind, check in _KIND_CHECK.items()},
}
_COMPARISONS: Final = frozenset(
    {f"{kind}{order}" for kind in ("String", "Numeric", "Timestamp") for order in _ORDER} | {"BooleanEquals"}
)
_OPERATORS: Final = frozenset(
    _COMPARISONS
    | {f"{name}Path" for name in _COMPARISONS}
    | {"StringMatches", "IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"}
)


# --------------------------------------------------------------------------------------------- intrinsics

_TOKEN: Final = re.compile(
    r"\s*(?:(?P<name>States\.[A-Za-z]+)|(?P<number>-?\d+(?:\.\d+)?(?![\w.]))"
    r"|(?P<string>'(?:\\.|[^'\\])*')|(?P<path>\$[^,()\s]*)|(?P<punct>[(),]))"
)


def _format(template: str, *args: Any) -> str:
    pieces = re.split(r"(?<!\\)\{\}", template)
    if len(pieces) != len(args) + 1:
        raise StatesError("States.IntrinsicFailure", f"States.Format: {len(args)} arguments for {template!r}")
    pieces = [piece.replace("\\{", "{").replace("\\}", "}") for piece in pieces]
    text = pieces[0]
    for arg, piece in zip(args, pieces[1:], strict=True):
        text += (arg if isinstance(arg, str) else json.dumps(arg)) + piece
    return text


def _math_integers(name: str, *args: Any) -> list[int]:
    if not all(isinstance(arg, int) and not isinstance(arg, bool) for arg in args):
        raise StatesError("States.IntrinsicFailure", f"{name} needs integers, got {list(args)!r}")
    return list(args)


def _array_get_item(array: Any, index: Any) -> Any:
    if not isinstance(array, list) or not isinstance(index, int) or isinstance(index, bool):
        raise StatesError(
            "States.IntrinsicFailure", "States.ArrayGetItem needs an array and an integer index"
        )
    if not 0 <= index < len(array):
        raise StatesError("States.IntrinsicFailure", f"States.ArrayGetItem: index {index} is out of range")
    return array[index]


def _math_random(start: Any, end: Any, seed: Any = None) -> int:
    low, high = _math_integers("States.MathRandom", start, end)
    # The range's end is exclusive, as in Step Functions.
    return random.Random(seed).randrange(low, high) if seed is not None else random.randrange(low, high)  # noqa: S311


_INTRINSICS: Final[Mapping[str, Callable[..., Any]]] = {
    "States.MathAdd": lambda a, b: sum(_math_integers("States.MathAdd", a, b)),
    "States.MathRandom": _math_random,
    "States.Format": _format,
    "States.StringToJson": lambda text: json.loads(text),
    "States.JsonToString": lambda value: json.dumps(value, separators=(",", ":")),
    "States.Array": lambda *items: list(items),
    "States.ArrayGetItem": _array_get_item,
    "States.UUID": lambda: str(uuid.uuid4()),
}

# A parsed intrinsic argument: ("call", name, args), ("path", path) or ("value", literal).
Intrinsic = tuple[Any, ...]


def parse_intrinsic(text: str, where: str = "intrinsic") -> Intrinsic:
    """An intrinsic function call (arguments: numbers, 'strings', JSONPaths, nested calls) as a tree."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if match is None:
            raise UnsupportedDefinitionError(f"{where}: cannot parse {text!r} at {text[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    tokens.append(("end", ""))
    index = 0

    def expression() -> Intrinsic:
        nonlocal index
        kind, value = tokens[index]
        index += 1
        if kind == "number":
            return ("value", float(value) if "." in value else int(value))
        if kind == "string":
            # \' and \\ are unescaped here; \{ and \} are States.Format's to read.
            return ("value", re.sub(r"\\(['\\])", r"\1", value[1:-1]))
        if kind == "path":
            parse_path(value, where)
            return ("path", value)
        if kind != "name":
            raise UnsupportedDefinitionError(f"{where}: unexpected {value!r} in {text!r}")
        if value not in _INTRINSICS:
            raise UnsupportedDefinitionError(f"{where}: intrinsic function {value} is not supported")
        if tokens[index] != ("punct", "("):
            raise UnsupportedDefinitionError(f"{where}: {value} needs (arguments) in {text!r}")
        index += 1
        args: list[Intrinsic] = []
        while tokens[index] != ("punct", ")"):
            if args:
                if tokens[index] != ("punct", ","):
                    raise UnsupportedDefinitionError(f"{where}: expected , in {text!r}")
                index += 1
            args.append(expression())
        index += 1
        return ("call", value, args)

    tree = expression()
    if tree[0] != "call" or tokens[index][0] != "end":
        raise UnsupportedDefinitionError(f"{where}: {text!r} is not one intrinsic function call")
    return tree


# --------------------------------------------------------------------------------------------- checking

_COMMON: Final = frozenset({"Type", "Comment", "QueryLanguage"})
_FLOW: Final = frozenset({"Next", "End"})
_IO: Final = frozenset({"InputPath", "OutputPath"})
_STATE_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "Task": _COMMON
    | _FLOW
    | _IO
    | {"Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"}
    # HeartbeatSeconds only matters to activities and callbacks; a Lambda task never heartbeats.
    | {"TimeoutSeconds", "HeartbeatSeconds"},
    "Pass": _COMMON | _FLOW | _IO | {"Parameters", "Result", "ResultPath"},
    "Wait": _COMMON | _FLOW | _IO | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Choice": _COMMON | _IO | {"Choices", "Default"},
    "Succeed": _COMMON | _IO,
    "Fail": _COMMON | {"Error", "Cause", "ErrorPath", "CausePath"},
}
_TOP_FIELDS: Final = frozenset({"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"})
_RETRIER_FIELDS: Final = frozenset(
    {
        "ErrorEquals",
        "IntervalSeconds",
        "MaxAttempts",
        "BackoffRate",
        "MaxDelaySeconds",
        "JitterStrategy",
        "Comment",
    }
)
_CATCHER_FIELDS: Final = frozenset({"ErrorEquals", "Next", "ResultPath", "Comment"})


def _check_template(template: Any, where: str) -> None:
    """Parameters / ResultSelector / Payload: every `.$` value must be a supported path or intrinsic."""
    if isinstance(template, list):
        for item in template:
            _check_template(item, where)
    elif isinstance(template, dict):
        for key, value in template.items():
            if key.endswith(".$"):
                if isinstance(value, str) and value.startswith("States."):
                    parse_intrinsic(value, f"{where} {key}")
                else:
                    parse_path(value, f"{where} {key}")
            else:
                _check_template(value, where)


def _check_errors(names: Any, where: str, last: bool) -> None:
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise UnsupportedDefinitionError(f"{where}: ErrorEquals must be a non-empty list of names")
    if "States.ALL" in names and (len(names) != 1 or not last):
        raise UnsupportedDefinitionError(f"{where}: States.ALL must appear alone, in the last entry")


def _check_rule(rule: Any, where: str, top: bool) -> None:
    if not isinstance(rule, dict):
        raise UnsupportedDefinitionError(f"{where}: a choice rule must be an object")
    if top and "Next" not in rule:
        raise UnsupportedDefinitionError(f"{where}: a choice rule needs Next")
    combinators = [key for key in ("And", "Or", "Not") if key in rule]
    operators = [key for key in rule if key in _OPERATORS]
    unknown = set(rule) - _OPERATORS - {"And", "Or", "Not", "Variable", "Next", "Comment"}
    if unknown:
        raise UnsupportedDefinitionError(f"{where}: choice rule field(s) {sorted(unknown)} not supported")
    if len(combinators) + len(operators) != 1:
        raise UnsupportedDefinitionError(f"{where}: a choice rule needs exactly one operator")
    if combinators:
        children = rule[combinators[0]]
        children = [children] if combinators[0] == "Not" else children
        if not isinstance(children, list) or not children:
            raise UnsupportedDefinitionError(f"{where}: {combinators[0]} needs rules")
        for child in children:
            _check_rule(child, where, top=False)
        return
    parse_path(rule.get("Variable"), f"{where} Variable")
    if operators[0].endswith("Path"):
        parse_path(rule[operators[0]], f"{where} {operators[0]}")


def check_definition(definition: Any) -> None:
    """Raise UnsupportedDefinitionError naming the first thing in `definition` this module cannot run."""
    if not isinstance(definition, dict) or not isinstance(definition.get("States"), dict):
        raise UnsupportedDefinitionError("a definition needs a States object")
    unknown = set(definition) - _TOP_FIELDS
    if unknown:
        raise UnsupportedDefinitionError(f"top-level field(s) {sorted(unknown)} not supported")
    states: dict[str, Any] = definition["States"]
    if definition.get("StartAt") not in states:
        raise UnsupportedDefinitionError(f"StartAt {definition.get('StartAt')!r} is not a state")
    if definition.get("QueryLanguage", "JSONPath") != "JSONPath":
        raise UnsupportedDefinitionError(f"QueryLanguage {definition['QueryLanguage']} is not supported")

    def target(name: Any, where: str) -> None:
        if name not in states:
            raise UnsupportedDefinitionError(f"{where}: Next {name!r} is not a state")

    for name, state in states.items():
        where = f"state {name!r}"
        kind = state.get("Type") if isinstance(state, dict) else None
        if not isinstance(kind, str) or kind not in _STATE_FIELDS:
            raise UnsupportedDefinitionError(f"{where}: state type {kind!r} is not supported")
        where = f"{where} ({kind})"
        unknown = set(state) - _STATE_FIELDS[kind]
        if unknown:
            raise UnsupportedDefinitionError(f"{where}: field(s) {sorted(unknown)} not supported")
        if state.get("QueryLanguage", "JSONPath") != "JSONPath":
            raise UnsupportedDefinitionError(f"{where}: QueryLanguage {state['QueryLanguage']} not supported")
        if kind in ("Task", "Pass", "Wait"):
            if ("Next" in state) == bool(state.get("End")):
                raise UnsupportedDefinitionError(f"{where}: needs exactly one of Next and End: true")
            if "Next" in state:
                target(state["Next"], where)
        for field_name in ("InputPath", "OutputPath", "ResultPath", "SecondsPath", "TimestampPath"):
            if state.get(field_name) is not None:
                segments = parse_path(state[field_name], f"{where} {field_name}")
                if field_name == "ResultPath" and any(isinstance(s, int) for s in segments):
                    raise UnsupportedDefinitionError(f"{where} ResultPath: array indexes not supported")
        for field_name in ("ErrorPath", "CausePath"):
            if field_name in state:
                parse_path(state[field_name], f"{where} {field_name}")
        for field_name in ("Parameters", "ResultSelector"):
            if field_name in state:
                _check_template(state[field_name], f"{where} {field_name}")
        if kind == "Wait" and sum(key in state for key in _STATE_FIELDS["Wait"] - _COMMON - _FLOW - _IO) != 1:
            raise UnsupportedDefinitionError(
                f"{where}: needs one of Seconds/SecondsPath/Timestamp/TimestampPath"
            )
        if kind == "Task":
            _check_task(state, where, target)
        if kind == "Choice":
            choices = state.get("Choices")
            if not isinstance(choices, list) or not choices:
                raise UnsupportedDefinitionError(f"{where}: Choices must be a non-empty list")
            for index, rule in enumerate(choices):
                _check_rule(rule, f"{where} Choices[{index}]", top=True)
                target(rule["Next"], where)
            if "Default" in state:
                target(state["Default"], where)


def _check_task(state: dict[str, Any], where: str, target: Callable[[Any, str], None]) -> None:
    resource = state.get("Resource")
    if resource == LAMBDA_INVOKE:
        parameters = state.get("Parameters")
        if not isinstance(parameters, dict) or not {"FunctionName", "FunctionName.$"} & set(parameters):
            raise UnsupportedDefinitionError(f"{where}: {LAMBDA_INVOKE} needs Parameters.FunctionName")
        unknown = {key.removesuffix(".$") for key in parameters} - {"FunctionName", "Payload"}
        if unknown:
            raise UnsupportedDefinitionError(
                f"{where}: lambda:invoke parameter(s) {sorted(unknown)} not supported"
            )
    elif isinstance(resource, str) and resource in _SERVICE_TASKS:
        spec = _SERVICE_TASKS[resource]
        parameters = state.get("Parameters")
        given = {key.removesuffix(".$") for key in parameters} if isinstance(parameters, dict) else set()
        if not spec.required <= given:
            raise UnsupportedDefinitionError(f"{where}: {resource} needs Parameters {sorted(spec.required)}")
        unknown = given - spec.required - spec.optional
        if unknown:
            raise UnsupportedDefinitionError(
                f"{where}: {resource} parameter(s) {sorted(unknown)} not supported"
            )
    elif not (isinstance(resource, str) and _LAMBDA_ARN.match(resource)):
        raise UnsupportedDefinitionError(
            f"{where}: Resource {resource!r} is not supported (a Lambda function ARN, {LAMBDA_INVOKE} or "
            f"{', '.join(_SERVICE_TASKS)})"
        )
    for key, fields in (("Retry", _RETRIER_FIELDS), ("Catch", _CATCHER_FIELDS)):
        entries = state.get(key, [])
        if not isinstance(entries, list):
            raise UnsupportedDefinitionError(f"{where}: {key} must be a list")
        for index, entry in enumerate(entries):
            unknown = set(entry) - fields
            if unknown:
                raise UnsupportedDefinitionError(
                    f"{where} {key}[{index}]: field(s) {sorted(unknown)} not supported"
                )
            _check_errors(entry.get("ErrorEquals"), f"{where} {key}[{index}]", index == len(entries) - 1)
            if key == "Catch":
                target(entry.get("Next"), f"{where} Catch[{index}]")
                if entry.get("ResultPath") is not None:
                    parse_path(entry["ResultPath"], f"{where} Catch[{index}] ResultPath")
            elif entry.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
                raise UnsupportedDefinitionError(
                    f"{where} Retry[{index}]: JitterStrategy must be FULL or NONE"
                )


# --------------------------------------------------------------------------------------------- running


class _ExecutionFailed(StatesError):
    """A Fail state: ends the execution, never caught by Retry or Catch."""


class _ExecutionTimeout(StatesError):
    """The execution's own TimeoutSeconds ran out (possibly during a task): never caught."""


def _matches(names: Sequence[str], error: StatesError) -> bool:
    # States.Runtime (bad data paths) is never retried or caught, not even by States.ALL.
    if error.error == "States.Runtime" or isinstance(error, _ExecutionFailed | _ExecutionTimeout):
        return False
    return (
        error.error in names or "States.ALL" in names or ("States.TaskFailed" in names and error.task_failed)
    )


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Interpreter:
    """Runs executions of one ASL definition; Lambda tasks call `invoke(function_id(resource), payload)`.

    `function_id` maps a function ARN or name to the id `invoke` takes (default: the function name).
    `aws_client(service)` gives the boto3 client a service integration calls (default: boto3's, made at
    first use). Setting `stop` makes a running execution end promptly (ExecutionStopped / ABORTED), even
    mid-wait.
    """

    def __init__(
        self,
        definition: dict[str, Any],
        invoke: Invoke,
        *,
        function_id: Callable[[str], str] = function_name_of,
        time_scale: float = 1.0,
        stop: threading.Event | None = None,
        state_machine_arn: str = "",
        aws_client: Callable[[str], Any] | None = None,
    ) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be greater than 0")
        check_definition(definition)
        self.definition = definition
        self.invoke = invoke
        self.function_id = function_id
        self.aws_client = aws_client or _Clients()
        self.time_scale = time_scale
        self.stop = stop or threading.Event()
        self.state_machine_arn = state_machine_arn

    def execute(
        self,
        execution_input: Any,
        *,
        execution_arn: str = "",
        name: str = "",
        stop: threading.Event | None = None,
    ) -> ExecutionOutcome:
        """Run one execution to its end; never raises for ASL errors (they are the FAILED outcome).
        `stop`, when given, replaces the interpreter's stop event for this execution."""
        try:
            output = _Execution(self, execution_input, execution_arn, name, stop or self.stop).run()
        except StatesError as error:
            return ExecutionOutcome("FAILED", error=error.error or None, cause=error.cause or None)
        except ExecutionStopped:
            return ExecutionOutcome("ABORTED")
        return ExecutionOutcome("SUCCEEDED", output=output)


class _Execution:
    """One execution's state: the context object, its deadline and the state handlers."""

    def __init__(
        self, machine: Interpreter, execution_input: Any, execution_arn: str, name: str, stop: threading.Event
    ) -> None:
        self.machine = machine
        self.stop = stop
        self.states: dict[str, dict[str, Any]] = machine.definition["States"]
        self.input = execution_input
        timeout = machine.definition.get("TimeoutSeconds")
        # The execution's timeout bounds its (scaled) waits, so it is scaled with them.
        self.deadline = (
            time.monotonic() + float(timeout) * machine.time_scale if timeout is not None else math.inf
        )
        self.context: dict[str, Any] = {
            "Execution": {
                "Id": execution_arn,
                "Input": execution_input,
                "Name": name,
                "StartTime": _now_text(),
            },
            "StateMachine": {
                "Id": machine.state_machine_arn,
                "Name": machine.state_machine_arn.rpartition(":")[2],
            },
            "State": {},
        }

    def run(self) -> Any:
        name: str | None = self.machine.definition["StartAt"]
        data = self.input
        while name is not None:
            self._check_time()
            state = self.states[name]
            self.context["State"] = {"Name": name, "EnteredTime": _now_text(), "RetryCount": 0}
            handler = getattr(self, f"_state_{state['Type'].lower()}")
            data, name = handler(state, data)
        return data

    # ------------------------------------------------------------------------------- time

    def _check_time(self) -> None:
        if self.stop.is_set():
            raise ExecutionStopped
        if time.monotonic() >= self.deadline:
            raise _ExecutionTimeout("States.Timeout", "the execution ran past its TimeoutSeconds")

    def _sleep(self, seconds: float) -> None:
        """A scheduled wait (already scaled), cut short by the stop event or the execution deadline."""
        remaining = self.deadline - time.monotonic()
        if self.stop.wait(max(0.0, min(seconds, remaining))):
            raise ExecutionStopped
        self._check_time()

    # ------------------------------------------------------------------------------- data

    def _select(self, path: str, data: Any, where: str) -> Any:
        source = self.context if path.startswith("$$") else data
        value = _lookup(source, parse_path(path, where))
        if value is _MISSING:
            raise StatesError(
                "States.Runtime", f"{where}: the JSONPath {path} could not be found in the input"
            )
        return copy.deepcopy(value)

    def _render(self, template: Any, data: Any, where: str) -> Any:
        if isinstance(template, list):
            return [self._render(item, data, where) for item in template]
        if not isinstance(template, dict):
            return template
        rendered: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$") and value.startswith("States."):
                rendered[key[:-2]] = self._evaluate(parse_intrinsic(value), data, f"{where} {key}")
            elif key.endswith(".$"):
                rendered[key[:-2]] = self._select(value, data, f"{where} {key}")
            else:
                rendered[key] = self._render(value, data, where)
        return rendered

    def _evaluate(self, tree: Intrinsic, data: Any, where: str) -> Any:
        if tree[0] == "value":
            return tree[1]
        if tree[0] == "path":
            return self._select(tree[1], data, where)
        args = [self._evaluate(arg, data, where) for arg in tree[2]]
        try:
            return _INTRINSICS[tree[1]](*args)
        except StatesError:
            raise
        except (TypeError, ValueError) as error:
            raise StatesError("States.IntrinsicFailure", f"{where}: {tree[1]}: {error}") from None

    def _input(self, state: Mapping[str, Any], raw: Any) -> Any:
        """InputPath, then Parameters: the state's effective input."""
        path = state.get("InputPath", "$")
        data = {} if path is None else self._select(path, raw, "InputPath")
        if "Parameters" in state:
            data = self._render(state["Parameters"], data, "Parameters")
        return data

    def _output(self, state: Mapping[str, Any], data: Any) -> Any:
        path = state.get("OutputPath", "$")
        return {} if path is None else self._select(path, data, "OutputPath")

    @staticmethod
    def _next(state: Mapping[str, Any]) -> str | None:
        return None if state.get("End") else str(state["Next"])

    # ------------------------------------------------------------------------------- states

    def _state_pass(self, state: Mapping[str, Any], raw: Any) -> tuple[Any, str | None]:
        effective = self._input(state, raw)
        result = copy.deepcopy(state["Result"]) if "Result" in state else effective
        return self._output(state, _with_result(raw, state.get("ResultPath", "$"), result)), self._next(state)

    def _state_succeed(self, state: Mapping[str, Any], raw: Any) -> tuple[Any, str | None]:
        return self._output(state, self._input(state, raw)), None

    def _state_fail(self, state: Mapping[str, Any], raw: Any) -> tuple[Any, str | None]:
        error = (
            self._select(state["ErrorPath"], raw, "ErrorPath") if "ErrorPath" in state else state.get("Error")
        )
        cause = (
            self._select(state["CausePath"], raw, "CausePath") if "CausePath" in state else state.get("Cause")
        )
        raise _ExecutionFailed(str(error or ""), str(cause or ""))

    def _state_wait(self, state: Mapping[str, Any], raw: Any) -> tuple[Any, str | None]:
        data = self._input(state, raw)
        if "Seconds" in state or "SecondsPath" in state:
            seconds = (
                state["Seconds"]
                if "Seconds" in state
                else self._select(state["SecondsPath"], data, "SecondsPath")
            )
            if not _is_number(seconds) or seconds < 0:
                raise StatesError(
                    "States.Runtime", f"Wait: {seconds!r} is not a non-negative number of seconds"
                )
            delay = float(seconds)
        else:
            text = (
                state["Timestamp"]
                if "Timestamp" in state
                else self._select(state["TimestampPath"], data, "TimestampPath")
            )
            until = _timestamp(text)
            if until is None:
                raise StatesError("States.Runtime", f"Wait: {text!r} is not an RFC 3339 timestamp")
            delay = max(0.0, (until - datetime.now(UTC)).total_seconds())
        self._sleep(delay * self.machine.time_scale)
        return self._output(state, data), self._next(state)

    def _state_choice(self, state: Mapping[str, Any], raw: Any) -> tuple[Any, str | None]:
        data = self._input(state, raw)
        for rule in state["Choices"]:
            if self._test(rule, data):
                return self._output(state, data), str(rule["Next"])
        if "Default" not in state:
            raise StatesError("States.NoChoiceMatched", "no choice rule matched and there is no Default")
        return self._output(state, data), str(state["Default"])

    def _test(self, rule: Mapping[str, Any], data: Any) -> bool:
        if "And" in rule:
            return all(self._test(child, data) for child in rule["And"])
        if "Or" in rule:
            return any(self._test(child, data) for child in rule["Or"])
        if "Not" in rule:
            return not self._test(rule["Not"], data)
        (operator,) = (key for key in rule if key in _OPERATORS)
        expected = rule[operator]
        source = self.context if rule["Variable"].startswith("$$") else data
        value = _lookup(source, parse_path(rule["Variable"]))
        if operator == "IsPresent":
            return (value is not _MISSING) == bool(expected)
        if value is _MISSING:
            raise StatesError("States.Runtime", f"Choice: Variable {rule['Variable']} is not in the input")
        if operator in _TYPE_TESTS:
            return _TYPE_TESTS[operator](value) == bool(expected)
        if operator.endswith("Path"):
            operator = operator.removesuffix("Path")
            expected = self._select(expected, data, f"Choice {operator}Path")
        if operator == "StringMatches":
            return isinstance(value, str) and _string_matches(value, str(expected))
        kind = next(kind for kind in _KIND_CHECK if operator.startswith(kind))
        if not (_KIND_CHECK[kind](value) and _KIND_CHECK[kind](expected)):
            return False  # a comparison across types is false, as in Step Functions
        if kind == "Timestamp":
            value, expected = _timestamp(value), _timestamp(expected)
        return _ORDER[operator.removeprefix(kind)](value, expected)

    def _state_task(self, state: Mapping[str, Any], raw: Any) -> tuple[Any, str | None]:
        retriers: list[dict[str, Any]] = state.get("Retry", [])
        attempts = [0] * len(retriers)
        while True:
            try:
                result = self._task_result(state, self._input(state, raw))
                if "ResultSelector" in state:
                    result = self._render(state["ResultSelector"], result, "ResultSelector")
                output = _with_result(raw, state.get("ResultPath", "$"), result)
                return self._output(state, output), self._next(state)
            except StatesError as error:
                index = next((i for i, r in enumerate(retriers) if _matches(r["ErrorEquals"], error)), None)
                if index is not None and attempts[index] < int(retriers[index].get("MaxAttempts", 3)):
                    self._sleep(self._retry_delay(retriers[index], attempts[index]) * self.machine.time_scale)
                    attempts[index] += 1
                    self.context["State"]["RetryCount"] = sum(attempts)
                    log.debug("retrying %s after %s", self.context["State"]["Name"], error.error)
                    continue
                catcher = next((c for c in state.get("Catch", []) if _matches(c["ErrorEquals"], error)), None)
                if catcher is None:
                    raise
                error_output = {"Error": error.error, "Cause": error.cause}
                return _with_result(raw, catcher.get("ResultPath", "$"), error_output), str(catcher["Next"])

    @staticmethod
    def _retry_delay(retrier: Mapping[str, Any], attempt: int) -> float:
        delay = float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** attempt
        if "MaxDelaySeconds" in retrier:
            delay = min(delay, float(retrier["MaxDelaySeconds"]))
        if retrier.get("JitterStrategy") == "FULL":
            delay = random.uniform(0, delay)  # noqa: S311 - jitter, not security
        return delay

    def _task_result(self, state: Mapping[str, Any], effective: Any) -> Any:
        if state["Resource"] in _SERVICE_TASKS:
            return self._service_result(_SERVICE_TASKS[state["Resource"]], effective)
        optimized = state["Resource"] == LAMBDA_INVOKE
        if optimized:
            if not isinstance(effective, dict) or not isinstance(effective.get("FunctionName"), str):
                raise StatesError("States.Runtime", "lambda:invoke: Parameters.FunctionName must be a string")
            function, payload = effective["FunctionName"], effective.get("Payload", {})
        else:
            function, payload = state["Resource"], effective
        result = self._call(self.machine.function_id(function), payload, state.get("TimeoutSeconds"))
        # The optimized integration answers with Lambda's Invoke response, the plain ARN with the payload.
        return {"ExecutedVersion": "$LATEST", "Payload": result, "StatusCode": 200} if optimized else result

    def _service_result(self, spec: _ServiceTask, parameters: Any) -> Any:
        """The API call's answer (without its ResponseMetadata), as Step Functions hands it on."""
        client = self.machine.aws_client(spec.service)
        try:
            answer = getattr(client, spec.method)(**parameters)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code") or "Exception"
            raise StatesError(f"{spec.error_prefix}.{code}", str(error), task_failed=True) from None
        except BotoCoreError as error:
            raise StatesError(
                f"{spec.error_prefix}.SdkClientException", str(error), task_failed=True
            ) from None
        answer.pop("ResponseMetadata", None)
        return json.loads(json.dumps(answer, default=str))

    def _call(self, function: str, payload: Any, timeout: Any) -> Any:
        """Invoke in a helper thread, so a stop or the task's TimeoutSeconds need not wait for the handler."""
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                # Payloads travel as JSON both ways, as Lambda's do.
                result = self.machine.invoke(function, json.loads(json.dumps(payload)))
                try:
                    box["result"] = json.loads(json.dumps(result))
                except (TypeError, ValueError) as error:
                    box["error"], box["name"] = error, "Runtime.MarshalError"
            except Exception as error:
                box["error"], box["name"] = error, type(error).__name__
            finally:
                done.set()

        threading.Thread(target=call, name=f"asl-task-{function}", daemon=True).start()
        task_deadline = time.monotonic() + float(timeout) if timeout is not None else math.inf
        while not done.wait(_TASK_CHECK_SECONDS):
            self._check_time()
            if time.monotonic() >= task_deadline:
                raise StatesError("States.Timeout", f"{function} ran past the task's TimeoutSeconds")
        if "error" in box:
            # Step Functions names a Lambda error by its errorType: the exception's class name.
            error: Exception = box["error"]
            cause = {
                "errorMessage": str(error),
                "errorType": box["name"],
                "stackTrace": traceback.format_tb(error.__traceback__),
            }
            raise StatesError(box["name"], json.dumps(cause), task_failed=True)
        return box["result"]


# --------------------------------------------------------------------------------------------- the runner


def _record_in_moto(execution_arn: str, outcome: ExecutionOutcome) -> bool:
    """Write the outcome into the in-process moto's execution; False when that is not reachable."""
    try:
        from moto.core.utils import utcnow  # noqa: PLC0415 - moto is a dev dependency
        from moto.stepfunctions.models import stepfunctions_backends  # noqa: PLC0415
    except ImportError:
        return False
    parts = execution_arn.split(":")
    if len(parts) < 8:
        return False
    region, account = parts[3], parts[4]
    try:
        execution = stepfunctions_backends[account][region].describe_execution(execution_arn)
    except Exception:  # moto's ExecutionDoesNotExist: a moto in another process
        return False
    if execution.status != "RUNNING":
        return False  # stopped meanwhile (StopExecution): ABORTED stays
    if outcome.status == "SUCCEEDED":
        execution.output = json.dumps(outcome.output)
    execution.error, execution.cause = outcome.error, outcome.cause
    execution.stop_date = utcnow()
    execution.status = outcome.status  # last: readers see a finished execution only once it is complete
    return True


class StateMachineRunner:
    """Runs the executions StartExecution records in moto, each with the definition's Interpreter."""

    def __init__(
        self,
        client: Any,
        machines: Sequence[StateMachineSpec],
        invoke: Invoke,
        *,
        function_id: Callable[[str], str] = function_name_of,
        time_scale: float = 1.0,
        stop: threading.Event | None = None,
        poll_seconds: float = 0.2,
    ) -> None:
        self.client = client
        self.stop = stop or threading.Event()
        self.poll_seconds = poll_seconds
        self.interpreters: dict[str, Interpreter] = {}
        for machine in machines:
            try:
                check_definition(machine.definition)
            except UnsupportedDefinitionError as error:
                raise UnsupportedDefinitionError(f"{machine.logical_id}: {error}") from None
            self.interpreters[machine.arn] = Interpreter(
                machine.definition,
                invoke,
                function_id=function_id,
                time_scale=time_scale,
                stop=self.stop,
                state_machine_arn=machine.arn,
            )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seen: set[str] = set()
        # Executions being run: their state machine, and the event that stops them.
        self._active: dict[str, tuple[str, threading.Event]] = {}
        self._outcomes: dict[str, ExecutionOutcome] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> StateMachineRunner:
        """Poll in a daemon thread until `stop` is set."""
        self._thread = threading.Thread(target=self.run, name="asyncgate-stepfunctions", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """The poll loop (blocking): every poll_seconds, start a worker for each new RUNNING execution."""
        try:
            while not self.stop.is_set():
                try:
                    self.poll_once()
                except Exception:
                    if self.stop.is_set():
                        return
                    log.exception("polling Step Functions executions failed; retrying")
                self.stop.wait(self.poll_seconds)
        finally:
            # Only this thread starts workers, so none can start after this.
            with self._lock:
                for _, event in self._active.values():
                    event.set()

    def poll_once(self) -> None:
        for machine_arn in self.interpreters:
            running = self._running(machine_arn)
            for execution_arn in running:
                with self._lock:
                    if execution_arn in self._seen:
                        continue
                    self._seen.add(execution_arn)
                    stop = threading.Event()
                    self._active[execution_arn] = (machine_arn, stop)
                described = self.client.describe_execution(executionArn=execution_arn)
                threading.Thread(
                    target=self._execute,
                    args=(
                        machine_arn,
                        execution_arn,
                        described["name"],
                        described.get("input") or "{}",
                        stop,
                    ),
                    name=f"asyncgate-execution-{described['name']}",
                    daemon=True,
                ).start()
            with self._lock:
                # No longer RUNNING in moto while still running here: StopExecution aborted it.
                for execution_arn, (owner, stop) in self._active.items():
                    if owner == machine_arn and execution_arn not in running:
                        stop.set()

    def active(self) -> set[str]:
        """The executions being run now."""
        with self._lock:
            return set(self._active)

    def _running(self, machine_arn: str) -> list[str]:
        """Every RUNNING execution. moto's page token names the next execution, and refuses itself
        (InvalidToken) once that one has ended: the listing then starts again, as a client of Step
        Functions retries an expired token."""
        for _ in range(LISTING_ATTEMPTS - 1):
            with contextlib.suppress(self.client.exceptions.InvalidToken):
                return self._list_running(machine_arn)
        return self._list_running(machine_arn)

    def _list_running(self, machine_arn: str) -> list[str]:
        arns: list[str] = []
        request: dict[str, Any] = {"stateMachineArn": machine_arn, "statusFilter": "RUNNING"}
        request["maxResults"] = 1000
        while True:
            page = self.client.list_executions(**request)
            arns.extend(execution["executionArn"] for execution in page["executions"])
            if not page.get("nextToken"):
                return arns
            request["nextToken"] = page["nextToken"]

    def _execute(
        self, machine_arn: str, execution_arn: str, name: str, execution_input: str, stop: threading.Event
    ) -> None:
        outcome = self.interpreters[machine_arn].execute(
            json.loads(execution_input), execution_arn=execution_arn, name=name, stop=stop
        )
        if outcome.status == "FAILED":
            log.warning("execution %s failed: %s %s", name, outcome.error, outcome.cause)
        if outcome.status != "ABORTED":
            _record_in_moto(execution_arn, outcome)
        with self._changed:
            self._active.pop(execution_arn, None)
            self._outcomes[execution_arn] = outcome
            self._changed.notify_all()

    def outcome(self, execution_arn: str) -> ExecutionOutcome | None:
        """How the execution ended, once it has (None while it runs or before it is seen)."""
        with self._lock:
            return self._outcomes.get(execution_arn)

    def wait(self, execution_arn: str, timeout: float) -> ExecutionOutcome:
        """Block until the execution ends; TimeoutError past `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: execution_arn in self._outcomes, timeout):
                raise TimeoutError(f"execution {execution_arn} did not end within {timeout} s")
            return self._outcomes[execution_arn]


class _Function(Protocol):
    def invoke(self, event: dict[str, Any]) -> Any: ...


def start_state_machine_runner(
    stack: Stack,
    functions: Mapping[str, _Function],
    stopping: threading.Event,
    spawn: Callable[[Callable[[], None], str], None],
    *,
    time_scale: float,
    client: Any = None,
) -> StateMachineRunner | None:
    """The local stack's runner for the stack's state machines (None without any), polling in a thread
    `spawn` starts until `stopping` is set; Lambda tasks call `functions[logical_id].invoke`."""
    machines = stack.state_machines()
    if not machines:
        return None
    if client is None:
        import boto3  # noqa: PLC0415 - after the local stack has set AWS_ENDPOINT_URL

        client = boto3.client("stepfunctions")
    runner = StateMachineRunner(
        client,
        machines,
        lambda function, payload: functions[function].invoke(payload),
        function_id=stack.function_for_arn,
        time_scale=time_scale,
        stop=stopping,
    )
    spawn(runner.run, "stepfunctions")
    return runner
