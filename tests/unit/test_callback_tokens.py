"""Callback URLs and their tokens."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from asyncgate.domain.callbacks import callback_token, callback_url, redact_callback_tokens, token_matches

KEY = b"k" * 64
EXECUTION = "0f6d3c0e-8c43-4a59-9d1e-3b8b1f2f6a10"


def test_the_url_names_provider_and_execution_and_carries_the_token() -> None:
    url = callback_url("https://api.example.com/", KEY, "replicate", EXECUTION)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "api.example.com")
    assert parts.path == f"/v1/callbacks/replicate/{EXECUTION}"
    [(name, token)] = parse_qsl(parts.query)
    assert name == "token"
    assert token_matches(KEY, "replicate", EXECUTION, token)
    # URL-safe, unpadded: nothing a provider could re-encode on the way back.
    assert len(token) == 43
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_token_is_good_for_its_own_provider_execution_and_key_only() -> None:
    token = callback_token(KEY, "fal", EXECUTION)
    assert token_matches(KEY, "fal", EXECUTION, token)
    assert not token_matches(KEY, "kie", EXECUTION, token)
    assert not token_matches(KEY, "fal", EXECUTION.replace("0", "1"), token)
    assert not token_matches(b"another key", "fal", EXECUTION, token)
    assert not token_matches(KEY, "fal", EXECUTION, token[:-1])
    assert not token_matches(KEY, "fal", EXECUTION, "")
    assert not token_matches(KEY, "fal", EXECUTION, "é" * 43)  # not ASCII: refused, not an error


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_tokens_keep_provider_and_id_apart(first: str, middle: str, last: str) -> None:
    # Splitting the same characters differently between provider and id makes another token.
    assert callback_token(KEY, first + "/" + middle, last) != callback_token(KEY, first, middle + "/" + last)
    url = callback_url("https://x.example", KEY, first + "/" + middle, last)
    assert urlsplit(url).path.count("/") == 4  # each part quoted: one path segment apiece


def test_an_echoed_callback_url_loses_its_token_and_nothing_else() -> None:
    url = callback_url("https://api.example.com", KEY, "kie", EXECUTION)
    token = callback_token(KEY, "kie", EXECUTION)
    plain = f'{{"param": {{"callBackUrl": "{url}", "prompt": "token=keep-this-one-please"}}}}'
    escaped = plain.replace("/", "\\/")  # as some JSON encoders write slashes
    encoded = "https://other.example/?next=" + url.replace("?", "%3F").replace("=", "%3D")
    for text in (plain, escaped, encoded):
        redacted = redact_callback_tokens(text)
        assert token not in redacted
        assert "redacted" in redacted
    assert "token=keep-this-one-please" in redact_callback_tokens(plain)
    assert redact_callback_tokens("no callback here") == "no callback here"
