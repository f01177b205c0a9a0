"""Verifying asyncgate's webhook deliveries (signed per the Standard Webhooks specification)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

__all__ = ["WebhookVerificationError", "verify_webhook"]


def verify_webhook(headers: Mapping[str, str], body: bytes | str, secret: str) -> dict[str, Any]:
    """Check a delivery's signature and return its event (`{"type", "timestamp", "data"}`).

    `body` must be the raw request body, byte for byte: re-serialised JSON does not verify. Raises
    WebhookVerificationError when a header is missing, the timestamp is over 5 minutes off, or no
    signature matches.
    """
    webhook = Webhook(secret)
    # Header names are case-insensitive in HTTP; frameworks hand them over in any case.
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        event = webhook.verify(body, lowered)
    except ValueError as exc:
        # A malformed signature header or a body that is not UTF-8 JSON is as untrustworthy as a wrong one.
        raise WebhookVerificationError(str(exc)) from exc
    if not isinstance(event, dict):
        raise WebhookVerificationError("the delivery is not a JSON object")
    return event
