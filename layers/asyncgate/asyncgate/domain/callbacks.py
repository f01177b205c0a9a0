"""Provider callback URLs and their tokens: pure functions, no I/O.

Every execution's callback URL carries a token, an HMAC of the provider's name and the execution id
under the stack's callback key. Nobody without the key can make one, so a callback that passes is one
the gateway handed out; the provider's own signature, where it signs, is checked on top of that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from urllib.parse import quote, urlencode

CALLBACK_PATH = "/v1/callbacks"
# A callback URL's token, wherever a provider echoes the URL back (Kie.ai's `param.callBackUrl`,
# Replicate's `webhook`): plain, with JSON-escaped slashes, or percent-encoded inside another URL.
_ECHOED_TOKEN = re.compile(
    r"(callbacks[^\s\"']*?(?:[?&]|%3F|%26)token(?:=|%3D))[A-Za-z0-9_-]{16,}", re.IGNORECASE
)
REDACTED = "redacted"
TOKEN_VERSION = "v1"  # noqa: S105 - a format version, not a secret


def callback_token(key: bytes, provider: str, execution_id: str) -> str:
    # JSON keeps the parts apart: ("a/b", "c") and ("a", "b/c") never sign the same message.
    message = json.dumps(["asyncgate-callback", TOKEN_VERSION, provider, execution_id]).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_matches(key: bytes, provider: str, execution_id: str, token: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters, and a forged token may have them.
    expected = callback_token(key, provider, execution_id).encode()
    return hmac.compare_digest(expected, token.encode("utf-8", errors="replace"))


def callback_url(base_url: str, key: bytes, provider: str, execution_id: str) -> str:
    """Where the provider calls back about one execution: `{base}/v1/callbacks/{provider}/{id}?token=`."""
    path = f"{CALLBACK_PATH}/{quote(provider, safe='')}/{quote(execution_id, safe='')}"
    query = urlencode({"token": callback_token(key, provider, execution_id)})
    return f"{base_url.rstrip('/')}{path}?{query}"


def redact_callback_tokens(text: str) -> str:
    """`text` with every callback token in it replaced: what a provider echoes is stored in the
    execution, shown to its tenant and signed into webhooks, and a token must stay the provider's."""
    return _ECHOED_TOKEN.sub(lambda match: match.group(1) + REDACTED, text)
