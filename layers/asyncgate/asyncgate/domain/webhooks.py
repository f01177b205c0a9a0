"""Tenant webhook endpoints and signing secrets as the domain knows them (Standard Webhooks secrets)."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from asyncgate.domain.execution import EventType

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
# Standard Webhooks: a secret is 24 to 64 random bytes, written `whsec_` + standard base64.
SECRET_BYTES = 24
SECRET_MIN_BYTES, SECRET_MAX_BYTES = 24, 64
ENDPOINT_ID_PREFIX = "wh_"
# After a rotation the old secret still signs (beside the new one) this long, so receivers can switch over.
ROTATION_OVERLAP = timedelta(hours=24)
_ENDPOINT_ID = re.compile(r"wh_[0-9a-f]{24}")


class WebhookEndpoint(BaseModel):
    """A tenant-wide endpoint: every execution event of a subscribed type goes to its URL."""

    model_config = ConfigDict(frozen=True)

    endpoint_id: str
    tenant: str
    url: str
    events: tuple[EventType, ...]
    description: str | None
    secret: str
    created_at: datetime
    disabled: bool = False
    # The secret replaced by the last rotation, and until when it still signs deliveries.
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None

    def receives(self, event_type: EventType) -> bool:
        return not self.disabled and event_type in self.events

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery at `now` is signed with: the current one, and the previous one during
        the overlap after a rotation (Standard Webhooks allows several signatures in one header)."""
        expires = self.previous_secret_expires_at
        if self.previous_secret is None or expires is None or now >= expires:
            return [self.secret]
        return [self.secret, self.previous_secret]


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def new_endpoint_id() -> str:
    return ENDPOINT_ID_PREFIX + secrets.token_hex(12)


def is_endpoint_id(text: str) -> bool:
    return _ENDPOINT_ID.fullmatch(text) is not None


def check_webhook_secret(secret: str) -> str:
    """The secret if it is `whsec_` + standard base64 of 24-64 bytes; raises ValueError saying why not.

    Strict on purpose: the reference `standardwebhooks` package decodes leniently (it drops characters
    outside the standard alphabet, so a URL-safe secret would silently sign with a different key)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a webhook secret is {SECRET_PREFIX!r} + standard base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise ValueError(f"a webhook secret holds {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes")
    return secret
