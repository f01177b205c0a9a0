"""The Replicate adapter against a fake Replicate on loopback, replaying the documented prediction objects."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook

from asyncgate.providers.base import (
    CallbackRejected,
    CallbackRequest,
    ProviderRejected,
    ProviderState,
    ProviderUnavailable,
)
from asyncgate.providers.replicate import (
    ABORTED_MESSAGE,
    DOCUMENTED_STATUSES,
    STATES,
    ReplicateProvider,
    build,
    logs_progress,
)
from tests.fakes import Answer, FakeApi

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "replicate"
TOKEN = "r8_test-secret-token"
VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
PREDICTION_ID = "xyz1234abc5678"
PREDICTION_PATH = f"/v1/predictions/{PREDICTION_ID}"


def fixture(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return body


@pytest.fixture
def provider(api: FakeApi) -> Iterator[ReplicateProvider]:
    with requests.Session() as session:
        yield ReplicateProvider(TOKEN, api.url, session=session)


def test_status_mapping_is_total() -> None:
    assert set(DOCUMENTED_STATUSES) == set(STATES)


def test_build_offers_the_registry_constructor() -> None:
    assert build(TOKEN, "http://127.0.0.1:9").name == "replicate"


def test_submit_an_official_model_uses_the_model_path(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on(
        "POST",
        "/v1/models/black-forest-labs/flux-schnell/predictions",
        Answer(201, fixture("create_prediction_sdxl.json")),
    )
    job = provider.submit(
        execution_id="exec-1", provider_model="black-forest-labs/flux-schnell", input={"prompt": "a cat"}
    )

    assert job.provider_request_id == PREDICTION_ID
    [seen] = api.seen
    assert seen.method == "POST"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["content-type"] == "application/json"
    assert "prefer" not in seen.headers, "asynchronous mode: never hold the request open"
    assert seen.body == {"input": {"prompt": "a cat"}}


@pytest.mark.parametrize("provider_model", [f"replicate/hello-world:{VERSION}", VERSION])
def test_submit_a_version_uses_the_predictions_endpoint(
    api: FakeApi, provider: ReplicateProvider, provider_model: str
) -> None:
    api.on("POST", "/v1/predictions", Answer(201, fixture("create_prediction.json")))
    job = provider.submit(execution_id="exec-1", provider_model=provider_model, input={"text": "Alice"})

    assert job.provider_request_id == "gm3qorzdhgbfurvjtvhg6dckhu"
    [seen] = api.seen
    assert seen.path == "/v1/predictions"
    assert seen.body == {"version": VERSION, "input": {"text": "Alice"}}


@pytest.mark.parametrize(
    "provider_model", ["", "flux-schnell", "owner/name/extra", "owner/name:not-a-version", "../x/y"]
)
def test_submit_refuses_a_malformed_model_without_calling(
    api: FakeApi, provider: ReplicateProvider, provider_model: str
) -> None:
    with pytest.raises(ProviderRejected):
        provider.submit(execution_id="exec-1", provider_model=provider_model, input={})
    assert api.seen == []


def test_submit_refusal_is_final(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("POST", "/v1/models/o/m/predictions", Answer(422, {"detail": "Invalid input", "status": 422}))
    with pytest.raises(ProviderRejected) as raised:
        provider.submit(execution_id="exec-1", provider_model="o/m", input={})
    assert raised.value.status == 422
    assert "Invalid input" in (raised.value.body or "")
    assert len(api.seen) == 1, "a submit is never retried"


def test_submit_answer_without_an_id_is_malformed(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("POST", "/v1/models/o/m/predictions", Answer(201, {"status": "starting"}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider.submit(execution_id="exec-1", provider_model="o/m", input={})


def test_starting_is_pending(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("GET", PREDICTION_PATH, Answer(200, fixture("create_prediction_sdxl.json")))
    polled = provider.poll(PREDICTION_ID)

    assert polled.state is ProviderState.PENDING
    assert polled.progress is None
    assert polled.outputs == []
    assert api.seen[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_processing_reports_logs_progress_and_partial_outputs(
    api: FakeApi, provider: ReplicateProvider
) -> None:
    body = fixture("prediction_processing_partial.json")
    api.on("GET", PREDICTION_PATH, Answer(200, body))
    polled = provider.poll(PREDICTION_ID)

    assert polled.state is ProviderState.RUNNING
    assert polled.progress == 60.0, "the last tqdm line of the logs"
    assert [(o.url, o.content_type) for o in polled.outputs] == [
        ("https://replicate.delivery/pbxt/abc123/out-0.png", "image/png")
    ]
    assert polled.raw == body
    assert not polled.incomplete


def test_succeeded_carries_every_file(api: FakeApi, provider: ReplicateProvider) -> None:
    body = fixture("prediction_succeeded_files.json")
    api.on("GET", PREDICTION_PATH, Answer(200, body))
    polled = provider.poll(PREDICTION_ID)

    assert polled.state is ProviderState.SUCCEEDED
    assert polled.progress == 100.0
    assert [o.url for o in polled.outputs] == body["output"]
    assert {o.content_type for o in polled.outputs} == {"image/png"}
    assert polled.raw["metrics"] == {"predict_time": 7.9}
    assert not polled.incomplete


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        ("https://replicate.delivery/a/out.mp4", ["https://replicate.delivery/a/out.mp4"]),
        (
            {"video": "https://replicate.delivery/a/v.mp4?x=1", "seed": 3, "frames": ["https://r.d/f.webp"]},
            ["https://replicate.delivery/a/v.mp4?x=1", "https://r.d/f.webp"],
        ),
    ],
)
def test_outputs_of_any_shape(
    api: FakeApi, provider: ReplicateProvider, output: Any, urls: list[str]
) -> None:
    api.on(
        "GET", PREDICTION_PATH, Answer(200, {**fixture("prediction_succeeded_files.json"), "output": output})
    )
    polled = provider.poll(PREDICTION_ID)

    assert [o.url for o in polled.outputs] == urls
    assert polled.outputs[0].content_type == "video/mp4"


def test_succeeded_without_output_is_incomplete(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on(
        "GET", PREDICTION_PATH, Answer(200, {**fixture("prediction_succeeded_files.json"), "output": None})
    )
    polled = provider.poll(PREDICTION_ID)

    assert polled.state is ProviderState.SUCCEEDED
    assert polled.incomplete
    assert polled.outputs == []


def test_text_output_has_no_file(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on(
        "GET",
        "/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu",
        Answer(200, fixture("prediction_succeeded_text.json")),
    )
    polled = provider.poll("gm3qorzdhgbfurvjtvhg6dckhu")

    assert polled.state is ProviderState.SUCCEEDED
    assert polled.outputs == []
    assert polled.raw["output"] == "hello Alice", "kept in raw: the core reports it incomplete"


def test_failed_carries_the_error(api: FakeApi, provider: ReplicateProvider) -> None:
    body = fixture("prediction_failed.json")
    api.on("GET", PREDICTION_PATH, Answer(200, body))
    polled = provider.poll(PREDICTION_ID)

    assert polled.state is ProviderState.FAILED
    assert polled.error_message == "CUDA out of memory"
    assert polled.raw == body


def test_aborted_is_a_failure_saying_why(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("GET", PREDICTION_PATH, Answer(200, fixture("prediction_aborted.json")))
    polled = provider.poll(PREDICTION_ID)

    assert polled.state is ProviderState.FAILED
    assert polled.error_message == ABORTED_MESSAGE


def test_canceled_is_cancelled(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("GET", PREDICTION_PATH, Answer(200, fixture("prediction_canceled.json")))
    assert provider.poll(PREDICTION_ID).state is ProviderState.CANCELLED


def test_cancel_posts_to_the_cancel_endpoint(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("POST", f"{PREDICTION_PATH}/cancel", Answer(200, fixture("prediction_canceled.json")))
    provider.cancel(PREDICTION_ID)

    [seen] = api.seen
    assert (seen.method, seen.path) == ("POST", f"{PREDICTION_PATH}/cancel")
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"


def test_cancel_of_an_unknown_prediction_is_refused(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("POST", f"{PREDICTION_PATH}/cancel", Answer(404, {"detail": "Not found.", "status": 404}))
    with pytest.raises(ProviderRejected) as raised:
        provider.cancel(PREDICTION_ID)
    assert raised.value.status == 404


def test_rate_limit_is_transient_with_its_retry_after(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on(
        "GET",
        PREDICTION_PATH,
        Answer(429, {"detail": "Request was throttled.", "status": 429}, {"Retry-After": "7"}),
    )
    with pytest.raises(ProviderUnavailable) as raised:
        provider.poll(PREDICTION_ID)
    assert raised.value.status == 429
    assert raised.value.retry_after == 7.0


def test_server_error_is_transient(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("GET", PREDICTION_PATH, Answer(503, b"<html>upstream unavailable</html>"))
    with pytest.raises(ProviderUnavailable) as raised:
        provider.poll(PREDICTION_ID)
    assert raised.value.status == 503
    assert raised.value.retry_after is None


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, b"<html>not json</html>"),
        Answer(200, ["a", "list"]),
        Answer(200, {"id": PREDICTION_ID}),
        Answer(200, {"id": PREDICTION_ID, "status": None}),
    ],
)
def test_malformed_answer_is_rejected(api: FakeApi, provider: ReplicateProvider, answer: Answer) -> None:
    api.on("GET", PREDICTION_PATH, answer)
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider.poll(PREDICTION_ID)


def test_unknown_status_is_rejected(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("GET", PREDICTION_PATH, Answer(200, {**fixture("prediction_failed.json"), "status": "queued"}))
    with pytest.raises(ProviderRejected, match="unexpected body") as raised:
        provider.poll(PREDICTION_ID)
    assert '"queued"' in (raised.value.body or "")


def test_unreachable_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with requests.Session() as session:
        provider = ReplicateProvider(TOKEN, f"http://127.0.0.1:{port}", session=session)
        with pytest.raises(ProviderUnavailable):
            provider.poll(PREDICTION_ID)


def test_the_token_never_reaches_an_error(api: FakeApi, provider: ReplicateProvider) -> None:
    failures: list[Exception] = []
    for status in (401, 429, 500):
        api.on("GET", PREDICTION_PATH, Answer(status, {"detail": "no"}))
        try:
            provider.poll(PREDICTION_ID)
        except (ProviderRejected, ProviderUnavailable) as error:
            failures.append(error)
    with pytest.raises(ProviderRejected) as raised:
        provider.submit(execution_id="e", provider_model="bad", input={})
    failures.append(raised.value)
    assert len(failures) == 4
    for failure in failures:
        assert TOKEN not in str(failure)
        assert TOKEN not in repr(failure.args)


def test_prediction_ids_are_quoted_into_one_segment(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("GET", "/v1/predictions/a%2Fb", Answer(200, fixture("prediction_canceled.json")))
    provider.poll("a/b")
    assert api.seen[0].path == "/v1/predictions/a%2Fb"


@pytest.mark.parametrize(
    ("logs", "progress"),
    [
        (None, None),
        ("", None),
        ("Using seed: 1\nno bar here", None),
        (" 45%|████▌     | 9/20 [00:01<00:02,  4.5it/s]", 45.0),
        ("  0%|          | 0/30 [00:00<?, ?it/s]\r 10%|█         | 3/30 [00:01<00:09]\ndone", 10.0),
        ("100%|██████████| 50/50 [00:10<00:00]", 100.0),
    ],
)
def test_logs_progress(logs: str | None, progress: float | None) -> None:
    assert logs_progress(logs) == progress


# Callbacks: Replicate's webhooks, signed the Standard Webhooks way with the account's secret.

NOW = datetime(2026, 5, 2, 10, 0, 9, tzinfo=UTC)
CALLBACK_URL = "https://gateway.example/v1/callbacks/replicate/exec-1?token=t0k3n"
WEBHOOK_SECRET = fixture("webhook_secret.json")["key"]


def webhook(
    body: bytes,
    *,
    secret: str = WEBHOOK_SECRET,
    at: datetime = NOW,
    message_id: str = "msg_2LK6dXo8bYqNCz1zmcRuBLFk8o4",
) -> CallbackRequest:
    signature = Webhook(secret).sign(message_id, at, body.decode())
    return CallbackRequest(
        headers={
            "webhook-id": message_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature,
        },
        body=body,
    )


PREDICTION_BODY = json.dumps(fixture("prediction_succeeded_files.json")).encode()


@pytest.fixture
def signing(api: FakeApi) -> FakeApi:
    api.on("GET", "/v1/webhooks/default/secret", Answer(200, fixture("webhook_secret.json")))
    return api


def test_submit_asks_for_webhooks_at_the_callback_url(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("POST", "/v1/predictions", Answer(201, fixture("create_prediction.json")))
    provider.submit(
        execution_id="exec-1", provider_model=VERSION, input={"text": "Alice"}, callback_url=CALLBACK_URL
    )

    assert api.seen[0].body == {
        "version": VERSION,
        "input": {"text": "Alice"},
        "webhook": CALLBACK_URL,
        "webhook_events_filter": ["completed"],
    }
    assert provider.accepts_callbacks


def test_submit_without_a_callback_url_asks_for_no_webhook(api: FakeApi, provider: ReplicateProvider) -> None:
    api.on("POST", "/v1/predictions", Answer(201, fixture("create_prediction.json")))
    provider.submit(execution_id="exec-1", provider_model=VERSION, input={"text": "Alice"}, callback_url=None)
    assert api.seen[0].body == {"version": VERSION, "input": {"text": "Alice"}}


def test_a_signed_webhook_about_the_prediction_is_accepted(
    signing: FakeApi, provider: ReplicateProvider
) -> None:
    provider.verify_callback(webhook(PREDICTION_BODY), job_ref=PREDICTION_ID, now=NOW)
    # A retry of the same delivery, a minute later, with the secret fetched once.
    provider.verify_callback(
        webhook(PREDICTION_BODY, at=NOW + timedelta(minutes=1)), job_ref=PREDICTION_ID, now=NOW
    )

    [fetch] = signing.seen
    assert fetch.method == "GET"
    assert fetch.path == "/v1/webhooks/default/secret"
    assert fetch.headers["authorization"] == f"Bearer {TOKEN}"


def test_any_of_several_signatures_may_match(signing: FakeApi, provider: ReplicateProvider) -> None:
    request = webhook(PREDICTION_BODY)
    forged = Webhook("whsec_" + base64.b64encode(b"x" * 24).decode()).sign("msg", NOW, "{}")
    request.headers["webhook-signature"] = f"{forged} {request.headers['webhook-signature']}"
    provider.verify_callback(request, job_ref=PREDICTION_ID, now=NOW)


@pytest.mark.parametrize("age", [timedelta(minutes=5), -timedelta(minutes=5)])
def test_the_replay_window_is_five_minutes_each_way(
    signing: FakeApi, provider: ReplicateProvider, age: timedelta
) -> None:
    provider.verify_callback(webhook(PREDICTION_BODY, at=NOW - age), job_ref=PREDICTION_ID, now=NOW)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda: webhook(
                PREDICTION_BODY, secret="whsec_" + base64.b64encode(b"another-secret!!").decode()
            ),
            id="wrong-secret",
        ),
        pytest.param(
            lambda: webhook(PREDICTION_BODY).model_copy(update={"body": PREDICTION_BODY + b" "}),
            id="body-changed",
        ),
        pytest.param(
            lambda: webhook(PREDICTION_BODY).model_copy(
                update={"headers": {**webhook(PREDICTION_BODY).headers, "webhook-id": "msg_other"}}
            ),
            id="id-changed",
        ),
        pytest.param(
            lambda: webhook(PREDICTION_BODY).model_copy(
                update={"headers": {**webhook(PREDICTION_BODY).headers, "webhook-signature": "v1,AAAA"}}
            ),
            id="bad-signature",
        ),
        pytest.param(lambda: webhook(PREDICTION_BODY, at=NOW - timedelta(seconds=301)), id="replayed"),
        pytest.param(lambda: webhook(PREDICTION_BODY, at=NOW + timedelta(seconds=301)), id="from-the-future"),
        pytest.param(
            lambda: webhook(
                json.dumps({**fixture("prediction_succeeded_files.json"), "id": "other"}).encode()
            ),
            id="another-prediction",
        ),
        pytest.param(lambda: webhook(b"not json"), id="malformed-body"),
        pytest.param(lambda: webhook(b"[]"), id="not-an-object"),
    ],
)
def test_a_forged_replayed_or_foreign_webhook_is_rejected(
    signing: FakeApi, provider: ReplicateProvider, forge: Callable[[], CallbackRequest]
) -> None:
    with pytest.raises(CallbackRejected):
        provider.verify_callback(forge(), job_ref=PREDICTION_ID, now=NOW)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_webhook_without_its_headers_is_rejected(
    signing: FakeApi, provider: ReplicateProvider, header: str
) -> None:
    request = webhook(PREDICTION_BODY)
    del request.headers[header]
    with pytest.raises(CallbackRejected):
        provider.verify_callback(request, job_ref=PREDICTION_ID, now=NOW)


def test_an_unsigned_webhook_is_rejected_without_fetching_the_secret(
    signing: FakeApi, provider: ReplicateProvider
) -> None:
    with pytest.raises(CallbackRejected):
        provider.verify_callback(CallbackRequest(body=PREDICTION_BODY), job_ref=PREDICTION_ID, now=NOW)
    assert signing.seen == []


def test_a_secret_that_cannot_be_fetched_is_a_provider_error_and_is_asked_again(
    api: FakeApi, provider: ReplicateProvider
) -> None:
    api.on(
        "GET",
        "/v1/webhooks/default/secret",
        Answer(503, {"detail": "unavailable"}),
        Answer(200, {"key": ""}),
        Answer(200, fixture("webhook_secret.json")),
    )
    with pytest.raises(ProviderUnavailable):
        provider.verify_callback(webhook(PREDICTION_BODY), job_ref=PREDICTION_ID, now=NOW)
    with pytest.raises(ProviderRejected):
        provider.verify_callback(webhook(PREDICTION_BODY), job_ref=PREDICTION_ID, now=NOW)
    provider.verify_callback(webhook(PREDICTION_BODY), job_ref=PREDICTION_ID, now=NOW)
    assert len(api.seen) == 3
