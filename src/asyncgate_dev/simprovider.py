"""The simulated provider: a real HTTP service on loopback that plays a long-running generation API.

The local stack, the integration tests and the benchmarks talk to it exactly as the gateway talks to a
real provider (through `asyncgate.providers.sim`). Jobs live in memory and run on the wall clock (their
durations are never scaled). Start it with `python -m asyncgate_dev.simprovider [--port N]`, or in-process
with `SimProviderServer`.

HTTP API (JSON bodies; every error answers `{"error": {"message": "..."}}`):

`POST /v1/jobs` with `{"model": "sim-video", "input": {...}, "reference": "<client reference, optional>",
"callbackUrl": "<http(s) URL, optional>"}`
    Models: `sim-video` (outputs `video/mp4`) and `sim-image` (outputs `image/png`). `input.sim` (optional)
    shapes the job; unknown fields are refused so that a typo does not pass silently:

    - `durationSeconds`: number, 0 < d <= 3600, default 3: wall-clock seconds the job runs.
    - `outcome`: `succeed` (default), `fail` (ends `failed` with an error and no outputs) or
      `incomplete` (ends `succeeded` with `outputs: []`).
    - `outputs`: integer 1..16, default 1. On `succeed`, output i (1-based) is ready at duration*i/n.
    - `submitStatus`: integer 400..599. The submit answers that status with an error body and creates
      no job.
    - `pollErrors`: integer >= 0, default 0. The first N GETs of the job answer 503.

    201 `{"id": "sim_<hex>", "status": "running", "createdAt": ...}`; 400 when the body or `input.sim`
    is malformed, the model unknown, or `callbackUrl` not an http(s) URL.

    With `callbackUrl`, the server POSTs `{"id", "status"}` (JSON) there once when the job ends:
    `succeeded` or `failed` at its duration, `cancelled` when a cancel stops it. One attempt, a 5 s
    timeout, errors ignored, from a background thread; unsigned. `SimProviderServer(drop_callbacks=True)`
    records the callbacks without sending them (lost callbacks).

`GET /v1/jobs/{id}`
    200 with the job: `{"id", "model", "reference", "status", "progress", "outputs", "createdAt",
    "completedAt"}`, plus `"error": {"message"}` when `failed`. `status` is `running`, `succeeded`,
    `failed` or `cancelled`; `progress` (0-100) grows linearly over the duration and is 100 once the job
    ran to its end; `outputs` is `[{"url", "contentType"}]` with absolute urls on this server;
    `completedAt` is null while running. 404 for an unknown id; 503 for the first `pollErrors` GETs.

`POST /v1/jobs/{id}/cancel`
    200 with the job. A running job becomes `cancelled` at once, keeping its progress and the outputs
    finished so far (and its callback says so); a finished job is left as it is. 404 for an unknown id.

`GET /v1/jobs/{id}/outputs/{n}`
    A few fake bytes of the output's content type once output n is ready; 404 before (or never).

Timestamps are RFC 3339 UTC with milliseconds and a Z.

Faults on purpose (the chaos harness, `python -m chaos`): `SimProviderServer.faults = SimFaults(...)`
makes the server misbehave as providers do, whatever the jobs' own `input.sim` asks (the catalog's
schema of `input.sim` is product data, so these are server switches). Each request to one of the
routes named draws at most one fault: an error answer instead of the work, or the work done and then
a broken answer (a body that is not the API's JSON, an answer later than the client waits, none at
all); a cancel that finds the job already finished (it succeeded just before) answering 409; each
callback sent several times at once, and callbacks while the job still runs. `max_faults` bounds how
many are played in all, so faults stay transient as in real life.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from asyncgate.domain.clock import format_ts

HOST = "127.0.0.1"
CONTENT_TYPES = {"sim-video": "video/mp4", "sim-image": "image/png"}
# Just enough of each format's header for a client sniffing the bytes.
FAKE_CONTENT = {
    "video/mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
    "image/png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
}
OUTCOMES = ("succeed", "fail", "incomplete")
SIM_FIELDS = frozenset({"durationSeconds", "outcome", "outputs", "submitStatus", "pollErrors"})
MAX_DURATION_SECONDS = 3600.0
MAX_OUTPUTS = 16
MAX_BODY_BYTES = 1 << 20
FAILURE_MESSAGE = "simulated failure: the model crashed"
CALLBACK_TIMEOUT_SECONDS = 5.0
# The routes a fault can be played on.
ROUTES = frozenset({"submit", "poll", "cancel", "output"})
# A 200 answer that no client of the API can read.
GARBAGE = b"<html><body>502 Bad Gateway</body></html>"


@dataclass(frozen=True)
class SimFaults:
    """How the server misbehaves on purpose. Rates are per request to one of `routes`; at most one
    fault is drawn per request, in the order error, garbage, slow, hang."""

    routes: frozenset[str] = ROUTES
    # Answer `error_status` instead of doing the work (a submit then creates no job).
    error_rate: float = 0.0
    error_status: int = 503
    # Do the work, answer 200 with GARBAGE (a submit's job then runs, its id never known).
    garbage_rate: float = 0.0
    # Do the work, answer only after `slow_seconds` (past the client's read timeout: a timeout).
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    # Do the work, never answer: the connection is held `hang_seconds` (or until the server stops),
    # then closed.
    hang_rate: float = 0.0
    hang_seconds: float = 60.0
    # A cancel of a running job finds it finished: it succeeded (all outputs ready, its callback sent)
    # just before, and the cancel answers 409.
    finish_on_cancel: bool = False
    # Each callback POSTed this many times at once; and this many more, status `running`, at random
    # moments while the job runs.
    callback_copies: int = 1
    early_callbacks: int = 0
    # At most this many faults (errors, garbage, slow, hang) played in all; None: no bound.
    max_faults: int | None = None
    seed: int | None = None


class SimInputError(ValueError):
    """The submit body or its `input.sim` is malformed: answered 400."""


def _is_int(value: object) -> bool:
    # JSON true/false arrive as bool, which Python counts as int.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SimSpec:
    """What `input.sim` asks of a job."""

    duration_seconds: float = 3.0
    outcome: str = "succeed"
    outputs: int = 1
    submit_status: int | None = None
    poll_errors: int = 0

    @classmethod
    def parse(cls, sim: object) -> SimSpec:
        if sim is None:
            return cls()
        if not isinstance(sim, dict):
            raise SimInputError("input.sim must be an object")
        unknown = sorted(set(sim) - SIM_FIELDS)
        if unknown:
            raise SimInputError(f"unknown input.sim fields: {', '.join(unknown)}")
        duration = sim.get("durationSeconds", 3.0)
        # The comparison also refuses NaN and infinity, which Python's JSON parser lets through.
        if not (_is_int(duration) or isinstance(duration, float)) or not 0 < duration <= MAX_DURATION_SECONDS:
            raise SimInputError(
                f"input.sim.durationSeconds must be a number in (0, {MAX_DURATION_SECONDS:g}]"
            )
        outcome = sim.get("outcome", "succeed")
        if outcome not in OUTCOMES:
            raise SimInputError(f"input.sim.outcome must be one of {', '.join(OUTCOMES)}")
        outputs = sim.get("outputs", 1)
        if not _is_int(outputs) or not 1 <= outputs <= MAX_OUTPUTS:
            raise SimInputError(f"input.sim.outputs must be an integer in [1, {MAX_OUTPUTS}]")
        submit_status = sim.get("submitStatus")
        if submit_status is not None and (not _is_int(submit_status) or not 400 <= submit_status <= 599):
            raise SimInputError("input.sim.submitStatus must be an HTTP error status (400-599)")
        poll_errors = sim.get("pollErrors", 0)
        if not _is_int(poll_errors) or poll_errors < 0:
            raise SimInputError("input.sim.pollErrors must be an integer >= 0")
        return cls(float(duration), outcome, outputs, submit_status, poll_errors)


@dataclass
class _Job:
    id: str
    model: str
    reference: str | None
    spec: SimSpec
    created_at: datetime
    started: float  # time.monotonic(), so wall-clock jumps do not bend durations
    gets: int = 0
    cancelled_after: float | None = None  # seconds into the run
    cancelled_at: datetime | None = None
    # Seconds into the run when it finished early (SimFaults.finish_on_cancel); None: at its duration.
    finished_after: float | None = None

    @property
    def duration(self) -> float:
        return self.finished_after if self.finished_after is not None else self.spec.duration_seconds

    def elapsed(self, now: float) -> float:
        return self.cancelled_after if self.cancelled_after is not None else now - self.started

    def status(self, now: float) -> str:
        if self.cancelled_after is not None:
            return "cancelled"
        if self.elapsed(now) < self.duration:
            return "running"
        return self.end_status

    @property
    def end_status(self) -> str:
        """How the job ends when it runs to its duration."""
        return "failed" if self.spec.outcome == "fail" else "succeeded"

    def ready_outputs(self, now: float) -> int:
        if self.spec.outcome != "succeed":
            return 0
        fraction = min(self.elapsed(now) / self.duration, 1.0)
        return int(self.spec.outputs * fraction)

    def view(self, now: float, base_url: str) -> dict[str, Any]:
        status = self.status(now)
        duration = self.duration
        progress = min(self.elapsed(now) / duration, 1.0) * 100.0
        completed_at: datetime | None = self.cancelled_at
        if status in ("succeeded", "failed"):
            completed_at = self.created_at + timedelta(seconds=duration)
        content_type = CONTENT_TYPES[self.model]
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "reference": self.reference,
            "status": status,
            "progress": round(progress, 1),
            "outputs": [
                {"url": f"{base_url}/v1/jobs/{self.id}/outputs/{n}", "contentType": content_type}
                for n in range(1, self.ready_outputs(now) + 1)
            ],
            "createdAt": format_ts(self.created_at),
            "completedAt": format_ts(completed_at) if completed_at else None,
        }
        if status == "failed":
            body["error"] = {"message": FAILURE_MESSAGE}
        return body


class _Answer(Exception):
    """Ends a request with this status and error message."""

    def __init__(self, status: HTTPStatus | int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _JobBook:
    """Every job of one server, behind one lock: handler threads read and cancel concurrently, and each
    job with a callback URL has a timer that calls it back when the job ends."""

    def __init__(self, drop_callbacks: bool) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        # Each job's pending callback: its timer and the URL it calls.
        self._callbacks: dict[str, tuple[threading.Timer, str]] = {}
        # Callbacks while jobs run (SimFaults.early_callbacks), cancelled when the server stops.
        self._early: list[threading.Timer] = []
        self.drop_callbacks = drop_callbacks
        self.callbacks_sent = 0
        self.callbacks_dropped = 0
        self.faults = SimFaults()
        self._rng = random.Random()  # noqa: S311 - fault draws, not secrets
        # Faults played so far, by kind (error, garbage, slow, hang, finished, callback); and how many
        # answers the faults in force have broken (bounded by their max_faults).
        self.played: Counter[str] = Counter()
        self._broken = 0

    def set_faults(self, faults: SimFaults) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)  # noqa: S311 - fault draws, not secrets
            self._broken = 0

    def played_so_far(self) -> Counter[str]:
        with self._lock:
            return Counter(self.played)

    def draw_fault(self, route: str | None) -> str | None:
        """The fault this request to `route` plays, if any (counted)."""
        with self._lock:
            faults = self.faults
            spent = faults.max_faults is not None and self._broken >= faults.max_faults
            if route not in faults.routes or spent:
                return None
            draw = self._rng.random()
            for kind, rate in (
                ("error", faults.error_rate),
                ("garbage", faults.garbage_rate),
                ("slow", faults.slow_rate),
                ("hang", faults.hang_rate),
            ):
                if draw < rate:
                    self.played[kind] += 1
                    self._broken += 1
                    return kind
                draw -= rate
            return None

    def count(self) -> int:
        with self._lock:
            return len(self._jobs)

    def ids_for(self, reference: str) -> list[str]:
        with self._lock:
            return [job.id for job in self._jobs.values() if job.reference == reference]

    def gets(self, job_id: str) -> int:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.gets if job else 0

    def status(self, job_id: str) -> str:
        with self._lock:
            return self._job(job_id).status(time.monotonic())

    def create(
        self, model: str, reference: str | None, spec: SimSpec, base_url: str, callback_url: str | None
    ) -> dict[str, Any]:
        job = _Job(
            id=f"sim_{secrets.token_hex(12)}",
            model=model,
            reference=reference,
            spec=spec,
            created_at=datetime.now(UTC),
            started=time.monotonic(),
        )
        with self._lock:
            self._jobs[job.id] = job
            if callback_url is not None:
                self._schedule(job.id, callback_url, spec.duration_seconds, self._ended)
                for _ in range(self.faults.early_callbacks):
                    self._early_callback(job.id, callback_url, self._rng.uniform(0, spec.duration_seconds))
            return job.view(job.started, base_url)

    def get(self, job_id: str, base_url: str) -> dict[str, Any]:
        with self._lock:
            job = self._job(job_id)
            job.gets += 1
            if job.gets <= job.spec.poll_errors:
                raise _Answer(HTTPStatus.SERVICE_UNAVAILABLE, "temporarily unavailable")
            return job.view(time.monotonic(), base_url)

    def cancel(self, job_id: str, base_url: str) -> dict[str, Any]:
        with self._lock:
            job = self._job(job_id)
            now = time.monotonic()
            if job.status(now) == "running" and self.faults.finish_on_cancel:
                self._finish_now(job, now)
                raise _Answer(HTTPStatus.CONFLICT, f"job {job_id} already finished")
            if job.status(now) == "running":
                job.cancelled_after = now - job.started
                job.cancelled_at = datetime.now(UTC)
                pending = self._callbacks.pop(job_id, None)
                if pending is not None:
                    # The end-of-run callback gives way to an immediate `cancelled` one.
                    timer, url = pending
                    timer.cancel()
                    self._schedule(job_id, url, 0.0, self._cancelled)
            return job.view(now, base_url)

    def output(self, job_id: str, number: int) -> str:
        """The content type of output `number` when it is ready."""
        with self._lock:
            job = self._job(job_id)
            if not 1 <= number <= job.ready_outputs(time.monotonic()):
                raise _Answer(HTTPStatus.NOT_FOUND, f"output {number} of job {job_id} is not ready")
            return CONTENT_TYPES[job.model]

    def stop_callbacks(self) -> None:
        """Cancel every callback not yet due (one being sent finishes on its own daemon thread)."""
        with self._lock:
            for timer in [timer for timer, _ in self._callbacks.values()] + self._early:
                timer.cancel()
            self._callbacks.clear()
            self._early.clear()

    def _finish_now(self, job: _Job, now: float) -> None:
        """The job ends at once as it would have at its duration (under the lock); its callback too."""
        job.finished_after = now - job.started
        self.played["finished"] += 1
        pending = self._callbacks.pop(job.id, None)
        if pending is not None:
            timer, url = pending
            timer.cancel()
            self._schedule(job.id, url, 0.0, self._ended)

    def _early_callback(self, job_id: str, url: str, delay: float) -> None:
        """A callback while the job runs (under the lock): a hint that comes before there is news."""
        timer = threading.Timer(delay, self._call_back, args=(url, job_id, "running"))
        timer.daemon = True
        self._early.append(timer)
        self.played["callback"] += 1
        timer.start()

    def _job(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise _Answer(HTTPStatus.NOT_FOUND, f"no job {job_id}")
        return job

    def _schedule(self, job_id: str, url: str, delay: float, fire: Callable[[str, str], None]) -> None:
        """Call `fire(job_id, url)` after `delay` seconds on a daemon thread (under the lock)."""
        timer = threading.Timer(delay, fire, args=(job_id, url))
        timer.daemon = True
        self._callbacks[job_id] = (timer, url)
        timer.start()

    def _ended(self, job_id: str, url: str) -> None:
        with self._lock:
            job = self._jobs[job_id]
            # Cancelled meanwhile (its own callback is due) or the server stopped: nothing to send.
            if job.cancelled_after is not None or self._callbacks.pop(job_id, None) is None:
                return
            status = job.end_status
        self._call_back(url, job_id, status)

    def _cancelled(self, job_id: str, url: str) -> None:
        with self._lock:
            if self._callbacks.pop(job_id, None) is None:
                return  # the server stopped meanwhile
        self._call_back(url, job_id, "cancelled")

    def _call_back(self, url: str, job_id: str, status: str) -> None:
        """One POST of `{"id", "status"}` (SimFaults.callback_copies of them at once), outside the lock;
        errors ignored (a lost callback)."""
        with self._lock:
            if self.drop_callbacks:
                self.callbacks_dropped += 1
                return
            copies = self.faults.callback_copies
            self.played["callback"] += copies - 1
        senders = [
            threading.Thread(target=self._post_callback, args=(url, job_id, status), daemon=True)
            for _ in range(copies - 1)
        ]
        for sender in senders:
            sender.start()
        self._post_callback(url, job_id, status)
        for sender in senders:
            sender.join()

    def _post_callback(self, url: str, job_id: str, status: str) -> None:
        with contextlib.suppress(requests.RequestException):
            requests.post(url, json={"id": job_id, "status": status}, timeout=CALLBACK_TIMEOUT_SECONDS)
        with self._lock:
            self.callbacks_sent += 1


class _HttpServer(ThreadingHTTPServer):
    def __init__(self, port: int, book: _JobBook) -> None:
        super().__init__((HOST, port), _Handler)
        self.book = book
        # Set when the server stops: a hanging answer (SimFaults.hang_rate) lets go then.
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (a timed-out poll, a stopped test) is routine, not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "asyncgate-sim/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the local stack's terminal belongs to the gateway."""

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        parts = [unquote(part) for part in urlsplit(self.path).path.strip("/").split("/")]
        server = self.server
        fault = server.book.draw_fault(_route(method, parts))
        faults = server.book.faults
        try:
            if fault == "error":
                raise _Answer(faults.error_status, "simulated provider error")
            status, content_type, data = self._work(method, parts)
        except _Answer as answer:
            status, content_type = answer.status, "application/json"
            data = json.dumps({"error": {"message": answer.message}}).encode()
        if fault == "garbage":
            status, content_type, data = HTTPStatus.OK, "application/json", GARBAGE
        elif fault == "slow":
            server.stopping.wait(faults.slow_seconds)
        elif fault == "hang":
            server.stopping.wait(faults.hang_seconds)
            self.close_connection = True
            return  # no answer: the connection closes with the request unanswered
        self._send(status, content_type, data)

    def _work(self, method: str, parts: list[str]) -> tuple[HTTPStatus | int, str, bytes]:
        book, base_url = self.server.book, self.server.url
        match method, parts:
            case "POST", ["v1", "jobs"]:
                return HTTPStatus.CREATED, "application/json", json.dumps(self._submit()).encode()
            case "GET", ["v1", "jobs", job_id]:
                return HTTPStatus.OK, "application/json", json.dumps(book.get(job_id, base_url)).encode()
            case "POST", ["v1", "jobs", job_id, "cancel"]:
                return HTTPStatus.OK, "application/json", json.dumps(book.cancel(job_id, base_url)).encode()
            case "GET", ["v1", "jobs", job_id, "outputs", number] if number.isdigit():
                content_type = book.output(job_id, int(number))
                return HTTPStatus.OK, content_type, FAKE_CONTENT[content_type]
            case _:
                raise _Answer(HTTPStatus.NOT_FOUND, f"no route {method} {self.path}")

    def _submit(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise _Answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as error:
            raise _Answer(HTTPStatus.BAD_REQUEST, f"body is not JSON: {error}") from error
        if not isinstance(body, dict):
            raise _Answer(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        model, job_input, reference = body.get("model"), body.get("input", {}), body.get("reference")
        callback_url = body.get("callbackUrl")
        if model not in CONTENT_TYPES:
            raise _Answer(HTTPStatus.BAD_REQUEST, f"unknown model {model!r}: use {', '.join(CONTENT_TYPES)}")
        if not isinstance(job_input, dict):
            raise _Answer(HTTPStatus.BAD_REQUEST, "input must be an object")
        if reference is not None and not isinstance(reference, str):
            raise _Answer(HTTPStatus.BAD_REQUEST, "reference must be a string")
        if callback_url is not None and not (
            isinstance(callback_url, str) and callback_url.startswith(("http://", "https://"))
        ):
            raise _Answer(HTTPStatus.BAD_REQUEST, "callbackUrl must be an http:// or https:// URL")
        try:
            spec = SimSpec.parse(job_input.get("sim"))
        except SimInputError as error:
            raise _Answer(HTTPStatus.BAD_REQUEST, str(error)) from error
        if spec.submit_status is not None:
            raise _Answer(spec.submit_status, f"simulated submit answer {spec.submit_status}")
        created = self.server.book.create(model, reference, spec, self.server.url, callback_url)
        return {key: created[key] for key in ("id", "status", "createdAt")}

    def _send(self, status: HTTPStatus | int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _route(method: str, parts: list[str]) -> str | None:
    """The name of a request's route, as SimFaults.routes names them."""
    match method, parts:
        case "POST", ["v1", "jobs"]:
            return "submit"
        case "GET", ["v1", "jobs", _]:
            return "poll"
        case "POST", ["v1", "jobs", _, "cancel"]:
            return "cancel"
        case "GET", ["v1", "jobs", _, "outputs", _]:
            return "output"
    return None


class SimProviderServer:
    """The simulated provider on 127.0.0.1, served from a background thread.

    `port=0` takes a free port; `url` tells which one once started. Use as a context manager, or call
    `start()` and `stop()`. With `drop_callbacks` (also settable later), jobs' callbacks are counted but
    never sent: lost callbacks, for tests and the bench.
    """

    def __init__(self, port: int = 0, *, drop_callbacks: bool = False) -> None:
        self._port = port
        self._book = _JobBook(drop_callbacks)
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimProviderServer:
        if self._httpd is None:
            self._httpd = _HttpServer(self._port, self._book)
            # A short poll interval lets stop() return promptly (shutdown waits for the next tick).
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="sim-provider", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._book.stop_callbacks()
        if self._httpd is None:
            return
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd, self._thread = None, None

    def __enter__(self) -> SimProviderServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the simulated provider is not running: call start() first")
        return self._httpd.url

    @property
    def drop_callbacks(self) -> bool:
        return self._book.drop_callbacks

    @drop_callbacks.setter
    def drop_callbacks(self, drop: bool) -> None:
        self._book.drop_callbacks = drop

    @property
    def faults(self) -> SimFaults:
        """The faults the server plays on purpose (none by default); set at any time."""
        return self._book.faults

    @faults.setter
    def faults(self, faults: SimFaults) -> None:
        self._book.set_faults(faults)

    @property
    def faults_played(self) -> Counter[str]:
        """Faults played so far, by kind: error, garbage, slow, hang, finished (a cancel that found the
        job finished), callback (a callback copy, or one while the job ran)."""
        return self._book.played_so_far()

    @property
    def callbacks_sent(self) -> int:
        """Callbacks POSTed so far, whatever their receivers answered (or failed to)."""
        return self._book.callbacks_sent

    @property
    def callbacks_dropped(self) -> int:
        """Callbacks due but not sent because `drop_callbacks` was set."""
        return self._book.callbacks_dropped

    @property
    def job_count(self) -> int:
        """Jobs created so far (a submit refused through `submitStatus` creates none)."""
        return self._book.count()

    def jobs_for(self, reference: str) -> list[str]:
        """The ids of the jobs submitted with this client reference (the execution id), oldest first."""
        return self._book.ids_for(reference)

    def poll_count(self, job_id: str) -> int:
        """GETs of the job so far, the 503s of `pollErrors` included; 0 for an id never issued."""
        return self._book.gets(job_id)

    def job_status(self, job_id: str) -> str:
        """The job's status now, without counting as a poll. KeyError for an unknown id."""
        try:
            return self._book.status(job_id)
        except _Answer as answer:
            raise KeyError(job_id) from answer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m asyncgate_dev.simprovider", description="Run the simulated provider on loopback."
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    with SimProviderServer(port=args.port) as server:
        # Scripts wait for this line in a log file, so it must not sit in a buffer.
        print(f"sim provider at {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
