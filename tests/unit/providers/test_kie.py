"""The Kie.ai adapter against a fake Kie on loopback, replaying the documented example payloads."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from asyncgate.providers.base import (
    CallbackRejected,
    CallbackRequest,
    ProviderRejected,
    ProviderState,
    ProviderUnavailable,
)
from asyncgate.providers.kie import (
    CREATE_TASK_PATH,
    DOCUMENTED_MARKET_STATES,
    DOCUMENTED_SUNO_STATUSES,
    MARKET_STATES,
    RECORD_INFO_PATH,
    SUNO_GENERATE_PATH,
    SUNO_RECORD_INFO_PATH,
    SUNO_STATES,
    KieProvider,
    build,
    webhook_key,
)
from tests.fakes import Answer, FakeApi

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "kie"
API_KEY = "kie-secret-key-0123456789"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return loaded


def with_data(name: str, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(fixture(name))
    body["data"].update(changes)
    return body


@pytest.fixture
def kie(api: FakeApi) -> Iterator[KieProvider]:
    with requests.Session() as session:
        yield KieProvider(API_KEY, api.url, session=session)


def assert_key_hidden(error: Exception) -> None:
    assert API_KEY not in str(error)
    assert API_KEY not in (getattr(error, "body", None) or "")


# --- contract ---------------------------------------------------------------------------------------


def test_market_state_mapping_is_total() -> None:
    assert set(DOCUMENTED_MARKET_STATES) == set(MARKET_STATES)


def test_suno_status_mapping_is_total() -> None:
    assert set(DOCUMENTED_SUNO_STATUSES) == set(SUNO_STATES)


def test_build_offers_the_port() -> None:
    provider = build(API_KEY, "https://api.kie.ai")
    assert provider.name == "kie"


# --- market models ----------------------------------------------------------------------------------


def test_submit_sends_create_task(api: FakeApi, kie: KieProvider) -> None:
    api.on("POST", CREATE_TASK_PATH, Answer(200, fixture("create_task.json")))
    job = kie.submit(
        execution_id="exec-1",
        provider_model="kling-2.6/text-to-video",
        input={"prompt": "a cat", "duration": "5"},
    )
    assert job.provider_request_id == job.job_ref == "task_kling-2.6_1765182425861"
    [seen] = api.seen
    assert seen.method == "POST"
    assert seen.path == CREATE_TASK_PATH
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert seen.body == {"model": "kling-2.6/text-to-video", "input": {"prompt": "a cat", "duration": "5"}}


def test_waiting_then_generating_with_progress_then_success(api: FakeApi, kie: KieProvider) -> None:
    api.on(
        "GET",
        RECORD_INFO_PATH,
        Answer(200, fixture("record_info_waiting.json")),
        Answer(200, fixture("record_info_generating.json")),
        Answer(200, fixture("record_info_success.json")),
    )
    waiting = kie.poll("task_12345678")
    assert waiting.state is ProviderState.PENDING
    assert waiting.outputs == []
    assert api.seen[0].query == {"taskId": "task_12345678"}
    assert api.seen[0].headers["authorization"] == f"Bearer {API_KEY}"

    generating = kie.poll("task_12345678")
    assert generating.state is ProviderState.RUNNING
    assert generating.progress == 45.0

    done = kie.poll("task_12345678")
    assert done.state is ProviderState.SUCCEEDED
    assert [(o.url, o.content_type) for o in done.outputs] == [
        ("https://example.com/generated-content.jpg", "image/jpeg")
    ]
    assert done.raw == fixture("record_info_success.json")
    assert not done.incomplete


def test_queuing_is_pending(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(200, with_data("record_info_waiting.json", state="queuing")))
    assert kie.poll("task_12345678").state is ProviderState.PENDING


def test_failure_carries_fail_message_and_raw(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(200, fixture("record_info_fail.json")))
    failed = kie.poll("task_12345678")
    assert failed.state is ProviderState.FAILED
    assert failed.error_message == "Generation failed, please try again later"
    assert failed.raw == fixture("record_info_fail.json")


def test_failure_without_message_names_the_code(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(200, with_data("record_info_fail.json", failMsg="")))
    assert kie.poll("task_12345678").error_message == "failCode 500"


def test_success_without_result_urls_is_incomplete(api: FakeApi, kie: KieProvider) -> None:
    body = with_data("record_info_success.json", resultJson=json.dumps({"resultObject": {"text": "hi"}}))
    api.on("GET", RECORD_INFO_PATH, Answer(200, body))
    polled = kie.poll("task_12345678")
    assert polled.state is ProviderState.SUCCEEDED
    assert polled.incomplete
    assert polled.outputs == []


def test_video_result_gets_a_video_content_type(api: FakeApi, kie: KieProvider) -> None:
    result = json.dumps({"resultUrls": ["https://cdn.example.com/a/b.mp4?sig=1", "https://x.example/y.webm"]})
    api.on("GET", RECORD_INFO_PATH, Answer(200, with_data("record_info_success.json", resultJson=result)))
    outputs = kie.poll("task_12345678").outputs
    assert [o.content_type for o in outputs] == ["video/mp4", "video/webm"]


def test_unparsable_result_json_is_malformed(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(200, with_data("record_info_success.json", resultJson="{not")))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        kie.poll("task_12345678")


def test_unknown_state_is_malformed(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(200, with_data("record_info_waiting.json", state="exploding")))
    with pytest.raises(ProviderRejected, match="unexpected body") as caught:
        kie.poll("task_12345678")
    assert "exploding" in (caught.value.body or "")


def test_missing_state_is_malformed(api: FakeApi, kie: KieProvider) -> None:
    body = copy.deepcopy(fixture("record_info_waiting.json"))
    del body["data"]["state"]
    api.on("GET", RECORD_INFO_PATH, Answer(200, body))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        kie.poll("task_12345678")


def test_malformed_json_is_rejected(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(200, b"<html>oops</html>"))
    with pytest.raises(ProviderRejected, match="unexpected body") as caught:
        kie.poll("task_12345678")
    assert_key_hidden(caught.value)


def test_submit_answer_without_task_id_is_malformed(api: FakeApi, kie: KieProvider) -> None:
    api.on("POST", CREATE_TASK_PATH, Answer(200, {"code": 200, "msg": "success", "data": {}}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        kie.submit(execution_id="e", provider_model="m", input={})


# --- body codes and HTTP failures -------------------------------------------------------------------


def test_body_code_402_rejects_the_submit(api: FakeApi, kie: KieProvider) -> None:
    api.on("POST", CREATE_TASK_PATH, Answer(200, fixture("error_insufficient_credits.json")))
    with pytest.raises(ProviderRejected, match="code 402") as caught:
        kie.submit(execution_id="e", provider_model="m", input={})
    assert caught.value.status == 402
    assert "Insufficient Credits" in str(caught.value)
    assert_key_hidden(caught.value)


def test_body_code_422_on_poll_is_final(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(200, fixture("record_info_not_found.json")))
    with pytest.raises(ProviderRejected) as caught:
        kie.poll("task_unknown")
    assert not isinstance(caught.value, ProviderUnavailable)
    assert caught.value.status == 422


@pytest.mark.parametrize("name", ["error_server.json", "error_maintenance.json"])
def test_body_codes_500_and_455_are_transient(api: FakeApi, kie: KieProvider, name: str) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(200, fixture(name)))
    with pytest.raises(ProviderUnavailable) as caught:
        kie.poll("task_12345678")
    assert caught.value.status == fixture(name)["code"]


@pytest.mark.parametrize("code", [501, 505, 401])
def test_final_body_codes(api: FakeApi, kie: KieProvider, code: int) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(200, {"code": code, "msg": "no", "data": None}))
    with pytest.raises(ProviderRejected) as caught:
        kie.poll("task_12345678")
    assert not isinstance(caught.value, ProviderUnavailable)


def test_body_code_429_is_transient_with_retry_after(api: FakeApi, kie: KieProvider) -> None:
    api.on(
        "GET",
        RECORD_INFO_PATH,
        Answer(200, {"code": 429, "msg": "Rate limit exceeded"}, {"Retry-After": "7"}),
    )
    with pytest.raises(ProviderUnavailable) as caught:
        kie.poll("task_12345678")
    assert caught.value.retry_after == 7.0


def test_http_429_with_retry_after(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(429, {"code": 429, "msg": "Rate limited"}, {"Retry-After": "12"}))
    with pytest.raises(ProviderUnavailable) as caught:
        kie.poll("task_12345678")
    assert caught.value.status == 429
    assert caught.value.retry_after == 12.0
    assert_key_hidden(caught.value)


def test_http_5xx_is_transient(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(502, b"bad gateway"))
    with pytest.raises(ProviderUnavailable) as caught:
        kie.poll("task_12345678")
    assert caught.value.status == 502


def test_http_401_is_final(api: FakeApi, kie: KieProvider) -> None:
    api.on("POST", CREATE_TASK_PATH, Answer(401, {"code": 401, "msg": "Unauthorized"}))
    with pytest.raises(ProviderRejected) as caught:
        kie.submit(execution_id="e", provider_model="m", input={})
    assert caught.value.status == 401
    assert_key_hidden(caught.value)


def test_body_code_that_is_not_a_number_is_malformed(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", RECORD_INFO_PATH, Answer(200, {"code": "ok", "data": {}}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        kie.poll("task_12345678")


def test_cancel_is_refused_without_a_request(api: FakeApi, kie: KieProvider) -> None:
    with pytest.raises(ProviderRejected, match="no cancel"):
        kie.cancel("task_12345678")
    assert api.seen == []


# --- Suno music ---------------------------------------------------------------------------------------


def test_suno_submit_uses_the_generate_api(api: FakeApi, kie: KieProvider) -> None:
    api.on("POST", SUNO_GENERATE_PATH, Answer(200, fixture("suno_generate.json")))
    job = kie.submit(
        execution_id="exec-1",
        provider_model="suno/V4_5",
        input={
            "prompt": "A calm piano track",
            "customMode": False,
            "instrumental": True,
            "callBackUrl": "https://example.com/ignored",
        },
    )
    assert job.job_ref == "suno::5c79****be8e"
    assert job.provider_request_id == "5c79****be8e"
    [seen] = api.seen
    assert seen.path == SUNO_GENERATE_PATH
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert seen.body == {
        "prompt": "A calm piano track",
        "customMode": False,
        "instrumental": True,
        "callBackUrl": "https://example.com/ignored",
        "model": "V4_5",
    }


def test_suno_first_success_is_a_partial_result(api: FakeApi, kie: KieProvider) -> None:
    api.on(
        "GET",
        SUNO_RECORD_INFO_PATH,
        Answer(200, with_data("suno_record_success.json", status="PENDING", response=None)),
        Answer(200, with_data("suno_record_success.json", status="TEXT_SUCCESS")),
        Answer(200, fixture("suno_record_first_success.json")),
        Answer(200, fixture("suno_record_success.json")),
    )
    pending = kie.poll("suno::5c79****be8e")
    assert pending.state is ProviderState.PENDING
    assert pending.outputs == []
    assert api.seen[0].path == SUNO_RECORD_INFO_PATH
    assert api.seen[0].query == {"taskId": "5c79****be8e"}

    assert kie.poll("suno::5c79****be8e").state is ProviderState.RUNNING

    first = kie.poll("suno::5c79****be8e")
    assert first.state is ProviderState.RUNNING
    assert [(o.url, o.content_type) for o in first.outputs] == [
        ("https://example.cn/first.mp3", "audio/mpeg")
    ]

    done = kie.poll("suno::5c79****be8e")
    assert done.state is ProviderState.SUCCEEDED
    assert [o.url for o in done.outputs] == ["https://example.cn/****.mp3"]
    assert done.raw == fixture("suno_record_success.json")


def test_suno_failure_carries_the_error_message(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", SUNO_RECORD_INFO_PATH, Answer(200, fixture("suno_record_failed.json")))
    failed = kie.poll("suno::5c79****be8e")
    assert failed.state is ProviderState.FAILED
    assert failed.error_message == "生成失败,请重试或联系客服"
    assert failed.raw == fixture("suno_record_failed.json")


def test_suno_failure_without_message_names_the_status(api: FakeApi, kie: KieProvider) -> None:
    body = with_data(
        "suno_record_failed.json",
        status="SENSITIVE_WORD_ERROR",
        errorCode=None,
        errorMessage=None,
        response={"taskId": "5c79****be8e", "sunoData": []},
    )
    api.on("GET", SUNO_RECORD_INFO_PATH, Answer(200, body))
    assert kie.poll("suno::5c79****be8e").error_message == "SENSITIVE_WORD_ERROR"


def test_suno_success_without_audio_is_incomplete(api: FakeApi, kie: KieProvider) -> None:
    body = with_data("suno_record_success.json", response={"taskId": "5c79****be8e", "sunoData": []})
    api.on("GET", SUNO_RECORD_INFO_PATH, Answer(200, body))
    polled = kie.poll("suno::5c79****be8e")
    assert polled.state is ProviderState.SUCCEEDED
    assert polled.incomplete


def test_suno_unknown_status_is_malformed(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", SUNO_RECORD_INFO_PATH, Answer(200, with_data("suno_record_success.json", status="DANCING")))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        kie.poll("suno::5c79****be8e")


def test_suno_rate_limit_is_transient(api: FakeApi, kie: KieProvider) -> None:
    api.on("GET", SUNO_RECORD_INFO_PATH, Answer(429, b"slow down", {"Retry-After": "3"}))
    with pytest.raises(ProviderUnavailable) as caught:
        kie.poll("suno::5c79****be8e")
    assert caught.value.retry_after == 3.0


# Callbacks: Kie posts the task record to `callBackUrl`, signed only when the account's webhook HMAC key
# is turned on.

NOW = datetime(2025, 8, 19, 10, 34, 4, tzinfo=UTC)
CALLBACK_URL = "https://gateway.example/v1/callbacks/kie/exec-1?token=t0k3n"
HMAC_KEY = "kie-webhook-hmac-test-key"
MARKET_CALLBACK = (FIXTURES / "callback_market_success.json").read_bytes()
MARKET_TASK = fixture("callback_market_success.json")["data"]["taskId"]
SUNO_CALLBACK = (FIXTURES / "callback_suno_complete.json").read_bytes()
SUNO_TASK = fixture("callback_suno_complete.json")["data"]["task_id"]


def kie_signed(
    body: bytes = MARKET_CALLBACK, *, task_id: str = MARKET_TASK, key: str = HMAC_KEY, at: datetime = NOW
) -> CallbackRequest:
    timestamp = str(int(at.timestamp()))
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return CallbackRequest(
        headers={"x-webhook-timestamp": timestamp, "x-webhook-signature": base64.b64encode(digest).decode()},
        body=body,
    )


@pytest.fixture
def signing_kie(api: FakeApi) -> Iterator[KieProvider]:
    with requests.Session() as session:
        yield KieProvider(API_KEY, api.url, session=session, webhook_key=lambda: HMAC_KEY)


def test_market_submit_passes_the_callback_url(api: FakeApi, kie: KieProvider) -> None:
    api.on("POST", CREATE_TASK_PATH, Answer(200, fixture("create_task.json")))
    kie.submit(
        execution_id="exec-1",
        provider_model="kling-2.6/text-to-video",
        input={"prompt": "a cat"},
        callback_url=CALLBACK_URL,
    )
    assert api.seen[0].body == {
        "model": "kling-2.6/text-to-video",
        "input": {"prompt": "a cat"},
        "callBackUrl": CALLBACK_URL,
    }
    assert kie.accepts_callbacks


def test_suno_submit_passes_the_callback_url_over_the_users(api: FakeApi, kie: KieProvider) -> None:
    api.on("POST", SUNO_GENERATE_PATH, Answer(200, fixture("suno_generate.json")))
    kie.submit(
        execution_id="exec-1",
        provider_model="suno/V4_5",
        input={"prompt": "piano", "customMode": False, "callBackUrl": "https://example.com/theirs"},
        callback_url=CALLBACK_URL,
    )
    assert api.seen[0].body == {
        "prompt": "piano",
        "customMode": False,
        "callBackUrl": CALLBACK_URL,
        "model": "V4_5",
    }


def test_submit_without_a_callback_url_sends_none(api: FakeApi, kie: KieProvider) -> None:
    api.on("POST", CREATE_TASK_PATH, Answer(200, fixture("create_task.json")))
    kie.submit(execution_id="exec-1", provider_model="kling-2.6/text-to-video", input={"prompt": "a cat"})
    assert "callBackUrl" not in api.seen[0].body


def test_without_a_key_a_callback_about_the_task_is_accepted_unsigned(kie: KieProvider) -> None:
    kie.verify_callback(CallbackRequest(body=MARKET_CALLBACK), job_ref=MARKET_TASK, now=NOW)
    kie.verify_callback(CallbackRequest(body=SUNO_CALLBACK), job_ref=f"suno::{SUNO_TASK}", now=NOW)
    # A body naming no task is not refused: the callback URL's token is the only proof there is.
    kie.verify_callback(CallbackRequest(body=b'{"code": 200, "data": {}}'), job_ref=MARKET_TASK, now=NOW)


@pytest.mark.parametrize(
    ("body", "reference"),
    [
        pytest.param(MARKET_CALLBACK, "another-task", id="another-market-task"),
        pytest.param(SUNO_CALLBACK, "suno::another-task", id="another-suno-task"),
        pytest.param(b"<html>", MARKET_TASK, id="malformed-body"),
        pytest.param(b'["not", "an", "object"]', MARKET_TASK, id="not-an-object"),
    ],
)
def test_without_a_key_a_foreign_or_malformed_callback_is_rejected(
    kie: KieProvider, body: bytes, reference: str
) -> None:
    with pytest.raises(CallbackRejected):
        kie.verify_callback(CallbackRequest(body=body), job_ref=reference, now=NOW)


def test_with_a_key_a_signed_callback_is_accepted(signing_kie: KieProvider) -> None:
    signing_kie.verify_callback(kie_signed(), job_ref=MARKET_TASK, now=NOW)
    signing_kie.verify_callback(
        kie_signed(SUNO_CALLBACK, task_id=SUNO_TASK, at=NOW + timedelta(minutes=5)),
        job_ref=f"suno::{SUNO_TASK}",
        now=NOW,
    )


@pytest.mark.parametrize(
    ("request_", "reference"),
    [
        pytest.param(CallbackRequest(body=MARKET_CALLBACK), MARKET_TASK, id="unsigned"),
        pytest.param(kie_signed(key="another-key"), MARKET_TASK, id="wrong-key"),
        pytest.param(kie_signed(task_id="another-task"), MARKET_TASK, id="signed-for-another-task"),
        pytest.param(kie_signed(at=NOW - timedelta(seconds=301)), MARKET_TASK, id="replayed"),
        pytest.param(kie_signed(at=NOW + timedelta(seconds=301)), MARKET_TASK, id="from-the-future"),
        pytest.param(kie_signed(), "another-task", id="another-task"),
        pytest.param(kie_signed(b'{"code": 200, "data": {}}'), MARKET_TASK, id="no-task-to-check"),
        pytest.param(kie_signed(b"{oops"), MARKET_TASK, id="malformed-body"),
    ],
)
def test_with_a_key_a_forged_replayed_or_foreign_callback_is_rejected(
    signing_kie: KieProvider, request_: CallbackRequest, reference: str
) -> None:
    with pytest.raises(CallbackRejected):
        signing_kie.verify_callback(request_, job_ref=reference, now=NOW)


@pytest.mark.parametrize("header", ["x-webhook-timestamp", "x-webhook-signature"])
def test_with_a_key_a_callback_without_its_headers_is_rejected(signing_kie: KieProvider, header: str) -> None:
    request = kie_signed()
    del request.headers[header]
    with pytest.raises(CallbackRejected):
        signing_kie.verify_callback(request, job_ref=MARKET_TASK, now=NOW)


def test_the_webhook_key_comes_from_the_environment_or_a_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    assert webhook_key({}) is None
    assert webhook_key({"KIE_WEBHOOK_HMAC_KEY": f" {HMAC_KEY}\n"}) == HMAC_KEY
    read: list[str] = []

    def secret_value(name: str) -> str:
        read.append(name)
        return HMAC_KEY

    monkeypatch.setattr("asyncgate.providers.kie.secret_value", secret_value)
    assert webhook_key({"KIE_WEBHOOK_HMAC_KEY_PARAMETER": "/asyncgate/kie-webhook"}) == HMAC_KEY
    assert read == ["/asyncgate/kie-webhook"]


def test_build_reads_the_webhook_key_at_each_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    built = build(API_KEY, "http://127.0.0.1:9")
    monkeypatch.delenv("KIE_WEBHOOK_HMAC_KEY", raising=False)
    monkeypatch.delenv("KIE_WEBHOOK_HMAC_KEY_PARAMETER", raising=False)
    built.verify_callback(CallbackRequest(body=MARKET_CALLBACK), job_ref=MARKET_TASK, now=NOW)

    monkeypatch.setenv("KIE_WEBHOOK_HMAC_KEY", HMAC_KEY)
    with pytest.raises(CallbackRejected):
        built.verify_callback(CallbackRequest(body=MARKET_CALLBACK), job_ref=MARKET_TASK, now=NOW)
    built.verify_callback(kie_signed(), job_ref=MARKET_TASK, now=NOW)
