"""What every HTTP provider adapter shares: one connection pool per container, bounded timeouts, no
blind retries, and one mapping of HTTP failures onto the port's errors.

- No transport retries: a re-sent submit could start (and bill) a second job; the poll schedule and
  its error budget decide when a poll is tried again.
- No redirects: requests would turn a redirected POST into a GET.
- 429 and 5xx are transient (ProviderUnavailable, with the answer's Retry-After when it gives one, so the
  poll schedule honours it); any other non-2xx is the provider's final word (ProviderRejected).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter

from asyncgate import budget
from asyncgate.providers.base import ProviderMalformed, ProviderRejected, ProviderUnavailable

Parsed = TypeVar("Parsed")
# Messages taken from a provider's answer are kept this short in errors.
MESSAGE_LIMIT = 300


class Malformed(ValueError):
    """A 2xx answer that is not what the provider's docs describe."""


# (connect, read): a little over a TCP retransmit window to connect; providers answer submit and status
# calls in well under a minute (generation itself is asynchronous).
DEFAULT_TIMEOUT = (3.05, 30.0)
# A call is not started with less than this left of its invocation's budget: it could not finish.
MIN_CALL_SECONDS = 1.0


@cache
def shared_session() -> requests.Session:
    """One connection pool per container, reused across invocations and adapters."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0, pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def retry_after_seconds(response: requests.Response) -> float | None:
    """The answer's Retry-After in seconds (delta form), or None."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class ProviderHttp:
    """One provider's HTTP API: its base URL, its auth headers, and the error mapping."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        headers: dict[str, str],
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._headers = headers
        self._session = session or shared_session()
        self._timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """Send one request to a path under the configured base URL: never to a URL a provider's answer
        names, so every call stays on the configured host. Raises ProviderUnavailable when there is no
        answer, or no time left in the invocation's budget to wait for one (then nothing is sent),
        ProviderRejected for a request that cannot be sent (a configuration fault)."""
        connect, read = self._timeout
        left = budget.seconds_left(connect + read)
        if left < MIN_CALL_SECONDS:
            raise ProviderUnavailable(f"{self.provider} not called: no time left in this invocation")
        # Each wait, and the exchange as a whole, fits in what the invocation has left.
        timeout = urllib3.Timeout(connect=min(connect, left), read=min(read, left), total=left)
        try:
            return self._session.request(
                method,
                self.base_url + path,
                json=json,
                params=params,
                headers={**self._headers, **(headers or {})},
                timeout=timeout,  # type: ignore[arg-type]  # requests takes urllib3's Timeout as it is
                allow_redirects=False,
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as error:
            raise ProviderUnavailable(f"{self.provider} unreachable: {type(error).__name__}") from error
        except requests.RequestException as error:
            # Not chained: requests' message may quote a header, and headers carry the key.
            raise ProviderRejected(f"{self.provider} request failed: {type(error).__name__}") from None

    def checked(self, response: requests.Response, call: str) -> requests.Response:
        """The response if 2xx; else the port's error for it (body kept, truncated, for diagnosis)."""
        status = response.status_code
        if 200 <= status < 300:
            return response
        message = f"{self.provider} answered HTTP {status} to {call}"
        if status == 429 or status >= 500:
            raise ProviderUnavailable(
                message, status=status, body=response.text, retry_after=retry_after_seconds(response)
            )
        raise ProviderRejected(message, status=status, body=response.text)

    def json(self, response: requests.Response, call: str) -> dict[str, Any]:
        """The 2xx answer's JSON object; ProviderRejected when it is not one (a malformed answer)."""
        self.checked(response, call)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self.malformed(response, call)
        return body

    def parsed(
        self, response: requests.Response, call: str, parse: Callable[[dict[str, Any]], Parsed]
    ) -> Parsed:
        """`parse` of the 2xx answer's JSON object; a body `parse` cannot read is malformed."""
        body = self.json(response, call)
        try:
            return parse(body)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise self.malformed(response, call) from error

    def malformed(self, response: requests.Response, call: str) -> ProviderMalformed:
        return ProviderMalformed(
            f"{self.provider} answered {call} with an unexpected body",
            status=response.status_code,
            body=response.text,
        )
