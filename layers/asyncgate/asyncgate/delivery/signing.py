"""Standard Webhooks signatures, by the reference `standardwebhooks` package (no hand-rolled HMAC)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from standardwebhooks import Webhook


def signed_headers(secrets: Sequence[str], message_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The three headers of one delivery attempt; `timestamp` is the attempt's own time. One signature
    per secret, space-separated (as the spec allows), so a receiver holding any one of them verifies."""
    if not secrets:
        raise ValueError("a delivery is signed with at least one secret")
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(
            Webhook(secret).sign(message_id, timestamp, body) for secret in secrets
        ),
    }
