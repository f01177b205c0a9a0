"""Idempotent submits, Stripe's way: the first answer again for the same key and body, refused for
another body, one execution however many requests race with one key."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from asyncgate.domain.catalog import Number
from asyncgate.domain.execution import new_execution
from asyncgate.domain.idempotency import IDEMPOTENCY_WINDOW, IdempotencyRecord, key_hash
from asyncgate.services import executions as executions_service
from asyncgate.services.deps import default_deps
from asyncgate.services.executions import SubmitCommand
from asyncgate.store.executions import IdempotencyKeyTaken
from asyncgate.store.keys import ALL_SCOPES, Principal
from asyncgate_dev.apigw import HttpAnswer
from tests.integration.driver import KEY_B, TENANT_CREDITS, Gateway

REPLAYED = "idempotent-replayed"


def _submit(gateway: Gateway, key: str, model: str = "sim-video", **extra: Any) -> HttpAnswer:
    return gateway.submit(model=model, headers={"Idempotency-Key": key}, **extra)


def _executions(gateway: Gateway) -> list[dict[str, Any]]:
    answer = gateway.call("list_executions")
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _assert_account(gateway: Gateway, *, credits: Number, reserved: Number, live: int) -> None:
    account = gateway.call("account").json()
    held = (account["credits"], account["reservedCredits"], account["liveExecutions"])
    assert held == (credits, reserved, live)


def _movements(execution_id: str) -> list[tuple[str, Number, Number, Number]]:
    """The execution's ledger entries, oldest first: (kind, credits, reserved, charged)."""
    entries = default_deps().accounts.ledger("tenant-a")
    return [
        (entry.kind, entry.credits, entry.reserved, entry.charged)
        for entry in reversed(entries)
        if entry.execution_id == execution_id
    ]


def _assert_reserved_once(gateway: Gateway, execution_id: str, price: Number) -> None:
    """Live: its price held once, one live execution, one `reserve` entry."""
    _assert_account(gateway, credits=TENANT_CREDITS - price, reserved=price, live=1)
    assert _movements(execution_id) == [("reserve", -price, price, 0)]


def _assert_charged_once(gateway: Gateway, execution_id: str, price: Number) -> None:
    """Succeeded: the reservation settled at its price, once; nothing held, nothing live."""
    _assert_account(gateway, credits=TENANT_CREDITS - price, reserved=0, live=0)
    assert _movements(execution_id) == [("reserve", -price, price, 0), ("settle", 0, -price, price)]


@pytest.mark.parametrize("model", ["sim-video", "sim-image"], ids=["inline", "queued"])
def test_the_same_key_and_body_answer_the_first_answer_again(gateway: Gateway, model: str) -> None:
    price = default_deps().spec(model).price_of({"prompt": "a red fox", "sim": {}})
    first = _submit(gateway, "order-17", model)
    assert first.status == 202
    assert REPLAYED not in first.headers
    execution_id = first.json()["executionId"]
    _assert_reserved_once(gateway, execution_id, price)
    done = gateway.run_to_end(execution_id)  # the execution moves on; a final answer does not
    assert done["status"] == "succeeded"
    again = _submit(gateway, "order-17", model)
    assert again.status == 202
    assert again.headers[REPLAYED] == "true"
    if first.json()["status"] == "queued":
        # `queued` promised nothing final: its replay tells where the execution is now.
        now = {"status": done["status"], "providerRequestId": done["providerRequestId"]}
        assert again.json() == first.json() | now
    else:
        assert again.body == first.body
    assert again.headers["location"] == first.headers["location"]
    assert len(_executions(gateway)) == 1
    _assert_charged_once(gateway, execution_id, price)


def test_the_same_key_with_another_body_is_refused(gateway: Gateway) -> None:
    assert _submit(gateway, "k1").status == 202
    reused = _submit(gateway, "k1", input_extra="a blue fox")
    assert reused.status == 422
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(_executions(gateway)) == 1


def test_the_same_body_in_another_spelling_is_the_same_request(gateway: Gateway) -> None:
    body = '{"model":"sim-image","input":{"sim":{"outputs":2},"prompt":"a"},"metadata":{"x":"y"}}'
    respelled = (
        '{ "metadata": {"x": "y"}, "input": {"prompt": "a", "sim": {"outputs": 2}}, "model": "sim-image" }'
    )
    first = gateway.call("submit", raw_body=body.encode(), headers={"Idempotency-Key": "spelled"})
    again = gateway.call("submit", raw_body=respelled.encode(), headers={"Idempotency-Key": "spelled"})
    assert again.headers[REPLAYED] == "true"
    assert again.json()["executionId"] == first.json()["executionId"]


def test_keys_are_scoped_to_the_tenant(gateway: Gateway) -> None:
    mine = _submit(gateway, "shared-key").json()["executionId"]
    theirs = gateway.submit(headers={"Idempotency-Key": "shared-key"}, key=KEY_B)
    assert theirs.status == 202
    assert REPLAYED not in theirs.headers
    assert theirs.json()["executionId"] != mine


@pytest.mark.parametrize("bad", ["", "x" * 256, "tab\there", "caf\u00e9"])
def test_a_malformed_key_is_a_validation_error(gateway: Gateway, bad: str) -> None:
    answer = gateway.call(
        "submit", body={"model": "sim-video", "input": {}}, headers={"Idempotency-Key": bad}
    )
    assert answer.status == 422
    assert answer.json()["error"]["details"]["errors"][0]["field"] == "header.idempotency-key"
    assert _executions(gateway) == []


def test_a_refused_inline_dispatch_replays_the_same_500(gateway: Gateway) -> None:
    first = _submit(gateway, "doomed", sim={"submitStatus": 503})
    assert first.status == 500
    again = _submit(gateway, "doomed", sim={"submitStatus": 503})
    assert again.status == 500
    assert again.headers[REPLAYED] == "true"
    assert again.body == first.body
    assert len(_executions(gateway)) == 1


def test_refusals_before_the_transaction_are_not_remembered(gateway: Gateway) -> None:
    """A 429 or 402 happened before anything was created: the same key may succeed later (Stripe)."""
    deps = default_deps()
    deps.accounts.set_queue_limit("tenant-a", 0, now=deps.clock())
    assert _submit(gateway, "later").status == 429
    deps.accounts.set_queue_limit("tenant-a", 10, now=deps.clock())
    answer = _submit(gateway, "later")
    assert answer.status == 202
    assert REPLAYED not in answer.headers


@pytest.mark.parametrize("model", ["sim-video", "sim-image"], ids=["inline", "queued"])
def test_concurrent_requests_with_one_key_create_one_execution(gateway: Gateway, model: str) -> None:
    """Twelve identical requests at once: one execution, one charge; every answer is its answer
    (a loser waits for an inline dispatch to finish, then replays it)."""
    deps = default_deps()
    command = SubmitCommand(
        model=model, input={"prompt": "race"}, metadata={}, webhook_url=None, webhook_events=None,
        idempotency_key="race-1",
    )  # fmt: skip
    principal = Principal(tenant="tenant-a", scopes=ALL_SCOPES)
    barrier = threading.Barrier(12)

    def race() -> executions_service.SubmitOutcome:
        barrier.wait()
        return executions_service.submit(deps, principal, command)

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(lambda _: race(), range(12)))
    [execution_id] = {outcome.receipt.execution_id for outcome in outcomes}
    assert sorted(outcome.replayed for outcome in outcomes) == [False] + [True] * 11
    assert len({outcome.receipt.model_dump_json() for outcome in outcomes}) == 1
    assert len(_executions(gateway)) == 1
    price = deps.spec(model).price_of(command.input)
    _assert_reserved_once(gateway, execution_id, price)
    assert gateway.run_to_end(execution_id)["status"] == "succeeded"
    _assert_charged_once(gateway, execution_id, price)


def _in_flight_record(deps: Any, key: str, *, age: timedelta, model: str = "sim-video") -> str:
    """A first request that wrote its execution and key, and died before answering (an inline model's
    while its dispatch was under way)."""
    spec = deps.spec(model)
    created = deps.clock() - age
    execution = new_execution(
        execution_id=str(uuid.uuid4()), tenant="tenant-a", spec=spec,
        input={"prompt": "a red fox", "sim": {}}, metadata={}, webhook_url=None, webhook_events=None,
        now=created, first_tick_at=created, dispatching=spec.dispatch == "inline",
        reserved_credits=spec.price_of({}),
    )  # fmt: skip
    command = SubmitCommand(
        model=model, input={"prompt": "a red fox", "sim": {}}, metadata={}, webhook_url=None,
        webhook_events=None,
    )  # fmt: skip
    record = IdempotencyRecord(
        tenant="tenant-a", key_hash=key_hash(key), fingerprint=command.fingerprint(),
        execution_id=execution.execution_id, created_at=created, expires_at=created + IDEMPOTENCY_WINDOW,
    )  # fmt: skip
    deps.executions.create(execution, now=created, idempotency=deps.idempotency.put_operation(record))
    return execution.execution_id


@pytest.mark.parametrize("model", ["sim-video", "sim-image"], ids=["inline", "queued"])
def test_a_key_in_flight_answers_409_then_recovers_once_its_request_is_surely_gone(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    deps = default_deps()
    monkeypatch.setattr(executions_service, "IN_FLIGHT_WAIT_SECONDS", 0.2)
    execution_id = _in_flight_record(deps, "crashed", age=timedelta(seconds=1), model=model)
    busy = _submit(gateway, "crashed", model)
    assert busy.status == 409
    assert busy.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_USE"
    assert busy.headers["retry-after"] == "1"
    # Past the submit function's timeout the first request is gone: its answer comes from its execution.
    monkeypatch.setattr(deps.settings, "idempotency_in_flight_seconds", 0.5)
    recovered = _submit(gateway, "crashed", model)
    assert recovered.headers[REPLAYED] == "true"
    if model == "sim-video":
        # Its inline dispatch never recorded an outcome and surely never will: failed, never re-submitted.
        assert recovered.status == 500
        assert recovered.json()["error"]["code"] == "PROVIDER_SUBMIT_FAILED"
        assert recovered.json()["error"]["details"]["executionId"] == execution_id
        assert gateway.status(execution_id)["status"] == "failed"
        price = deps.spec(model).price_of({})
        _assert_account(gateway, credits=TENANT_CREDITS, reserved=0, live=0)
        assert _movements(execution_id) == [("reserve", -price, price, 0), ("refund", price, -price, 0)]
    else:
        assert recovered.status == 202
        assert recovered.json()["executionId"] == execution_id
        assert recovered.json()["status"] == "queued"
    assert _submit(gateway, "crashed", model).body == recovered.body, "the recovered answer is kept"


def test_an_expired_key_starts_a_new_request(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    deps = default_deps()
    first = _submit(gateway, "daily").json()["executionId"]
    later = deps.clock() + IDEMPOTENCY_WINDOW + timedelta(minutes=1)
    monkeypatch.setattr(deps, "clock", lambda: later)
    again = _submit(gateway, "daily")
    assert again.status == 202
    assert REPLAYED not in again.headers
    assert again.json()["executionId"] != first


def test_the_record_and_the_execution_are_written_together_or_not_at_all(gateway: Gateway) -> None:
    """A second create with a taken key writes nothing: no execution, no reservation."""
    deps = default_deps()
    _in_flight_record(deps, "atomic", age=timedelta(0))
    before = deps.accounts.get("tenant-a")
    with pytest.raises(IdempotencyKeyTaken):
        _in_flight_record(deps, "atomic", age=timedelta(0))
    assert deps.accounts.get("tenant-a") == before
