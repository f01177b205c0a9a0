"""Standard Webhooks signatures, by the reference `standardwebhooks` package (no hand-rolled HMAC)."""

from __future__ import annotations

from datetime import datetime

from standardwebhooks import Webhook


def signed_headers(secret: str, message_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The three headers of one delivery attempt; `timestamp` is the attempt's own time."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body),
    }
