"""A webhook receiver on loopback, for the tests and `make demo`: it records every delivery and
answers what it is told to (fail the first N, always fail, 410 Gone, redirect)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


# Given the number of deliveries so far (this one included), the status to answer and extra headers.
Responder = Callable[[int], tuple[int, dict[str, str]]]


def always(status: int) -> Responder:
    return lambda _: (status, {})


def failing_first(failures: int, status: int = 503) -> Responder:
    return lambda count: (status, {}) if count <= failures else (200, {})


# Given the number of deliveries so far (this one included), the seconds to wait before answering.
Pause = Callable[[int], float]


def _no_pause(count: int) -> float:
    return 0.0


class _ReceiverServer(ThreadingHTTPServer):
    # Deliveries arrive many at once under load (the soak): they queue rather than being refused.
    request_queue_size = 256
    daemon_threads = True


@dataclass
class WebhookReceiver:
    responder: Responder = field(default_factory=lambda: always(200))
    received: list[Received] = field(default_factory=list)
    # A receiver slower than a sender waits (the chaos harness's slow receiver).
    pause: Pause = field(default_factory=lambda: _no_pause)
    # Bytes of body in every answer: a huge answer, which a sender must not read whole.
    answer_bytes: int = 0
    # The port to listen on; 0 takes a free one, kept, so a receiver stopped starts again at its URL
    # (a receiver down for a while).
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None or self.port, "start the receiver first, or give it a port"
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
                        )
                    )
                    status, headers = receiver.responder(len(receiver.received))
                    pause = receiver.pause(len(receiver.received))
                time.sleep(pause)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(receiver.answer_bytes))
                self.end_headers()
                self._send_body(receiver.answer_bytes)

            def _send_body(self, size: int) -> None:
                if not size:
                    return
                chunk = b"x" * min(size, 1 << 16)
                # A sender that read the status and hung up is what a huge answer is for.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    for start in range(0, size, len(chunk)):
                        self.wfile.write(chunk[: size - start])

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _ReceiverServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.received)} deliveries, expected {count}")

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
