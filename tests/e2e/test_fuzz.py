"""Schemathesis against the local stack: generated requests, valid and invalid, for every operation of the
OpenAPI document; no answer may be a server error, and every answer must be one the document states
(status, headers, content type and body schema, the error codes included).

`ASYNCGATE_FUZZ_CASES` sets the fuzzing phase's cases in all (`make test`: 300; `make fuzz`: 1000);
schemathesis's coverage phase adds its fixed set (boundary values, missing and wrong fields, every
undeclared method). Generation is derandomized: a run is the same on every machine, so CI cannot flake
on a new draw.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from asyncgate.api.openapi import OPERATIONS, openapi_document
from asyncgate.domain.catalog import load_catalog
from asyncgate.domain.webhook_url import InvalidWebhookUrl, check_webhook_url
from asyncgate.settings import DEFAULT_CATALOG
from tests.e2e.conftest import DevStack

pytestmark = pytest.mark.e2e

CASES = int(os.environ.get("ASYNCGATE_FUZZ_CASES", "300"))
# Submit does the most with what it is given: it gets this many shares of the cases, every other one one.
SUBMIT_SHARES = 4
ACME = {"X-API-Key": "acme-key"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Deliveries to a webhook URL the stack accepts go here instead: a closed loopback port, so a fuzzed URL
# never sends anything off this machine (and fails fast, as a receiver that is down would).
CLOSED_LOOPBACK_URL = "http://127.0.0.1:9/fuzz"
CATALOG_MODELS = [spec.model for spec in load_catalog(DEFAULT_CATALOG).models]
# Ids of things that exist, by path parameter, filled by the `targets` fixture: random ids only ever
# reach a 404, and the answers about real executions and endpoints must conform too.
EXISTING: dict[str, list[str]] = {"executionId": [], "endpointId": []}
# The endpoint DELETE may remove is one of its own, so that rotate-secret always has one left.
DELETABLE_ENDPOINT: list[str] = []
# What the `targets` fixture submits: `input.sim` of executions in each state a request can meet, and
# whether each has a webhook (to a receiver that is down: the webhook fails, and can be redelivered).
TARGET_EXECUTIONS = (
    ({"durationSeconds": 600}, False),
    ({"durationSeconds": 600}, False),
    ({"durationSeconds": 0.2}, False),
    ({"durationSeconds": 0.2, "outcome": "fail"}, False),
    ({"durationSeconds": 0.2}, True),
)

CASES_PER_SHARE = math.ceil(CASES / (len(OPERATIONS) - 1 + SUBMIT_SHARES))
CONFIG = schemathesis.Config.from_dict(
    {
        "suppress-health-check": ["all"],
        "generation": {"max-examples": CASES_PER_SHARE, "deterministic": True, "database": "none"},
        "operations": [
            {
                "include-operation-id": "submitExecution",
                "generation": {"max-examples": CASES_PER_SHARE * SUBMIT_SHARES},
            }
        ],
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext, parameters: Any) -> st.SearchStrategy[Any]:
    if not isinstance(parameters, dict):
        return st.just(parameters)
    deleting = context.operation is not None and context.operation.method.upper() == "DELETE"
    existing = {**EXISTING, "endpointId": DELETABLE_ENDPOINT} if deleting else EXISTING
    return st.fixed_dictionaries(
        {name: st.sampled_from([value, *existing.get(name, [])]) for name, value in parameters.items()}
    )


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Submits name a catalog model often enough to reach past 400 UNKNOWN_MODEL, so the random input,
    metadata and webhook go all the way to the provider and the table."""
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        return st.sampled_from([body["model"], *CATALOG_MODELS]).map(lambda model: {**body, "model": model})
    return st.just(body)


@schema.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    submitted_input = body.get("input")
    if isinstance(submitted_input, dict):
        # `input.sim` scripts the simulated provider (API.md): a random one may ask it to refuse the
        # submit (`submitStatus`), which the contract answers 500 PROVIDER_SUBMIT_FAILED. That is the
        # provider's failure, not the gateway's, so fuzzed input never carries the script.
        submitted_input.pop("sim", None)
    webhook = body.get("webhook")
    if isinstance(webhook, dict):
        webhook["url"] = _off_the_network(webhook.get("url"))
    if context.operation is not None and context.operation.path == "/v1/webhooks" and "url" in body:
        body["url"] = _off_the_network(body["url"])
    return body


def _off_the_network(url: Any) -> Any:
    if not isinstance(url, str):
        return url
    try:
        check_webhook_url(url, allow_loopback_http=True)
    except InvalidWebhookUrl:
        return url  # refused with 400 INVALID_WEBHOOK_URL: never delivered to
    return CLOSED_LOOPBACK_URL


@pytest.fixture(scope="module")
def targets(dev_stack: DevStack) -> Iterator[None]:
    """The target executions and two webhook endpoints (their answers must conform too: the fuzzing
    rarely makes a valid endpoint); afterwards the long executions are cancelled and every endpoint the
    run made is deleted, so that nothing of it reaches the other tests."""
    endpoints = f"{dev_stack.url}/v1/webhooks"
    endpoints_before = {item["id"] for item in _get(endpoints)["items"]}
    for sim, with_webhook in TARGET_EXECUTIONS:
        body = {
            "model": "sim-video",
            "input": {"sim": sim},
            "webhook": {"url": CLOSED_LOOPBACK_URL} if with_webhook else None,
        }
        EXISTING["executionId"].append(_post(dev_stack, "/v1/executions", body)["executionId"])
    # Subscribed to failures only: the executions the run submits succeed, so they send it nothing.
    endpoint = {"url": CLOSED_LOOPBACK_URL, "events": ["execution.failed"]}
    for ids in (EXISTING["endpointId"], DELETABLE_ENDPOINT):
        ids.append(_post(dev_stack, "/v1/webhooks", endpoint)["id"])
    yield
    for execution_id in EXISTING["executionId"]:
        # 409 for those already ended; executions the run submitted itself end within seconds.
        requests.delete(f"{dev_stack.url}/v1/executions/{execution_id}", headers=ACME, timeout=30)
    for item in _get(endpoints)["items"]:
        if item["id"] not in endpoints_before:
            requests.delete(f"{endpoints}/{item['id']}", headers=ACME, timeout=30).raise_for_status()


def _get(url: str) -> Any:
    answer = requests.get(url, headers=ACME, timeout=30)
    answer.raise_for_status()
    return answer.json()


def _post(stack: DevStack, path: str, body: dict[str, Any]) -> Any:
    answer = requests.post(f"{stack.url}{path}", json=body, headers=ACME, timeout=30)
    answer.raise_for_status()
    schema[path]["POST"].validate_response(answer)
    return answer.json()


@schema.parametrize()
def test_every_answer_conforms_to_the_document(
    case: schemathesis.Case[Any], dev_stack: DevStack, targets: None
) -> None:
    case.call_and_validate(base_url=dev_stack.url, headers=ACME, checks=CHECKS, timeout=60)
