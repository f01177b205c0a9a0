"""A real provider's adapter behind the whole gateway (fal, faked on loopback from its documented
answers): the catalog's model, the key and base-URL conventions, queue position, outputs, credits."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from asyncgate.domain.callbacks import callback_token
from asyncgate.domain.schedule import first_poll_delay, queued_poll_delay
from asyncgate.providers.registry import forget_providers
from asyncgate.services.deps import default_deps
from asyncgate.settings import DEFAULT_CATALOG
from asyncgate_dev.simprovider import SimProviderServer
from tests.fakes import Answer, FakeApi
from tests.integration.conftest import forget_container_state
from tests.integration.driver import TENANT_CREDITS, Gateway

FAL = Path(__file__).parents[1] / "fixtures" / "providers" / "fal"
REPLICATE = Path(__file__).parents[1] / "fixtures" / "providers" / "replicate"
DECLARATIVE = Path(__file__).parents[1] / "fixtures" / "providers" / "declarative"
KEY = "fal-key-id:fal-test-secret"


def _fal(name: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads((FAL / name).read_text())
    return answer


@pytest.fixture
def fal(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    with FakeApi() as api:
        monkeypatch.setenv("FAL_KEY", KEY)
        monkeypatch.setenv("ASYNCGATE_FAL_URL", api.url)
        # fal's documented answers name files on fal.media, out of reach here: no results bucket, so
        # outputs keep the provider's URLs (tests/integration/test_results.py copies them).
        monkeypatch.setenv("RESULTS_BUCKET", "")
        forget_container_state()
        yield api
        forget_providers()


def test_a_fal_job_runs_through_the_gateway(gateway: Gateway, fal: FakeApi) -> None:
    submitted = _fal("submit_flux_dev.json")
    request = f"/fal-ai/flux/requests/{submitted['request_id']}"
    fal.on("POST", "/fal-ai/flux/schnell", Answer(200, submitted))
    fal.on(
        "GET",
        f"{request}/status",
        Answer(202, _fal("status_in_queue.json")),
        Answer(200, _fal("status_completed.json")),
    )
    fal.on("GET", request, Answer(200, _fal("result_fast_sdxl.json")))

    accepted = gateway.call("submit", body={"model": "flux-schnell", "input": {"prompt": "a cat"}})
    assert accepted.status == 202, accepted.body
    assert accepted.json()["providerRequestId"] == submitted["request_id"], "fal's own id, as its logs show"
    execution_id = accepted.json()["executionId"]
    queued = gateway.drain_until(execution_id, lambda e: e["pollCount"] >= 1)
    # Still in fal's queue: all of the model's expected run (5 s) is ahead of it.
    assert (queued["status"], queued["queuePosition"], queued["etaSeconds"]) == ("running", 3, 5)
    # Three jobs ahead: the next poll waits a first-poll gap for each and its own (capped).
    waiting = default_deps().executions.get(execution_id)
    assert waiting is not None
    assert waiting.next_poll_at is not None
    plan = default_deps().spec("flux-schnell").poll_plan
    gap = (waiting.next_poll_at - waiting.updated_at).total_seconds()
    assert gap == pytest.approx(queued_poll_delay(plan, position=3) * 0.02)
    assert gap > first_poll_delay(plan) * 0.02
    done = gateway.run_to_end(execution_id)
    assert done["status"] == "succeeded"
    assert done["queuePosition"] is None
    assert done["etaSeconds"] is None
    assert done["result"]["outputs"] == [
        {
            "url": "https://fal.media/files/elephant/abc123def456.jpeg",
            "contentType": "image/jpeg",
            "stored": False,
        }
    ]
    assert done["cost"] == {"credits": 1}
    assert gateway.call("account").json()["credits"] == TENANT_CREDITS - 1
    sent = fal.seen[0]
    assert sent.headers["authorization"] == f"Key {KEY}"
    assert sent.body == {"prompt": "a cat"}
    assert KEY not in json.dumps(done), "the key never reaches the execution"


def test_a_fal_refusal_fails_the_submit_with_the_providers_answer(gateway: Gateway, fal: FakeApi) -> None:
    fal.on("POST", "/fal-ai/flux/schnell", Answer(422, _fal("error_validation.json")))
    refused = gateway.call("submit", body={"model": "flux-schnell", "input": {"prompt": "a cat"}})
    assert refused.status == 500
    error = refused.json()["error"]
    assert error["code"] == "PROVIDER_SUBMIT_FAILED"
    assert error["details"]["providerStatus"] == 422
    assert "loc" in error["details"]["providerBody"]
    assert KEY not in refused.body.decode()
    assert gateway.call("account").json()["reservedCredits"] == 0


def test_a_provider_described_in_the_catalog_needs_no_code(
    gateway: Gateway, sim_server: SimProviderServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulated provider's API, re-described as data (tests/fixtures/providers/declarative/sim.json)
    in a deployment's own catalog: a model of it runs to the end through the unchanged gateway."""
    described = json.loads((DECLARATIVE / "sim.json").read_text())
    catalog = json.loads(DEFAULT_CATALOG.read_text())
    catalog["httpProviders"] = {described["name"]: described}
    catalog["models"].append(
        {
            "model": "video-by-description", "provider": described["name"], "providerModel": "sim-video",
            "async": True, "cancel": True, "expectedDurationSeconds": 2, "maxDurationSeconds": 60,
            "price": {"credits": 3},
        }
    )  # fmt: skip
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    monkeypatch.setenv("CATALOG_FILE", str(path))
    monkeypatch.setenv("ASYNCGATE_SIM_DECLARATIVE_URL", sim_server.url)
    forget_container_state()
    body = {"model": "video-by-description", "input": {"sim": {"durationSeconds": 0.3, "outputs": 2}}}
    accepted = gateway.call("submit", body=body)
    assert accepted.status == 202, accepted.body
    done = gateway.run_to_end(accepted.json()["executionId"])
    assert done["status"] == "succeeded"
    assert [output["contentType"] for output in done["result"]["outputs"]] == ["video/mp4", "video/mp4"]
    assert done["cost"] == {"credits": 3}
    listed = {item["model"] for item in gateway.call("models").json()["items"]}
    assert "video-by-description" in listed


@pytest.fixture
def replicate(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    with FakeApi() as api:
        monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_test_token")
        monkeypatch.setenv("ASYNCGATE_REPLICATE_URL", api.url)
        monkeypatch.setenv("PROVIDER_CALLBACKS", "on")
        monkeypatch.setenv("PUBLIC_URL", "https://gateway.example")
        monkeypatch.setenv("RESULTS_BUCKET", "")  # outputs on replicate.delivery: out of reach here
        forget_container_state()
        yield api
        forget_providers()


def _signed(
    body: bytes, *, at: datetime, secret: str, message_id: str = "msg_2LK6dXo8bYqNCz1zmcRuBLFk8o4"
) -> dict[str, str]:
    """Standard Webhooks headers, as Replicate signs its webhooks."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body.decode()),
    }


def test_a_signed_replicate_callback_finishes_the_job_and_forged_or_replayed_ones_do_not(
    gateway: Gateway, replicate: FakeApi
) -> None:
    created = json.loads((REPLICATE / "create_prediction.json").read_text())
    prediction = {
        **json.loads((REPLICATE / "prediction_succeeded_files.json").read_text()),
        "id": created["id"],
    }
    secret = json.loads((REPLICATE / "webhook_secret.json").read_text())["key"]
    replicate.on("POST", "/v1/predictions", Answer(201, created))
    replicate.on("GET", f"/v1/predictions/{created['id']}", Answer(200, prediction))
    replicate.on("GET", "/v1/webhooks/default/secret", Answer(200, {"key": secret}))

    accepted = gateway.call(
        "submit", body={"model": f"replicate/{created['version']}", "input": {"text": "hi"}}
    )
    assert accepted.status == 202, accepted.body
    execution_id = accepted.json()["executionId"]
    sent = replicate.seen[0].body
    key = default_deps().callback_key()
    assert key is not None
    token = callback_token(key, "replicate", execution_id)
    assert sent["webhook"] == f"https://gateway.example/v1/callbacks/replicate/{execution_id}?token={token}"
    assert sent["webhook_events_filter"] == ["completed"]
    # Replicate's prediction echoes the webhook URL: stored, shown and signed into webhooks without its token.
    prediction["webhook"] = sent["webhook"]
    replicate.on("GET", f"/v1/predictions/{created['id']}", Answer(200, prediction))

    body = json.dumps(prediction).encode()
    now = datetime.now(UTC)

    def deliver(headers: dict[str, str], payload: bytes = body) -> int:
        answer = gateway.call(
            "callback", provider="replicate", execution_id=execution_id, key=None,
            query=f"token={token}", headers=headers, raw_body=payload,
        )  # fmt: skip
        return answer.status

    other_secret = "whsec_" + base64.b64encode(b"not-the-account-secret-!").decode()
    assert deliver(_signed(body, at=now, secret=other_secret)) == 401  # forged
    assert deliver(_signed(body, at=now - timedelta(minutes=6), secret=secret)) == 401  # replayed later
    tampered = body.replace(b"succeeded", b"succeeded ")
    assert deliver({**_signed(body, at=now, secret=secret)}, tampered) == 401  # body changed after signing
    assert not any(seen.path.startswith("/v1/predictions/") for seen in replicate.seen), "no poll for those"

    assert deliver(_signed(body, at=now, secret=secret)) == 200
    done = gateway.drain_until(execution_id, lambda e: e["status"] == "succeeded", timeout=5)
    assert done["pollCount"] == 1
    assert [output["url"] for output in done["result"]["outputs"]] == prediction["output"]
    assert done["result"]["raw"]["webhook"].endswith("?token=redacted")
    assert token not in json.dumps(done)
