"""The results store's pure parts: keys, content types, data: URLs, what is logged of a URL."""

from __future__ import annotations

import pytest

from asyncgate.domain.execution import OutputRef
from asyncgate.store.results import NoResults, _data_url, _Refused, _valid_content_type, object_key, redacted


def test_keys_are_per_output_and_stable() -> None:
    key = object_key("acme", "e-1", 0, "https://cdn.example/a.mp4?token=1", "video/mp4")
    assert key.startswith("results/acme/e-1/0-")
    assert key.endswith(".mp4")
    assert key == object_key("acme", "e-1", 0, "https://cdn.example/a.mp4?token=2", "video/mp4"), (
        "a renewed token is the same output"
    )
    assert key != object_key("acme", "e-1", 0, "https://cdn.example/b.mp4", "video/mp4")
    assert key != object_key("acme", "e-1", 1, "https://cdn.example/a.mp4", "video/mp4"), "per place too"
    unknown = object_key("acme", "e-1", 1, "https://x.example/f", "application/octet-stream")
    assert "." not in unknown.rsplit("/", 1)[1], "no extension for an unknown type"
    assert object_key("acme", "e-1", 2, "https://x.example/t", "text/plain; charset=utf-8").endswith(".txt")


def test_urls_are_logged_without_their_query_or_credentials() -> None:
    assert redacted("https://user:pw@cdn.example/a.png?X-Amz-Signature=s#f") == "https://cdn.example/a.png"
    assert redacted("data:image/png;base64,AAAA") == "data:image/png;base64,..."


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("video/mp4", "video/mp4"),
        (" text/plain; charset=utf-8 ", "text/plain; charset=utf-8"),
        ('text/plain; charset="utf-8"', 'text/plain; charset="utf-8"'),
        ("text/html\r\nX-Injected: 1", None),
        ("nonsense", None),
        ("", None),
        (None, None),
    ],
)
def test_content_types_are_checked(value: str | None, valid: str | None) -> None:
    assert _valid_content_type(value) == valid


def test_data_urls_are_decoded() -> None:
    assert _data_url("data:text/plain;base64,aGk=", 100) == (b"hi", "text/plain")
    assert _data_url("data:,a%20b", 100) == (b"a b", None)
    assert _data_url("data:application/json;charset=utf-8,%7B%7D", 100) == (
        b"{}",
        "application/json;charset=utf-8",
    )
    with pytest.raises(_Refused, match="larger"):
        _data_url("data:text/plain;base64," + "A" * 400, 100)
    with pytest.raises(_Refused, match="malformed"):
        _data_url("data:text/plain", 100)


def test_without_a_bucket_nothing_is_copied() -> None:
    output = OutputRef(url="https://cdn.example/a.png", content_type="image/png")
    store = NoResults()
    assert store.copy("e-1", "acme", 0, output) is output
    assert store.url_for(output) is None
