"""Integration fixtures: the template's resources on moto, the simulated provider on loopback, tenants."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from asyncgate.api.http import forget_principals
from asyncgate.providers.registry import forget_providers
from asyncgate.services.deps import default_deps
from asyncgate.services.tenants import create_tenant, issue_key
from asyncgate.settings import get_settings
from asyncgate.store.keys import ALL_SCOPES, Scope
from asyncgate_dev.receiver import WebhookReceiver
from asyncgate_dev.simprovider import SimProviderServer
from tests.integration.driver import KEY_A, KEY_A_READ_ONLY, KEY_B, TENANT_CREDITS, Gateway


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimProviderServer]:
    with SimProviderServer() as server:
        yield server


def forget_container_state() -> None:
    """What a fresh Lambda container would not have: cached settings, clients, adapters and keys."""
    get_settings.cache_clear()
    default_deps.cache_clear()
    forget_providers()
    forget_principals()


@pytest.fixture
def gateway(
    aws_stack: Any, sim_server: SimProviderServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    monkeypatch.setenv("SIM_PROVIDER_URL", sim_server.url)
    # Scheduled waits shrink 50x so a lifecycle takes seconds; SQS still rounds each hop up to 1 s.
    monkeypatch.setenv("TIME_SCALE", "0.02")
    monkeypatch.setenv("SWEEP_GRACE_SECONDS", "2")
    # Polling alone, as the lifecycle tests expect; test_callbacks turns callbacks on where it needs them.
    monkeypatch.setenv("PROVIDER_CALLBACKS", "off")
    forget_container_state()
    settings = get_settings()
    deps = default_deps()
    for tenant in ("tenant-a", "tenant-b"):
        create_tenant(deps, tenant, credits=TENANT_CREDITS)
    issue_key(deps, "tenant-a", ALL_SCOPES, api_key=KEY_A)
    issue_key(deps, "tenant-b", ALL_SCOPES, api_key=KEY_B)
    issue_key(deps, "tenant-a", frozenset({Scope.EXECUTION_READ}), api_key=KEY_A_READ_ONLY)
    poll_tick_timeout = aws_stack.functions()["PollTickFunction"].timeout
    yield Gateway(boto3.client("sqs"), settings.poll_queue_url, poll_tick_timeout)
    forget_container_state()


@pytest.fixture
def provider_side(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """Where the simulated provider's callbacks land: the API's public URL, as the provider sees it."""
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("PUBLIC_URL", receiver.url.removesuffix("/hook"))
        monkeypatch.setenv("PROVIDER_CALLBACKS", "on")
        forget_container_state()
        yield receiver
