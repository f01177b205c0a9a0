"""A typed, synchronous client for asyncgate's public API (v1)."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from pydantic import ValidationError

from asyncgate_client.models import (
    Account,
    CancelAnswer,
    Execution,
    ExecutionPage,
    Model,
    ModelList,
    Status,
    SubmitAccepted,
    WebhookEndpoint,
    WebhookEndpointList,
    WebhookSecret,
    WireModel,
)

DEFAULT_BASE_URL = "http://127.0.0.1:3000"
DEFAULT_API_KEY = "dev-key"
# The longest long poll the contract allows (`waitSeconds` 0-20).
LONG_POLL_SECONDS = 20
# Answers from a proxy or load balancer in front of the API: the request may never have reached it.
_RETRY_STATUSES = frozenset({502, 503, 504})
# The contract always sets Retry-After on a non-terminal answer; without one, still no tight loop.
_DEFAULT_POLL_GAP = 1.0

M = TypeVar("M", bound=WireModel)


class ApiError(Exception):
    """Every non-2xx answer, and a 2xx answer whose body is not what the contract promises.

    `code` is the envelope's `error.code`; when the body is not the contract's envelope (a proxy's error
    page, say) it is `HTTP_<status>`, and `INVALID_RESPONSE` for a 2xx body that does not parse.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details if details is not None else {}
        # requests' headers are case-insensitive: `error.headers["retry-after"]` works.
        self.headers: Mapping[str, str] = headers if headers is not None else {}

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            details = error.get("details")
            return cls(
                response.status_code,
                error["code"],
                str(error.get("message", "")),
                details if isinstance(details, dict) else {},
                response.headers,
            )
        text = " ".join(response.text.split())[:200]
        return cls(
            response.status_code,
            f"HTTP_{response.status_code}",
            text or response.reason or "no body",
            {},
            response.headers,
        )


class TransportError(ConnectionError):
    """The API could not be reached (refused, unresolvable, timed out), also after the client's retries.

    A subclass of the builtin ConnectionError, not of ApiError: there was no answer to describe.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class Client:
    """asyncgate's public API over HTTP.

    Safe requests (every GET, and submit, which always carries an Idempotency-Key) are retried up to
    `max_retries` times on connection errors, timeouts, 502/503/504, and a 409 IDEMPOTENCY_KEY_IN_USE
    (an earlier try of the same submit still in flight), with exponential backoff from `backoff`
    seconds, or after the answer's Retry-After when it has one. Cancel and the webhook endpoint writes
    are sent once: repeating them is not safe.

    `clock` (monotonic seconds) and `sleep` time the waits between requests; a test passes its own.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str = DEFAULT_API_KEY,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        max_retries: int = 3,
        backoff: float = 0.5,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._clock = clock or time.monotonic
        self._sleep = sleep or time.sleep
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._headers = {"X-API-Key": api_key, "Accept": "application/json"}

    def close(self) -> None:
        """Close the HTTP session, unless the caller passed it in (then it is theirs to close)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def submit(
        self,
        model: str,
        input: Mapping[str, Any],
        *,
        webhook_url: str | None = None,
        webhook_events: list[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> SubmitAccepted:
        """Submit a job; `webhook_events` defaults (server-side) to the three terminal events."""
        body: dict[str, Any] = {"model": model, "input": dict(input)}
        if webhook_url is not None:
            body["webhook"] = {"url": webhook_url}
            if webhook_events is not None:
                body["webhook"]["events"] = webhook_events
        elif webhook_events is not None:
            raise ValueError("webhook_events needs webhook_url (tenant-wide endpoints: create_webhook)")
        if metadata is not None:
            body["metadata"] = dict(metadata)
        # The same key on every attempt: a retried submit the server already took is replayed, not doubled.
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        response = self._request(
            "POST", "/v1/executions", json=body, headers={"Idempotency-Key": key}, retry=True
        )
        return _parse(SubmitAccepted, response)

    def get(self, execution_id: str, *, wait_seconds: int | None = None) -> Execution:
        """The execution; with `wait_seconds` (0-20) the server holds the answer until it changes."""
        return self._get_execution(execution_id, wait_seconds)[0]

    def wait(
        self,
        execution_id: str,
        *,
        timeout: float | None = None,
        on_change: Callable[[Execution], None] | None = None,
    ) -> Execution:
        """Long-poll until the execution is terminal and return it.

        `on_change` gets the first state seen and every later change of status or progress. Raises
        TimeoutError when `timeout` seconds pass first.
        """
        deadline = None if timeout is None else self._clock() + timeout
        seen: tuple[Status, float | None] | None = None
        while True:
            remaining = None if deadline is None else deadline - self._clock()
            wait_seconds = (
                LONG_POLL_SECONDS if remaining is None else max(0, min(LONG_POLL_SECONDS, int(remaining)))
            )
            asked_at = self._clock()
            execution, retry_after = self._get_execution(execution_id, wait_seconds)
            if (execution.status, execution.progress) != seen:
                seen = (execution.status, execution.progress)
                if on_change is not None:
                    on_change(execution)
            if execution.status.terminal:
                return execution
            now = self._clock()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"execution {execution_id} is still {execution.status} after {timeout} s")
            # Retry-After is the least gap between two polls: an answer that came back at once (a change,
            # or a server that did not hold it) is not followed by another right away.
            gap = (retry_after if retry_after is not None else _DEFAULT_POLL_GAP) - (now - asked_at)
            if deadline is not None:
                gap = min(gap, deadline - now)
            if gap > 0:
                self._sleep(gap)

    def cancel(self, execution_id: str) -> CancelAnswer:
        response = self._request("POST", _execution_path(execution_id) + "/cancel")
        return _parse(CancelAnswer, response)

    def models(self) -> list[Model]:
        return _parse(ModelList, self._request("GET", "/v1/models", retry=True)).items

    def account(self) -> Account:
        return _parse(Account, self._request("GET", "/v1/account", retry=True))

    def webhooks(self) -> list[WebhookEndpoint]:
        """The tenant's webhook endpoints (without their secrets)."""
        return _parse(WebhookEndpointList, self._request("GET", "/v1/webhooks", retry=True)).items

    def create_webhook(
        self, url: str, *, events: list[str] | None = None, description: str | None = None
    ) -> WebhookEndpoint:
        """Create an endpoint; its `secret` is in this answer only."""
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = events
        if description is not None:
            body["description"] = description
        return _parse(WebhookEndpoint, self._request("POST", "/v1/webhooks", json=body))

    def delete_webhook(self, id: str) -> None:
        self._request("DELETE", "/v1/webhooks/" + quote(id, safe=""))

    def webhook_secret(self) -> str:
        """The tenant's secret that signs deliveries to per-execution webhook URLs."""
        return _parse(WebhookSecret, self._request("GET", "/v1/webhooks/secret", retry=True)).secret

    def iter_executions(
        self, *, status: Status | str | None = None, model: str | None = None, page_size: int = 100
    ) -> Iterator[Execution]:
        """Every execution of the caller, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list(status=status, model=model, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # Defined after every method annotated with the builtin `list`, which this name shadows in the class.
    def list(
        self,
        *,
        status: Status | str | None = None,
        model: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> ExecutionPage:
        """One page of the caller's executions, newest first."""
        query = {"status": status, "model": model, "limit": limit, "cursor": cursor}
        params = {name: str(value) for name, value in query.items() if value is not None}
        return _parse(ExecutionPage, self._request("GET", "/v1/executions", params=params, retry=True))

    def _get_execution(self, execution_id: str, wait_seconds: int | None) -> tuple[Execution, float | None]:
        params = None if wait_seconds is None else {"waitSeconds": str(wait_seconds)}
        # A long poll holds the answer up to wait_seconds: the read timeout must outlast the hold.
        timeout = self.timeout + (wait_seconds or 0)
        response = self._request(
            "GET", _execution_path(execution_id), params=params, retry=True, timeout=timeout
        )
        return _parse(Execution, response), _retry_after(response.headers)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = False,
        timeout: float | None = None,
    ) -> requests.Response:
        url = self.base_url + path
        retries = self.max_retries if retry else 0
        attempt = 0
        while True:
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    headers={**self._headers, **(headers or {})},
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= retries:
                    raise TransportError(url, _reason(exc)) from exc
            else:
                if not _worth_retrying(response) or attempt >= retries:
                    if not 200 <= response.status_code < 300:
                        raise ApiError.from_response(response)
                    return response
                # The server's own hint, when it gives one, over our backoff.
                hinted = _retry_after(response.headers)
                if hinted is not None:
                    self._sleep(min(hinted, 60.0))
                    attempt += 1
                    continue
            # Jitter keeps many clients that failed together from retrying together.
            self._sleep(self.backoff * 2**attempt * random.uniform(0.75, 1.25))  # noqa: S311
            attempt += 1


def _worth_retrying(response: requests.Response) -> bool:
    """A gateway hiccup, or an earlier try of this very request (same Idempotency-Key) still in flight."""
    if response.status_code in _RETRY_STATUSES:
        return True
    if response.status_code != 409:
        return False
    try:
        return bool(response.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_USE")
    except (ValueError, KeyError, TypeError):
        return False


def _parse(model: type[M], response: requests.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(
            response.status_code,
            "INVALID_RESPONSE",
            f"the answer is not a {model.__name__}: {where}: {first['msg']}",
            {},
            response.headers,
        ) from exc


def _execution_path(execution_id: str) -> str:
    return "/v1/executions/" + quote(execution_id, safe="")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (the contract's form); None when absent or unreadable."""
    try:
        seconds = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _reason(exc: BaseException) -> str:
    """The innermost OS-level reason ("Connection refused"), not requests' nested reprs."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    reason = type(exc).__name__
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and isinstance(cause.strerror, str):
            reason = cause.strerror
        cause = cause.__cause__ or cause.__context__
    return reason
