"""The fal adapter against a fake fal queue on loopback, replaying the documented queue answers."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from asyncgate.providers.base import (
    CallbackRejected,
    CallbackRequest,
    ProviderRejected,
    ProviderState,
    ProviderUnavailable,
)
from asyncgate.providers.fal import DOCUMENTED_STATUSES, JWKS_URL, STATES, FalProvider, build
from tests.fakes import Answer, FakeApi

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "fal"
KEY = "fal-key-id:fal-test-secret"
REQUEST_ID = "80e732af-660e-45cd-bd63-580e4f2a94cc"
REFERENCE = f"fal-ai/fast-sdxl::{REQUEST_ID}"
REQUEST_PATH = f"/fal-ai/fast-sdxl/requests/{REQUEST_ID}"
STATUS_PATH = f"{REQUEST_PATH}/status"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def provider(api: FakeApi) -> Iterator[FalProvider]:
    with requests.Session() as session:
        yield FalProvider(KEY, api.url, session=session)


def test_status_mapping_is_total() -> None:
    assert set(DOCUMENTED_STATUSES) == set(STATES)


def test_build_offers_the_registry_constructor() -> None:
    assert build(KEY, "http://127.0.0.1:9").name == "fal"


def test_submit_posts_the_input_to_the_app(api: FakeApi, provider: FalProvider) -> None:
    api.on("POST", "/fal-ai/fast-sdxl", Answer(200, fixture("submit_fast_sdxl.json")))
    job = provider.submit(
        execution_id="exec-1", provider_model="fal-ai/fast-sdxl", input={"prompt": "a cat", "seed": 3}
    )

    assert job.job_ref == REFERENCE
    assert job.provider_request_id == REFERENCE.rpartition("::")[2], (
        "the provider's own id, as its logs show it"
    )
    [seen] = api.seen
    assert seen.method == "POST"
    assert seen.headers["authorization"] == f"Key {KEY}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {"prompt": "a cat", "seed": 3}, "the input is the body, as it is"


def test_an_endpoint_path_is_submitted_but_polled_at_the_app_root(
    api: FakeApi, provider: FalProvider
) -> None:
    answer = fixture("submit_flux_dev.json")
    request_id = answer["request_id"]
    api.on("POST", "/fal-ai/flux/dev", Answer(200, answer))
    api.on("GET", f"/fal-ai/flux/requests/{request_id}/status", Answer(202, fixture("status_in_queue.json")))

    job = provider.submit(execution_id="exec-1", provider_model="fal-ai/flux/dev", input={"prompt": "x"})
    assert job.job_ref == f"fal-ai/flux::{request_id}"
    assert job.provider_request_id == request_id
    assert provider.poll(job.job_ref).state is ProviderState.PENDING


def test_without_urls_in_the_answer_the_root_follows_the_documented_rule(
    api: FakeApi, provider: FalProvider
) -> None:
    api.on("POST", "/fal-ai/flux/dev", Answer(200, {"request_id": "r-1"}))
    api.on("POST", "/workflows/acme/pipeline/run", Answer(200, {"request_id": "r-2"}))

    assert provider.submit(execution_id="e", provider_model="fal-ai/flux/dev", input={}).job_ref == (
        "fal-ai/flux::r-1"
    )
    assert provider.submit(
        execution_id="e", provider_model="workflows/acme/pipeline/run", input={}
    ).job_ref == ("workflows/acme/pipeline::r-2")


def test_the_answer_urls_are_rebased_on_the_configured_base(api: FakeApi) -> None:
    """A base URL with a path (a proxy): the answer's URLs carry it; the stored root does not."""
    answer = {
        "request_id": "r-9",
        "response_url": f"{api.url}/proxy/fal/fal-ai/flux/requests/r-9",
    }
    api.on("POST", "/proxy/fal/fal-ai/flux/dev", Answer(200, answer))
    api.on("GET", "/proxy/fal/fal-ai/flux/requests/r-9/status", Answer(200, fixture("status_in_queue.json")))
    with requests.Session() as session:
        provider = FalProvider(KEY, f"{api.url}/proxy/fal/", session=session)
        job = provider.submit(execution_id="e", provider_model="fal-ai/flux/dev", input={})
        assert job.job_ref == "fal-ai/flux::r-9"
        assert provider.poll(job.job_ref).queue_position == 3


@pytest.mark.parametrize("provider_model", ["", "fast-sdxl", "fal-ai//dev", "../etc/passwd", "fal-ai/x?y=1"])
def test_submit_refuses_a_malformed_app_id_without_calling(
    api: FakeApi, provider: FalProvider, provider_model: str
) -> None:
    with pytest.raises(ProviderRejected):
        provider.submit(execution_id="e", provider_model=provider_model, input={})
    assert api.seen == []


def test_submit_refusal_is_final(api: FakeApi, provider: FalProvider) -> None:
    api.on("POST", "/fal-ai/fast-sdxl", Answer(401, {"detail": "Unauthorized"}))
    with pytest.raises(ProviderRejected) as raised:
        provider.submit(execution_id="e", provider_model="fal-ai/fast-sdxl", input={})
    assert raised.value.status == 401
    assert len(api.seen) == 1, "a submit is never retried"


def test_submit_answer_without_a_request_id_is_malformed(api: FakeApi, provider: FalProvider) -> None:
    api.on("POST", "/fal-ai/fast-sdxl", Answer(200, {"status": "IN_QUEUE"}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider.submit(execution_id="e", provider_model="fal-ai/fast-sdxl", input={})


def test_in_queue_is_pending_with_its_position(api: FakeApi, provider: FalProvider) -> None:
    body = fixture("status_in_queue.json")
    api.on("GET", STATUS_PATH, Answer(202, body))
    polled = provider.poll(REFERENCE)

    assert polled.state is ProviderState.PENDING
    assert polled.queue_position == 3
    assert polled.raw == body
    [seen] = api.seen
    assert seen.query == {"logs": "1"}
    assert seen.headers["authorization"] == f"Key {KEY}"


def test_in_progress_reports_logs_progress(api: FakeApi, provider: FalProvider) -> None:
    api.on("GET", STATUS_PATH, Answer(202, fixture("status_in_progress.json")))
    polled = provider.poll(REFERENCE)

    assert polled.state is ProviderState.RUNNING
    assert polled.progress == 40.0
    assert polled.queue_position is None
    assert polled.outputs == []


def test_completed_fetches_the_result_and_its_files(api: FakeApi, provider: FalProvider) -> None:
    status = fixture("status_completed.json")
    result = fixture("result_fast_sdxl.json")
    api.on("GET", STATUS_PATH, Answer(200, status))
    api.on("GET", REQUEST_PATH, Answer(200, result))
    polled = provider.poll(REFERENCE)

    assert polled.state is ProviderState.SUCCEEDED
    assert polled.progress == 100.0
    assert [(o.url, o.content_type) for o in polled.outputs] == [
        ("https://fal.media/files/elephant/abc123def456.jpeg", "image/jpeg")
    ]
    assert polled.raw == {**status, "response": result}
    assert not polled.incomplete
    assert [seen.path for seen in api.seen] == [STATUS_PATH, REQUEST_PATH]


def test_files_anywhere_in_the_result(api: FakeApi, provider: FalProvider) -> None:
    result = {
        **fixture("result_video.json"),
        "thumbnails": [{"url": "https://v3.fal.media/files/t/thumb.webp"}],
        "audio_file": {"url": "data:audio/wav;base64,AAAA", "content_type": "audio/wav"},
    }
    api.on("GET", STATUS_PATH, Answer(200, fixture("status_completed.json")))
    api.on("GET", REQUEST_PATH, Answer(200, result))
    polled = provider.poll(REFERENCE)

    assert [(o.url, o.content_type) for o in polled.outputs] == [
        ("https://v3.fal.media/files/zebra/xyz789/output.mp4", "video/mp4"),
        ("https://v3.fal.media/files/t/thumb.webp", "image/webp"),
    ], "provider content types first, else guessed; inline data URIs are not outputs"


def test_completed_without_files_is_incomplete(api: FakeApi, provider: FalProvider) -> None:
    api.on("GET", STATUS_PATH, Answer(200, fixture("status_completed.json")))
    api.on("GET", REQUEST_PATH, Answer(200, fixture("result_no_files.json")))
    polled = provider.poll(REFERENCE)

    assert polled.state is ProviderState.SUCCEEDED
    assert polled.incomplete
    assert polled.outputs == []


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (422, "error_validation.json", "field required"),
        (504, "error_request_timeout.json", "Request timed out"),
    ],
)
def test_completed_with_a_model_error_is_failed(
    api: FakeApi, provider: FalProvider, status: int, body: str, message: str
) -> None:
    error = fixture(body)
    api.on("GET", STATUS_PATH, Answer(200, fixture("status_completed.json")))
    api.on("GET", REQUEST_PATH, Answer(status, error))
    polled = provider.poll(REFERENCE)

    assert polled.state is ProviderState.FAILED
    assert polled.error_message == message
    assert polled.raw["response"] == error
    assert polled.raw["response_status"] == status


def test_a_gateways_503_on_the_result_is_transient(api: FakeApi, provider: FalProvider) -> None:
    """Not marked as fal's own error: the result may well be there on the next poll."""
    api.on("GET", STATUS_PATH, Answer(200, fixture("status_completed.json")))
    api.on("GET", REQUEST_PATH, Answer(503, {"detail": "Service temporarily unavailable"}))
    with pytest.raises(ProviderUnavailable):
        provider.poll(REFERENCE)


def test_a_fal_error_type_header_marks_the_failure(api: FakeApi, provider: FalProvider) -> None:
    api.on("GET", STATUS_PATH, Answer(200, fixture("status_completed.json")))
    api.on("GET", REQUEST_PATH, Answer(503, b"runner gone", {"X-Fal-Error-Type": "runner_disconnected"}))
    polled = provider.poll(REFERENCE)

    assert polled.state is ProviderState.FAILED
    assert polled.error_message == "runner gone"
    assert polled.raw["response"]["error_type"] == "runner_disconnected"


def test_an_error_on_the_status_is_failed_without_fetching(api: FakeApi, provider: FalProvider) -> None:
    status = {
        **fixture("status_completed.json"),
        "error": "Request timed out",
        "error_type": "request_timeout",
    }
    api.on("GET", STATUS_PATH, Answer(200, status))
    polled = provider.poll(REFERENCE)

    assert polled.state is ProviderState.FAILED
    assert polled.error_message == "Request timed out"
    assert len(api.seen) == 1


def test_a_proxy_error_on_the_result_is_transient(api: FakeApi, provider: FalProvider) -> None:
    api.on("GET", STATUS_PATH, Answer(200, fixture("status_completed.json")))
    api.on("GET", REQUEST_PATH, Answer(502, b"<html>nginx bad gateway</html>"))
    with pytest.raises(ProviderUnavailable) as raised:
        provider.poll(REFERENCE)
    assert raised.value.status == 502


def test_a_rate_limited_result_is_transient(api: FakeApi, provider: FalProvider) -> None:
    api.on("GET", STATUS_PATH, Answer(200, fixture("status_completed.json")))
    api.on("GET", REQUEST_PATH, Answer(429, {"detail": "Too many requests"}, {"Retry-After": "2"}))
    with pytest.raises(ProviderUnavailable) as raised:
        provider.poll(REFERENCE)
    assert raised.value.retry_after == 2.0


@pytest.mark.parametrize("status", [200, 202])
def test_cancel_puts_to_the_cancel_url(api: FakeApi, provider: FalProvider, status: int) -> None:
    api.on("PUT", f"{REQUEST_PATH}/cancel", Answer(status, fixture("cancel_requested.json")))
    provider.cancel(REFERENCE)

    [seen] = api.seen
    assert (seen.method, seen.path) == ("PUT", f"{REQUEST_PATH}/cancel")
    assert seen.headers["authorization"] == f"Key {KEY}"


@pytest.mark.parametrize("status", [200, 400])
def test_cancel_of_a_finished_request_is_refused(api: FakeApi, provider: FalProvider, status: int) -> None:
    api.on("PUT", f"{REQUEST_PATH}/cancel", Answer(status, fixture("cancel_already_completed.json")))
    with pytest.raises(ProviderRejected) as raised:
        provider.cancel(REFERENCE)
    assert raised.value.status == status


def test_rate_limit_is_transient_with_its_retry_after(api: FakeApi, provider: FalProvider) -> None:
    api.on("GET", STATUS_PATH, Answer(429, {"detail": "Rate limit exceeded"}, {"Retry-After": "11"}))
    with pytest.raises(ProviderUnavailable) as raised:
        provider.poll(REFERENCE)
    assert raised.value.status == 429
    assert raised.value.retry_after == 11.0


def test_server_error_is_transient(api: FakeApi, provider: FalProvider) -> None:
    api.on("GET", STATUS_PATH, Answer(500, {"detail": "Internal Server Error"}))
    with pytest.raises(ProviderUnavailable) as raised:
        provider.poll(REFERENCE)
    assert raised.value.status == 500


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, b"<html>not json</html>"),
        Answer(200, ["IN_QUEUE"]),
        Answer(200, {"queue_position": 1}),
        Answer(200, {"status": 3}),
    ],
)
def test_malformed_status_is_rejected(api: FakeApi, provider: FalProvider, answer: Answer) -> None:
    api.on("GET", STATUS_PATH, answer)
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider.poll(REFERENCE)


def test_malformed_result_is_rejected(api: FakeApi, provider: FalProvider) -> None:
    api.on("GET", STATUS_PATH, Answer(200, fixture("status_completed.json")))
    api.on("GET", REQUEST_PATH, Answer(200, b"not json"))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider.poll(REFERENCE)


def test_unknown_status_is_rejected(api: FakeApi, provider: FalProvider) -> None:
    api.on("GET", STATUS_PATH, Answer(200, {"status": "CANCELLED"}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider.poll(REFERENCE)


@pytest.mark.parametrize("reference", ["", REQUEST_ID, "fal-ai::r", "fal-ai/x::", "../x/y::r"])
def test_a_malformed_reference_is_refused_without_calling(
    api: FakeApi, provider: FalProvider, reference: str
) -> None:
    with pytest.raises(ProviderRejected):
        provider.poll(reference)
    with pytest.raises(ProviderRejected):
        provider.cancel(reference)
    assert api.seen == []


def test_unreachable_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with requests.Session() as session:
        provider = FalProvider(KEY, f"http://127.0.0.1:{port}", session=session)
        with pytest.raises(ProviderUnavailable):
            provider.poll(REFERENCE)


def test_the_key_never_reaches_an_error(api: FakeApi, provider: FalProvider) -> None:
    failures: list[Exception] = []
    for status in (401, 429, 500):
        api.on("GET", STATUS_PATH, Answer(status, {"detail": "no"}))
        try:
            provider.poll(REFERENCE)
        except (ProviderRejected, ProviderUnavailable) as error:
            failures.append(error)
    for call in (
        lambda: provider.submit(execution_id="e", provider_model="bad", input={}),
        lambda: provider.poll("bad"),
    ):
        with pytest.raises(ProviderRejected) as raised:
            call()
        failures.append(raised.value)
    assert len(failures) == 5
    for failure in failures:
        assert KEY not in str(failure)
        assert "fal-test-secret" not in repr(failure.args)


# Callbacks: fal's webhooks, signed with Ed25519 by a key of fal's JWKS.

NOW = datetime(2026, 5, 2, 10, 0, 0, tzinfo=UTC)
CALLBACK_URL = "https://gateway.example/v1/callbacks/fal/exec-1?token=t0k3n"
JWKS_PATH = "/.well-known/jwks.json"
WEBHOOK_BODY = (FIXTURES / "webhook_ok.json").read_bytes()
WEBHOOK_REQUEST_ID = fixture("webhook_ok.json")["request_id"]
WEBHOOK_REFERENCE = f"fal-ai/flux::{WEBHOOK_REQUEST_ID}"
USER_ID = "fal-user-4f1c"


def jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def signed(
    key: Ed25519PrivateKey,
    body: bytes = WEBHOOK_BODY,
    *,
    request_id: str = WEBHOOK_REQUEST_ID,
    at: datetime = NOW,
) -> CallbackRequest:
    timestamp = str(int(at.timestamp()))
    message = "\n".join([request_id, USER_ID, timestamp, hashlib.sha256(body).hexdigest()]).encode()
    return CallbackRequest(
        headers={
            "x-fal-webhook-request-id": request_id,
            "x-fal-webhook-user-id": USER_ID,
            "x-fal-webhook-timestamp": timestamp,
            "x-fal-webhook-signature": key.sign(message).hex(),
        },
        body=body,
    )


@pytest.fixture
def fal_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def signer(api: FakeApi, fal_key: Ed25519PrivateKey) -> Iterator[FalProvider]:
    """A fal adapter whose JWKS (fal's key and an unrelated RSA one) is served by the fake."""
    api.on("GET", JWKS_PATH, Answer(200, {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}, jwk(fal_key)]}))
    with requests.Session() as session:
        yield FalProvider(KEY, api.url, session=session, jwks_url=api.url + JWKS_PATH)


def test_submit_passes_the_callback_url_as_fal_webhook(api: FakeApi, provider: FalProvider) -> None:
    api.on("POST", "/fal-ai/fast-sdxl", Answer(200, fixture("submit_fast_sdxl.json")))
    provider.submit(
        execution_id="exec-1",
        provider_model="fal-ai/fast-sdxl",
        input={"prompt": "a cat"},
        callback_url=CALLBACK_URL,
    )
    [seen] = api.seen
    assert seen.query == {"fal_webhook": CALLBACK_URL}
    assert seen.body == {"prompt": "a cat"}, "the input stays the body, untouched"
    assert provider.accepts_callbacks


def test_submit_without_a_callback_url_has_no_query(api: FakeApi, provider: FalProvider) -> None:
    api.on("POST", "/fal-ai/fast-sdxl", Answer(200, fixture("submit_fast_sdxl.json")))
    provider.submit(execution_id="exec-1", provider_model="fal-ai/fast-sdxl", input={"prompt": "a cat"})
    assert api.seen[0].query == {}


def test_the_jwks_url_defaults_to_fals() -> None:
    assert JWKS_URL == "https://rest.alpha.fal.ai/.well-known/jwks.json"


def test_a_signed_webhook_about_the_request_is_accepted(
    api: FakeApi, signer: FalProvider, fal_key: Ed25519PrivateKey
) -> None:
    signer.verify_callback(signed(fal_key), job_ref=WEBHOOK_REFERENCE, now=NOW)
    signer.verify_callback(signed(fal_key, at=NOW - timedelta(minutes=5)), job_ref=WEBHOOK_REFERENCE, now=NOW)

    [fetch] = api.seen
    assert (fetch.method, fetch.path) == ("GET", JWKS_PATH)
    assert "authorization" not in fetch.headers, "the API key never goes to the JWKS host"


def test_the_keys_are_fetched_again_once_the_cache_has_passed(
    api: FakeApi, signer: FalProvider, fal_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("asyncgate.providers.fal.JWKS_CACHE_SECONDS", 0)
    rotated = Ed25519PrivateKey.generate()
    api.on("GET", JWKS_PATH, Answer(200, {"keys": [jwk(fal_key)]}), Answer(200, {"keys": [jwk(rotated)]}))

    signer.verify_callback(signed(fal_key), job_ref=WEBHOOK_REFERENCE, now=NOW)
    signer.verify_callback(signed(rotated), job_ref=WEBHOOK_REFERENCE, now=NOW)
    assert len(api.seen) == 2


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda key: signed(Ed25519PrivateKey.generate()), id="another-key"),
        pytest.param(
            lambda key: signed(key).model_copy(update={"body": WEBHOOK_BODY + b" "}), id="body-changed"
        ),
        pytest.param(
            lambda key: signed(key).model_copy(
                update={"headers": {**signed(key).headers, "x-fal-webhook-user-id": "someone-else"}}
            ),
            id="user-changed",
        ),
        pytest.param(
            lambda key: signed(key).model_copy(
                update={"headers": {**signed(key).headers, "x-fal-webhook-signature": "not hex"}}
            ),
            id="signature-not-hex",
        ),
        pytest.param(lambda key: signed(key, at=NOW - timedelta(seconds=301)), id="replayed"),
        pytest.param(lambda key: signed(key, at=NOW + timedelta(seconds=301)), id="from-the-future"),
        pytest.param(lambda key: signed(key, request_id="another-request"), id="another-request-header"),
        pytest.param(
            lambda key: signed(
                key, json.dumps({**fixture("webhook_ok.json"), "request_id": "another"}).encode()
            ),
            id="another-request-body",
        ),
        pytest.param(lambda key: signed(key, b"{not json"), id="malformed-body"),
    ],
)
def test_a_forged_replayed_or_foreign_webhook_is_rejected(
    signer: FalProvider, fal_key: Ed25519PrivateKey, forge: Callable[[Ed25519PrivateKey], CallbackRequest]
) -> None:
    with pytest.raises(CallbackRejected):
        signer.verify_callback(forge(fal_key), job_ref=WEBHOOK_REFERENCE, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "x-fal-webhook-request-id",
        "x-fal-webhook-user-id",
        "x-fal-webhook-timestamp",
        "x-fal-webhook-signature",
    ],
)
def test_a_webhook_without_its_headers_is_rejected(
    signer: FalProvider, fal_key: Ed25519PrivateKey, header: str
) -> None:
    request = signed(fal_key)
    del request.headers[header]
    with pytest.raises(CallbackRejected):
        signer.verify_callback(request, job_ref=WEBHOOK_REFERENCE, now=NOW)


@pytest.mark.parametrize(
    "jwks",
    [
        {"keys": []},
        {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]},
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "dG9vLXNob3J0"}]},
        {"nokeys": True},
    ],
)
def test_a_jwks_without_a_usable_key_is_malformed(
    api: FakeApi, fal_key: Ed25519PrivateKey, jwks: dict[str, Any]
) -> None:
    api.on("GET", JWKS_PATH, Answer(200, jwks))
    with requests.Session() as session:
        provider = FalProvider(KEY, api.url, session=session, jwks_url=api.url + JWKS_PATH)
        with pytest.raises(ProviderRejected):
            provider.verify_callback(signed(fal_key), job_ref=WEBHOOK_REFERENCE, now=NOW)
