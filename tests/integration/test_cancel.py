"""Cancel: queued at once, running through cancel_requested, idempotent, 409 when terminal, races."""

from __future__ import annotations

import time
from typing import Any

import pytest

from asyncgate.domain.catalog import Catalog
from asyncgate.providers.base import PollResult, Provider, ProviderJob
from asyncgate.services.deps import default_deps
from asyncgate_dev.simprovider import SimProviderServer
from tests.fakes import PollingProvider
from tests.integration.driver import Gateway


def test_cancel_a_queued_execution_is_immediate(gateway: Gateway) -> None:
    execution_id = gateway.submit(model="sim-image", sim={"durationSeconds": 5}).json()["executionId"]
    answer = gateway.call("cancel", execution_id=execution_id)
    assert answer.status == 200
    body = answer.json()
    assert body == {
        "executionId": execution_id,
        "cancelled": True,
        "previousStatus": "queued",
        "status": "cancelled",
        "message": body["message"],
        "execution": body["execution"],
    }
    assert body["execution"]["status"] == "cancelled"
    assert body["execution"]["executionId"] == execution_id
    execution = gateway.status(execution_id)
    assert execution["status"] == "cancelled"
    assert execution["cost"] == {"credits": 0.0}
    assert execution["providerRequestId"] is None
    # The dispatch tick still on the queue finds a terminal execution and does nothing.
    gateway.tick_once()
    assert gateway.status(execution_id)["status"] == "cancelled"
    assert gateway.status(execution_id)["providerRequestId"] is None


def test_cancel_a_running_execution_goes_through_cancel_requested(
    gateway: Gateway, sim_server: SimProviderServer
) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 30}).json()["executionId"]
    first = gateway.call("cancel", execution_id=execution_id)
    assert first.status == 200
    assert first.json()["previousStatus"] == "running"
    assert first.json()["status"] == "cancel_requested"
    again = gateway.call("cancel_delete", execution_id=execution_id)
    assert again.status == 200
    assert again.json() == first.json(), "a repeated cancel answers as the first did"

    done = gateway.run_to_end(execution_id)
    assert done["status"] == "cancelled"
    assert done["cost"] == {"credits": 0.0}
    assert done["error"] is None
    provider_id = done["providerRequestId"]
    assert sim_server.job_status(provider_id) == "cancelled", "the provider's own cancel was called"


def test_cancel_a_terminal_execution_is_409_with_its_status(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 0.3}).json()["executionId"]
    gateway.run_to_end(execution_id)
    answer = gateway.call("cancel", execution_id=execution_id)
    assert answer.status == 409
    assert answer.json() == {
        "error": {
            "code": "EXECUTION_NOT_CANCELLABLE",
            "message": answer.json()["error"]["message"],
            "details": {"status": "succeeded"},
        }
    }


def test_a_cancel_after_the_provider_finished_keeps_the_result_and_is_charged(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 0.3}).json()["executionId"]
    time.sleep(0.6)  # the provider finishes; no tick has seen it yet
    assert gateway.call("cancel", execution_id=execution_id).json()["status"] == "cancel_requested"
    done = gateway.run_to_end(execution_id)
    assert done["status"] == "cancelled"
    assert len(done["result"]["outputs"]) == 1, "the provider had finished: its result is kept"
    assert done["cost"] == {"credits": 10}, "and it is charged like a success: the provider billed it"
    account = gateway.call("account").json()
    assert (account["reservedCredits"], account["liveExecutions"]) == (0, 0)


def test_cancel_of_unknown_or_foreign_execution_is_404(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 5}).json()["executionId"]
    foreign = gateway.call("cancel", execution_id=execution_id, key="key-tenant-b")
    missing = gateway.call("cancel", execution_id="6a4fd5b2-0c1e-4c55-9d1b-0d4a3e0f9e11", key="key-tenant-b")
    assert foreign.status == missing.status == 404
    assert foreign.json()["error"]["code"] == missing.json()["error"]["code"] == "EXECUTION_NOT_FOUND"
    assert gateway.status(execution_id)["status"] == "running"


class CancellingProvider(PollingProvider):
    """The real sim adapter, but the client's cancel lands while the provider's submit is in flight."""

    def __init__(self, gateway: Gateway, real: Provider) -> None:
        self.gateway = gateway
        self.real = real
        self.name = real.name
        self.started: list[str] = []

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,
    ) -> ProviderJob:
        job = self.real.submit(execution_id=execution_id, provider_model=provider_model, input=input)
        self.started.append(job.provider_request_id)
        assert self.gateway.call("cancel", execution_id=execution_id).json()["status"] == "cancelled"
        return job

    def poll(self, job_ref: str) -> PollResult:
        return self.real.poll(job_ref)

    def cancel(self, job_ref: str) -> None:
        self.real.cancel(job_ref)


@pytest.mark.parametrize("model", ["sim-video", "sim-image"])
def test_a_cancel_during_dispatch_cancels_the_new_provider_job_too(
    gateway: Gateway, sim_server: SimProviderServer, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    deps = default_deps()
    provider = CancellingProvider(gateway, deps.providers("sim"))
    monkeypatch.setattr(deps, "providers", lambda _: provider)
    answer = gateway.submit(model=model, sim={"durationSeconds": 30})
    assert answer.status == 202, "the client is told what happened, not a 500"
    execution_id = answer.json()["executionId"]
    if model == "sim-image":  # queued dispatch: the tick calls the provider
        gateway.tick_once()
    assert len(provider.started) == 1
    assert gateway.status(execution_id)["status"] == "cancelled"
    assert sim_server.job_status(provider.started[0]) == "cancelled", (
        "no provider job left running unfollowed"
    )
    assert gateway.pending_ticks() == 0


@pytest.mark.parametrize(("outcome", "cost", "has_result"), [("succeed", 10, True), ("fail", 0, False)])
def test_a_model_that_cannot_be_cancelled_is_followed_to_its_end(
    gateway: Gateway, sim_server: SimProviderServer, monkeypatch: pytest.MonkeyPatch, outcome: str, cost: int,
    has_result: bool,
) -> None:  # fmt: skip
    """Nothing can stop its provider's job, which bills when it finishes: the execution is cancelled
    once the job ends, with its result and charged when it succeeded, free when it did not."""
    deps = default_deps()
    uncancellable = deps.spec("sim-video").model_copy(update={"cancel": False})
    monkeypatch.setattr(deps, "catalog", Catalog(models=[uncancellable]))
    execution_id = gateway.submit(sim={"durationSeconds": 1, "outcome": outcome}).json()["executionId"]
    assert gateway.call("cancel", execution_id=execution_id).json()["status"] == "cancel_requested"
    done = gateway.run_to_end(execution_id)
    assert done["status"] == "cancelled"
    assert done["cost"] == {"credits": cost}
    assert (done["result"] is not None) is has_result
    assert sim_server.job_status(done["providerRequestId"]) == ("succeeded" if has_result else "failed")
    account = gateway.call("account").json()
    assert (account["reservedCredits"], account["liveExecutions"]) == (0, 0)
