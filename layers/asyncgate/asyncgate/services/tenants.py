"""Tenants, their keys and their accounts: what an operator does (the `asyncgate admin` commands, the
local stack's seeding) and what a tenant may read of its own account (`GET /v1/account`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from asyncgate.domain.accounts import DEFAULT_QUEUE_LIMIT, Account, LedgerEntry, is_tenant_id
from asyncgate.domain.catalog import Number
from asyncgate.store.accounts import AccountStore, TenantNotFound
from asyncgate.store.keys import ApiKeyInfo, ApiKeyStore, Principal, Scope, new_api_key
from asyncgate.store.webhooks import WebhookStore


class TenantStores(Protocol):
    """What these operations use: the table's tenant-side stores and a clock. A service's `Deps` is
    one; the admin CLI, which has no queue or state machine to name, builds just this."""

    @property
    def accounts(self) -> AccountStore: ...
    @property
    def api_keys(self) -> ApiKeyStore: ...
    @property
    def webhooks(self) -> WebhookStore: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...


@dataclass(frozen=True)
class IssuedKey:
    # Shown once, when issued: only its hash is stored.
    api_key: str
    info: ApiKeyInfo


def create_tenant(
    deps: TenantStores,
    tenant: str,
    *,
    queue_limit: int = DEFAULT_QUEUE_LIMIT,
    credits: Number = 0,
    webhook_secret: str | None = None,
) -> bool:
    """Open a tenant's account (and its webhook signing secret); False if the tenant already exists,
    in which case nothing about it changes."""
    if not is_tenant_id(tenant):
        raise ValueError(f"tenant id {tenant!r}: use 1-63 of a-z, 0-9, '-' and '_', starting alphanumeric")
    if queue_limit < 0 or credits < 0:
        raise ValueError("queue limit and credits cannot be negative")
    created = deps.accounts.create(tenant, queue_limit=queue_limit, credits=credits, now=deps.clock())
    if created and webhook_secret is not None:
        deps.webhooks.put_secret(tenant, webhook_secret)
    elif created:
        deps.webhooks.get_or_create_secret(tenant)
    return created


def issue_key(
    deps: TenantStores,
    tenant: str,
    scopes: frozenset[Scope],
    *,
    api_key: str | None = None,
    name: str | None = None,
) -> IssuedKey:
    """A new key for an existing tenant (`api_key` chooses it, for seeding known dev keys)."""
    require_account(deps, tenant)
    if not scopes:
        raise ValueError("a key needs at least one scope")
    key = api_key or new_api_key()
    return IssuedKey(api_key=key, info=deps.api_keys.put(key, tenant, scopes, name=name))


def list_keys(deps: TenantStores, tenant: str) -> list[ApiKeyInfo]:
    require_account(deps, tenant)
    return deps.api_keys.list(tenant)


def revoke_key(deps: TenantStores, tenant: str, key_id: str) -> bool:
    """Revoke one of the tenant's keys; False if it has none by that id. Warm containers may keep
    accepting it for up to the auth cache's lifetime (AUTH_CACHE_SECONDS, 30 s by default)."""
    require_account(deps, tenant)
    return deps.api_keys.revoke(tenant, key_id)


def require_account(deps: TenantStores, tenant: str) -> Account:
    account = deps.accounts.get(tenant)
    if account is None:
        raise TenantNotFound(tenant)
    return account


def account_for(deps: TenantStores, principal: Principal) -> Account:
    """The caller's account. A key whose tenant has no account sees an empty one (it can submit
    nothing: there are no credits)."""
    return deps.accounts.get(principal.tenant) or Account(tenant=principal.tenant, queue_limit=0)


def add_credits(deps: TenantStores, tenant: str, amount: Number, *, note: str | None = None) -> Account:
    if amount == 0:
        raise ValueError("amount must not be zero")
    deps.accounts.grant(tenant, amount, note=note, now=deps.clock())
    return require_account(deps, tenant)


def set_queue_limit(deps: TenantStores, tenant: str, limit: int) -> Account:
    if limit < 0:
        raise ValueError("queue limit cannot be negative")
    deps.accounts.set_queue_limit(tenant, limit, now=deps.clock())
    return require_account(deps, tenant)


def ledger(deps: TenantStores, tenant: str, *, limit: int | None = None) -> list[LedgerEntry]:
    require_account(deps, tenant)
    return deps.accounts.ledger(tenant, limit=limit)
