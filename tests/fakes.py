"""A scripted loopback HTTP server: the fake API of client tests and the fake providers of adapter tests.

Answers are scripted per (method, path); a script's last answer repeats, and every request is kept.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from asyncgate.providers.base import CallbackRejected, CallbackRequest, PollResult, Provider, ProviderJob


def _parsed(raw: bytes) -> Any:
    """A request body: JSON when it is JSON, else the bytes as they came."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@dataclass
class Answer:
    status: int = 200
    # JSON-able; bytes go out as they are (a proxy's error page, say).
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: Any
    at: float  # time.monotonic() on arrival


class FakeApi:
    """A loopback HTTP server with scripted answers per (method, path); a script's last answer repeats."""

    def __init__(self) -> None:
        self.scripts: dict[tuple[str, str], list[Answer]] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # A short poll interval: shutdown() waits up to one interval, at every test's teardown.
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.scripts[(method, path)] = list(answers)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, seen: Seen) -> Answer:
        with self._lock:
            self.seen.append(seen)
            script = self.scripts.get((seen.method, seen.path))
            if not script:
                return Answer(
                    404, {"error": {"code": "NOT_FOUND", "message": f"no route {seen.method} {seen.path}"}}
                )
            return script.pop(0) if len(script) > 1 else script[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = api._next(
                    Seen(
                        method=self.command,
                        path=url.path,
                        query=dict(parse_qsl(url.query)),
                        headers={name.lower(): value for name, value in self.headers.items()},
                        body=_parsed(raw),
                        at=time.monotonic(),
                    )
                )
                if isinstance(answer.body, bytes):
                    payload, content_type = answer.body, "text/html"
                else:
                    payload = b"" if answer.body is None else json.dumps(answer.body).encode()
                    content_type = "application/json"
                self.send_response(answer.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET
            do_PUT = do_GET
            do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: pytest shows the assertions, not an access log."""

        return Handler

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def poll_until(
    provider: Provider, job_id: str, done: Callable[[PollResult], bool], timeout: float = 3.0
) -> PollResult:
    """Poll a (real-time) provider job until `done` holds, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        polled = provider.poll(job_id)
        if done(polled):
            return polled
        assert time.monotonic() < deadline, f"gave up waiting; last poll: {polled}"
        time.sleep(0.02)


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait (bounded) for `condition` to hold: something another thread does, such as a callback."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


class PollingProvider:
    """A provider fake for the port: takes no callbacks, and every call fails the test unless a subclass
    answers it."""

    name = "fake"
    accepts_callbacks = False

    def submit(
        self,
        *,
        execution_id: str,
        provider_model: str,
        input: dict[str, Any],
        callback_url: str | None = None,
    ) -> ProviderJob:
        raise AssertionError("submit not expected")

    def poll(self, job_ref: str) -> PollResult:
        raise AssertionError("poll not expected")

    def cancel(self, job_ref: str) -> None:
        raise AssertionError("cancel not expected")

    def verify_callback(self, request: CallbackRequest, *, job_ref: str, now: datetime) -> None:
        raise CallbackRejected(f"{self.name} takes no callbacks")
