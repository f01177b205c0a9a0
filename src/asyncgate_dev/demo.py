"""`make demo`: a local stack, one sim-video job followed to the end with the CLI's progress bar, and
its webhook received on loopback and verified with the tenant's secret."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from asyncgate_client import Client, verify_webhook
from asyncgate_dev.devprocess import ASYNCGATE, DevProcess, free_port
from asyncgate_dev.receiver import WebhookReceiver


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, WebhookReceiver() as receiver:
        dev = DevProcess.start(Path(tmp) / "dev.log", "--port", str(free_port()))
        try:
            url = dev.wait_ready()
            print(
                f"local stack ready at {url}; a 6 s sim-video job with 3 outputs, webhook to {receiver.url}\n"
            )
            job = '{"prompt": "a red fox", "sim": {"durationSeconds": 6, "outputs": 3}}'
            code = subprocess.call(  # noqa: S603 - our own console script
                [str(ASYNCGATE), "--base-url", url, "submit", "sim-video", "--input", job,
                 "--webhook", receiver.url, "--wait"]
            )  # fmt: skip
            [delivery] = receiver.wait_for(1, timeout=30)
            event = verify_webhook(delivery.headers, delivery.body, Client(url).webhook_secret())
            print(f"\nwebhook {delivery.headers['webhook-id']} verified with the tenant's secret:")
            data = event["data"]
            summary = {"type": event["type"], "executionId": data["executionId"], "status": data["status"]}
            print(json.dumps(summary))
            return code
        finally:
            dev.stop()


if __name__ == "__main__":
    sys.exit(main())
