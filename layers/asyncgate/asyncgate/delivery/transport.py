"""POST a webhook without following redirects and without letting the URL reach inside the network.

The host is resolved once; every address it resolves to must be public (no private, loopback,
link-local, multicast, reserved or metadata address, IPv4-mapped IPv6 included), and the connection
goes to the address that was checked, with the name kept for TLS (SNI and certificate) and the Host
header: a DNS answer that changes between the check and the connection (rebinding) cannot matter.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3

from asyncgate.domain.webhook_url import InvalidWebhookUrl, check_webhook_url, is_public, parse_ip

# Success is a 2xx within 10 s, the whole exchange included.
DELIVERY_TIMEOUT = urllib3.Timeout(total=10.0, connect=5.0)
MAX_ERROR_TEXT = 200


class UnsafeDestination(InvalidWebhookUrl):
    """The URL's host resolves to an address asyncgate must not connect to."""


@dataclass(frozen=True)
class AttemptOutcome:
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def resolve_checked(host: str, port: int, *, allow_loopback: bool) -> str:
    """The address to connect to, after checking every address the host resolves to."""
    literal = parse_ip(host)
    candidates = (
        [literal]
        if literal is not None
        else [
            ipaddress.ip_address(str(info[4][0]).split("%")[0])
            for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        ]
    )
    if not candidates:
        raise UnsafeDestination(f"{host} does not resolve")
    for address in candidates:
        if not (is_public(address) or (allow_loopback and address.is_loopback)):
            raise UnsafeDestination(f"{host} resolves to a non-public address")
    return str(candidates[0])


def url_host(url: str) -> str:
    return (urlsplit(url).hostname or "").rstrip(".")


def open_checked(
    url: str, *, allow_loopback: bool, timeout: urllib3.Timeout
) -> tuple[urllib3.HTTPConnectionPool, str, str]:
    """A one-connection pool to where `url` may be reached, with the request target and Host header.
    The URL is checked (InvalidWebhookUrl), then every address its host resolves to (UnsafeDestination;
    OSError when it does not resolve); the pool connects to the address checked (never a second lookup
    that could answer otherwise), TLS verified against the URL's host name."""
    check_webhook_url(url, allow_loopback_http=allow_loopback)
    parts = urlsplit(url)
    host = url_host(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = resolve_checked(host, port, allow_loopback=allow_loopback)
    pool: urllib3.HTTPConnectionPool
    if https:
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            retries=False,
            timeout=timeout,
            maxsize=1,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, retries=False, timeout=timeout, maxsize=1)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return pool, target, host if parts.port is None else f"{host}:{port}"


def post_webhook(
    url: str, body: bytes, headers: dict[str, str], *, allow_loopback_http: bool
) -> AttemptOutcome:
    """One delivery attempt. Never raises for what the receiver does; a refused URL raises
    InvalidWebhookUrl (its check failed before any connection)."""
    try:
        pool, target, host_header = open_checked(
            url, allow_loopback=allow_loopback_http, timeout=DELIVERY_TIMEOUT
        )
    except OSError as error:
        message = f"cannot resolve {url_host(url)}: {error.strerror or error}"
        return AttemptOutcome(None, message[:MAX_ERROR_TEXT])
    sent = {
        **headers,
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": "asyncgate-webhooks/1",
    }
    try:
        with pool:
            response = pool.urlopen(
                "POST", target, body=body, headers=sent, redirect=False, retries=False, preload_content=True
            )
    except urllib3.exceptions.HTTPError as error:
        return AttemptOutcome(None, f"{type(error).__name__}: {error}"[:MAX_ERROR_TEXT])
    if 300 <= response.status < 400:
        return AttemptOutcome(response.status, "redirects are not followed")
    return AttemptOutcome(
        response.status, None if 200 <= response.status < 300 else f"HTTP {response.status}"
    )
