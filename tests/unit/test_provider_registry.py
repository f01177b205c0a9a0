"""What the services get for a provider name: calls that fail only with the port's own errors, adapters
rebuilt when a key read from SSM may have rotated, and provider descriptions checked when they load."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from asyncgate.domain.catalog import Catalog
from asyncgate.providers import registry
from asyncgate.providers.base import ProviderRejected, ProviderUnavailable
from asyncgate.providers.connections import CONNECTIONS, KEY_CACHE_SECONDS, Connection
from asyncgate.providers.registry import forget_providers, provider_for

DESCRIBED = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "providers" / "declarative" / "sim.json").read_text()
)


class Broken:
    name = "broken"

    def submit(self, **_: Any) -> Any:
        raise KeyError("a bug in the adapter")

    def poll(self, job_ref: str) -> Any:
        raise AttributeError("a bug in the adapter")

    def cancel(self, job_ref: str) -> None:
        raise TypeError("a bug in the adapter")


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    forget_providers()
    yield
    forget_providers()


def test_an_adapters_own_bug_becomes_the_ports_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_build", lambda _: (Broken(), float("inf")))
    provider = provider_for("broken")
    with pytest.raises(ProviderRejected, match="broken submit failed: KeyError"):
        provider.submit(execution_id="e", provider_model="m", input={})  # final: never re-sent
    with pytest.raises(ProviderUnavailable, match="broken poll failed: AttributeError"):
        provider.poll("job")  # transient: the error budget decides
    with pytest.raises(ProviderRejected):
        provider.cancel("job")


def test_a_provider_without_its_key_fails_calls_not_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    monkeypatch.delenv("FAL_KEY_PARAMETER", raising=False)
    with pytest.raises(ProviderUnavailable, match="ProviderNotConfigured"):
        provider_for("fal").poll("fal-ai/flux::r-1")


def test_a_key_from_a_parameter_is_read_again_after_its_cache_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = iter(["old-key", "new-key"])
    monkeypatch.delenv("FAL_KEY", raising=False)
    monkeypatch.setenv("FAL_KEY_PARAMETER", "/asyncgate/fal")
    monkeypatch.setattr(Connection, "api_key", lambda self, environ=None: next(keys))
    now = [0.0]
    monkeypatch.setattr(registry, "_monotonic", lambda: now[0])
    first = registry._adapter("fal")
    now[0] = 10.0
    assert registry._adapter("fal") is first, "within the key cache's lifetime"
    now[0] = KEY_CACHE_SECONDS + 1
    assert registry._adapter("fal") is not first, "past it: rebuilt with the key read again"


def test_keys_lose_the_whitespace_a_pasted_secret_ends_with() -> None:
    assert CONNECTIONS["fal"].api_key({"FAL_KEY": " fal-key\n"}) == "fal-key"


def test_a_broken_description_fails_the_catalog_not_a_request() -> None:
    broken = {**DESCRIBED, "submit": {**DESCRIBED["submit"], "path": "/v1/jobs/{executionId}"}}
    with pytest.raises(ValidationError, match=r"whole path segment, one of \{model\}"):
        Catalog.model_validate({"models": [], "httpProviders": {broken["name"]: broken}})
    keyed = {**DESCRIBED, "headers": {"Authorization": "Bearer {apiKey}"}}
    with pytest.raises(ValidationError, match="keyVariable"):
        Catalog.model_validate({"models": [], "httpProviders": {keyed["name"]: keyed}})
    with pytest.raises(ValidationError, match="named"):
        Catalog.model_validate({"models": [], "httpProviders": {"other": DESCRIBED}})
    assert Catalog.model_validate({"models": [], "httpProviders": {DESCRIBED["name"]: DESCRIBED}})
