"""Provider adapters by name, built once per container."""

from __future__ import annotations

from functools import cache

from asyncgate.providers.base import Provider
from asyncgate.providers.sim import SimProvider
from asyncgate.settings import get_settings


class UnknownProvider(LookupError):
    pass


@cache
def provider_for(name: str) -> Provider:
    if name == "sim":
        return SimProvider(get_settings().sim_provider_url)
    raise UnknownProvider(name)
