"""Provider adapters by name, built once per container.

An adapter's module (and its HTTP stack) is imported the first time that provider is used, so the
functions that never call a provider (status, list, models, cancel) do not pay for it at cold start.
Every real provider's module offers `build(api_key, base_url) -> Provider`.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from asyncgate.providers.base import Provider
from asyncgate.providers.connections import CONNECTIONS
from asyncgate.settings import get_settings


class UnknownProvider(LookupError):
    pass


class ProviderNotConfigured(LookupError):
    """The provider's API key is not configured in this deployment."""

    def __init__(self, provider: str, key_variable: str) -> None:
        super().__init__(f"provider {provider!r} is not configured: set {key_variable}")
        self.key_variable = key_variable


def is_configured(provider: str) -> bool:
    """Whether the provider can be called here: a real one needs its key (the simulated one none)."""
    connection = CONNECTIONS.get(provider)
    return connection is None or connection.configured()


def check_configured(provider: str) -> None:
    """Raises ProviderNotConfigured for a real provider without a key."""
    if not is_configured(provider):
        raise ProviderNotConfigured(provider, CONNECTIONS[provider].key_variable)


@cache
def provider_for(name: str) -> Provider:
    if name == "sim":
        sim: Provider = import_module("asyncgate.providers.sim").SimProvider(get_settings().sim_provider_url)
        return sim
    connection = CONNECTIONS.get(name)
    if connection is None:
        raise UnknownProvider(name)
    key = connection.api_key()
    if not key:
        raise ProviderNotConfigured(name, connection.key_variable)
    adapter: Provider = import_module(f"asyncgate.providers.{name}").build(key, connection.base_url())
    return adapter
