"""The Runware adapter against a fake Runware on loopback, replaying the documented example payloads."""

from __future__ import annotations

import copy
import json
import uuid
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
from asyncgate.providers.runware import (
    DOCUMENTED_STATUSES,
    STATES,
    TASKS_PATH,
    RunwareProvider,
    build,
    task_uuid_for,
)
from tests.fakes import Answer, FakeApi

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers" / "runware"
API_KEY = "runware-secret-key-0123456789"
# The documented examples' task UUID, used as the execution id so the fixtures answer for it.
TASK = "24cd5dff-cb81-4db5-8506-b72a9425f9d1"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return loaded


def image_item(index: int, status: str = "success") -> dict[str, Any]:
    item: dict[str, Any] = {"taskType": "imageInference", "taskUUID": TASK, "status": status}
    if status == "success":
        item |= {
            "imageUUID": f"img-{index}",
            "imageURL": f"https://im.runware.ai/image/{index}.webp",
            "cost": 0.0013,
        }
    return item


@pytest.fixture
def runware(api: FakeApi) -> Iterator[RunwareProvider]:
    with requests.Session() as session:
        yield RunwareProvider(API_KEY, api.url, session=session)


def assert_key_hidden(error: Exception) -> None:
    assert API_KEY not in str(error)
    assert API_KEY not in (getattr(error, "body", None) or "")


def test_status_mapping_is_total() -> None:
    assert set(DOCUMENTED_STATUSES) == set(STATES)


def test_build_offers_the_port() -> None:
    assert build(API_KEY, "https://api.runware.ai").name == "runware"


def test_task_uuid_is_the_execution_id_or_a_stable_v4() -> None:
    assert task_uuid_for(TASK) == TASK
    derived = task_uuid_for("exec-not-a-uuid")
    assert derived == task_uuid_for("exec-not-a-uuid")
    assert uuid.UUID(derived).version == 4
    assert derived != task_uuid_for("another-exec")


def test_submit_sends_one_async_task(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, fixture("submit_ack.json")))
    job = runware.submit(
        execution_id=TASK,
        provider_model="videoInference/klingai:5@3",
        input={"positivePrompt": "a cat", "duration": 5, "width": 1920, "height": 1080},
    )
    assert job.job_ref == f"{TASK}::1"
    assert job.provider_request_id == TASK, "the taskUUID, as Runware's own logs show it"
    [seen] = api.seen
    assert seen.method == "POST"
    assert seen.path == TASKS_PATH
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert seen.body == [
        {
            "positivePrompt": "a cat",
            "duration": 5,
            "width": 1920,
            "height": 1080,
            "taskType": "videoInference",
            "taskUUID": TASK,
            "model": "klingai:5@3",
            "deliveryMethod": "async",
            "includeCost": True,
        }
    ]


def test_submit_task_type_from_input_and_default(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, fixture("submit_ack.json")))
    runware.submit(
        execution_id=TASK,
        provider_model="runware:101@1",
        input={"taskType": "imageInference", "positivePrompt": "x", "numberResults": 3, "taskUUID": "nope"},
    )
    runware.submit(execution_id=TASK, provider_model="runware:101@1", input={"positivePrompt": "x"})
    first, second = (seen.body[0] for seen in api.seen)
    assert first["taskType"] == "imageInference"
    assert first["model"] == "runware:101@1"
    assert first["numberResults"] == 3
    assert first["taskUUID"] == TASK, "the adapter's correlation id cannot be overridden"
    assert second["taskType"] == "imageInference"


def test_submit_remembers_the_batch_size(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, fixture("submit_ack.json")))
    job = runware.submit(execution_id=TASK, provider_model="runware:101@1", input={"numberResults": 4})
    assert job.job_ref == f"{TASK}::4"


def test_submit_with_bad_batch_size_is_refused_before_sending(api: FakeApi, runware: RunwareProvider) -> None:
    with pytest.raises(ProviderRejected, match="numberResults"):
        runware.submit(execution_id=TASK, provider_model="m", input={"numberResults": 0})
    assert api.seen == []


def test_submit_refused_in_errors_array(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, fixture("error_invalid_api_key.json")))
    with pytest.raises(ProviderRejected, match="invalidApiKey") as caught:
        runware.submit(execution_id=TASK, provider_model="m", input={})
    assert_key_hidden(caught.value)


def test_submit_http_401_is_final(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(401, fixture("error_invalid_api_key.json")))
    with pytest.raises(ProviderRejected) as caught:
        runware.submit(execution_id=TASK, provider_model="m", input={})
    assert not isinstance(caught.value, ProviderUnavailable)
    assert caught.value.status == 401
    assert_key_hidden(caught.value)


def test_submit_answer_without_our_task_is_malformed(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, {"data": []}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        runware.submit(execution_id=TASK, provider_model="m", input={})


def test_processing_then_success_with_cost(api: FakeApi, runware: RunwareProvider) -> None:
    api.on(
        "POST",
        TASKS_PATH,
        Answer(200, {"data": []}),
        Answer(200, fixture("get_response_processing.json")),
        Answer(200, fixture("get_response_success.json")),
    )
    queued = runware.poll(f"{TASK}::1")
    assert queued.state is ProviderState.PENDING
    assert api.seen[0].body == [{"taskType": "getResponse", "taskUUID": TASK}]
    assert api.seen[0].headers["authorization"] == f"Bearer {API_KEY}"

    running = runware.poll(f"{TASK}::1")
    assert running.state is ProviderState.RUNNING
    assert running.outputs == []
    assert running.progress is None

    done = runware.poll(f"{TASK}::1")
    assert done.state is ProviderState.SUCCEEDED
    assert [(o.url, o.content_type) for o in done.outputs] == [
        (
            "https://im.runware.ai/video/ws/0.5/vi/b7db282d-2943-4f12-992f-77df3ad3ec71.mp4",
            "video/mp4",
        )
    ]
    assert done.raw == fixture("get_response_success.json")
    assert done.raw["data"][0]["cost"] == 0.18
    assert not done.incomplete


def test_batch_partial_results_while_running(api: FakeApi, runware: RunwareProvider) -> None:
    api.on(
        "POST",
        TASKS_PATH,
        Answer(200, {"data": [image_item(1), image_item(2, "processing"), image_item(3, "processing")]}),
        Answer(200, {"data": [image_item(1), image_item(2), image_item(3)]}),
    )
    partial = runware.poll(f"{TASK}::3")
    assert partial.state is ProviderState.RUNNING
    assert [(o.url, o.content_type) for o in partial.outputs] == [
        ("https://im.runware.ai/image/1.webp", "image/webp")
    ]
    assert partial.progress == pytest.approx(100 / 3)

    done = runware.poll(f"{TASK}::3")
    assert done.state is ProviderState.SUCCEEDED
    assert len(done.outputs) == 3


def test_batch_not_finished_until_every_generation_is_reported(
    api: FakeApi, runware: RunwareProvider
) -> None:
    api.on("POST", TASKS_PATH, Answer(200, {"data": [image_item(1)]}))
    polled = runware.poll(f"{TASK}::2")
    assert polled.state is ProviderState.RUNNING
    assert len(polled.outputs) == 1
    assert polled.progress == 50.0


def test_documented_mixed_answer_is_still_running(api: FakeApi, runware: RunwareProvider) -> None:
    """The docs' example: one generation processing, one done, one failed (a batch of three)."""
    api.on("POST", TASKS_PATH, Answer(200, fixture("get_response_mixed.json")))
    polled = runware.poll(f"{TASK}::3")
    assert polled.state is ProviderState.RUNNING
    assert len(polled.outputs) == 1
    assert polled.progress == pytest.approx(200 / 3)


def test_batch_with_some_failures_succeeds_with_what_it_has(api: FakeApi, runware: RunwareProvider) -> None:
    body = copy.deepcopy(fixture("get_response_mixed.json"))
    body["data"] = body["data"][1:]  # the processing one finished... as the failure in `errors`
    api.on("POST", TASKS_PATH, Answer(200, body))
    polled = runware.poll(f"{TASK}::2")
    assert polled.state is ProviderState.SUCCEEDED
    assert len(polled.outputs) == 1
    assert polled.raw["errors"][0]["code"] == "timeoutProvider"


def test_failure_carries_the_error_message_and_raw(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, fixture("get_response_error.json")))
    failed = runware.poll(f"{TASK}::1")
    assert failed.state is ProviderState.FAILED
    assert failed.error_message == (
        "timeoutProvider: The external provider did not respond within the timeout window. "
        "The request was automatically terminated."
    )
    assert failed.raw == fixture("get_response_error.json")


def test_success_without_a_file_is_incomplete(api: FakeApi, runware: RunwareProvider) -> None:
    item = {"taskType": "videoInference", "taskUUID": TASK, "status": "success", "cost": 0.18}
    api.on("POST", TASKS_PATH, Answer(200, {"data": [item]}))
    polled = runware.poll(f"{TASK}::1")
    assert polled.state is ProviderState.SUCCEEDED
    assert polled.incomplete


def test_other_tasks_in_the_answer_are_ignored(api: FakeApi, runware: RunwareProvider) -> None:
    other = image_item(9) | {"taskUUID": "00000000-0000-4000-8000-000000000000"}
    api.on("POST", TASKS_PATH, Answer(200, {"data": [other, image_item(1, "processing")]}))
    polled = runware.poll(f"{TASK}::1")
    assert polled.state is ProviderState.RUNNING
    assert polled.outputs == []


def test_unknown_status_is_malformed(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, {"data": [image_item(1, "exploding")]}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        runware.poll(f"{TASK}::1")


def test_malformed_json_is_rejected(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, b"<html>oops</html>"))
    with pytest.raises(ProviderRejected, match="unexpected body") as caught:
        runware.poll(f"{TASK}::1")
    assert_key_hidden(caught.value)


def test_data_that_is_not_a_list_is_malformed(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, {"data": {"status": "success"}}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        runware.poll(f"{TASK}::1")


def test_429_with_retry_after(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(429, {"errors": [{"code": "tooManyRequests"}]}, {"Retry-After": "9"}))
    with pytest.raises(ProviderUnavailable) as caught:
        runware.poll(f"{TASK}::1")
    assert caught.value.status == 429
    assert caught.value.retry_after == 9.0
    assert_key_hidden(caught.value)


def test_5xx_is_transient(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(503, b"service unavailable"))
    with pytest.raises(ProviderUnavailable) as caught:
        runware.poll(f"{TASK}::1")
    assert caught.value.status == 503


def test_cancel_is_refused_without_a_request(api: FakeApi, runware: RunwareProvider) -> None:
    with pytest.raises(ProviderRejected, match="no cancel"):
        runware.cancel(f"{TASK}::1")
    assert api.seen == []


@pytest.mark.parametrize("ack", [{"data": {"taskUUID": TASK}}, {"data": [1]}, {"errors": "boom"}])
def test_an_acknowledgment_of_another_shape_is_a_rejected_submit(
    api: FakeApi, runware: RunwareProvider, ack: dict[str, Any]
) -> None:
    """The docs show no literal async acknowledgment: any other shape fails the submit cleanly (the
    port's error, so the dispatch records PROVIDER_SUBMIT_FAILED and never re-sends it)."""
    api.on("POST", TASKS_PATH, Answer(200, ack))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        runware.submit(execution_id=TASK, provider_model="runware:100@1", input={"positivePrompt": "x"})


# Callbacks: Runware posts the task response to `webhookURL`, unsigned.

NOW = datetime(2026, 5, 2, 10, 0, tzinfo=UTC)
CALLBACK_URL = "https://gateway.example/v1/callbacks/runware/exec-1?token=t0k3n"
REFERENCE = f"{TASK}::1"


def test_submit_passes_the_callback_url_as_webhook_url(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, fixture("submit_ack.json")))
    runware.submit(
        execution_id=TASK,
        provider_model="videoInference/klingai:5@3",
        input={"positivePrompt": "a cat", "webhookURL": "https://example.com/theirs"},
        callback_url=CALLBACK_URL,
    )
    assert api.seen[0].body == [
        {
            "positivePrompt": "a cat",
            "webhookURL": CALLBACK_URL,
            "taskType": "videoInference",
            "taskUUID": TASK,
            "model": "klingai:5@3",
            "deliveryMethod": "async",
            "includeCost": True,
        }
    ]
    assert runware.accepts_callbacks


def test_submit_without_a_callback_url_names_no_webhook(api: FakeApi, runware: RunwareProvider) -> None:
    api.on("POST", TASKS_PATH, Answer(200, fixture("submit_ack.json")))
    runware.submit(
        execution_id=TASK, provider_model="videoInference/klingai:5@3", input={"positivePrompt": "x"}
    )
    assert "webhookURL" not in api.seen[0].body[0]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(fixture("get_response_success.json"), id="task-response"),
        pytest.param(fixture("get_response_error.json"), id="error-response"),
        pytest.param(fixture("get_response_success.json")["data"][0], id="one-item"),
        pytest.param(fixture("get_response_success.json")["data"], id="list-of-items"),
        pytest.param({"data": [{"taskType": "videoInference", "status": "success"}]}, id="no-task-named"),
    ],
)
def test_a_callback_about_the_task_is_accepted(runware: RunwareProvider, body: Any) -> None:
    runware.verify_callback(CallbackRequest(body=json.dumps(body).encode()), job_ref=REFERENCE, now=NOW)


def other_task(body: Any) -> bytes:
    return json.dumps(body).replace(TASK, str(uuid.UUID(int=7))).encode()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(other_task(fixture("get_response_success.json")), id="another-task"),
        pytest.param(other_task(fixture("get_response_error.json")), id="another-task-error"),
        pytest.param(other_task(fixture("get_response_success.json")["data"][0]), id="another-task-item"),
        pytest.param(
            json.dumps(
                {
                    "data": [
                        *fixture("get_response_success.json")["data"],
                        {"taskUUID": "other", "status": "success"},
                    ]
                }
            ).encode(),
            id="ours-and-another",
        ),
        pytest.param(b"not json", id="malformed-body"),
        pytest.param(b'"a string"', id="not-a-response"),
        pytest.param(b'{"data": {"taskUUID": "x"}}', id="data-not-a-list"),
        pytest.param(b'{"data": ["x"]}', id="items-not-objects"),
    ],
)
def test_a_foreign_or_malformed_callback_is_rejected(runware: RunwareProvider, raw: bytes) -> None:
    with pytest.raises(CallbackRejected):
        runware.verify_callback(CallbackRequest(body=raw), job_ref=REFERENCE, now=NOW)
