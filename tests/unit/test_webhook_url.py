"""Webhook URLs: https to public hosts only."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from asyncgate.delivery.transport import UnsafeDestination, resolve_checked
from asyncgate.domain.webhook_url import InvalidWebhookUrl, check_webhook_url


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://hooks.example.co.uk:8443/a?b=c",
        "https://93.184.215.14/hook",
        "https://[2606:4700::1111]/hook",
    ],
)
def test_public_https_urls_are_accepted(url: str) -> None:
    assert check_webhook_url(url, allow_loopback_http=False) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "ftp://example.com/hook",
        "https://",
        "not a url",
        "https://user:pw@example.com/",
        "https://localhost/hook",
        "https://127.0.0.1/hook",
        "https://2130706433/hook",
        "https://0177.0.0.1/hook",
        "https://127.1/hook",
        "https://10.0.0.8/hook",
        "https://172.16.3.4/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fd00::1]/hook",
        "https://[fe80::1]/hook",
        "https://224.0.0.1/hook",
        "https://0.0.0.0/hook",
        "https://metadata.google.internal/computeMetadata",
        "https://printer.local/hook",
        "https://intranet/hook",
        "https://example.com:0/hook",
        "https://example.com:99999/hook",
    ],
)
def test_private_or_plain_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl):
        check_webhook_url(url, allow_loopback_http=False)


def test_the_local_stack_allows_loopback_http_only() -> None:
    assert check_webhook_url("http://127.0.0.1:8080/h", allow_loopback_http=True)
    assert check_webhook_url("http://localhost:9000/h", allow_loopback_http=True)
    with pytest.raises(InvalidWebhookUrl):
        check_webhook_url("http://10.0.0.1/h", allow_loopback_http=True)
    with pytest.raises(InvalidWebhookUrl):
        check_webhook_url("http://example.com/h", allow_loopback_http=True)


# IPv6 spellings of IPv4 addresses: a NAT64 translator or a tunnel delivers them to the IPv4 host.
EMBEDDING_PRIVATE = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254, the metadata service
    "64:ff9b::a00:8",  # NAT64 of 10.0.0.8
    "64:ff9b:1::808:808",  # local-use NAT64: the operator's own translator, whatever it embeds
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:a00:1::f7f7:f7f7",  # Teredo, server 10.0.0.1, client 8.8.8.8
    "2001:0:808:808::3f57:fef7",  # Teredo, server 8.8.8.8, client 192.168.1.8 (obfuscated)
]
EMBEDDING_PUBLIC = [
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:808:808::f7f7:f7f7",  # Teredo, server and client 8.8.8.8
]


@pytest.mark.parametrize("address", EMBEDDING_PRIVATE)
def test_ipv6_forms_embedding_a_private_ipv4_address_are_refused(address: str) -> None:
    with pytest.raises(InvalidWebhookUrl):
        check_webhook_url(f"https://[{address}]/hook", allow_loopback_http=False)


@pytest.mark.parametrize("address", EMBEDDING_PUBLIC)
def test_ipv6_forms_embedding_public_ipv4_addresses_are_accepted(address: str) -> None:
    url = f"https://[{address}]/hook"
    assert check_webhook_url(url, allow_loopback_http=False) == url


def _resolving_to(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    def resolve(*_: Any, **__: Any) -> list[Any]:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, 443, 0, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@pytest.mark.parametrize("address", EMBEDDING_PRIVATE)
def test_a_name_resolving_to_an_embedded_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    _resolving_to(monkeypatch, address)
    with pytest.raises(UnsafeDestination):
        resolve_checked("hooks.example.com", 443, allow_loopback=False)
    with pytest.raises(UnsafeDestination):
        resolve_checked("hooks.example.com", 443, allow_loopback=True)


@pytest.mark.parametrize("address", EMBEDDING_PUBLIC)
def test_a_name_resolving_to_an_embedded_public_address_is_connected_to(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    _resolving_to(monkeypatch, address)
    assert resolve_checked("hooks.example.com", 443, allow_loopback=False) == address
