"""Provider adapters by name, built once per container.

An adapter's module (and its HTTP stack) is imported the first time that provider is used, so the
functions that never call a provider (status, list, models, cancel) do not pay for it at cold start.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import import_module

from asyncgate.providers.base import Provider
from asyncgate.settings import Settings, get_settings


class UnknownProvider(LookupError):
    pass


def _sim(settings: Settings) -> Provider:
    adapter: Provider = import_module("asyncgate.providers.sim").SimProvider(settings.sim_provider_url)
    return adapter


_FACTORIES: dict[str, Callable[[Settings], Provider]] = {"sim": _sim}


@cache
def provider_for(name: str) -> Provider:
    factory = _FACTORIES.get(name)
    if factory is None:
        raise UnknownProvider(name)
    return factory(get_settings())
