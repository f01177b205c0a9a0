"""Webhook events, signatures, the SSRF-safe and time-bounded transport, a stream batch's first attempts,
and the retry state machine of the ASL file (run by the local stack's interpreter, with fakes)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from standardwebhooks import Webhook

from asyncgate.delivery.signing import signed_headers
from asyncgate.delivery.tasks import EXECUTION_DESTINATION, Delivery, DeliveryTask
from asyncgate.delivery.transport import UnsafeDestination, post_webhook
from asyncgate.domain.catalog import load_catalog
from asyncgate.domain.clock import parse_ts
from asyncgate.domain.execution import EventType, advance, new_execution
from asyncgate.domain.status import Event
from asyncgate.domain.webhook_events import (
    MAX_ATTEMPTS,
    RETRY_GAPS_SECONDS,
    TERMINAL_EVENT_TYPES,
    events_for,
    jitter_window,
    webhook_id,
)
from asyncgate.domain.webhook_url import InvalidWebhookUrl
from asyncgate.domain.webhooks import new_webhook_secret
from asyncgate.services.notify import (
    END_RESERVE_SECONDS,
    MAX_ATTEMPTS_AT_ONCE,
    START_RESERVE_SECONDS,
    FirstAttempts,
)
from asyncgate.settings import DEFAULT_CATALOG
from asyncgate.store.executions import MAX_RECORDED_ATTEMPTS
from asyncgate.store.items import execution_key, to_attributes
from asyncgate_dev.handlers import REPO_ROOT
from asyncgate_dev.receiver import WebhookReceiver, always
from asyncgate_dev.stepfunctions import ExecutionOutcome, Interpreter
from tests.fakes import wait_until

SPEC = load_catalog(DEFAULT_CATALOG).get("sim-video")
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ASL = REPO_ROOT / "statemachine" / "webhook_delivery.asl.json"


def _running() -> Any:
    assert SPEC is not None
    queued = new_execution(
        execution_id="0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a10", tenant="t", spec=SPEC, input={},
        metadata={}, webhook_url="https://example.com/h", webhook_events=None, now=NOW,
        first_tick_at=NOW, dispatching=True, reserved_credits=SPEC.price_of({}),
    )  # fmt: skip
    return queued, advance(queued, Event.DISPATCHED, now=NOW, retention=timedelta(days=7))


def test_events_follow_status_changes_and_progress_steps() -> None:
    assert SPEC is not None
    queued, running = _running()
    assert events_for(queued, running) == ["execution.running"]
    step = running.model_copy(update={"progress": 9.0})
    assert events_for(running, step) == ["execution.progress"]
    assert events_for(step, step.model_copy(update={"progress": 9.9})) == [], "one per 10 % step"
    assert events_for(step, step.model_copy(update={"progress": 25.0})) == ["execution.progress"]
    done = advance(running, Event.PROVIDER_SUCCEEDED, now=NOW, retention=timedelta(days=7))
    assert events_for(running, done) == ["execution.succeeded"]
    assert events_for(done, done) == [], "a bookkeeping write emits nothing"
    cancelling = advance(running, Event.CANCEL, now=NOW, retention=timedelta(days=7))
    assert events_for(running, cancelling) == []


def test_webhook_ids_are_stable_per_event_and_destination() -> None:
    _, running = _running()
    first = webhook_id(running, "execution.running", "execution")
    assert first == webhook_id(running, "execution.running", "execution")
    assert first != webhook_id(running, "execution.running", "wh_0123456789abcdef01234567")
    assert first != webhook_id(running, "execution.succeeded", "execution")
    assert re.fullmatch(r"msg_[0-9a-f]{32}", first)


def test_signatures_verify_with_the_reference_package() -> None:
    body = json.dumps({"type": "execution.succeeded"})
    assert signed_headers([SECRET], "msg_1", NOW, body)["webhook-timestamp"] == str(int(NOW.timestamp()))
    verified = Webhook(SECRET)
    # The package checks the timestamp against its own clock: sign now for the verify.
    now_headers = signed_headers([SECRET], "msg_1", datetime.now(UTC), body)
    assert verified.verify(body, now_headers) == {"type": "execution.succeeded"}
    with pytest.raises(Exception, match="No matching signature"):
        verified.verify(body + " ", now_headers)


def test_several_secrets_give_one_signature_each_and_each_verifies() -> None:
    body = json.dumps({"type": "execution.succeeded"})
    new, old, stranger = new_webhook_secret(), new_webhook_secret(), new_webhook_secret()
    headers = signed_headers([new, old], "msg_1", datetime.now(UTC), body)
    first, second = headers["webhook-signature"].split(" ")
    signed_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    assert first == Webhook(new).sign("msg_1", signed_at, body), "the first secret's signature first"
    assert second == Webhook(old).sign("msg_1", signed_at, body)
    assert first != second
    assert Webhook(new).verify(body, headers) == Webhook(old).verify(body, headers) == json.loads(body)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(stranger).verify(body, headers)
    with pytest.raises(ValueError, match="at least one"):
        signed_headers([], "msg_1", NOW, body)


def test_delivery_posts_signed_json_and_never_follows_redirects() -> None:
    with WebhookReceiver() as receiver:
        outcome = post_webhook(receiver.url, b'{"a": 1}', {"webhook-id": "msg_1"}, allow_loopback_http=True)
        assert outcome.delivered
        assert outcome.status_code == 200
        [got] = receiver.received
        assert got.body == b'{"a": 1}'
        assert got.headers["webhook-id"] == "msg_1"
        assert got.headers["content-type"] == "application/json"
    with WebhookReceiver(always(302)) as redirecting:
        redirecting.responder = lambda _: (302, {"Location": "http://127.0.0.1:9/elsewhere"})
        outcome = post_webhook(redirecting.url, b"{}", {}, allow_loopback_http=True)
        assert not outcome.delivered
        assert outcome.error == "redirects are not followed"
        assert len(redirecting.received) == 1


def test_connection_failures_are_outcomes_not_exceptions() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    outcome = post_webhook(f"http://127.0.0.1:{closed_port}/h", b"{}", {}, allow_loopback_http=True)
    assert outcome.status_code is None
    assert outcome.error


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.7", "169.254.169.254", "192.168.0.1", "::1", "::ffff:10.0.0.1", "fd00::1"],
)
def test_a_name_resolving_to_a_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def resolve(*_: Any, **__: Any) -> list[Any]:
        return [(family, socket.SOCK_STREAM, 6, "", (address, 443))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(UnsafeDestination):
        post_webhook("https://hooks.example.com/h", b"{}", {}, allow_loopback_http=False)


def test_mixed_answers_are_refused_when_any_address_is_private(monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve(*_: Any, **__: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 443)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(UnsafeDestination):
        post_webhook("https://hooks.example.com/h", b"{}", {}, allow_loopback_http=False)


@pytest.mark.parametrize("url", ["http://example.com/h", "https://2130706433/h", "https://0177.0.0.1/h"])
def test_plain_or_private_spellings_are_refused_before_any_lookup(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl):
        post_webhook(url, b"{}", {}, allow_loopback_http=False)


def test_a_host_no_resolver_takes_is_refused_not_raised() -> None:
    """A label over 63 characters passes the URL check but fails IDNA encoding inside getaddrinfo."""
    with pytest.raises(InvalidWebhookUrl, match="not a valid domain name"):
        post_webhook(f"https://{'a' * 64}.example.com/h", b"{}", {}, allow_loopback_http=False)


def test_a_dns_lookup_that_never_answers_ends_the_attempt_at_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()

    def stalled(*_: Any, **__: Any) -> list[Any]:
        release.wait(5)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", stalled)
    try:
        outcome = post_webhook(
            "https://hooks.example.com/h", b"{}", {}, allow_loopback_http=False, seconds=0.2
        )
    finally:
        release.set()
    assert outcome == type(outcome)(None, "cannot resolve hooks.example.com: no DNS answer within 0.2 s")


class TricklingReceiver:
    """Reads the request, answers its status line at once, then the rest of a complete `200 OK` one byte
    at a time: every read of the client gets a byte long before any socket timeout, so only a bound on
    the whole exchange stops it."""

    STATUS = b"HTTP/1.1 200 OK\r\n"
    HEADERS = b"Content-Length: 0\r\nX-Padding: " + b"." * 40 + b"\r\n\r\n"

    def __init__(self, gap_seconds: float = 0.05) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._gap = gap_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}/hook"

    def _serve(self) -> None:
        connection, _ = self._server.accept()
        with connection:
            connection.recv(65536)
            try:
                connection.sendall(self.STATUS)
                for byte in self.HEADERS:
                    if self._stop.wait(self._gap):
                        return
                    connection.sendall(bytes([byte]))
            except OSError:
                return

    def __enter__(self) -> TricklingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=2)


def test_a_receiver_trickling_its_answer_is_cut_at_the_attempts_bound() -> None:
    with TricklingReceiver() as receiver:
        outcome = post_webhook(receiver.url, b"{}", {}, allow_loopback_http=True, seconds=0.3)
    assert not outcome.delivered
    assert outcome.error == "no answer within 0.3 s"


# --------------------------------------------------------------------------------------------- first attempts


def _delivery(number: int, tenant: str = "t", host: str = "hooks.example.com") -> Delivery:
    return Delivery(
        webhook_id=f"msg_{number}",
        tenant=tenant,
        execution_id=f"e{number}",
        event_type="execution.succeeded",
        destination=EXECUTION_DESTINATION,
        url=f"https://{host}/h",
        body="{}",
    )


class Attempts:
    """A scripted attempt function: answers by `answer`, counting how many run at once per tenant and
    per receiver (the keys FirstAttempts limits)."""

    def __init__(self, answer: Callable[[DeliveryTask], DeliveryTask]) -> None:
        self.answer = answer
        self.started: list[str] = []
        self.finished: list[str] = []
        self.running: Counter[tuple[str, str]] = Counter()
        self.most: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, task: DeliveryTask) -> DeliveryTask:
        keys = [("tenant", task.delivery.tenant), ("receiver", task.delivery.url.split("/")[2])]
        with self._lock:
            self.started.append(task.delivery.execution_id)
            for key in keys:
                self.running[key] += 1
                self.most[key] = max(self.most[key], self.running[key])
        try:
            return self.answer(task)
        finally:
            with self._lock:
                self.running.subtract(keys)
                self.finished.append(task.delivery.execution_id)


class HandOffs(list[DeliveryTask]):
    """The retry chains started (list.append is atomic: the pool's threads call it)."""

    def sent(self) -> list[tuple[str, int]]:
        return sorted((task.delivery.execution_id, task.attempt) for task in self)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _in_background(
    runner: FirstAttempts, jobs: list[tuple[str, Delivery]]
) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(failed=runner.run(jobs)), daemon=True)
    thread.start()
    return thread, result


def _failed_unless_fast(release: threading.Event) -> Callable[[DeliveryTask], DeliveryTask]:
    """Tenant `fast` is delivered at once; everyone else's receiver hangs until `release`, then fails."""

    def answer(task: DeliveryTask) -> DeliveryTask:
        if task.delivery.tenant == "fast":
            return task.model_copy(update={"done": True, "delivered": True})
        release.wait(10)
        return task

    return answer


@pytest.mark.parametrize(
    ("slow", "capped"),
    [
        # One tenant's slow receivers, each on a host of its own: the tenant's share binds.
        ([_delivery(n, "slow", f"slow{n}.example.com") for n in range(10)], ("tenant", "slow")),
        # Many tenants' deliveries to one slow receiver: its share binds.
        (
            [_delivery(n, f"tenant{n % 5}", "shared.example.com") for n in range(10)],
            ("receiver", "shared.example.com"),
        ),
    ],
)
def test_first_attempts_run_together_and_slow_receivers_hold_only_their_share(
    slow: list[Delivery], capped: tuple[str, str]
) -> None:
    release = threading.Event()
    attempts, handed = Attempts(_failed_unless_fast(release)), HandOffs()
    fast = [_delivery(100 + n, "fast", "fast.example.com") for n in range(3)]
    jobs = [("r1", delivery) for delivery in slow] + [("r2", delivery) for delivery in fast]
    thread, result = _in_background(
        FirstAttempts(attempts, handed.append, deadline=time.monotonic() + 600), jobs
    )
    try:
        # Delivered while every slot the slow receivers may take is held.
        wait_until(lambda: {"e100", "e101", "e102"} <= set(attempts.finished))
        assert attempts.most[capped] == MAX_ATTEMPTS_AT_ONCE[capped[0]]
    finally:
        release.set()
    thread.join(10)
    assert result["failed"] == set()
    assert attempts.most[capped] == MAX_ATTEMPTS_AT_ONCE[capped[0]], "never more, however many wait"
    assert handed.sent() == sorted((delivery.execution_id, 1) for delivery in slow), "failed: retried"


def test_deliveries_not_started_in_time_go_to_the_state_machine_unattempted() -> None:
    clock, release = FakeClock(), threading.Event()
    attempts, handed = Attempts(_failed_unless_fast(release)), HandOffs()
    jobs = [("r1", _delivery(n, "t", f"h{n}.example.com")) for n in range(6)]
    runner = FirstAttempts(attempts, handed.append, deadline=START_RESERVE_SECONDS + 30, clock=clock)
    thread, result = _in_background(runner, jobs)
    try:
        wait_until(lambda: len(attempts.started) == MAX_ATTEMPTS_AT_ONCE["tenant"])
        # The tenant's four attempts take their 10 s each: no slot frees before it is too late to start.
        clock.now = 31.0
    finally:
        release.set()
    thread.join(10)
    assert result["failed"] == set()
    assert attempts.started == ["e0", "e1", "e2", "e3"]
    assert handed.sent() == [("e0", 1), ("e1", 1), ("e2", 1), ("e3", 1), ("e4", 0), ("e5", 0)], (
        "attempt 0: the state machine makes the first attempt at once"
    )


def test_a_batch_without_time_for_an_attempt_hands_everything_over() -> None:
    attempts, handed = Attempts(lambda task: task), HandOffs()
    jobs = [("r1", _delivery(1)), ("r2", _delivery(2))]
    runner = FirstAttempts(attempts, handed.append, deadline=START_RESERVE_SECONDS - 1, clock=FakeClock())
    assert runner.run(jobs) == set()
    assert attempts.started == []
    assert handed.sent() == [("e1", 0), ("e2", 0)]


def test_work_still_running_at_the_end_fails_only_its_own_record() -> None:
    clock, release = FakeClock(), threading.Event()

    def answer(task: DeliveryTask) -> DeliveryTask:
        if task.delivery.execution_id == "e1":
            release.wait(10)  # beyond any bound: a stalled table write, say
        return task.model_copy(update={"done": True, "delivered": True})

    attempts, handed = Attempts(answer), HandOffs()
    runner = FirstAttempts(attempts, handed.append, deadline=100.0, clock=clock)
    thread, result = _in_background(
        runner, [("r1", _delivery(1)), ("r2", _delivery(2, "u", "other.example.com"))]
    )
    try:
        wait_until(lambda: "e1" in attempts.started and "e2" in attempts.finished)
        clock.now = 100.0 - END_RESERVE_SECONDS
        thread.join(10)
        assert not thread.is_alive(), "the batch answers without waiting for the straggler"
    finally:
        release.set()
    assert result["failed"] == {"r1"}, "its delivery is neither done nor handed over: the stream retries it"
    assert list(handed) == []


def test_a_failed_hand_off_fails_its_record_and_an_attempt_that_raises_is_retried() -> None:
    def answer(task: DeliveryTask) -> DeliveryTask:
        if task.delivery.execution_id == "e1":
            raise RuntimeError("the table is unavailable")
        return task

    handed = HandOffs()

    def hand_off(task: DeliveryTask) -> None:
        if task.delivery.execution_id == "e2":
            raise RuntimeError("throttled")
        handed.append(task)

    runner = FirstAttempts(Attempts(answer), hand_off, deadline=time.monotonic() + 600)
    assert runner.run([("r1", _delivery(1)), ("r2", _delivery(2, "u", "other.example.com"))]) == {"r2"}
    assert handed.sent() == [("e1", 1)], "an attempt that raised counts as made and failed"


# ------------------------------------------------------------------------------------- the state machine

FN = "arn:aws:lambda:us-east-1:123456789012:function:asyncgate-Deliver"
TABLE = "asyncgate-executions"


def _asl() -> dict[str, Any]:
    text = ASL.read_text(encoding="utf-8")
    substituted = text.replace("${DeliverFunctionArn}", FN).replace("${ExecutionsTableName}", TABLE)
    definition: dict[str, Any] = json.loads(substituted)
    return definition


def test_the_asl_retry_schedule_and_bounds_are_the_documented_ones() -> None:
    definition = json.loads(ASL.read_text(encoding="utf-8"))
    states = definition["States"]
    assert RETRY_GAPS_SECONDS == (120, 240, 480, 960), "about 2, 4, 8 and 16 minutes"
    expression = states["Gap"]["Parameters"]["waitSeconds.$"]
    lows, spans = (
        json.loads(f"[{items}]") for items in re.findall(r"States\.Array\(([\d, ]+)\)", expression)
    )
    windows = [(low, low + span) for low, span in zip(lows, spans, strict=True)]
    assert windows == [jitter_window(gap) for gap in RETRY_GAPS_SECONDS]
    for low, high in windows:
        middle = (low + high) / 2
        assert low >= middle * 0.75, "jitter of at most -25 %"
        assert high <= middle * 1.25, "jitter of at most +25 %"
    tasks = [state for state in states.values() if state.get("Resource") == "${DeliverFunctionArn}"]
    assert len(tasks) == 1, "one loop, not one copy per attempt"
    assert states["Check"]["Choices"][1]["Or"][1]["NumericGreaterThanEquals"] == MAX_ATTEMPTS
    last, terminal = states["LastOfTerminalEvent"]["Choices"][0]["And"]
    assert last["NumericGreaterThanEquals"] == MAX_ATTEMPTS
    assert {rule["StringEquals"] for rule in terminal["Or"]} == TERMINAL_EVENT_TYPES
    for name in ("RecordAttempt", "RecordFailure"):
        assert states[name]["Parameters"]["ExpressionAttributeValues"][":max"] == {
            "N": str(MAX_RECORDED_ATTEMPTS)
        }
    names = {
        name
        for state in states.values()
        for name in state.get("Parameters", {}).get("ExpressionAttributeNames", {}).values()
    }
    _, running = _running()
    assert names == {"webhookAttempts", "webhookState"}
    assert names <= set(to_attributes(running)), "the attributes the store writes"


class Gaps(threading.Event):
    """A stop event that never stops and records each scheduled wait instead of waiting it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.asked.append(float(timeout or 0))
        return False


class FakeTable:
    """dynamodb.update_item: records each call, answers a ClientError with each code in `errors` first."""

    def __init__(self, *errors: str) -> None:
        self.errors = list(errors)
        self.calls: list[dict[str, Any]] = []

    def update_item(self, **parameters: Any) -> dict[str, Any]:
        self.calls.append(parameters)
        if self.errors:
            code = self.errors.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": code}}, "UpdateItem")
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}


class DeliverFunction:
    """The deliver function: each call's attempt number, answered by `answer(attempt)` (or raising)."""

    def __init__(self, answer: Callable[[int], dict[str, bool] | Exception]) -> None:
        self.answer = answer
        self.attempts: list[int] = []

    def __call__(self, function: str, payload: Any) -> Any:
        task = DeliveryTask.model_validate(payload)
        self.attempts.append(task.attempt)
        answer = self.answer(task.attempt)
        if isinstance(answer, Exception):
            raise answer
        return {**payload, **answer}


def _retry_chain(
    deliver: DeliverFunction,
    *,
    attempt: int = 1,
    destination: str = EXECUTION_DESTINATION,
    event_type: EventType = "execution.failed",
    table: FakeTable | None = None,
) -> tuple[ExecutionOutcome, list[float], FakeTable]:
    table = table or FakeTable()
    gaps = Gaps()
    delivery = _delivery(7).model_copy(update={"destination": destination, "event_type": event_type})
    task = DeliveryTask(delivery=delivery, attempt=attempt).model_dump(mode="json", by_alias=True)
    interpreter = Interpreter(_asl(), deliver, aws_client=lambda service: table, stop=gaps)
    return interpreter.execute(task), gaps.asked, table


def _assert_gaps(gaps: list[float], count: int) -> None:
    """`count` gaps, the n-th in the jitter window of the n-th retry gap."""
    assert len(gaps) == count, gaps
    for gap, (low, high) in zip(gaps, [jitter_window(gap) for gap in RETRY_GAPS_SECONDS], strict=False):
        assert low <= gap < high, gaps


def test_a_deliver_function_that_keeps_crashing_still_ends_the_webhook_failed() -> None:
    deliver = DeliverFunction(lambda attempt: RuntimeError("out of memory"))
    outcome, gaps, table = _retry_chain(deliver)
    assert (outcome.status, outcome.error) == ("FAILED", "WebhookNotDelivered")
    assert deliver.attempts == [2, 3, 4, 5]
    _assert_gaps(gaps, 4)
    assert len(table.calls) == 4, "each crashed attempt recorded without the function"
    for call in table.calls:
        assert call["TableName"] == TABLE
        assert call["Key"] == execution_key("e7")
        values = call["ExpressionAttributeValues"]
        [record] = values[":one"]["L"]
        assert record["M"]["statusCode"] == {"NULL": True}
        assert record["M"]["error"] == {"S": "the deliver function failed: RuntimeError"}
        assert parse_ts(record["M"]["at"]["S"]).tzinfo is not None
        assert values[":max"] == {"N": str(MAX_RECORDED_ATTEMPTS)}
    assert ["#state" in call["UpdateExpression"] for call in table.calls] == [False, False, False, True]
    assert table.calls[-1]["ExpressionAttributeValues"][":failed"] == {"S": "failed"}


def test_a_full_attempt_log_still_ends_the_webhook_failed() -> None:
    log_full = "ConditionalCheckFailedException"
    table = FakeTable(log_full, log_full, log_full, log_full)
    outcome, _, table = _retry_chain(DeliverFunction(lambda attempt: RuntimeError("crash")), table=table)
    assert outcome.error == "WebhookNotDelivered"
    assert len(table.calls) == 5, "a full log is not retried; the last crash then sets the state alone"
    assert table.calls[-1]["UpdateExpression"] == "SET #state = :failed"


def test_a_crashed_last_attempt_of_a_live_event_leaves_the_webhook_state_alone() -> None:
    outcome, _, table = _retry_chain(
        DeliverFunction(lambda attempt: RuntimeError("crash")), event_type="execution.running"
    )
    assert outcome.error == "WebhookNotDelivered"
    assert len(table.calls) == 4
    assert not any("#state" in call["UpdateExpression"] for call in table.calls)


def test_a_crash_of_a_tenant_endpoints_delivery_is_not_recorded_on_the_execution() -> None:
    deliver = DeliverFunction(lambda attempt: RuntimeError("crash"))
    outcome, _, table = _retry_chain(deliver, destination="wh_0123456789abcdef01234567")
    assert (outcome.error, deliver.attempts, table.calls) == ("WebhookNotDelivered", [2, 3, 4, 5], [])


def test_a_delivery_never_attempted_gets_its_first_attempt_at_once() -> None:
    deliver = DeliverFunction(lambda attempt: {"done": attempt == 2, "delivered": attempt == 2})
    outcome, gaps, _ = _retry_chain(deliver, attempt=0)
    assert outcome.status == "SUCCEEDED"
    assert deliver.attempts == [1, 2]
    _assert_gaps(gaps, 1)  # none before attempt 1, the first gap before attempt 2


@pytest.mark.parametrize(
    ("answer", "status", "attempts"),
    [
        (lambda n: {"done": n == 3, "delivered": n == 3}, "SUCCEEDED", [2, 3]),
        (lambda n: {"done": True, "delivered": False}, "FAILED", [2]),  # refused for good, or 410 Gone
        # A deliver function that never says it is done: the machine's own bound ends the loop.
        (lambda n: {"done": False, "delivered": False}, "FAILED", [2, 3, 4, 5]),
    ],
)
def test_the_loop_ends_when_delivered_given_up_or_out_of_attempts(
    answer: Callable[[int], dict[str, bool]], status: str, attempts: list[int]
) -> None:
    deliver = DeliverFunction(answer)
    outcome, gaps, table = _retry_chain(deliver)
    assert (outcome.status, deliver.attempts, table.calls) == (status, attempts, [])
    _assert_gaps(gaps, len(attempts))
