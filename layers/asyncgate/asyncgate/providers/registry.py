"""Provider adapters by name, built once per container.

An adapter's module (and its HTTP stack) is imported the first time that provider is used, so the
functions that never call a provider (status, list, models, cancel) do not pay for it at cold start.
Every real provider's module offers `build(api_key, base_url) -> Provider`; a provider the catalog
describes (`httpProviders`) is the declarative adapter built from that description: configuration, not
code.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any

from asyncgate.domain.catalog import load_catalog
from asyncgate.providers.base import Provider
from asyncgate.providers.connections import CONNECTIONS, Connection
from asyncgate.settings import get_settings


class UnknownProvider(LookupError):
    pass


class ProviderNotConfigured(LookupError):
    """The provider's API key is not configured in this deployment."""

    def __init__(self, provider: str, key_variable: str | None) -> None:
        super().__init__(f"provider {provider!r} is not configured: set {key_variable}")
        self.key_variable = key_variable


def _described(provider: str) -> Any:
    """The catalog's description of a declarative provider (its DeclarativeSpec), or None."""
    raw = load_catalog(get_settings().catalog_file).http_providers.get(provider)
    if raw is None:
        return None
    return import_module("asyncgate.providers.declarative").DeclarativeSpec.model_validate(raw)


def connection(provider: str) -> Connection | None:
    """Where a provider lives and its key comes from; None for the simulated one."""
    if provider in CONNECTIONS:
        return CONNECTIONS[provider]
    spec = _described(provider)
    if spec is None:
        return None
    return Connection(provider, spec.key_variable, spec.default_url or "")


def is_configured(provider: str) -> bool:
    """Whether the provider can be called here: one that takes a key needs it (the sim needs none)."""
    found = connection(provider)
    return found is None or found.configured()


def check_configured(provider: str) -> None:
    """Raises ProviderNotConfigured for a provider without its key."""
    found = connection(provider)
    if found is not None and not found.configured():
        raise ProviderNotConfigured(provider, found.key_variable)


@cache
def provider_for(name: str) -> Provider:
    if name == "sim":
        sim: Provider = import_module("asyncgate.providers.sim").SimProvider(get_settings().sim_provider_url)
        return sim
    found = connection(name)
    if found is None:
        raise UnknownProvider(name)
    key = found.api_key()
    if found.key_variable is not None and not key:
        raise ProviderNotConfigured(name, found.key_variable)
    spec = _described(name)
    if spec is not None:
        described: Provider = import_module("asyncgate.providers.declarative").build_declarative(
            spec, key, found.base_url()
        )
        return described
    adapter: Provider = import_module(f"asyncgate.providers.{name}").build(key, found.base_url())
    return adapter
