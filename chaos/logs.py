"""Everything the process logs or prints while the matrix runs, kept for the secrets check and written
to a file for diagnosis: the handlers' Powertools logs (JSON on stdout), the emulator's log records,
warnings and tracebacks (stderr). The report goes to the terminal the process started with."""

from __future__ import annotations

import io
import logging
import sys
import threading
from pathlib import Path
from typing import TextIO


class Capture(io.TextIOBase):
    """A text stream that keeps what is written (for scanning) and appends it to a file."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._parts: list[str] = []
        self._file = path.open("a", encoding="utf-8")
        self.path = path

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
            self._file.write(text)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def take(self) -> str:
        """What was written since the last take."""
        with self._lock:
            text, self._parts = "".join(self._parts), []
            self._file.flush()
        return text

    def writable(self) -> bool:
        return True


def capture_everything(path: Path, level: str) -> tuple[Capture, TextIO]:
    """Route stdout, stderr and every log record to a Capture; returns it and the terminal's stdout
    (for the report). Log handlers made already (Powertools binds sys.stdout when it is imported) are
    pointed at the capture too."""
    terminal = sys.stdout
    capture = Capture(path)
    streams = {id(sys.stdout), id(sys.stderr), id(sys.__stdout__), id(sys.__stderr__)}
    sys.stdout = sys.stderr = capture
    root = logging.getLogger()
    root.setLevel(level)
    handler = logging.StreamHandler(capture)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    # moto's server logs each request, botocore where it found its settings: noise, not the product's.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    redirect_stream_handlers(capture, streams)
    return capture, terminal


def redirect_stream_handlers(capture: Capture, streams: set[int] | None = None) -> None:
    """Every logger's handler that writes to the process's stdout or stderr writes to `capture`."""
    streams = streams or {id(sys.__stdout__), id(sys.__stderr__)}
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in streams:
                handler.setStream(capture)
