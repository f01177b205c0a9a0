"""DynamoDB Streams event source mappings for the local stack, the way Lambda runs them.

One `StreamRunner` per mapping follows every shard of the table's stream (parents before children),
turns each stream record into the record Lambda hands the function, drops those no FilterCriteria pattern
matches, and invokes the function with batches of up to BatchSize records, one batch at a time per
shard so a shard's records stay in order. A failed batch is handled as Lambda does:

* the function raises: the whole batch is retried (split in two first with BisectBatchOnFunctionError;
  a split does not count as a retry);
* with ReportBatchItemFailures, a returned `batchItemFailures[].itemIdentifier` (a SequenceNumber) means
  "retry from this record": the records before it are done; an identifier that is empty or not in the
  batch fails the whole batch;
* after MaximumRetryAttempts retries the records still failing are discarded and, when the mapping has an
  OnFailure destination, described there in Lambda's own invocation record (`DDBStreamBatchInfo`: shard
  and sequence number range, not the records themselves; read them back from the stream by that range).

Lambda's default MaximumRetryAttempts of -1 retries until the record expires (24 hours); locally that is
bounded to LOCAL_MAX_RETRY_ATTEMPTS so a poison record cannot stall a shard forever.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from asyncgate_dev.lambda_runtime import LambdaContext
from asyncgate_dev.template import DynamoDbEventSource, FunctionSpec, Stack, TemplateError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "LOCAL_MAX_RETRY_ATTEMPTS",
    "StreamRunner",
    "check_pattern",
    "lambda_record",
    "matches",
    "passes_filters",
    "start_stream_runners",
]

log = logging.getLogger("asyncgate.dev")

Invoke = Callable[[dict[str, Any], LambdaContext], Any]

LOCAL_MAX_RETRY_ATTEMPTS = 10
# How often an idle shard is read again, and how often the stream is asked for new shards.
POLL_SECONDS = 0.25
DESCRIBE_SECONDS = 5.0
# GetRecords returns at most 1000 records a call.
READ_LIMIT = 1000
EVENT_VERSION = "1.1"


# --------------------------------------------------------------------------------------------- filtering

_OPERATORS = frozenset({"exists", "prefix", "suffix", "anything-but", "numeric", "equals-ignore-case"})
_NUMERIC_OPERATORS: Mapping[str, Callable[[float, float], bool]] = {
    "=": lambda left, right: left == right,
    "<": lambda left, right: left < right,
    "<=": lambda left, right: left <= right,
    ">": lambda left, right: left > right,
    ">=": lambda left, right: left >= right,
}


class _Missing:
    """A field the record does not have (distinct from JSON null)."""


MISSING = _Missing()


def check_pattern(pattern: Any, where: str = "pattern") -> None:
    """Refuse (ValueError) what this matcher does not implement, rather than silently never matching."""
    if not isinstance(pattern, Mapping) or not pattern:
        raise ValueError(f"{where}: expected a non-empty JSON object")
    for key, value in pattern.items():
        if isinstance(value, Mapping):
            check_pattern(value, f"{where}.{key}")
        elif isinstance(value, list) and value:
            for item in value:
                if isinstance(item, Mapping):
                    _check_operator(item, f"{where}.{key}")
                elif isinstance(item, list):
                    raise ValueError(f"{where}.{key}: nested lists are not a pattern")
        else:
            raise ValueError(f"{where}.{key}: a pattern's values are objects or non-empty lists")


def _check_operator(matcher: Mapping[str, Any], where: str) -> None:
    if len(matcher) != 1 or next(iter(matcher)) not in _OPERATORS:
        raise ValueError(f"{where}: unsupported filter operator {dict(matcher)!r}")
    ((name, argument),) = matcher.items()
    if name == "exists" and not isinstance(argument, bool):
        raise ValueError(f"{where}: exists takes true or false")
    if name in ("prefix", "suffix", "equals-ignore-case") and not isinstance(argument, str):
        raise ValueError(f"{where}: {name} takes a string")
    if (
        name == "anything-but"
        and isinstance(argument, Mapping)
        and (list(argument) != ["prefix"] or not isinstance(argument["prefix"], str))
    ):
        raise ValueError(f"{where}: anything-but takes values or {{'prefix': string}}")
    if name == "numeric":
        pairs = argument if isinstance(argument, list) else []
        if not pairs or len(pairs) % 2 or len(pairs) > 4:
            raise ValueError(f"{where}: numeric takes [op, number] or [op, number, op, number]")
        for operator, number in zip(pairs[::2], pairs[1::2], strict=True):
            if operator not in _NUMERIC_OPERATORS or not _is_number(number):
                raise ValueError(f"{where}: bad numeric comparison {operator!r} {number!r}")


def _is_number(value: Any) -> bool:
    # JSON true/false are not numbers, though Python's bool is an int.
    return isinstance(value, int | float) and not isinstance(value, bool)


def matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """Whether `event` matches one EventBridge-style pattern: every field of the pattern must match."""
    for key, expected in pattern.items():
        value = event[key] if isinstance(event, Mapping) and key in event else MISSING
        if isinstance(expected, Mapping):
            # A nested pattern over a missing field still runs, so `{"exists": false}` deep inside works.
            if value is not MISSING and not isinstance(value, Mapping):
                return False
            if not matches(expected, {} if value is MISSING else value):
                return False
        elif not any(_leaf_matches(matcher, value) for matcher in expected):
            return False
    return True


def _leaf_matches(matcher: Any, value: Any) -> bool:
    if isinstance(matcher, Mapping) and "exists" in matcher:
        return (value is not MISSING) is matcher["exists"]
    if value is MISSING:
        return False
    # An array in the record matches when any of its elements does.
    if isinstance(value, list):
        return any(_leaf_matches(matcher, item) for item in value)
    if not isinstance(matcher, Mapping):
        return _same(matcher, value)
    ((name, argument),) = matcher.items()
    if name == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if name == "suffix":
        return isinstance(value, str) and value.endswith(argument)
    if name == "equals-ignore-case":
        return isinstance(value, str) and value.casefold() == argument.casefold()
    if name == "anything-but":
        if isinstance(argument, Mapping):
            return isinstance(value, str) and not value.startswith(argument["prefix"])
        excluded = argument if isinstance(argument, list) else [argument]
        return not any(_same(item, value) for item in excluded)
    if name == "numeric":
        # DynamoDB's N attributes are strings in a record, so they never match `numeric`, as in Lambda.
        return _is_number(value) and all(
            _NUMERIC_OPERATORS[operator](value, number)
            for operator, number in zip(argument[::2], argument[1::2], strict=True)
        )
    return False  # pragma: no cover - check_pattern refuses other operators


def _same(expected: Any, value: Any) -> bool:
    if _is_number(expected) or _is_number(value):
        return _is_number(expected) and _is_number(value) and expected == value
    return type(expected) is type(value) and expected == value


def passes_filters(patterns: Iterable[Mapping[str, Any]], record: Mapping[str, Any]) -> bool:
    """FilterCriteria: no filters pass everything; otherwise any one matching pattern passes the record."""
    patterns = list(patterns)
    return not patterns or any(matches(pattern, record) for pattern in patterns)


# --------------------------------------------------------------------------------------------- the event


def _json_attribute(value: Any) -> Any:
    """An AttributeValue as JSON: boto3 hands binary (B, BS) back as bytes, the event carries base64."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return {key: _json_attribute(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_attribute(item) for item in value]
    return value


def lambda_record(raw: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """The record Lambda puts in `event["Records"]` for one GetRecords record (as boto3 returns it)."""
    change = raw["dynamodb"]
    dynamodb: dict[str, Any] = {}
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        # Whole epoch seconds, as the event carries it.
        dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
    elif created is not None:
        dynamodb["ApproximateCreationDateTime"] = int(created)
    for key in ("Keys", "NewImage", "OldImage"):
        if key in change:
            dynamodb[key] = _json_attribute(change[key])
    dynamodb["SequenceNumber"] = change["SequenceNumber"]
    dynamodb["SizeBytes"] = int(change["SizeBytes"])
    dynamodb["StreamViewType"] = change["StreamViewType"]
    record: dict[str, Any] = {
        "eventID": raw["eventID"],
        "eventName": raw["eventName"],
        "eventVersion": EVENT_VERSION,
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    if raw.get("userIdentity"):
        # Only on deletes done by TTL.
        record["userIdentity"] = dict(raw["userIdentity"])
    return record


def _unchanged(raw: Mapping[str, Any]) -> bool:
    """A write that changed nothing. DynamoDB writes no stream record for it; moto does, so it is
    dropped here (visible only when the stream carries both images)."""
    change = raw["dynamodb"]
    return (
        raw.get("eventName") == "MODIFY"
        and "OldImage" in change
        and "NewImage" in change
        and change["OldImage"] == change["NewImage"]
    )


def _iso(epoch_seconds: int | None) -> str | None:
    if epoch_seconds is None:
        return None
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------- the runner


@dataclass
class _Shard:
    shard_id: str
    parent: str | None
    iterator: str | None
    last_sequence: str | None = None
    # No NextShardIterator came back: the shard is closed and read to its end.
    ended: bool = False
    buffer: deque[dict[str, Any]] = field(default_factory=deque)
    buffered_since: float | None = None

    @property
    def done(self) -> bool:
        return self.ended and not self.buffer


@dataclass
class _Outcome:
    """How an invocation went: `failed_from` is the index of the first record to retry (None: success)."""

    failed_from: int | None
    function_error: bool = False


@dataclass
class StreamRunner:
    """One DynamoDB event source mapping. `run()` polls until `stopping` is set."""

    source: DynamoDbEventSource
    stream_arn: str
    invoke: Invoke
    streams: Any  # a boto3 `dynamodbstreams` client (no type stubs installed for it)
    stopping: threading.Event
    function_name: str = "asyncgate-local"
    timeout_seconds: float = 30.0
    sqs: SQSClient | None = None
    on_failure_url: str | None = None
    poll_seconds: float = POLL_SECONDS
    retry_delay_seconds: float = 0.1
    _shards: dict[str, _Shard] = field(default_factory=dict)
    _described: float | None = None

    def __post_init__(self) -> None:
        for index, pattern in enumerate(self.source.filter_patterns):
            try:
                check_pattern(pattern)
            except ValueError as error:
                where = f"{self.source.function} FilterCriteria filter {index}"
                raise TemplateError(f"{where}: {error}") from None
        if self.source.on_failure_queue and (self.sqs is None or self.on_failure_url is None):
            raise ValueError("a mapping with an OnFailure destination needs an SQS client and queue URL")

    @property
    def region(self) -> str:
        return str(self.streams.meta.region_name)

    @property
    def max_retries(self) -> int:
        given = self.source.maximum_retry_attempts
        return LOCAL_MAX_RETRY_ATTEMPTS if given < 0 else given

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                busy = self.poll_once()
            except Exception:
                if self.stopping.is_set():
                    return
                log.exception("DynamoDB stream poller for %s failed; retrying", self.function_name)
                busy = False
                self.stopping.wait(1.0)
            if not busy:
                self.stopping.wait(self.poll_seconds)

    def poll_once(self) -> bool:
        """Read each ready shard once and deliver what is due. True when anything was read or delivered."""
        now = time.monotonic()
        if self._described is None or now - self._described >= DESCRIBE_SECONDS:
            self._discover(initial=self._described is None)
            self._described = now
        busy = False
        for shard in list(self._shards.values()):
            if self.stopping.is_set():
                break
            parent = self._shards.get(shard.parent) if shard.parent else None
            # A child shard waits until its parent is read to the end, keeping each key's changes in order.
            if shard.done or (parent is not None and not parent.done):
                continue
            busy |= self._pump(shard)
        return busy

    def _discover(self, *, initial: bool) -> None:
        arguments: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            description = self.streams.describe_stream(**arguments)["StreamDescription"]
            for shard in description.get("Shards", []):
                if shard["ShardId"] in self._shards:
                    continue
                shard_id = shard["ShardId"]
                tracked = _Shard(shard_id, shard.get("ParentShardId"), None)
                # Shards that appear later are read from their start: their records are all new. LATEST is
                # taken as "after the last record there is now", a sequence number rather than an opaque
                # iterator, so that the position survives a fresh iterator (see _read).
                if initial and self.source.starting_position == "LATEST":
                    tracked.last_sequence = self._last_sequence(shard_id)
                tracked.iterator = self._iterator_after(tracked)
                self._shards[shard_id] = tracked
            last = description.get("LastEvaluatedShardId")
            if not last:
                return
            arguments["ExclusiveStartShardId"] = last

    def _read(self, shard: _Shard) -> int:
        if shard.iterator is None:
            shard.ended = True
            return 0
        try:
            answer = self.streams.get_records(ShardIterator=shard.iterator, Limit=READ_LIMIT)
        except self.streams.exceptions.ExpiredIteratorException:
            # Iterators live 15 minutes in DynamoDB; pick up again after the last record read.
            shard.iterator = self._iterator_after(shard)
            return 0
        shard.iterator = answer.get("NextShardIterator")
        shard.ended = shard.iterator is None
        if not answer.get("Records") and not shard.ended:
            # moto restores a table from a copy when a transaction is cancelled, and iterators taken
            # before that keep reading the orphaned copy of the stream forever; an idle shard therefore
            # asks for a fresh iterator after the last record it read (harmless against DynamoDB).
            shard.iterator = self._iterator_after(shard)
        for raw in answer.get("Records", []):
            shard.last_sequence = raw["dynamodb"]["SequenceNumber"]
            if _unchanged(raw):
                continue
            record = lambda_record(raw, self.stream_arn, self.region)
            # Lambda drops records no filter matches: they count as processed.
            if passes_filters(self.source.filter_patterns, record):
                shard.buffer.append(record)
        return len(answer.get("Records", []))

    def _last_sequence(self, shard_id: str) -> str | None:
        """The sequence number of the shard's newest record now (None for an empty shard)."""
        iterator: str | None = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        last = None
        while iterator:
            answer = self.streams.get_records(ShardIterator=iterator, Limit=READ_LIMIT)
            records = answer.get("Records", [])
            if not records:
                return last
            last = records[-1]["dynamodb"]["SequenceNumber"]
            iterator = answer.get("NextShardIterator")
        return last

    def _iterator_after(self, shard: _Shard) -> str:
        if shard.last_sequence is None:
            # Nothing read or skipped yet: everything in the shard is still to be delivered.
            kind: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
        else:
            kind = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.last_sequence}
        return str(
            self.streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard.shard_id, **kind)[
                "ShardIterator"
            ]
        )

    def _pump(self, shard: _Shard) -> bool:
        batch_size = self.source.batch_size
        read = self._read(shard) if len(shard.buffer) < batch_size and not shard.ended else 0
        if not shard.buffer:
            shard.buffered_since = None
            return read > 0
        now = time.monotonic()
        if shard.buffered_since is None:
            shard.buffered_since = now
        window = self.source.maximum_batching_window_seconds
        # Without a batching window Lambda invokes as soon as records are there; with one it waits for a
        # full batch or the window's end.
        if len(shard.buffer) < batch_size and not shard.ended and now - shard.buffered_since < window:
            return read > 0
        batch = [shard.buffer.popleft() for _ in range(min(batch_size, len(shard.buffer)))]
        shard.buffered_since = now if shard.buffer else None
        self.deliver(shard.shard_id, batch)
        return True

    def deliver(self, shard_id: str, records: list[dict[str, Any]]) -> None:
        """Run one batch to completion: success, or retries exhausted and the rest sent to OnFailure."""
        pending: deque[tuple[list[dict[str, Any]], int]] = deque([(records, 0)])
        while pending and not self.stopping.is_set():
            batch, retries = pending.popleft()
            outcome = self._invoke(batch)
            if outcome.failed_from is None:
                continue
            remaining = batch[outcome.failed_from :]
            if self.source.bisect_batch_on_function_error and outcome.function_error and len(batch) > 1:
                half = len(batch) // 2
                pending.extendleft([(batch[half:], retries), (batch[:half], retries)])
                continue
            if retries >= self.max_retries:
                self._discard(shard_id, remaining, retries + 1, outcome.function_error)
                continue
            pending.appendleft((remaining, retries + 1))
            # Lambda backs off between retries; short here, and interrupted by a stop.
            self.stopping.wait(min(self.retry_delay_seconds * 2**retries, 2.0))

    def _invoke(self, batch: list[dict[str, Any]]) -> _Outcome:
        context = LambdaContext(function_name=self.function_name, timeout_seconds=self.timeout_seconds)
        try:
            answer = self.invoke({"Records": batch}, context)
        except Exception:
            log.exception("%s failed on a DynamoDB stream batch; it will be retried", self.function_name)
            return _Outcome(0, function_error=True)
        # Without ReportBatchItemFailures on the mapping, Lambda ignores what the function answers.
        if "ReportBatchItemFailures" not in self.source.function_response_types:
            return _Outcome(None)
        failures = answer.get("batchItemFailures") if isinstance(answer, Mapping) else None
        if not failures:
            return _Outcome(None)
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
        indexes: list[int] = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
            if not identifier or identifier not in sequence_numbers:
                # Lambda treats a missing or unknown identifier as a failure of the whole batch.
                return _Outcome(0)
            indexes.append(sequence_numbers.index(identifier))
        # Retry from the earliest failed record: the ones before it are checkpointed.
        return _Outcome(min(indexes))

    def _discard(
        self, shard_id: str, records: list[dict[str, Any]], attempts: int, function_error: bool
    ) -> None:
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        log.warning(
            "%s: discarding %d stream records (%s..%s) after %d attempts",
            self.function_name,
            len(records),
            first["SequenceNumber"],
            last["SequenceNumber"],
            attempts,
        )
        if self.sqs is None or self.on_failure_url is None:
            return
        context = LambdaContext(function_name=self.function_name)
        response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if function_error:
            response["functionError"] = "Unhandled"
        # Lambda's invocation record for a stream source: a description of the records, not the records.
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": context.invoked_function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(first.get("ApproximateCreationDateTime")),
                "approximateArrivalOfLastRecord": _iso(last.get("ApproximateCreationDateTime")),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        self.sqs.send_message(QueueUrl=self.on_failure_url, MessageBody=json.dumps(message))


# --------------------------------------------------------------------------------------------- wiring


class FunctionLike(Protocol):
    """What the local stack's FunctionRuntime offers a poller."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> FunctionSpec: ...

    def invoke(self, event: dict[str, Any], context: LambdaContext | None = None) -> Any: ...


def start_stream_runners(
    stack: Stack,
    functions: Mapping[str, FunctionLike],
    stopping: threading.Event,
    spawn: Callable[[Callable[[], None], str], None],
) -> list[StreamRunner]:
    """A runner per enabled DynamoDB event source of the stack, each started with `spawn(target, name)`."""
    import boto3  # noqa: PLC0415 - after the caller has pointed AWS_ENDPOINT_URL at the emulator

    streams = boto3.client("dynamodbstreams")
    sqs = boto3.client("sqs")
    runners: list[StreamRunner] = []
    for source in stack.dynamodb_event_sources():
        if not source.enabled:
            continue
        runtime = functions[source.function]
        runner = StreamRunner(
            source=source,
            stream_arn=stack.get_att(source.table, "StreamArn"),
            invoke=runtime.invoke,
            streams=streams,
            stopping=stopping,
            function_name=runtime.name,
            timeout_seconds=float(runtime.spec.timeout),
            sqs=sqs,
            on_failure_url=stack.ref(source.on_failure_queue) if source.on_failure_queue else None,
        )
        spawn(runner.run, f"ddb-stream-{source.function}-{source.table}")
        runners.append(runner)
    return runners
