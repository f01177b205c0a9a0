"""POST a webhook without following redirects and without letting the URL reach inside the network.

The host is resolved once; every address it resolves to must be public (no private, loopback,
link-local, multicast, reserved or metadata address; an IPv6 address that carries an IPv4 one,
IPv4-mapped, IPv4-compatible, NAT64, 6to4 or Teredo, is judged by it), and the connection goes to the
address that was checked, with the name kept for TLS (SNI and certificate) and the Host header: a DNS
answer that changes between the check and the connection (rebinding) cannot matter.

Every step is bounded in time: the lookup runs in a thread of its own with a deadline (getaddrinfo has
no timeout and a resolver can stall), and a delivery attempt's whole exchange is cut at its deadline
(socket timeouts bound each read, not the exchange: a receiver trickling its answer a byte at a time
would otherwise hold the attempt as long as it liked).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from asyncgate.domain.webhook_url import InvalidWebhookUrl, check_webhook_url, is_public, parse_ip

# Success is a 2xx within 10 s, the whole attempt (lookup, connection, exchange) included.
DELIVERY_SECONDS = 10.0
# The longest a name lookup may take, of a delivery or of a copy's source.
RESOLVE_SECONDS = 5.0
MAX_ERROR_TEXT = 200
# How often a cut that found no socket yet (a connection under way) tries again.
_CUT_RETRY_SECONDS = 0.05

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeDestination(InvalidWebhookUrl):
    """The URL's host resolves to an address asyncgate must not connect to."""


@dataclass(frozen=True)
class AttemptOutcome:
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _lookup(host: str, port: int, seconds: float) -> list[Address]:
    """Every address `host` resolves to, or TimeoutError (an OSError) past `seconds`. The lookup runs
    in a daemon thread: one that never answers is left behind, not waited for."""
    answers: list[list[Address] | BaseException] = []
    answered = threading.Event()

    def resolve() -> None:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            answers.append([ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found])
        except BaseException as error:  # handed to the caller, who raises it
            answers.append(error)
        finally:
            answered.set()

    threading.Thread(target=resolve, name="webhook-resolve", daemon=True).start()
    if not answered.wait(seconds):
        raise TimeoutError(f"no DNS answer within {seconds:g} s")
    answer = answers[0]
    if isinstance(answer, BaseException):
        raise answer
    return answer


def resolve_checked(host: str, port: int, *, allow_loopback: bool, seconds: float = RESOLVE_SECONDS) -> str:
    """The address to connect to, after checking every address the host resolves to (OSError when it
    does not resolve in time; InvalidWebhookUrl when it never can, or must not be connected to)."""
    literal = parse_ip(host)
    if literal is None:
        try:
            host.encode("idna")
        except UnicodeError as error:  # e.g. a label over 63 characters: no resolver will ever take it
            raise InvalidWebhookUrl(f"the host is not a valid domain name ({error})") from None
    candidates = [literal] if literal is not None else _lookup(host, port, seconds)
    if not candidates:
        raise UnsafeDestination(f"{host} does not resolve")
    for address in candidates:
        if not (is_public(address) or (allow_loopback and address.is_loopback)):
            raise UnsafeDestination(f"{host} resolves to a non-public address")
    return str(candidates[0])


def url_host(url: str) -> str:
    return (urlsplit(url).hostname or "").rstrip(".")


@dataclass(frozen=True)
class CheckedTarget:
    """Where a checked URL is reached: the address checked, the name kept for TLS and Host."""

    address: str
    port: int
    host: str
    https: bool
    # The request target (path and query) and the Host header.
    path: str
    host_header: str

    def tls_options(self) -> dict[str, Any]:
        """TLS verified against the URL's host name, whatever address the connection goes to."""
        if not self.https:
            return {}
        return {
            "server_hostname": self.host,
            "assert_hostname": self.host,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": certifi.where(),
        }


def check_target(
    url: str, *, allow_loopback: bool, resolve_seconds: float = RESOLVE_SECONDS
) -> CheckedTarget:
    """The URL checked (InvalidWebhookUrl), then every address its host resolves to (UnsafeDestination;
    OSError when it does not resolve in time)."""
    check_webhook_url(url, allow_loopback_http=allow_loopback)
    parts = urlsplit(url)
    host = url_host(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    return CheckedTarget(
        address=resolve_checked(host, port, allow_loopback=allow_loopback, seconds=resolve_seconds),
        port=port,
        host=host,
        https=https,
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        host_header=host if parts.port is None else f"{host}:{port}",
    )


def open_checked(
    url: str, *, allow_loopback: bool, timeout: urllib3.Timeout
) -> tuple[urllib3.HTTPConnectionPool, str, str]:
    """A one-connection pool to where `url` may be reached (see check_target), with the request target
    and Host header; the pool connects to the address checked, never to a second lookup's answer."""
    target = check_target(url, allow_loopback=allow_loopback)
    pool_class = urllib3.HTTPSConnectionPool if target.https else urllib3.HTTPConnectionPool
    pool = pool_class(
        target.address, target.port, retries=False, timeout=timeout, maxsize=1, **target.tls_options()
    )
    return pool, target.path, target.host_header


class _Cutoff:
    """Shuts a connection's socket down at its deadline, unblocking whatever read or write waits on
    it; `fired` tells a failure caused by the cut from the receiver's own."""

    def __init__(self, connection: HTTPConnection, deadline: float) -> None:
        self._connection = connection
        self._deadline = deadline
        self._finished = threading.Event()
        self.fired = False

    def __enter__(self) -> _Cutoff:
        threading.Thread(target=self._watch, name="webhook-cutoff", daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._finished.set()

    def _watch(self) -> None:
        if self._finished.wait(max(0.0, self._deadline - time.monotonic())):
            return
        self.fired = True
        # Until the exchange gives up: the socket may not exist yet (a connection under way).
        while not self._finished.is_set():
            sock = self._connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    # The plain socket's shutdown, also under TLS: the SSL layer's own wants a handshake.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
            self._finished.wait(_CUT_RETRY_SECONDS)


def _failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_TEXT]


def post_webhook(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_loopback_http: bool,
    seconds: float = DELIVERY_SECONDS,
) -> AttemptOutcome:
    """One delivery attempt, over in `seconds` whatever the receiver or its DNS does. Never raises for
    what the receiver does; a refused URL raises InvalidWebhookUrl (its check failed before any
    connection)."""
    deadline = time.monotonic() + seconds
    try:
        target = check_target(
            url, allow_loopback=allow_loopback_http, resolve_seconds=min(RESOLVE_SECONDS, seconds)
        )
    except OSError as error:
        message = f"cannot resolve {url_host(url)}: {error.strerror or error}"
        return AttemptOutcome(None, message[:MAX_ERROR_TEXT])
    sent = {
        **headers,
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": "asyncgate-webhooks/1",
    }
    connection_class = HTTPSConnection if target.https else HTTPConnection
    connection = connection_class(
        target.address,
        target.port,
        timeout=max(deadline - time.monotonic(), 0.001),
        **target.tls_options(),
    )
    failure: BaseException | None = None
    status = 0
    try:
        with _Cutoff(connection, deadline) as cutoff:
            try:
                # Only the status matters: the answer's body is never read.
                connection.request("POST", target.path, body=body, headers=sent, preload_content=False)
                status = connection.getresponse().status
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as error:
                failure = error
    finally:
        connection.close()
    # A cut answer is no answer, even one whose status line came in time (its headers ended by the cut).
    if cutoff.fired:
        return AttemptOutcome(None, f"no answer within {seconds:g} s")
    if failure is not None:
        return AttemptOutcome(None, _failure(failure))
    if 300 <= status < 400:
        return AttemptOutcome(status, "redirects are not followed")
    return AttemptOutcome(status, None if 200 <= status < 300 else f"HTTP {status}")
