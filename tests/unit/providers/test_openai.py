"""The OpenAI adapter against a fake OpenAI on loopback, replaying the documented Response examples."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
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
from asyncgate.providers.openai import DOCUMENTED_STATUSES, STATES, OpenAIProvider, build
from tests.fakes import Answer, FakeApi

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "openai"
KEY = "sk-test-secret-key"
RESPONSE_ID = "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41"
RESPONSE_PATH = f"/v1/responses/{RESPONSE_ID}"


def fixture(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return body


def decoded(url: str) -> tuple[str, str]:
    header, _, data = url.partition(",")
    assert header.startswith("data:")
    assert header.endswith(";base64")
    return header[len("data:") : -len(";base64")], base64.b64decode(data).decode()


@pytest.fixture
def provider(api: FakeApi) -> Iterator[OpenAIProvider]:
    with requests.Session() as session:
        yield OpenAIProvider(KEY, api.url, session=session)


def test_status_mapping_is_total() -> None:
    assert set(DOCUMENTED_STATUSES) == set(STATES)


def test_build_offers_the_registry_constructor() -> None:
    assert build(KEY, "http://127.0.0.1:9").name == "openai"


def test_submit_sends_a_background_response(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("POST", "/v1/responses", Answer(200, fixture("create_queued.json")))
    user_input = {
        "input": "Describe the picture.",
        "instructions": "Be brief.",
        "max_output_tokens": 500,
        "metadata": {"team": "search"},
        "model": "ignored: the catalog decides",
        "background": False,
    }

    job = provider.submit(execution_id="exec-1", provider_model="gpt-4o", input=user_input)

    assert job.provider_request_id == RESPONSE_ID
    [seen] = api.seen
    assert (seen.method, seen.path) == ("POST", "/v1/responses")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert "idempotency-key" not in seen.headers, "OpenAI documents none for this endpoint"
    assert seen.body == {
        "input": "Describe the picture.",
        "instructions": "Be brief.",
        "max_output_tokens": 500,
        "model": "gpt-4o",
        "background": True,
        "store": True,
        "metadata": {"team": "search", "asyncgate_execution_id": "exec-1"},
    }


def test_submit_keeps_a_users_store_choice(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("POST", "/v1/responses", Answer(200, fixture("create_queued.json")))
    provider.submit(execution_id="exec-1", provider_model="gpt-4o", input={"input": "hi", "store": False})
    assert api.seen[0].body["store"] is False


def test_submit_refuses_streaming_without_calling(api: FakeApi, provider: OpenAIProvider) -> None:
    with pytest.raises(ProviderRejected, match="stream"):
        provider.submit(execution_id="exec-1", provider_model="gpt-4o", input={"input": "hi", "stream": True})
    assert api.seen == []


def test_submit_refuses_non_object_metadata(api: FakeApi, provider: OpenAIProvider) -> None:
    with pytest.raises(ProviderRejected, match="metadata"):
        provider.submit(execution_id="exec-1", provider_model="gpt-4o", input={"metadata": ["x"]})
    assert api.seen == []


def test_submit_refused(api: FakeApi, provider: OpenAIProvider) -> None:
    body = {"error": {"message": "Invalid model", "type": "invalid_request_error", "param": "model"}}
    api.on("POST", "/v1/responses", Answer(400, body))
    with pytest.raises(ProviderRejected) as raised:
        provider.submit(execution_id="exec-1", provider_model="nope", input={"input": "hi"})
    assert raised.value.status == 400
    assert "Invalid model" in (raised.value.body or "")
    assert KEY not in str(raised.value)


def test_submit_answer_without_id_is_malformed(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("POST", "/v1/responses", Answer(200, {"object": "response", "status": "queued"}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider.submit(execution_id="exec-1", provider_model="gpt-4o", input={"input": "hi"})


@pytest.mark.parametrize(
    ("name", "state"),
    [("create_queued.json", ProviderState.PENDING), ("retrieve_in_progress.json", ProviderState.RUNNING)],
)
def test_poll_while_running(api: FakeApi, provider: OpenAIProvider, name: str, state: ProviderState) -> None:
    api.on("GET", RESPONSE_PATH, Answer(200, fixture(name)))
    polled = provider.poll(RESPONSE_ID)
    assert polled.state is state
    assert polled.progress is None, "OpenAI reports no progress"
    assert polled.queue_position is None
    assert polled.outputs == []
    assert not polled.incomplete
    assert polled.error_message is None
    assert api.seen[0].headers["authorization"] == f"Bearer {KEY}"


def test_poll_completed_gives_the_text_as_a_data_url(api: FakeApi, provider: OpenAIProvider) -> None:
    body = fixture("retrieve_completed.json")
    api.on("GET", RESPONSE_PATH, Answer(200, body))
    polled = provider.poll(RESPONSE_ID)
    assert polled.state is ProviderState.SUCCEEDED
    assert not polled.incomplete
    [output] = polled.outputs
    assert output.content_type == "text/plain;charset=utf-8"
    assert decoded(output.url) == (
        "text/plain;charset=utf-8",
        body["output"][0]["content"][0]["text"],
    )
    assert polled.raw == body


def test_poll_structured_output_is_json(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("GET", RESPONSE_PATH, Answer(200, fixture("retrieve_completed_structured.json")))
    [output] = provider.poll(RESPONSE_ID).outputs
    content_type, text = decoded(output.url)
    assert content_type == output.content_type == "application/json"
    assert json.loads(text) == {"name": "Science Fair", "date": "Friday"}


def test_poll_text_survives_any_character(api: FakeApi, provider: OpenAIProvider) -> None:
    body = fixture("retrieve_completed.json")
    text = "naïve, 100% #1 ✓, a,b;c\nnew line"
    body["output"][0]["content"][0]["text"] = text
    api.on("GET", RESPONSE_PATH, Answer(200, body))
    [output] = provider.poll(RESPONSE_ID).outputs
    assert decoded(output.url)[1] == text


def test_poll_skips_reasoning_and_tool_items(api: FakeApi, provider: OpenAIProvider) -> None:
    body = fixture("retrieve_completed.json")
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": []}
    body["output"] = [reasoning, *body["output"], body["output"][0]]
    api.on("GET", RESPONSE_PATH, Answer(200, body))
    assert len(provider.poll(RESPONSE_ID).outputs) == 2


def test_poll_failed(api: FakeApi, provider: OpenAIProvider) -> None:
    body = fixture("retrieve_failed.json")
    api.on("GET", RESPONSE_PATH, Answer(200, body))
    polled = provider.poll(RESPONSE_ID)
    assert polled.state is ProviderState.FAILED
    assert polled.error_message == "server_error: The model failed to generate a response."
    assert polled.raw == body
    assert polled.outputs == []


def test_poll_incomplete_is_flagged(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("GET", RESPONSE_PATH, Answer(200, fixture("retrieve_incomplete.json")))
    polled = provider.poll(RESPONSE_ID)
    assert polled.state is ProviderState.SUCCEEDED
    assert polled.incomplete
    assert polled.error_message == "response incomplete: max_output_tokens"
    assert polled.raw["incomplete_details"] == {"reason": "max_output_tokens"}


def test_poll_refusal_is_done_without_output(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("GET", RESPONSE_PATH, Answer(200, fixture("retrieve_refusal.json")))
    polled = provider.poll(RESPONSE_ID)
    assert polled.state is ProviderState.SUCCEEDED
    assert polled.outputs == []
    assert polled.incomplete
    assert polled.raw["output"][0]["content"][0]["refusal"].startswith("I'm sorry")


def test_cancel(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("POST", f"{RESPONSE_PATH}/cancel", Answer(200, fixture("cancel_cancelled.json")))
    api.on("GET", RESPONSE_PATH, Answer(200, fixture("cancel_cancelled.json")))
    provider.cancel(RESPONSE_ID)
    assert provider.poll(RESPONSE_ID).state is ProviderState.CANCELLED
    cancel = api.seen[0]
    assert (cancel.method, cancel.path) == ("POST", f"{RESPONSE_PATH}/cancel")
    assert cancel.headers["authorization"] == f"Bearer {KEY}"


def test_cancel_refused(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("POST", f"{RESPONSE_PATH}/cancel", Answer(400, fixture("error_cancel_400.json")))
    with pytest.raises(ProviderRejected) as raised:
        provider.cancel(RESPONSE_ID)
    assert raised.value.status == 400


def test_rate_limit_carries_retry_after(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("GET", RESPONSE_PATH, Answer(429, fixture("error_429.json"), {"Retry-After": "7"}))
    with pytest.raises(ProviderUnavailable) as raised:
        provider.poll(RESPONSE_ID)
    assert raised.value.status == 429
    assert raised.value.retry_after == 7.0
    assert KEY not in str(raised.value)


def test_server_error_is_transient(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("GET", RESPONSE_PATH, Answer(503, {"error": {"message": "overloaded"}}))
    with pytest.raises(ProviderUnavailable) as raised:
        provider.poll(RESPONSE_ID)
    assert raised.value.status == 503
    assert raised.value.retry_after is None


def test_malformed_json_is_rejected(api: FakeApi, provider: OpenAIProvider) -> None:
    api.on("GET", RESPONSE_PATH, Answer(200, b"<html>proxy error</html>"))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider.poll(RESPONSE_ID)


@pytest.mark.parametrize(
    "change",
    [
        {"status": "expired"},
        {"status": None},
        {"status": "completed", "output": "text"},
        {"status": "completed", "output": [{"type": "message", "content": [{"type": "output_text"}]}]},
    ],
)
def test_unexpected_response_is_rejected(
    api: FakeApi, provider: OpenAIProvider, change: dict[str, Any]
) -> None:
    api.on("GET", RESPONSE_PATH, Answer(200, {**fixture("retrieve_completed.json"), **change}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider.poll(RESPONSE_ID)


def closed_port_url() -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_unreachable_is_transient() -> None:
    with requests.Session() as session:
        provider = OpenAIProvider(KEY, closed_port_url(), session=session)
        with pytest.raises(ProviderUnavailable) as raised:
            provider.poll(RESPONSE_ID)
    assert KEY not in str(raised.value)


def test_openai_takes_no_callbacks(api: FakeApi, provider: OpenAIProvider) -> None:
    """OpenAI's webhooks are set per project in its dashboard, not per request: jobs are polled."""
    assert provider.accepts_callbacks is False
    with pytest.raises(CallbackRejected, match="does not take callbacks"):
        provider.verify_callback(
            CallbackRequest(body=json.dumps(fixture("retrieve_completed.json")).encode()),
            job_ref="resp_1",
            now=datetime.now(UTC),
        )
    assert api.seen == []

    api.on("POST", "/v1/responses", Answer(200, fixture("create_queued.json")))
    provider.submit(
        execution_id="exec-1",
        provider_model="gpt-5",
        input={"input": "hi"},
        callback_url="https://x.example/cb",
    )
    assert "https://x.example/cb" not in json.dumps(api.seen[0].body), "a callback URL would go nowhere"
