"""The catalog as data: closed input schemas (422), prices by input as listed, pass-through model ids,
providers without a key, sync-only models, and a provider's rate limit honoured by the poll schedule."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from asyncgate.domain.execution import new_execution
from asyncgate.domain.status import Status
from asyncgate.providers.base import Output, PollResult, ProviderState, ProviderUnavailable
from asyncgate.services.deps import default_deps
from asyncgate.services.lifecycle import step
from asyncgate.store.results import NoResults
from tests.fakes import PollingProvider
from tests.integration.driver import Gateway


def _error(answer: Any) -> dict[str, Any]:
    error: dict[str, Any] = answer.json()["error"]
    return error


def test_input_breaking_the_models_schema_is_422_and_creates_nothing(gateway: Gateway) -> None:
    answer = gateway.submit(sim={"durationSeconds": -1, "colour": "red"})
    assert answer.status == 422
    assert _error(answer)["code"] == "VALIDATION_ERROR"
    assert [error["field"] for error in _error(answer)["details"]["errors"]] == [
        "body.input.sim",
        "body.input.sim.durationSeconds",
    ]
    assert gateway.call("list_executions").json()["items"] == []
    assert gateway.call("account").json()["liveExecutions"] == 0


def test_an_input_the_schema_does_not_name_is_422_and_reserves_nothing(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = gateway.call("submit", body={"model": "sim-video", "input": {"prompt": "a", "num_images": 100}})
    assert unknown.status == 422
    assert _error(unknown)["code"] == "VALIDATION_ERROR"
    assert _error(unknown)["details"]["errors"] == [
        {
            "field": "body.input",
            "message": "Additional properties are not allowed ('num_images' was unexpected)",
        }
    ]
    # A real provider's model too, refused before any call: the port is closed.
    monkeypatch.setenv("FAL_KEY", "fal-test-key")
    monkeypatch.setenv("ASYNCGATE_FAL_URL", "http://127.0.0.1:9")
    for extra in ({"num_images": 100}, {"sync_mode": True}):
        refused = gateway.call("submit", body={"model": "flux-schnell", "input": {"prompt": "a", **extra}})
        assert (refused.status, _error(refused)["code"]) == (422, "VALIDATION_ERROR"), extra
    account = gateway.call("account").json()
    assert (account["reservedCredits"], account["liveExecutions"]) == (0, 0)
    assert gateway.call("list_executions").json()["items"] == []


def test_a_provider_without_a_key_offers_no_model(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("REPLICATE_API_TOKEN_PARAMETER", raising=False)
    answer = gateway.submit(model="replicate/black-forest-labs/flux-schnell")
    assert answer.status == 400
    assert _error(answer)["code"] == "UNKNOWN_MODEL"
    assert "REPLICATE_API_TOKEN" in _error(answer)["message"]
    unknown = gateway.submit(model="nowhere/some-model")
    assert _error(unknown)["code"] == "UNKNOWN_MODEL"
    assert "not in the catalog" in _error(unknown)["message"]


def test_models_lists_what_can_run_here_with_input_schemas(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("FAL_KEY", "KIE_API_KEY", "OPENAI_API_KEY", "FAL_KEY_PARAMETER"):
        monkeypatch.delenv(variable, raising=False)
    listed = {item["model"]: item for item in gateway.call("models").json()["items"]}
    assert set(listed) == {"sim-video", "sim-image", "sim-chat"}
    assert listed["sim-video"]["inputSchema"]["properties"]["sim"]["type"] == "object"
    assert listed["sim-chat"]["inputSchema"] is None
    # Priced by input: `credits` is the price of the schema's defaults, the terms say how it grows.
    assert listed["sim-image"]["price"] == {
        "credits": 2,
        "base": 0,
        "perInput": [{"input": "sim.outputs", "credits": 2, "per": 1}],
    }
    monkeypatch.setenv("FAL_KEY", "fal-test-key")
    listed = {item["model"]: item for item in gateway.call("models").json()["items"]}
    assert listed["flux-schnell"]["provider"] == "fal"
    assert listed["flux-schnell"]["inputSchema"]["required"] == ["prompt"]
    assert listed["flux-schnell"]["price"]["perInput"] == [{"input": "num_images", "credits": 1, "per": 1}]


def test_a_configured_providers_models_are_checked_before_any_call(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A closed loopback port: were the provider called, the submit would fail differently.
    monkeypatch.setenv("FAL_KEY", "fal-test-key")
    monkeypatch.setenv("ASYNCGATE_FAL_URL", "http://127.0.0.1:9")
    missing_prompt = gateway.call("submit", body={"model": "flux-schnell", "input": {}})
    assert missing_prompt.status == 422
    assert _error(missing_prompt)["details"]["errors"][0]["message"] == "'prompt' is a required property"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    sync_only = gateway.call("submit", body={"model": "gpt-image-1", "input": {"prompt": "a fox"}})
    assert sync_only.status == 400
    assert _error(sync_only)["code"] == "ASYNC_NOT_SUPPORTED"


class RateLimited(PollingProvider):
    """A provider whose status endpoint answers 429 with Retry-After: 120."""

    name = "limited"

    def poll(self, job_ref: str) -> PollResult:
        raise ProviderUnavailable("limited answered HTTP 429 to poll", status=429, retry_after=120)


def test_a_rate_limits_retry_after_sets_the_next_poll(gateway: Gateway) -> None:
    deps = dataclasses.replace(default_deps(), providers=lambda _: RateLimited())
    spec = deps.spec("sim-video")
    now = deps.clock()
    running = new_execution(
        execution_id="5f0c7c55-0000-4000-8000-000000000001", tenant="tenant-a", spec=spec, input={},
        metadata={}, webhook_url=None, webhook_events=None, now=now, first_tick_at=now, dispatching=False,
        reserved_credits=spec.price_of({}),
    )  # fmt: skip
    running = running.model_copy(update={"status": Status.RUNNING, "provider_request_id": "job-1"})
    after = step(deps, running, spec, now=now)
    assert after.consecutive_errors == 1
    assert after.next_poll_at is not None
    # Exactly the provider's 120 s (scaled), not the first error's 2 s backoff.
    assert after.next_poll_at - now == deps.scaled(120)


class Verbose(PollingProvider):
    """A provider whose finished job comes with a raw answer far bigger than an execution can hold."""

    name = "verbose"

    def poll(self, job_ref: str) -> PollResult:
        return PollResult(
            state=ProviderState.SUCCEEDED,
            outputs=[Output(url="https://cdn.example/1.png", content_type="image/png")],
            raw={"logs": "x" * 500_000},
        )


def test_a_huge_raw_answer_is_noted_not_stored(gateway: Gateway) -> None:
    # No results bucket: the output's host is made up (test_results.py copies outputs).
    deps = dataclasses.replace(default_deps(), providers=lambda _: Verbose(), results=NoResults())
    execution_id = gateway.submit(sim={"durationSeconds": 600}).json()["executionId"]
    running = deps.executions.get(execution_id)
    assert running is not None
    done = step(deps, running, deps.spec("sim-video"), now=deps.clock())
    deps.executions.update(running, done)  # fits in its item
    stored = gateway.status(execution_id)
    assert stored["status"] == "succeeded"
    assert stored["result"]["outputs"] == [
        {"url": "https://cdn.example/1.png", "contentType": "image/png", "stored": False}
    ]
    assert stored["result"]["raw"] == {"truncated": True, "bytes": len('{"logs":""}') + 500_000}
