"""The tenant's webhook endpoints and signing secret: list, create, delete, rotate, read the secret."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from asyncgate.domain.execution import EventType
from asyncgate.domain.webhook_url import InvalidWebhookUrl, check_webhook_url
from asyncgate.domain.webhooks import (
    ROTATION_OVERLAP,
    WebhookEndpoint,
    is_endpoint_id,
    new_endpoint_id,
    new_webhook_secret,
)
from asyncgate.errors import InvalidWebhookUrlError, ValidationFailed, WebhookEndpointNotFound
from asyncgate.services.deps import Deps
from asyncgate.store.keys import Principal
from asyncgate.store.webhooks import MAX_ENDPOINTS_PER_TENANT, EndpointNotFound, TooManyEndpoints


@dataclass(frozen=True)
class CreateEndpoint:
    url: str
    events: list[EventType]
    description: str | None


def checked_webhook_url(deps: Deps, url: str) -> str:
    """`url` if asyncgate may deliver to it (loopback http only where the settings allow it);
    `400 INVALID_WEBHOOK_URL` saying why not. Every webhook URL a client gives goes through here."""
    try:
        return check_webhook_url(url, allow_loopback_http=deps.settings.allow_loopback_webhooks)
    except InvalidWebhookUrl as refused:
        raise InvalidWebhookUrlError(str(refused), details={"url": url}) from None


def list_endpoints(deps: Deps, principal: Principal) -> list[WebhookEndpoint]:
    return deps.webhooks.list_for_tenant(principal.tenant)


def create_endpoint(deps: Deps, principal: Principal, command: CreateEndpoint) -> WebhookEndpoint:
    """A new endpoint with its own signing secret (the caller sees the secret only in this answer)."""
    endpoint = WebhookEndpoint(
        endpoint_id=new_endpoint_id(),
        tenant=principal.tenant,
        url=checked_webhook_url(deps, command.url),
        events=tuple(command.events),
        description=command.description,
        secret=new_webhook_secret(),
        created_at=deps.clock(),
    )
    try:
        deps.webhooks.create(endpoint)
    except TooManyEndpoints as error:
        raise ValidationFailed(
            "too many webhook endpoints",
            [
                {
                    "field": "body",
                    "message": f"a tenant has at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints; "
                    "delete one before creating another",
                }
            ],
        ) from error
    return endpoint


@contextmanager
def _own_endpoint(endpoint_id: str) -> Iterator[None]:
    """`404 NOT_FOUND` for an id that names none of the caller's endpoints. A malformed id names
    nothing (and never reaches the table as part of a key)."""
    try:
        if not is_endpoint_id(endpoint_id):
            raise EndpointNotFound(endpoint_id)
        yield
    except EndpointNotFound:
        raise WebhookEndpointNotFound(f"webhook endpoint {endpoint_id!r} not found") from None


def delete_endpoint(deps: Deps, principal: Principal, endpoint_id: str) -> None:
    with _own_endpoint(endpoint_id):
        deps.webhooks.delete(principal.tenant, endpoint_id)


def rotate_endpoint_secret(deps: Deps, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    """A new secret for the endpoint (shown only in this answer); the old one keeps signing beside it
    for ROTATION_OVERLAP, so the receiver can switch without losing a delivery."""
    with _own_endpoint(endpoint_id):
        return deps.webhooks.rotate_secret(
            principal.tenant, endpoint_id, new_webhook_secret(), deps.clock() + ROTATION_OVERLAP
        )


def signing_secret(deps: Deps, principal: Principal) -> str:
    """The tenant's secret that signs deliveries to per-execution webhook URLs, made on first use."""
    return deps.webhooks.get_or_create_secret(principal.tenant)
