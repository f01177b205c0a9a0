"""Drives the API and the poll queue through the real handlers, the way the deployed system runs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from asyncgate_dev.apigw import HttpAnswer, http_event, read_response
from asyncgate_dev.handlers import load_handler
from asyncgate_dev.lambda_runtime import LambdaContext, deliver_sqs_batch

KEY_A = "key-tenant-a"
KEY_B = "key-tenant-b"
KEY_A_READ_ONLY = "key-tenant-a-read"
TENANT_CREDITS = 1_000_000

# operation -> (function directory, method, route)
ROUTES = {
    "submit": ("submit", "POST", "/v1/executions"),
    "list_executions": ("list_executions", "GET", "/v1/executions"),
    "status": ("status", "GET", "/v1/executions/{executionId}"),
    "cancel": ("cancel", "POST", "/v1/executions/{executionId}/cancel"),
    "cancel_delete": ("cancel", "DELETE", "/v1/executions/{executionId}"),
    "models": ("models", "GET", "/v1/models"),
    "account": ("account", "GET", "/v1/account"),
    "webhooks_list": ("webhooks", "GET", "/v1/webhooks"),
    "webhooks_create": ("webhooks", "POST", "/v1/webhooks"),
    "webhooks_delete": ("webhooks", "DELETE", "/v1/webhooks/{endpointId}"),
    "webhooks_secret": ("webhooks", "GET", "/v1/webhooks/secret"),
    "webhooks_rotate": ("webhooks", "POST", "/v1/webhooks/{endpointId}/rotate-secret"),
    "webhook_redeliver": ("webhook_redeliver", "POST", "/v1/executions/{executionId}/webhook-redeliver"),
    "callback": ("callbacks", "POST", "/v1/callbacks/{provider}/{executionId}"),
}


class Gateway:
    def __init__(self, sqs: Any, poll_queue_url: str, poll_tick_timeout: float) -> None:
        self.sqs = sqs
        self.poll_queue_url = poll_queue_url
        self.poll_tick_timeout = poll_tick_timeout

    def call(
        self,
        operation: str,
        *,
        execution_id: str | None = None,
        endpoint_id: str | None = None,
        provider: str | None = None,
        key: str | None = KEY_A,
        body: Any = None,
        raw_body: bytes | None = None,
        query: str = "",
        headers: dict[str, str] | None = None,
        timeout_seconds: float = 30.0,
    ) -> HttpAnswer:
        function, method, route = ROUTES[operation]
        given = {"executionId": execution_id, "endpointId": endpoint_id, "provider": provider}
        parameters = {name: value for name, value in given.items() if value and f"{{{name}}}" in route}
        path = route
        for name, value in given.items():
            path = path.replace(f"{{{name}}}", value or "")
        sent_headers = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            sent_headers["x-api-key"] = key
        payload = (
            raw_body
            if raw_body is not None
            else (json.dumps(body, ensure_ascii=False).encode() if body is not None else None)
        )
        event = http_event(
            method,
            path,
            route_key=f"{method} {route}",
            path_parameters=parameters or None,
            headers=sent_headers,
            raw_query=query,
            body=payload,
        )
        handler = load_handler(function).lambda_handler
        return read_response(
            handler(event, LambdaContext(function_name=function, timeout_seconds=timeout_seconds))
        )

    def submit(self, model: str = "sim-video", sim: dict[str, Any] | None = None, **extra: Any) -> HttpAnswer:
        key = extra.pop("key", KEY_A)
        headers = extra.pop("headers", None)
        prompt = extra.pop("input_extra", "a red fox")
        body = {"model": model, "input": {"prompt": prompt, "sim": sim or {}}, **extra}
        return self.call("submit", body=body, key=key, headers=headers)

    def status(self, execution_id: str, key: str = KEY_A) -> dict[str, Any]:
        answer = self.call("status", execution_id=execution_id, key=key)
        assert answer.status == 200, answer.body
        result: dict[str, Any] = answer.json()
        return result

    def tick_once(self) -> int:
        """Deliver one batch of due poll-queue messages to the poll_tick handler."""
        return deliver_sqs_batch(
            self.sqs,
            self.poll_queue_url,
            load_handler("poll_tick").lambda_handler,
            wait_seconds=1,
            timeout_seconds=self.poll_tick_timeout,
        )

    def drain_until(
        self, execution_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """Run poll ticks as they come due until `done(execution)` holds (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            execution = self.status(execution_id)
            if done(execution):
                return execution
            if time.monotonic() > deadline:
                raise AssertionError(f"not done after {timeout}s: {execution}")
            self.tick_once()

    def run_to_end(self, execution_id: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.drain_until(
            execution_id, lambda e: e["status"] in {"succeeded", "failed", "cancelled"}, timeout
        )

    def pending_ticks(self) -> int:
        """Messages on the poll queue, visible, delayed or in flight."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible",
        ]
        answer = self.sqs.get_queue_attributes(QueueUrl=self.poll_queue_url, AttributeNames=names)
        return sum(int(answer["Attributes"][name]) for name in names)
