"""Provider adapters by name, built once per container (and again once a key read from SSM or Secrets
Manager may have rotated).

An adapter's module (and its HTTP stack) is imported the first time that provider is used, so the
functions that never call a provider (status, list, models, cancel) do not pay for it at cold start.
Every real provider's module offers `build(api_key, base_url) -> Provider`; a provider the catalog
describes (`httpProviders`) is the declarative adapter built from that description: configuration, not
code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from importlib import import_module
from typing import Any, TypeVar

from asyncgate.domain.catalog import load_catalog
from asyncgate.observability import logger
from asyncgate.providers.base import (
    CallbackRejected,
    CallbackRequest,
    PollResult,
    Provider,
    ProviderError,
    ProviderJob,
    ProviderRejected,
    ProviderUnavailable,
)
from asyncgate.providers.connections import CONNECTIONS, KEY_CACHE_SECONDS, Connection
from asyncgate.settings import get_settings

Answer = TypeVar("Answer")


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


def provider_for(name: str) -> Provider:
    """What the services call for `name`: every call goes to the current adapter, and a failure that is
    not one of the port's own errors becomes one (never a crashed tick, never a retried submit)."""
    return GuardedProvider(name)


class GuardedProvider:
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def accepts_callbacks(self) -> bool:
        try:
            return _adapter(self.name).accepts_callbacks
        except Exception:
            # Not buildable now (no key, a bad description): its submit fails and says why.
            return False

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,
    ) -> ProviderJob:
        # Whatever went wrong, the provider may have the job: a failed submit is final, not retried.
        return self._call(
            "submit",
            lambda adapter: adapter.submit(
                execution_id=execution_id,
                provider_model=provider_model,
                input=input,
                callback_url=callback_url,
            ),
            unexpected=ProviderRejected,
        )

    def verify_callback(self, request: CallbackRequest, *, job_ref: str, now: datetime) -> None:
        try:
            _adapter(self.name).verify_callback(request, job_ref=job_ref, now=now)
        except CallbackRejected:
            raise
        except Exception as error:
            # Whatever failed (a signing key that could not be fetched, an adapter's bug), the callback
            # is not accepted; the provider retries it, and the safety-net poll follows the job anyway.
            logger.exception("callback verification failed unexpectedly", extra={"provider": self.name})
            raise CallbackRejected(f"{self.name} callback could not be verified") from error

    def poll(self, job_ref: str) -> PollResult:
        return self._call("poll", lambda adapter: adapter.poll(job_ref), unexpected=ProviderUnavailable)

    def cancel(self, job_ref: str) -> None:
        self._call("cancel", lambda adapter: adapter.cancel(job_ref), unexpected=ProviderRejected)

    def _call(
        self, call: str, action: Callable[[Provider], Answer], *, unexpected: type[ProviderError]
    ) -> Answer:
        try:
            return action(_adapter(self.name))
        except ProviderError:
            raise
        except Exception as error:
            # A key that could not be read, a provider removed from the catalog, an adapter's bug.
            logger.exception("provider call failed unexpectedly", extra={"provider": self.name, "call": call})
            raise unexpected(f"{self.name} {call} failed: {type(error).__name__}") from None


# Built adapters, each with the monotonic time until which it may be reused: for ever when its key is in
# the environment (it cannot change in a running container), a key cache's lifetime when the key is read
# from SSM or Secrets Manager (so a rotated key is picked up without a deploy).
_adapters: dict[str, tuple[Provider, float]] = {}


_monotonic = time.monotonic


def _adapter(name: str) -> Provider:
    now = _monotonic()
    cached = _adapters.get(name)
    if cached is not None and cached[1] > now:
        return cached[0]
    adapter, lifetime = _build(name)
    _adapters[name] = (adapter, now + lifetime)
    return adapter


def forget_providers() -> None:
    """Drop built adapters, as a new container would start (tests that change the environment)."""
    _adapters.clear()


def _build(name: str) -> tuple[Provider, float]:
    if name == "sim":
        sim: Provider = import_module("asyncgate.providers.sim").SimProvider(get_settings().sim_provider_url)
        return sim, math.inf
    found = connection(name)
    if found is None:
        raise UnknownProvider(name)
    key = found.api_key()
    if found.key_variable is not None and not key:
        raise ProviderNotConfigured(name, found.key_variable)
    lifetime = KEY_CACHE_SECONDS if found.key_from_parameter() else math.inf
    if name in CONNECTIONS:
        adapter: Provider = import_module(f"asyncgate.providers.{name}").build(key, found.base_url())
        return adapter, lifetime
    described: Provider = import_module("asyncgate.providers.declarative").build_declarative(
        _described(name), key, found.base_url()
    )
    return described, lifetime
