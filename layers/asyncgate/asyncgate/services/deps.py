"""Everything a service needs from the outside world, built once per container and injectable in tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

from asyncgate import aws
from asyncgate.delivery.tasks import DeliveryRetries, WebhookBodies
from asyncgate.domain.catalog import Catalog, ModelSpec, load_catalog
from asyncgate.domain.clock import utcnow
from asyncgate.errors import UnknownModel
from asyncgate.providers.base import Provider
from asyncgate.providers.registry import provider_for
from asyncgate.scheduling import PollScheduler
from asyncgate.secrets import secret_value
from asyncgate.settings import Settings, get_settings
from asyncgate.store.accounts import AccountStore
from asyncgate.store.executions import ExecutionStore
from asyncgate.store.handoffs import HandoffStore
from asyncgate.store.idempotency import IdempotencyStore
from asyncgate.store.keys import ApiKeyStore
from asyncgate.store.results import NoResults, Results, ResultStore
from asyncgate.store.webhooks import WebhookStore


@dataclass
class Deps:
    settings: Settings
    executions: ExecutionStore
    accounts: AccountStore
    idempotency: IdempotencyStore
    api_keys: ApiKeyStore
    webhooks: WebhookStore
    delivery_retries: DeliveryRetries
    handoffs: HandoffStore
    scheduler: PollScheduler
    catalog: Catalog
    providers: Callable[[str], Provider]
    # The results bucket outputs are copied into; NoResults (outputs stay at the provider) when none.
    results: Results = field(default_factory=NoResults)
    # The key of every callback token; None when callbacks are off (every job is then polled).
    callback_key: Callable[[], bytes | None] = lambda: None
    clock: Callable[[], datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.settings.retention_days)

    def scaled(self, seconds: float) -> timedelta:
        """A scheduled wait, shrunk by the local stack's time scale (1.0 in AWS)."""
        return timedelta(seconds=seconds * self.settings.time_scale)

    def spec(self, model: str) -> ModelSpec:
        spec = self.catalog.get(model)
        if spec is None:
            raise UnknownModel(f"model {model!r} is not in the catalog", details={"model": model})
        return spec


def callback_key_reader(settings: Settings) -> Callable[[], bytes | None]:
    """Reads the callback key where callbacks are on: from its secret, cached like every secret (so a
    rotation reaches warm containers; tokens made under the old key then fail, and polling follows
    those jobs)."""
    name = settings.callback_secret_arn
    if not settings.callbacks_enabled or not name:
        return lambda: None
    return lambda: secret_value(name).encode()


def results_store(settings: Settings) -> Results:
    """The results bucket where one is configured; else outputs stay where the provider put them."""
    if not settings.results_bucket:
        return NoResults()
    return ResultStore(
        aws.s3(),
        settings.results_bucket,
        max_bytes=settings.result_max_bytes,
        url_seconds=settings.result_url_seconds,
        # The local stack's simulated provider serves its outputs on loopback, as its receivers listen.
        allow_loopback=settings.allow_loopback_webhooks,
    )


@cache
def default_deps() -> Deps:
    settings = get_settings()
    return Deps(
        settings=settings,
        executions=ExecutionStore(aws.dynamodb(), settings.table_name),
        accounts=AccountStore(aws.dynamodb(), settings.table_name),
        idempotency=IdempotencyStore(aws.dynamodb(), settings.table_name),
        api_keys=ApiKeyStore(aws.dynamodb(), settings.table_name),
        webhooks=WebhookStore(aws.dynamodb(), settings.table_name),
        handoffs=HandoffStore(aws.dynamodb(), settings.table_name),
        delivery_retries=DeliveryRetries(
            aws.stepfunctions(),
            settings.webhook_state_machine_arn,
            WebhookBodies(aws.s3(), settings.results_bucket) if settings.results_bucket else None,
        ),
        scheduler=PollScheduler(aws.sqs(), settings.poll_queue_url),
        catalog=load_catalog(settings.catalog_file),
        providers=provider_for,
        results=results_store(settings),
        callback_key=callback_key_reader(settings),
    )
