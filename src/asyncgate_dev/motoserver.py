"""The local stack's AWS emulator for DynamoDB, DynamoDB Streams, SQS, S3 and Secrets Manager, in a
process of its own.

The handlers and the emulator each need a core: in one process they share one interpreter lock, and the
stack ran no faster than that one core (about half of its time is moto's request handling). The
emulator runs here instead, reached over loopback exactly as before (boto3's AWS_ENDPOINT_URL), with
moto's fixes of asyncgate_dev.motofix installed. Step Functions stays in the stack's process:
asyncgate_dev.stepfunctions writes each execution's outcome into moto's own execution object.

`python -m asyncgate_dev.motoserver` prints its port on a line of its own once it serves, then runs
until its standard input closes: when the stack stops it, or when the stack dies.

moto keeps every instance of its models in `instances_tracked` (for its dashboard), copies included:
every DynamoDB item copy an update makes for its stream record, every SQS message and the copy each
receive returns. A server that runs a soak of 10 000 executions held gigabytes of them, and the
garbage collector walked them all again and again; here those models keep none.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from asyncgate_dev.awsenv import use_dummy_aws_env


@dataclass
class EmulatorProcess:
    process: subprocess.Popen[str]

    @classmethod
    def spawn(cls) -> EmulatorProcess:
        """Start it; it takes a moment to import moto, which the caller may spend starting the rest."""
        process = subprocess.Popen(  # noqa: S603 - this very module, with this interpreter
            [sys.executable, "-m", "asyncgate_dev.motoserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return cls(process)

    def url(self) -> str:
        """Its endpoint, once it serves (a RuntimeError if it exits instead)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the AWS emulator's process did not start (it said {line!r})")
        return f"http://127.0.0.1:{int(line)}"

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Untracked(list[Any]):
    """An `instances_tracked` that keeps nothing."""

    def append(self, instance: Any) -> None:
        pass


def keep_no_instances() -> None:
    """moto's most numerous models, made and copied on every call, tracked no more."""
    from moto.dynamodb.models.dynamo_type import Item  # noqa: PLC0415
    from moto.sqs.models import Message  # noqa: PLC0415

    for model in (Item, Message):
        setattr(model, "instances_tracked", Untracked())  # noqa: B010 - set by moto's metaclass, untyped


def main() -> None:
    use_dummy_aws_env()
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - heavy, only in the emulator's process

    from asyncgate_dev import motofix  # noqa: PLC0415

    motofix.install()
    keep_no_instances()
    # werkzeug logs every request to stderr, which the stack's own output carries (`make dev`).
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(port, flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
