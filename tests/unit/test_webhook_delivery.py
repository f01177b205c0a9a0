"""Webhook events, signatures, the SSRF-safe transport and the retry schedule in the ASL file."""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from asyncgate.delivery.signing import signed_headers
from asyncgate.delivery.transport import UnsafeDestination, post_webhook
from asyncgate.domain.catalog import load_catalog
from asyncgate.domain.execution import advance, new_execution
from asyncgate.domain.status import Event
from asyncgate.domain.webhook_events import (
    MAX_ATTEMPTS,
    RETRY_GAPS_SECONDS,
    events_for,
    jitter_window,
    webhook_id,
)
from asyncgate.domain.webhook_url import InvalidWebhookUrl
from asyncgate.domain.webhooks import new_webhook_secret
from asyncgate.settings import DEFAULT_CATALOG
from asyncgate_dev.handlers import REPO_ROOT
from asyncgate_dev.receiver import WebhookReceiver, always

SPEC = load_catalog(DEFAULT_CATALOG).get("sim-video")
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ASL = REPO_ROOT / "statemachine" / "webhook_delivery.asl.json"


def _running() -> Any:
    assert SPEC is not None
    queued = new_execution(
        execution_id="0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a10", tenant="t", spec=SPEC, input={},
        metadata={}, webhook_url="https://example.com/h", webhook_events=None, now=NOW,
        first_tick_at=NOW, dispatching=True,
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


def _gap_states(definition: dict[str, Any]) -> list[tuple[int, int]]:
    windows = []
    for name in sorted(name for name in definition["States"] if name.startswith("Gap")):
        expression = definition["States"][name]["Parameters"]["waitSeconds.$"]
        found = re.fullmatch(r"States\.MathAdd\((\d+), States\.MathRandom\(0, (\d+)\)\)", expression)
        assert found, expression
        low, span = int(found.group(1)), int(found.group(2))
        windows.append((low, low + span))
    return windows


def test_the_asl_retry_schedule_is_the_documented_one() -> None:
    definition = json.loads(Path(ASL).read_text())
    assert RETRY_GAPS_SECONDS == (120, 240, 480, 960), "about 2, 4, 8 and 16 minutes"
    assert _gap_states(definition) == [jitter_window(gap) for gap in RETRY_GAPS_SECONDS]
    for low, high in _gap_states(definition):
        middle = (low + high) / 2
        assert low >= middle * 0.75, "jitter of at most -25 %"
        assert high <= middle * 1.25, "jitter of at most +25 %"
    attempts = [name for name in definition["States"] if name.startswith("Attempt")]
    assert len(attempts) + 1 == MAX_ATTEMPTS, "the notifier's first attempt plus the state machine's"
    for name in attempts:
        assert definition["States"][name]["Resource"] == "${DeliverFunctionArn}"
