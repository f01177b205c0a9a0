"""No secret reaches the logs or the traces. The real handlers serve the routes whose answers carry
secrets (webhook secrets, presigned URLs) and the requests that carry them (API keys, callback tokens),
with a real X-Ray recorder as the tracer's provider and every line the functions log captured, at DEBUG."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aws_xray_sdk import global_sdk_config  # type: ignore[import-untyped]
from aws_xray_sdk.core.recorder import AWSXRayRecorder  # type: ignore[import-untyped]

from asyncgate.observability import logger, tracer
from asyncgate_dev.receiver import WebhookReceiver
from tests.integration.conftest import forget_container_state
from tests.integration.driver import KEY_A, Gateway

TERMINAL = {"succeeded", "failed", "cancelled"}


class TraceDocuments:
    """An X-Ray emitter keeping the documents it would send to the daemon."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []

    def send_entity(self, entity: Any) -> None:
        self.documents.append(json.loads(entity.serialize()))

    def set_daemon_address(self, address: str | None) -> None:
        """No daemon: the documents stay here."""

    def names(self) -> set[str]:
        found: set[str] = set()

        def visit(entity: dict[str, Any]) -> None:
            found.add(entity["name"])
            for child in entity.get("subsegments", []):
                visit(child)

        for document in self.documents:
            visit(document)
        return found


class Telemetry:
    """What the functions write to CloudWatch Logs (the Powertools logger at DEBUG, any other logger's
    warnings, the metrics printed) and send to X-Ray, while it runs."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self._capsys = capsys
        self.traces = TraceDocuments()
        recorder = AWSXRayRecorder()
        recorder.configure(
            emitter=self.traces, sampling=False, context_missing="RUNTIME_ERROR", streaming_threshold=0
        )
        monkeypatch.setattr(tracer, "provider", recorder)
        self._recorder = recorder
        self._was_enabled = global_sdk_config.sdk_enabled()
        global_sdk_config.set_sdk_enabled(True)
        recorder.begin_segment("asyncgate")
        self._logs = io.StringIO()
        self._level = logger.log_level
        logger.setLevel("DEBUG")
        self._powertools_stream = logger.registered_handler.setStream(self._logs)  # type: ignore[attr-defined]
        self._others = logging.StreamHandler(self._logs)
        self._others.setLevel(logging.WARNING)
        logging.getLogger().addHandler(self._others)
        self._stopped = False

    def stop(self) -> str:
        """Everything logged and traced, as one text."""
        if not self._stopped:
            self._stopped = True
            self._recorder.end_segment()
            global_sdk_config.set_sdk_enabled(self._was_enabled)
            logger.registered_handler.setStream(self._powertools_stream)  # type: ignore[attr-defined]
            logger.setLevel(self._level)
            logging.getLogger().removeHandler(self._others)
        printed = self._capsys.readouterr()
        traced = json.dumps(self.traces.documents)
        return "\n".join([self._logs.getvalue(), printed.out, printed.err, traced])


@pytest.fixture
def telemetry(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    captured = Telemetry(capsys, monkeypatch)
    yield captured
    captured.stop()


@pytest.fixture
def provider_side(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """Where the simulated provider's callbacks land (the API's public URL, as the provider sees it);
    its outputs, on loopback, are copied into the results bucket."""
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("PUBLIC_URL", receiver.url.removesuffix("/hook"))
        monkeypatch.setenv("PROVIDER_CALLBACKS", "on")
        monkeypatch.setenv("ALLOW_LOOPBACK_WEBHOOKS", "true")
        forget_container_state()
        yield receiver
    forget_container_state()


def test_no_secret_reaches_the_logs_or_the_traces(
    gateway: Gateway, provider_side: WebhookReceiver, telemetry: Telemetry
) -> None:
    created = gateway.call("webhooks_create", body={"url": "https://hooks.example.com/in"})
    rotated = gateway.call("webhooks_rotate", endpoint_id=created.json()["id"])
    signing = gateway.call("webhooks_secret")
    webhook_secrets = [answer.json()["secret"] for answer in (created, rotated, signing)]
    assert all(secret.startswith("whsec_") for secret in webhook_secrets)

    hook_token = "hook-token-6f0c2b7e"
    submitted = gateway.submit(
        sim={"durationSeconds": 0.3}, webhook={"url": f"https://hooks.example.com/in?auth={hook_token}"}
    )
    assert submitted.status == 202, submitted.body
    execution_id = submitted.json()["executionId"]
    [callback] = provider_side.wait_for(1)
    parts = urlsplit(callback.path)
    [callback_token] = parse_qs(parts.query)["token"]
    called_back = gateway.call(
        "callback",
        provider="sim",
        execution_id=execution_id,
        key=None,
        query=parts.query,
        raw_body=callback.body,
    )
    assert called_back.status == 200, called_back.body
    gateway.drain_until(execution_id, lambda execution: execution["status"] in TERMINAL)

    status = gateway.call("status", execution_id=execution_id)
    listed = gateway.call("list_executions")
    [output] = status.json()["result"]["outputs"]
    assert output["stored"], "a presigned URL of the copy"
    [signature] = parse_qs(urlsplit(output["url"]).query)["X-Amz-Signature"]
    assert signature in listed.body.decode()

    text = telemetry.stop().lower()
    traced = telemetry.traces.names()
    assert "## lambda_handler" in traced, "the API functions were traced"
    assert any(name.endswith(".handle_record") for name in traced), "the poll ticks were traced"
    assert execution_id in text, "the functions logged"
    for secret in [
        *webhook_secrets,
        "whsec_",
        KEY_A,
        "x-amz-signature",
        signature,
        callback_token,
        hook_token,
    ]:
        assert secret.lower() not in text, secret
