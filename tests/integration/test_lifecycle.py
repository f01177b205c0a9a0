"""The whole lifecycle through the real handlers: submit -> poll ticks -> terminal, on moto + the sim."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from asyncgate.domain.clock import parse_ts
from asyncgate.services.deps import default_deps
from asyncgate.settings import DEFAULT_CATALOG, get_settings
from tests.integration.driver import Gateway

TERMINAL = {"succeeded", "failed", "cancelled"}


def test_submit_answers_running_with_provider_id_and_location(gateway: Gateway) -> None:
    answer = gateway.submit(sim={"durationSeconds": 1}, metadata={"order": "A-17"})
    assert answer.status == 202
    body = answer.json()
    assert body["async"] is True
    assert body["status"] == "running"
    assert body["providerRequestId"].startswith("sim_")
    assert body["model"] == "sim-video"
    assert answer.headers["location"] == f"/v1/executions/{body['executionId']}"
    assert body["statusUrl"] == answer.headers["location"]
    assert body["cancelUrl"] == f"/v1/executions/{body['executionId']}/cancel"
    assert body["webhook"] == {"configured": False, "url": None}
    assert body["createdAt"].endswith("Z")


def test_a_job_runs_to_success_with_result_cost_and_cleanup(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 1.5}).json()["executionId"]
    running = gateway.call("status", execution_id=execution_id)
    assert running.json()["status"] == "running"
    assert int(running.headers["retry-after"]) >= 1

    done = gateway.run_to_end(execution_id)
    assert done["status"] == "succeeded"
    assert b'"cost":{"credits":10}' in gateway.call("status", execution_id=execution_id).body
    assert done["progress"] == 100.0
    assert done["error"] is None
    assert done["cost"] == {"credits": 10.0}
    assert len(done["result"]["outputs"]) == 1
    assert done["result"]["outputs"][0]["contentType"] == "video/mp4"
    assert done["result"]["raw"]["status"] == "succeeded"
    assert done["pollCount"] >= 1
    assert parse_ts(done["cleanupAfter"]) - parse_ts(done["completedAt"]) == timedelta(days=7)
    assert gateway.pending_ticks() == 0, "a terminal execution leaves no tick behind"
    final = gateway.call("status", execution_id=execution_id)
    assert "retry-after" not in final.headers


def test_outputs_appear_one_by_one_as_partial_results(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 3, "outputs": 3}).json()["executionId"]
    partial = gateway.drain_until(
        execution_id, lambda e: e["status"] in TERMINAL or bool(e["result"] and e["result"]["outputs"])
    )
    assert partial["status"] == "running", "the first finished output is visible while the job runs"
    assert 1 <= len(partial["result"]["outputs"]) < 3
    assert 0 < partial["progress"] < 100
    done = gateway.run_to_end(execution_id)
    assert done["status"] == "succeeded"
    assert len(done["result"]["outputs"]) == 3


def test_provider_failure_fails_the_execution_uncharged(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 0.5, "outcome": "fail"}).json()["executionId"]
    done = gateway.run_to_end(execution_id)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "PROVIDER_FAILED"
    assert done["error"]["providerBody"]
    assert done["cost"] == {"credits": 0.0}
    assert done["result"] is None


def test_done_without_output_is_incomplete_and_uncharged(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 0.5, "outcome": "incomplete"}).json()["executionId"]
    done = gateway.run_to_end(execution_id)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "PROVIDER_RESPONSE_INCOMPLETE"
    assert done["cost"] == {"credits": 0.0}


def test_provider_submit_failure_answers_500_and_leaves_nothing_live(gateway: Gateway) -> None:
    answer = gateway.submit(sim={"submitStatus": 503})
    assert answer.status == 500
    error = answer.json()["error"]
    assert error["code"] == "PROVIDER_SUBMIT_FAILED"
    assert error["details"]["providerStatus"] == 503
    assert "error" in json.loads(error["details"]["providerBody"])
    execution = gateway.status(error["details"]["executionId"])
    assert execution["status"] == "failed"
    assert execution["error"]["code"] == "PROVIDER_SUBMIT_FAILED"
    assert execution["cost"] == {"credits": 0.0}
    live = gateway.call("list_executions", query="status=running").json()["items"]
    assert live == []
    assert gateway.pending_ticks() == 0


def test_transient_poll_errors_are_retried_within_the_budget(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 0.5, "pollErrors": 2}).json()["executionId"]
    done = gateway.run_to_end(execution_id, timeout=30)
    assert done["status"] == "succeeded"


def test_poll_errors_past_the_budget_fail_unreachable(gateway: Gateway) -> None:
    execution_id = gateway.submit(sim={"durationSeconds": 0.5, "pollErrors": 50}).json()["executionId"]
    done = gateway.run_to_end(execution_id, timeout=40)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "PROVIDER_UNREACHABLE"
    assert done["error"]["providerStatus"] == 503


def test_queued_dispatch_goes_through_the_poll_queue(gateway: Gateway) -> None:
    answer = gateway.submit(model="sim-image", sim={"durationSeconds": 0.5})
    assert answer.status == 202
    body = answer.json()
    assert body["status"] == "queued"
    assert body["providerRequestId"] is None
    done = gateway.run_to_end(body["executionId"])
    assert done["status"] == "succeeded"
    assert done["providerRequestId"].startswith("sim_")
    assert done["cost"] == {"credits": 2.0}


def test_queued_dispatch_refused_by_the_provider_fails_the_execution(gateway: Gateway) -> None:
    execution_id = gateway.submit(model="sim-image", sim={"submitStatus": 422}).json()["executionId"]
    done = gateway.run_to_end(execution_id)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "PROVIDER_SUBMIT_FAILED"
    assert done["error"]["providerStatus"] == 422


def test_running_past_max_duration_fails_with_timeout(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = json.loads(DEFAULT_CATALOG.read_text())
    for model in catalog["models"]:
        model["maxDurationSeconds"] = 1
    override = tmp_path / "catalog.json"
    override.write_text(json.dumps(catalog))
    monkeypatch.setenv("CATALOG_FILE", str(override))
    get_settings.cache_clear()
    default_deps.cache_clear()

    execution_id = gateway.submit(sim={"durationSeconds": 60}).json()["executionId"]
    done = gateway.run_to_end(execution_id)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "EXECUTION_TIMEOUT"
    assert done["cost"] == {"credits": 0.0}
