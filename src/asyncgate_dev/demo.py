"""`make demo`: the local stack, one sim-video job followed to the end with the CLI's progress bar."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from asyncgate_dev.devprocess import ASYNCGATE, DevProcess, free_port


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        dev = DevProcess.start(Path(tmp) / "dev.log", "--port", str(free_port()))
        try:
            url = dev.wait_ready()
            print(f"local stack ready at {url}; submitting a 6 s sim-video job with 3 outputs\n", flush=True)
            job = '{"prompt": "a red fox", "sim": {"durationSeconds": 6, "outputs": 3}}'
            return subprocess.call(  # noqa: S603 - our own console script
                [str(ASYNCGATE), "--base-url", url, "submit", "sim-video", "--input", job, "--wait"]
            )
        finally:
            dev.stop()


if __name__ == "__main__":
    sys.exit(main())
