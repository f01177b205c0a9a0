"""The exact queue limit, credits and idempotency over real HTTP, under real concurrency: the local
stack runs each function in several containers at once, as Lambda would."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.e2e.conftest import DevStack

pytestmark = pytest.mark.e2e
LONG_JOB = {"model": "sim-video", "input": {"sim": {"durationSeconds": 600}}}


def _burst(
    stack: DevStack, count: int, headers: dict[str, str], body: dict[str, Any]
) -> list[requests.Response]:
    """`count` submits released together from as many client threads."""
    barrier = threading.Barrier(count)

    def post(_: int) -> requests.Response:
        barrier.wait()
        return requests.post(f"{stack.url}/v1/executions", json=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(post, range(count)))


def _account(stack: DevStack, headers: dict[str, str]) -> dict[str, Any]:
    answer = requests.get(f"{stack.url}/v1/account", headers=headers, timeout=30)
    assert answer.status_code == 200
    account: dict[str, Any] = answer.json()
    return account


def _listed(stack: DevStack, headers: dict[str, str]) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(50):  # bounded: 50 pages of 100 is far more than these tests create
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = requests.get(f"{stack.url}/v1/executions", params=params, headers=headers, timeout=30).json()
        ids.extend(item["executionId"] for item in page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            return ids
    raise AssertionError("listing did not end")


def _cancel_all(stack: DevStack, headers: dict[str, str]) -> None:
    """Stop the long jobs, so they do not keep the shared stack busy polling for the other tests."""
    for execution_id in _listed(stack, headers):
        requests.post(f"{stack.url}/v1/executions/{execution_id}/cancel", headers=headers, timeout=30)


def test_200_parallel_submits_against_a_limit_of_50_create_exactly_50(dev_stack: DevStack) -> None:
    headers = {"X-API-Key": "limited-key"}
    answers = _burst(dev_stack, 200, headers, LONG_JOB)
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {202: 50, 429: 150}, statuses
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {"QUEUE_LIMIT_EXCEEDED"}
    account = _account(dev_stack, headers)
    assert account["liveExecutions"] == 50
    assert account["reservedCredits"] == 500
    assert len(_listed(dev_stack, headers)) == 50
    _cancel_all(dev_stack, headers)


def test_parallel_submits_spend_exactly_the_balance(dev_stack: DevStack) -> None:
    headers = {"X-API-Key": "thrifty-key"}  # 300 credits: 30 sim-videos
    answers = _burst(dev_stack, 100, headers, LONG_JOB)
    statuses = Counter(answer.status_code for answer in answers)
    odd = [answer.text for answer in answers if answer.status_code not in (202, 402)]
    assert statuses == {202: 30, 402: 70}, (statuses, odd)
    account = _account(dev_stack, headers)
    assert (account["credits"], account["reservedCredits"], account["liveExecutions"]) == (0, 300, 30)
    _cancel_all(dev_stack, headers)


def test_one_idempotency_key_raced_from_many_clients_creates_one_execution(dev_stack: DevStack) -> None:
    headers = {"X-API-Key": "racer-key", "Idempotency-Key": "race-1"}
    before = _account(dev_stack, {"X-API-Key": "racer-key"})
    body = {"model": "sim-video", "input": {"sim": {"durationSeconds": 1}}}
    answers = _burst(dev_stack, 20, headers, body)
    assert Counter(answer.status_code for answer in answers) == {202: 20}
    assert len({answer.json()["executionId"] for answer in answers}) == 1
    assert len({answer.content for answer in answers}) == 1, "every answer is the first answer"
    assert sum(answer.headers.get("idempotent-replayed") == "true" for answer in answers) == 19
    after = _account(dev_stack, {"X-API-Key": "racer-key"})
    assert before["credits"] - after["credits"] == 10, "reserved (or charged) once"
