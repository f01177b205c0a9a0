"""Faults injected into the product's own AWS clients (`asyncgate.aws`), through botocore's event hooks.

Every function "container" of the local stack shares those clients (one process), so a rule reaches
every handler; the emulator's own clients (SQS pollers, stream and Step Functions runners) and the
harness's reads are other clients, never touched. Each call drawn by a rule gets one action:

- ERROR: the service answers an error to the first `attempts` HTTP attempts of the call, as an HTTP
  answer, so botocore retries it as it would in AWS (throttling and 5xx are retried, a 400 is not).
- LOST_ANSWER: the call succeeded, its answer never came back: the caller sees a timeout although
  the write happened.
- RETRIED_COMMIT: the first attempt commits and its answer is lost; botocore's retry then meets the
  write already done (a conditional write fails its condition).
- KILL: the invocation dies right after the call succeeded (InvocationKilled, which no `except
  Exception` catches): a handler killed between two writes.
- DROP: the call is answered as a success and does nothing (a message lost).
- DUPLICATE: the call is made once more after it succeeded, `delay_seconds` later for a message (a
  message delivered twice, the copy late: re-ordered).
- DELAY: a message waits `delay_seconds` longer than it asked (re-ordered deliveries).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from botocore import xform_name
from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from botocore.compat import HTTPHeaders
from botocore.exceptions import ReadTimeoutError

from asyncgate_dev.lambda_runtime import InvocationKilled

# The largest delay SQS takes.
MAX_SQS_DELAY = 900


class Action(StrEnum):
    ERROR = "error"
    LOST_ANSWER = "lost_answer"
    RETRIED_COMMIT = "retried_commit"
    KILL = "kill"
    DROP = "drop"
    DUPLICATE = "duplicate"
    DELAY = "delay"


@dataclass(frozen=True)
class ServiceError:
    code: str
    status: int
    message: str = "injected by the chaos harness"


THROTTLED = ServiceError("ThrottlingException", 400)
DYNAMODB_THROTTLED = ServiceError("ProvisionedThroughputExceededException", 400)
DYNAMODB_INTERNAL = ServiceError("InternalServerError", 500)
# What DynamoDB answers a write that would grow an item past 400 KB: not retried.
ITEM_TOO_LARGE = ServiceError("ValidationException", 400, "Item size has exceeded the maximum allowed size")
SQS_INTERNAL = ServiceError("InternalError", 500)
SQS_THROTTLED = ServiceError("RequestThrottled", 400)
S3_INTERNAL = ServiceError("InternalError", 500)
S3_SLOW_DOWN = ServiceError("SlowDown", 503)

Params = Mapping[str, Any]
Hook = Callable[..., None]


def _any_call(params: Params) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    """Calls of `operations` on `service` (botocore's service id: dynamodb, sqs, s3, sfn) that `when`
    accepts draw this rule with probability `rate`, at most `limit` times (None: no bound)."""

    service: str
    operations: frozenset[str]
    action: Action
    rate: float
    limit: int | None = None
    error: ServiceError | None = None
    # ERROR: how many HTTP attempts of the call fail (botocore makes 4 with the product's config).
    attempts: int = 1
    # DELAY, DUPLICATE: seconds added to the message's delay, drawn up to this many.
    delay_seconds: int = 0
    when: Callable[[Params], bool] = field(default=_any_call)

    @property
    def label(self) -> str:
        what = f"{self.error.code}x{self.attempts}" if self.error else self.action.value
        return f"{self.service}:{'/'.join(sorted(self.operations))}:{what}"


@dataclass
class _Call:
    """The call a rule drew, carried from one hook to the next (botocore makes it on one thread)."""

    rule: Rule
    operation: str
    params: dict[str, Any]
    broken_attempts: int = 0


class _Body:
    """The raw stream botocore reads a made-up answer from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._data


class Injector:
    """Hooks on the product's clients, installed once; the active rules are swapped per fault.
    `clean` holds a client of each service without hooks (it makes the copy of a duplicated call and
    the committed first try of RETRIED_COMMIT). `counts` tells how many calls each rule hit."""

    def __init__(self, clients: Mapping[str, BaseClient], clean: Mapping[str, BaseClient], seed: int) -> None:
        self._clients = dict(clients)
        self._clean = dict(clean)
        self._rules: tuple[Rule, ...] = ()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._local = threading.local()
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        for service, client in self._clients.items():
            events = client.meta.events
            events.register(f"before-parameter-build.{service}", self._draw, unique_id="chaos-draw")
            # botocore takes these two handlers' answers as the service's (its stubs say they return None).
            events.register(f"before-call.{service}", cast("Hook", self._before_call), unique_id="chaos-call")
            events.register(f"before-send.{service}", cast("Hook", self._before_send), unique_id="chaos-send")
            events.register(f"after-call.{service}", self._after_call, unique_id="chaos-after")

    def uninstall(self) -> None:
        for service, client in self._clients.items():
            events = client.meta.events
            events.unregister(f"before-parameter-build.{service}", unique_id="chaos-draw")
            events.unregister(f"before-call.{service}", unique_id="chaos-call")
            events.unregister(f"before-send.{service}", unique_id="chaos-send")
            events.unregister(f"after-call.{service}", unique_id="chaos-after")

    @contextmanager
    def active(self, rules: tuple[Rule, ...]) -> Iterator[Counter[str]]:
        """The rules in force inside the block; yields the counts of this block's injections."""
        with self._lock:
            self._rules, self.counts = rules, Counter()
        try:
            yield self.counts
        finally:
            with self._lock:
                self._rules = ()

    def _pick(self, service: str, operation: str, params: Params) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.service != service or operation not in rule.operations:
                    continue
                if rule.limit is not None and self.counts[rule.label] >= rule.limit:
                    continue
                if self._rng.random() < rule.rate and rule.when(params):
                    self.counts[rule.label] += 1
                    return rule
        return None

    def _draw(self, params: dict[str, Any], model: Any, event_name: str, **kwargs: Any) -> None:
        service = event_name.split(".")[1]
        rule = self._pick(service, model.name, params)
        self._local.call = _Call(rule, model.name, dict(params)) if rule else None
        if rule is not None and rule.action is Action.DELAY:
            params["DelaySeconds"] = self._later(params, rule)

    def _later(self, params: Params, rule: Rule) -> int:
        with self._lock:
            extra = self._rng.randint(1, max(1, rule.delay_seconds))
        return min(MAX_SQS_DELAY, int(params.get("DelaySeconds", 0)) + extra)

    def _current(self, operation: str) -> _Call | None:
        call: _Call | None = getattr(self._local, "call", None)
        return call if call is not None and call.operation == operation else None

    def _before_call(
        self, model: Any, params: Any, **kwargs: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        call = self._current(model.name)
        if call is None or call.rule.action is not Action.DROP:
            return None
        self._local.call = None
        body = call.params.get("MessageBody", "")
        parsed = {
            "MessageId": str(uuid.uuid4()),
            "MD5OfMessageBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }
        return _answer("", 200, "application/x-amz-json-1.0", b"{}"), parsed

    def _before_send(self, request: Any, event_name: str, **kwargs: Any) -> AWSResponse | None:
        service, operation = event_name.split(".")[1:3]
        call = self._current(operation)
        if call is None:
            return None
        rule = call.rule
        if rule.action is Action.ERROR and call.broken_attempts < rule.attempts:
            call.broken_attempts += 1
            assert rule.error is not None
            return self._error_answer(service, request.url, rule.error)
        if rule.action is Action.RETRIED_COMMIT and call.broken_attempts == 0:
            call.broken_attempts += 1
            self._clean_call(service, call)  # the first try, committed; its answer lost
            raise ReadTimeoutError(endpoint_url=request.url)
        return None

    def _after_call(self, model: Any, http_response: Any, **kwargs: Any) -> None:
        call = self._current(model.name)
        self._local.call = None
        if call is None or http_response.status_code >= 300:
            return
        action = call.rule.action
        if action is Action.LOST_ANSWER:
            raise ReadTimeoutError(endpoint_url=self._clients[call.rule.service].meta.endpoint_url)
        if action is Action.KILL:
            raise InvocationKilled(f"killed after {call.rule.service} {call.operation}")
        if action is Action.DUPLICATE:
            params = call.params
            if "DelaySeconds" in params or call.rule.delay_seconds:
                params = {**params, "DelaySeconds": self._later(params, call.rule)}
            self._clean_call(call.rule.service, _Call(call.rule, call.operation, params))

    def _clean_call(self, service: str, call: _Call) -> None:
        getattr(self._clean[service], xform_name(call.operation))(**call.params)

    def _error_answer(self, service: str, url: str, error: ServiceError) -> AWSResponse:
        """The error as the service's protocol writes it, for botocore to parse (and retry) as its own."""
        protocol = self._clients[service].meta.service_model.protocol
        if protocol.startswith("rest-xml"):
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{error.code}</Code>"
                f"<Message>{error.message}</Message></Error>"
            ).encode()
            return _answer(url, error.status, "application/xml", body)
        body = json.dumps({"__type": error.code, "message": error.message}).encode()
        return _answer(url, error.status, "application/x-amz-json-1.0", body)


def _answer(url: str, status: int, content_type: str, body: bytes) -> AWSResponse:
    headers = HTTPHeaders()
    headers["Content-Type"] = content_type
    return AWSResponse(url, status, headers, _Body(body))
