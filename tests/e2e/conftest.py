"""The local stack as users run it: `asyncgate dev` in a subprocess, reached over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3.session
import pytest

from asyncgate_dev.devprocess import DevProcess, free_port

# Small enough that SQS redrive (visibility timeout x maxReceiveCount) takes seconds, not an hour.
TIME_SCALE = 0.005
POLLED_TIME_SCALE = 0.02
SAFETY_NET_SECONDS = 6000
AUTH_CACHE_SECONDS = 1.0
ACME_WEBHOOK_SECRET = "whsec_YWNtZS1lMmUtc2lnbmluZy1zZWNyZXQh"
TENANTS = [
    {"tenant": "acme", "apiKey": "acme-key", "webhookSecret": ACME_WEBHOOK_SECRET},
    {"tenant": "globex", "apiKey": "globex-key"},
    {"tenant": "acme", "apiKey": "acme-reader", "scopes": ["execution:read"]},
    # For the exact queue limit and credit checks: a small limit, and credits for exactly 30 sim-videos.
    {"tenant": "limited", "apiKey": "limited-key", "queueLimit": 50},
    {"tenant": "thrifty", "apiKey": "thrifty-key", "credits": 300},
    {"tenant": "racer", "apiKey": "racer-key"},
]


@dataclass
class DevStack:
    dev: DevProcess
    url: str

    def aws(self, service: str) -> Any:
        session: Any = boto3.session.Session(region_name="us-east-1")
        return session.client(service, endpoint_url=self.dev.aws_endpoint)


def _running_stack(tmp: Path, time_scale: float, env: dict[str, str]) -> Iterator[DevStack]:
    tenants = tmp / "tenants.json"
    tenants.write_text(json.dumps(TENANTS))
    dev = DevProcess.start(
        tmp / "dev.log",
        "--port", str(free_port()), "--time-scale", str(time_scale), "--tenants", str(tenants),
        env=env,
    )  # fmt: skip
    try:
        yield DevStack(dev=dev, url=dev.wait_ready())
    finally:
        dev.stop()


@pytest.fixture(scope="session")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # The sweeper's grace is real time (it must outlast a slow function); short here to test it.
    # The key cache too (30 s in AWS): a revoked key must be refused within it (test_admin).
    # The safety net long (30 s at this scale): a job that ends in time here ended by its callback.
    env = {
        "SWEEP_GRACE_SECONDS": "3",
        "AUTH_CACHE_SECONDS": str(AUTH_CACHE_SECONDS),
        "CALLBACK_SAFETY_NET_SECONDS": str(SAFETY_NET_SECONDS),
    }
    yield from _running_stack(tmp_path_factory.mktemp("devstack"), TIME_SCALE, env)


@pytest.fixture(scope="session")
def polled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """A stack for the tick chain's own tests: jobs followed by polling alone (no callback re-arms a
    tick), and each tick's outcome in its log (DEBUG). Its time scale keeps the poll queue's
    visibility timeout (720 s) at 15 s (only a tick that runs longer is delivered twice), and the
    sweeper's grace outlasts the 1 s SQS hops by a wide margin."""
    env = {
        "PROVIDER_CALLBACKS": "off",
        "SWEEP_GRACE_SECONDS": "6",
        "ASYNCGATE_LOG_LEVEL": "DEBUG",
    }
    yield from _running_stack(tmp_path_factory.mktemp("polledstack"), POLLED_TIME_SCALE, env)
