"""Which webhook URLs asyncgate will POST to: https to a public address only (no SSRF into a VPC,
the metadata service or loopback). Pure checks of the URL itself; resolving the name and pinning the
checked address for the connection belong to the delivery adapter."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
# Names that only ever resolve inside a network (or to this host).
PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})
# IPv6 prefixes whose last 32 bits are an IPv4 address (RFC 6052 NAT64, RFC 4291 IPv4-compatible), and
# NAT64's local-use prefix (RFC 8215), which translates into the operator's own network.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class InvalidWebhookUrl(ValueError):
    pass


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host spells, including the legacy IPv4 forms a resolver accepts (decimal
    `2130706433`, octal `0177.0.0.1`, short `127.1`); None for a name."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, which a translator or tunnel delivers to: IPv4-mapped
    `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`,
    Teredo `2001:0:<server>::<client>` (both ends); none for a native IPv6 address."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.teredo is not None:
        return list(address.teredo)
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address in NAT64_WELL_KNOWN or address in IPV4_COMPATIBLE:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether asyncgate may connect to `address`. An IPv6 form that carries IPv4 addresses is as public
    as they are (Python calls `64:ff9b::127.0.0.1` global); the local-use NAT64 prefix never is: its
    translator is the operator's own, and RFC 8215 lets it embed the IPv4 address at any RFC 6052 length."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in NAT64_LOCAL_USE:
            return False
        embedded = embedded_ipv4(address)
        if embedded:
            return all(is_public(inner) for inner in embedded)
    return address.is_global and not address.is_multicast


def check_webhook_url(url: str, *, allow_loopback_http: bool) -> str:
    """The URL if asyncgate may deliver to it; raises InvalidWebhookUrl saying why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidWebhookUrl(f"not a valid URL: {error}") from None
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise InvalidWebhookUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl("credentials in the URL are not allowed")
    if port == 0:
        raise InvalidWebhookUrl("port 0 is not a valid port")
    loopback = host in {"localhost", "127.0.0.1", "::1"}
    if allow_loopback_http and loopback and parts.scheme in {"http", "https"}:
        return url
    if parts.scheme != "https":
        raise InvalidWebhookUrl("webhook URLs must use https")
    address = parse_ip(host)
    if address is not None:
        if not is_public(address):
            raise InvalidWebhookUrl("the URL points at a private, loopback, link-local or reserved address")
        return url
    if host in METADATA_NAMES or host == "localhost" or host.endswith(PRIVATE_SUFFIXES) or "." not in host:
        raise InvalidWebhookUrl("the URL's host is not a public name")
    return url
