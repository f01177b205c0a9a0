"""The declarative provider: providers described purely by JSON specs (tests/fixtures/providers/declarative),
driven against fake providers replaying their answers, and the simulated provider re-described and run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from asyncgate.providers import sim
from asyncgate.providers.base import (
    CallbackRejected,
    CallbackRequest,
    ProviderRejected,
    ProviderState,
    ProviderUnavailable,
)
from asyncgate.providers.declarative import (
    DeclarativeProvider,
    DeclarativeSpec,
    build_declarative,
    load_spec,
    lookup,
    render,
)
from asyncgate_dev.simprovider import SimProviderServer
from tests.fakes import Answer, FakeApi, poll_until

SPECS = Path(__file__).parents[2] / "fixtures" / "providers" / "declarative"
ANSWERS = SPECS / "answers"
KEY = "declarative-test-secret"
TERMINAL = {ProviderState.SUCCEEDED, ProviderState.FAILED, ProviderState.CANCELLED}


def spec(name: str) -> DeclarativeSpec:
    return load_spec(SPECS / f"{name}.json")


def answer(provider: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((ANSWERS / provider / f"{name}.json").read_text())
    return body


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as opened:
        yield opened


def provider_for(name: str, api: FakeApi, session: requests.Session) -> DeclarativeProvider:
    return build_declarative(spec(name), KEY, api.url, session=session)


# --- the specs themselves


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.json")), ids=lambda path: path.stem)
def test_every_fixture_spec_loads(path: Path) -> None:
    loaded = load_spec(path)
    assert loaded.name == path.stem or path.stem == "sim"
    assert set(loaded.poll.states.values()) <= set(ProviderState)


def test_sim_spec_maps_every_documented_sim_status_as_the_sim_adapter_does() -> None:
    assert spec("sim").poll.states == sim.STATES


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        ({"submit": {"body": {"model": "$modle"}}}, "unknown placeholder '$modle'"),
        ({"submit": {"body": {"$merge": {"a": 1}}}}, "$merge takes a placeholder"),
        ({"submit": {"path": "/v1/jobs/{id}"}}, "whole path segment"),
        ({"poll": {"path": "/v1/jobs/job-{id}"}}, "whole path segment"),
        ({"poll": {"path": "/v1/jobs?id={id}"}}, "carry no query"),
        ({"poll": {"query": {"id": "$executionId"}}}, "unknown placeholder '$executionId'"),
        ({"headers": {"Authorization": "Bearer {key}"}}, "only use the placeholder {apiKey}"),
        ({"poll": {"states": {"running": "spinning"}}}, "states.running"),
        ({"poll": {"statusPath": "data..status"}}, "not a dotted path"),
        ({"poll": {"progresPath": "progress"}}, "progresPath"),
        ({"cancel": {"method": "POST", "path": "/v1/jobs/{model}/cancel"}}, "whole path segment"),
    ],
)
def test_a_broken_spec_fails_when_it_loads(change: dict[str, Any], mentions: str) -> None:
    document = json.loads((SPECS / "sim.json").read_text())
    for section, fields in change.items():
        if isinstance(document.get(section), dict):
            document[section] = {**document[section], **fields}
        else:
            document[section] = fields
    with pytest.raises(ValidationError) as raised:
        DeclarativeSpec.model_validate(document)
    assert mentions in str(raised.value)


def test_render_substitutes_whole_values_only() -> None:
    values = {"input": {"prompt": "a cat", "n": 2}, "model": "m", "executionId": "exec-1"}
    template = {
        "$merge": "$input",
        "n": 1,
        "model": "$model",
        "nested": ["$executionId", {"keep": "$$input", "text": "model $model"}],
    }
    assert render(template, values) == {
        "prompt": "a cat",
        "n": 1,
        "model": "m",
        "nested": ["exec-1", {"keep": "$input", "text": "model $model"}],
    }


def test_lookup_walks_objects_lists_and_json_strings() -> None:
    document = {"data": [{"result": json.dumps({"urls": ["u1"]})}], "zero": 0}
    assert lookup(document, "data.0.result.$json.urls.0") == "u1"
    assert lookup(document, "zero") == 0
    assert lookup(document, "data.1.result") is None
    assert lookup(document, "data.x") is None
    assert lookup(document, "zero.deeper") is None
    assert lookup({"result": {"urls": ["u2"]}}, "result.$json.urls.0") == "u2", "already JSON: kept"
    assert lookup({"result": "{not json"}, "result.$json.urls") is None


def test_a_spec_that_needs_a_key_refuses_to_build_without_one() -> None:
    with pytest.raises(ValueError, match="set ACME_API_KEY"):
        build_declarative(spec("acme-video"), None, "http://127.0.0.1:9")
    keyless = build_declarative(spec("sim"), None, "http://127.0.0.1:9")
    assert keyless.name == "sim-declarative"


def test_the_spec_default_url_is_used_without_a_base_url() -> None:
    assert build_declarative(spec("acme-video"), KEY, "").name == "acme-video"
    with pytest.raises(ValueError, match="no base URL"):
        build_declarative(spec("pixelforge"), KEY, "")


# --- the simulated provider, re-described


def test_sim_spec_against_a_fake_answering_like_the_sim(api: FakeApi, session: requests.Session) -> None:
    provider = provider_for("sim", api, session)
    job_id = answer("sim", "submit")["id"]
    api.on("POST", "/v1/jobs", Answer(201, answer("sim", "submit")))
    api.on(
        "GET",
        f"/v1/jobs/{job_id}",
        Answer(200, answer("sim", "running")),
        Answer(200, answer("sim", "succeeded")),
    )

    job = provider.submit(execution_id="exec-1", provider_model="sim-video", input={"prompt": "a cat"})
    assert job.provider_request_id == job_id
    submitted = api.seen[0]
    assert submitted.body == {"model": "sim-video", "input": {"prompt": "a cat"}, "reference": "exec-1"}

    running = provider.poll(job_id)
    assert running.state is ProviderState.RUNNING
    assert running.progress == 55.0
    assert [output.content_type for output in running.outputs] == ["video/mp4"]

    done = provider.poll(job_id)
    assert done.state is ProviderState.SUCCEEDED
    assert not done.incomplete
    assert [output.url for output in done.outputs] == [item["url"] for item in done.raw["outputs"]]


@pytest.mark.parametrize(
    ("name", "state", "incomplete", "message"),
    [
        ("failed", ProviderState.FAILED, False, "simulated failure: the model crashed"),
        ("incomplete", ProviderState.SUCCEEDED, True, None),
        ("cancelled", ProviderState.CANCELLED, False, None),
    ],
)
def test_sim_spec_endings(
    api: FakeApi,
    session: requests.Session,
    name: str,
    state: ProviderState,
    incomplete: bool,
    message: str | None,
) -> None:
    body = answer("sim", name)
    api.on("GET", f"/v1/jobs/{body['id']}", Answer(200, body))
    polled = provider_for("sim", api, session).poll(body["id"])
    assert polled.state is state
    assert polled.incomplete is incomplete
    assert polled.error_message == message
    assert polled.raw == body


def test_sim_spec_drives_the_real_simulated_provider(session: requests.Session) -> None:
    with SimProviderServer() as server:
        provider = build_declarative(spec("sim"), None, server.url, session=session)

        def run(**sim_input: Any) -> str:
            return provider.submit(
                execution_id="exec-sim", provider_model="sim-image", input={"sim": sim_input}
            ).provider_request_id

        ok = run(durationSeconds=0.6, outputs=2)
        partial = poll_until(provider, ok, lambda p: bool(p.outputs) or p.state in TERMINAL)
        assert partial.state is ProviderState.RUNNING
        assert 0.0 < (partial.progress or 0.0) < 100.0
        done = poll_until(provider, ok, lambda p: p.state in TERMINAL)
        assert done.state is ProviderState.SUCCEEDED
        assert [output.content_type for output in done.outputs] == ["image/png"] * 2
        assert done.raw["reference"] == "exec-sim"

        failed = poll_until(provider, run(durationSeconds=0.1, outcome="fail"), lambda p: p.state in TERMINAL)
        assert failed.state is ProviderState.FAILED
        assert failed.error_message == failed.raw["error"]["message"]

        empty = poll_until(
            provider, run(durationSeconds=0.1, outcome="incomplete"), lambda p: p.state in TERMINAL
        )
        assert empty.incomplete

        stopped = run(durationSeconds=5)
        provider.cancel(stopped)
        assert provider.poll(stopped).state is ProviderState.CANCELLED

        flaky = run(durationSeconds=5, pollErrors=1)
        with pytest.raises(ProviderUnavailable):
            provider.poll(flaky)
        with pytest.raises(ProviderRejected) as refused:
            run(submitStatus=422)
        assert refused.value.status == 422


# --- a made-up provider, configured and not coded: acme-video


ACME_ID = "9f1c2b7e-5d4a-4c1e-9a0b-2f6e8d3c1a55"


def test_acme_submit_sends_the_described_request(api: FakeApi, session: requests.Session) -> None:
    api.on("POST", "/api/v2/models/acme/clip-xl/generations", Answer(202, answer("acme-video", "submit")))
    provider = provider_for("acme-video", api, session)

    job = provider.submit(
        execution_id="exec-7",
        provider_model="acme/clip-xl",
        input={"prompt": "a dog surfing", "seconds": 5, "client_ref": "spoofed"},
    )

    assert job.provider_request_id == ACME_ID
    [seen] = api.seen
    assert (seen.method, seen.path) == ("POST", "/api/v2/models/acme/clip-xl/generations")
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["accept"] == "application/json"
    assert "authorization" not in seen.headers
    assert seen.body == {
        "prompt": "a dog surfing",
        "seconds": 5,
        "client_ref": "exec-7",
        "callback_url": None,
        "mode": "async",
    }


def test_acme_model_ids_cannot_climb_out_of_the_path(api: FakeApi, session: requests.Session) -> None:
    provider = provider_for("acme-video", api, session)
    for model in ("../admin", "acme/../../keys", "acme//x"):
        with pytest.raises(ProviderRejected, match="cannot be used in a path"):
            provider.submit(execution_id="exec-7", provider_model=model, input={})
    assert api.seen == []


def test_acme_poll_through_its_states(api: FakeApi, session: requests.Session) -> None:
    api.on(
        "GET",
        "/api/v2/generations",
        *(Answer(200, answer("acme-video", name)) for name in ("queued", "running", "done")),
    )
    provider = provider_for("acme-video", api, session)

    queued = provider.poll(ACME_ID)
    assert queued.state is ProviderState.PENDING
    assert queued.queue_position == 3
    assert queued.progress is None
    assert queued.outputs == []

    running = provider.poll(ACME_ID)
    assert running.state is ProviderState.RUNNING
    assert running.progress == pytest.approx(42.0)
    assert [(o.url, o.content_type) for o in running.outputs] == [
        ("https://cdn.acme-video.example/t/9f1c/clip-1.mp4", "video/mp4")
    ]

    done = provider.poll(ACME_ID)
    assert done.state is ProviderState.SUCCEEDED
    assert done.progress == 100.0
    assert not done.incomplete
    assert [o.content_type for o in done.outputs] == ["video/mp4", "application/octet-stream"]

    for seen in api.seen:
        assert seen.query == {"uuid": ACME_ID, "verbose": "true"}
        assert seen.headers["x-api-key"] == KEY


def test_acme_failure_and_cancel(api: FakeApi, session: requests.Session) -> None:
    api.on(
        "GET",
        "/api/v2/generations",
        Answer(200, answer("acme-video", "failed")),
        Answer(200, answer("acme-video", "cancelled")),
    )
    api.on("DELETE", f"/api/v2/generations/{ACME_ID}", Answer(204))
    provider = provider_for("acme-video", api, session)

    failed = provider.poll(ACME_ID)
    assert failed.state is ProviderState.FAILED
    assert failed.error_message == "content policy: prompt refused"
    assert failed.raw == answer("acme-video", "failed")

    provider.cancel(ACME_ID)
    cancel = api.seen[-1]
    assert (cancel.method, cancel.path) == ("DELETE", f"/api/v2/generations/{ACME_ID}")
    assert provider.poll(ACME_ID).state is ProviderState.CANCELLED


# --- another: pixelforge (numeric ids, plain URL lists, no cancel)


def test_pixelforge_round_trip(api: FakeApi, session: requests.Session) -> None:
    api.on("POST", "/v1/tasks", Answer(200, answer("pixelforge", "submit")))
    api.on(
        "GET",
        "/v1/tasks/48213",
        Answer(200, answer("pixelforge", "processing")),
        Answer(200, answer("pixelforge", "done")),
    )
    provider = provider_for("pixelforge", api, session)

    job = provider.submit(execution_id="exec-9", provider_model="forge-2", input={"prompt": "a fox"})
    assert job.provider_request_id == "48213"
    assert api.seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert api.seen[0].body == {
        "model": "forge-2",
        "params": {"prompt": "a fox"},
        "reference": "exec-9",
        "tags": ["asyncgate"],
    }

    assert provider.poll("48213").state is ProviderState.RUNNING
    done = provider.poll("48213")
    assert done.state is ProviderState.SUCCEEDED
    assert [o.content_type for o in done.outputs] == ["image/png", "image/webp"]


def test_pixelforge_error_and_empty_result(api: FakeApi, session: requests.Session) -> None:
    api.on(
        "GET",
        "/v1/tasks/48213",
        Answer(200, answer("pixelforge", "error")),
        Answer(200, answer("pixelforge", "done_empty")),
    )
    provider = provider_for("pixelforge", api, session)
    failed = provider.poll("48213")
    assert failed.state is ProviderState.FAILED
    assert failed.error_message == "out of GPU memory"
    empty = provider.poll("48213")
    assert empty.state is ProviderState.SUCCEEDED
    assert empty.incomplete


def test_pixelforge_cannot_cancel(api: FakeApi, session: requests.Session) -> None:
    with pytest.raises(ProviderRejected, match="cannot cancel"):
        provider_for("pixelforge", api, session).cancel("48213")
    assert api.seen == []


# --- HTTP failures and malformed answers, the same for every described provider


def test_rate_limit_carries_retry_after(api: FakeApi, session: requests.Session) -> None:
    api.on("GET", "/v1/tasks/1", Answer(429, {"error": "slow down"}, {"Retry-After": "12"}))
    with pytest.raises(ProviderUnavailable) as raised:
        provider_for("pixelforge", api, session).poll("1")
    assert raised.value.status == 429
    assert raised.value.retry_after == 12.0
    assert KEY not in str(raised.value)


def test_server_error_is_transient(api: FakeApi, session: requests.Session) -> None:
    api.on("GET", "/api/v2/generations", Answer(502, b"<html>bad gateway</html>"))
    with pytest.raises(ProviderUnavailable) as raised:
        provider_for("acme-video", api, session).poll(ACME_ID)
    assert raised.value.status == 502


def test_submit_refused(api: FakeApi, session: requests.Session) -> None:
    api.on("POST", "/v1/tasks", Answer(401, {"error": "bad token"}))
    with pytest.raises(ProviderRejected) as raised:
        provider_for("pixelforge", api, session).submit(execution_id="e", provider_model="m", input={})
    assert raised.value.status == 401
    assert KEY not in str(raised.value)


def test_malformed_json_is_rejected(api: FakeApi, session: requests.Session) -> None:
    api.on("GET", "/v1/tasks/1", Answer(200, b"not json"))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider_for("pixelforge", api, session).poll("1")


@pytest.mark.parametrize(
    "body",
    [
        {"id": 1, "status": "PAUSED"},
        {"id": 1},
        {"id": 1, "status": {"code": "DONE"}},
        {"id": 1, "status": "DONE", "result": {"urls": [{"no": "url"}]}},
        {"id": 1, "status": "DONE", "result": {"urls": [""]}},
    ],
)
def test_unknown_status_or_shape_is_rejected(
    api: FakeApi, session: requests.Session, body: dict[str, Any]
) -> None:
    api.on("GET", "/v1/tasks/1", Answer(200, body))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider_for("pixelforge", api, session).poll("1")


def test_progress_of_the_wrong_type_is_rejected(api: FakeApi, session: requests.Session) -> None:
    body = answer("acme-video", "queued")
    body["data"].update({"percent": "half"})
    api.on("GET", "/api/v2/generations", Answer(200, body))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider_for("acme-video", api, session).poll(ACME_ID)


@pytest.mark.parametrize("position", [-1, 1.5, "3", True])
def test_a_queue_position_that_is_not_one_is_no_position(
    api: FakeApi, session: requests.Session, position: Any
) -> None:
    """Advisory, like progress: a provider's odd queue position never fails the job."""
    body = answer("acme-video", "queued")
    body["data"].update({"queue": {"position": position}})
    api.on("GET", "/api/v2/generations", Answer(200, body))
    polled = provider_for("acme-video", api, session).poll(ACME_ID)
    assert polled.state is ProviderState.PENDING
    assert polled.queue_position is None


def test_progress_is_clamped(api: FakeApi, session: requests.Session) -> None:
    body = answer("acme-video", "running")
    body["data"]["percent"] = 1.004
    api.on("GET", "/api/v2/generations", Answer(200, body))
    assert provider_for("acme-video", api, session).poll(ACME_ID).progress == 100.0


def test_submit_answer_without_id_is_malformed(api: FakeApi, session: requests.Session) -> None:
    api.on("POST", "/api/v2/models/m/generations", Answer(200, {"ok": True, "data": {"task": {}}}))
    with pytest.raises(ProviderRejected, match="unexpected body"):
        provider_for("acme-video", api, session).submit(execution_id="e", provider_model="m", input={})


def test_a_declarative_provider_takes_no_callbacks(api: FakeApi, session: requests.Session) -> None:
    provider = provider_for("pixelforge", api, session)
    assert provider.accepts_callbacks is False
    with pytest.raises(CallbackRejected, match="does not take callbacks"):
        provider.verify_callback(
            CallbackRequest(body=b'{"id": "48213"}'), job_ref="48213", now=datetime.now(UTC)
        )
    assert api.seen == []
