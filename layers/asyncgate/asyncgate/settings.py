"""The environment, read once per container into a typed model."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from pydantic import BaseModel, Field

DEFAULT_CATALOG = Path(__file__).with_name("catalog.json")


class Settings(BaseModel):
    table_name: str = Field(min_length=1)
    poll_queue_url: str = Field(min_length=1)
    sim_provider_url: str = ""
    catalog_file: Path = DEFAULT_CATALOG
    retention_days: int = Field(default=7, ge=1)
    # The local stack shrinks every scheduled wait by this factor; 1.0 in AWS.
    time_scale: float = Field(default=1.0, gt=0)
    # How long a resolved API key is trusted inside one warm container before it is read again.
    auth_cache_seconds: float = Field(default=30.0, ge=0)
    # How late a tick must be before the sweeper calls it lost. Real seconds, never time-scaled: it
    # must outlast the slowest function run (a provider call included), whatever the local time scale.
    sweep_grace_seconds: float = Field(default=120.0, gt=0)
    # The local stack delivers webhooks to http://127.0.0.1 and http://localhost; AWS never does.
    allow_loopback_webhooks: bool = False
    # How long an idempotency key stays "in flight" without an answer before a retry recovers the
    # answer from the execution itself: past the submit function's own timeout (29 s), its first request
    # is surely gone. Real seconds.
    idempotency_in_flight_seconds: float = Field(default=35.0, gt=0)
    # The state machine that retries webhook deliveries whose first attempt failed.
    webhook_state_machine_arn: str = ""
    # The bucket outputs are copied into (empty: outputs stay at the provider, nothing is copied), the
    # largest output copied, and how long a presigned URL of a copied output is valid.
    results_bucket: str = ""
    result_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    result_url_seconds: int = Field(default=3600, ge=1, le=604800)
    # Provider callbacks: the secret (a Secrets Manager ARN or name) whose value keys every execution's
    # callback token; without it, or with callbacks off, every job is followed by polling alone.
    callback_secret_arn: str = ""
    callbacks_enabled: bool = True
    # Where providers reach this API, e.g. a custom domain; empty: the host the submit came in on.
    public_url: str = ""
    # With a provider calling back, the poll that still runs in case a callback is lost: at least this
    # long between polls (time-scaled like every scheduled wait).
    callback_safety_net_seconds: float = Field(default=300.0, gt=0)


@cache
def get_settings() -> Settings:
    env = os.environ
    return Settings(
        table_name=env.get("TABLE_NAME", ""),
        poll_queue_url=env.get("POLL_QUEUE_URL", ""),
        sim_provider_url=env.get("SIM_PROVIDER_URL", ""),
        catalog_file=Path(env.get("CATALOG_FILE") or DEFAULT_CATALOG),
        retention_days=int(env.get("RETENTION_DAYS") or 7),
        time_scale=float(env.get("TIME_SCALE") or 1.0),
        auth_cache_seconds=float(env.get("AUTH_CACHE_SECONDS") or 30.0),
        sweep_grace_seconds=float(env.get("SWEEP_GRACE_SECONDS") or 120.0),
        allow_loopback_webhooks=env.get("ALLOW_LOOPBACK_WEBHOOKS", "").lower() in {"1", "true"},
        idempotency_in_flight_seconds=float(env.get("IDEMPOTENCY_IN_FLIGHT_SECONDS") or 35.0),
        webhook_state_machine_arn=env.get("WEBHOOK_STATE_MACHINE_ARN", ""),
        results_bucket=env.get("RESULTS_BUCKET", ""),
        result_max_bytes=int(env.get("RESULT_MAX_BYTES") or 512 * 1024 * 1024),
        result_url_seconds=int(env.get("RESULT_URL_SECONDS") or 3600),
        callback_secret_arn=env.get("CALLBACK_SECRET_ARN", ""),
        callbacks_enabled=env.get("PROVIDER_CALLBACKS", "on").lower() != "off",
        public_url=env.get("PUBLIC_URL", "").rstrip("/"),
        callback_safety_net_seconds=float(env.get("CALLBACK_SAFETY_NET_SECONDS") or 300.0),
    )
