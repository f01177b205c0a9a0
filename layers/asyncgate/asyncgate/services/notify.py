"""Webhook events from state transitions: the first delivery attempts right away (those of a stream
batch together, on a bounded pool, within the invocation's time), the retries by the state machine,
every attempt signed afresh and recorded."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate.api.models import ExecutionView, WebhookEventBody
from asyncgate.delivery.signing import signed_headers
from asyncgate.delivery.tasks import EXECUTION_DESTINATION, Delivery, DeliveryTask
from asyncgate.delivery.transport import (
    DELIVERY_SECONDS,
    MAX_ERROR_TEXT,
    AttemptOutcome,
    post_webhook,
)
from asyncgate.domain.execution import EventType, Execution, WebhookAttempt, WebhookState
from asyncgate.domain.webhook_events import (
    MAX_ATTEMPTS,
    TERMINAL_EVENT_TYPES,
    events_for,
    terminal_event,
    webhook_id,
)
from asyncgate.domain.webhook_url import InvalidWebhookUrl
from asyncgate.errors import WebhookNotConfigured, WebhookNotFailed
from asyncgate.observability import logger, metrics
from asyncgate.services.deps import Deps
from asyncgate.services.executions import get_owned
from asyncgate.store.handoffs import Claim
from asyncgate.store.keys import Principal

# A tenant endpoint answering 410 Gone asks never to be called again (Standard Webhooks).
GONE = 410
# The first attempts of one stream batch share this many threads. No tenant, and no receiver (a URL's
# host and port), has more than a quarter of them at once: one tenant's slow receivers (or many
# tenants' one slow receiver) leave three quarters of the pool to everyone else.
FIRST_ATTEMPT_THREADS = 16
MAX_ATTEMPTS_AT_ONCE = {"tenant": 4, "receiver": 4}
# No first attempt starts later than this before the invocation ends: the attempt (10 s), its reads and
# writes, and handing every delivery left over to the state machine still fit.
START_RESERVE_SECONDS = DELIVERY_SECONDS + 15.0
# Kept at the very end to answer: what is still running then fails its stream record (retried).
END_RESERVE_SECONDS = 2.0
# How often a batch waiting for its attempts looks at the clock.
WAIT_SLICE_SECONDS = 0.25
# A delivery Step Functions did not take is handed off again by the sweeper this much later (time-scaled),
# at most this many a round.
PARK_SECONDS = 60.0
PARKED_PER_ROUND = 100
# Powertools' metric set is a plain dict: the pool's threads add to it one at a time.
_metrics_lock = threading.Lock()


@dataclass(frozen=True)
class Target:
    url: str
    # More than one during a rotation's overlap: each signs, so receivers on either secret verify.
    secrets: list[str]


@dataclass(frozen=True)
class StreamChange:
    """One stream record: the write's images, and the id its partial batch failure is reported by."""

    record_id: str
    old: Execution | None
    new: Execution


def event_body(deps: Deps, event_type: EventType, execution: Execution) -> str:
    # The transition's own time: the same on every attempt and every redelivery. Copied outputs'
    # presigned URLs are made now: every retry of this delivery carries them, valid for
    # ResultUrlSeconds from here (a redelivery renders the body, and so the URLs, afresh).
    return WebhookEventBody(
        type=event_type,
        timestamp=execution.updated_at,
        data=ExecutionView.of(execution, deps.results.url_for),
    ).to_json()


def deliveries_for(deps: Deps, old: Execution | None, new: Execution) -> list[Delivery]:
    """The deliveries of one write's events: one per event and destination."""
    deliveries: list[Delivery] = []
    for event_type in events_for(old, new):
        body = event_body(deps, event_type, new)
        deliveries.extend(
            _delivery(new, event_type, destination, url, body)
            for destination, url in _destinations(deps, new, event_type)
        )
    return deliveries


def notify(deps: Deps, changes: Sequence[StreamChange], *, deadline: float) -> list[str]:
    """Deliver the events of a stream batch's writes before `deadline` (time.monotonic()): every first
    attempt at once (FirstAttempts), every delivery not delivered handed to the retry state machine.
    The ids of the records to retry: from the first whose deliveries could not be listed (the stream
    retries from there, so the later ones are left to that retry), and each with a delivery that could
    not be handed over."""
    jobs: list[tuple[str, Delivery]] = []
    unlisted: list[str] = []
    for index, change in enumerate(changes):
        try:
            jobs.extend(
                (change.record_id, delivery) for delivery in deliveries_for(deps, change.old, change.new)
            )
        except Exception:
            logger.exception(
                "webhook deliveries not listed; the stream retries the record",
                extra={"execution_id": change.new.execution_id},
            )
            unlisted = [later.record_id for later in changes[index:]]
            break
    failed = FirstAttempts(
        lambda task: attempt_once(deps, task), lambda task: hand_off(deps, task), deadline=deadline
    ).run(jobs)
    return [change.record_id for change in changes if change.record_id in failed] + unlisted


def attempt_once(deps: Deps, task: DeliveryTask) -> DeliveryTask:
    """A delivery's first attempt, made once whatever runs of its stream record there are: a run that
    finds it claimed (its record is being retried) counts it as made and hands the delivery on, or leaves
    it to the sweeper when an earlier run parked it."""
    claim = deps.handoffs.claim(task.delivery.chain_name, now=deps.clock())
    if claim is Claim.FRESH:
        return attempt(deps, task)
    return task.model_copy(update={"done": claim is Claim.PARKED})


def hand_off(deps: Deps, task: DeliveryTask) -> None:
    """Start the delivery's retry chain. When Step Functions does not take it, the delivery is parked
    for the sweeper to hand off later: only when neither works does this raise (and the stream retries
    the record). A delivery handed off before any attempt (attempt 0) claims its first attempt here."""
    if task.attempt == 0:
        claim = deps.handoffs.claim(task.delivery.chain_name, now=deps.clock())
        if claim is Claim.PARKED:
            return
        if claim is Claim.SEEN:
            task = task.model_copy(update={"attempt": 1})
    prepared = deps.delivery_retries.prepare(task)
    try:
        deps.delivery_retries.start(prepared)
    except Exception:
        logger.exception(
            "webhook retry chain not started; parked for the sweeper", extra=_delivery_ids(task.delivery)
        )
        now = deps.clock()
        deps.handoffs.park(prepared, now=now, due=now + deps.scaled(PARK_SECONDS))
        _count("WebhookDeliveriesParked")


def hand_off_parked(deps: Deps) -> int:
    """Hand the parked deliveries that are due to the retry state machine (the sweeper's round); how many
    went. One that Step Functions still does not take waits another PARK_SECONDS."""
    now = deps.clock()
    started = 0
    for chain_name in deps.handoffs.due(now, limit=PARKED_PER_ROUND):
        task = deps.handoffs.parked(chain_name)
        if task is None:
            continue
        try:
            deps.delivery_retries.start(task)
        except Exception:
            logger.exception(
                "parked webhook delivery still not handed off", extra=_delivery_ids(task.delivery)
            )
            deps.handoffs.postpone(chain_name, due=now + deps.scaled(PARK_SECONDS))
            continue
        deps.handoffs.handed_off(chain_name)
        started += 1
    return started


@dataclass(frozen=True)
class _Job:
    record_id: str
    delivery: Delivery

    @property
    def keys(self) -> tuple[tuple[str, str], ...]:
        return (("tenant", self.delivery.tenant), ("receiver", urlsplit(self.delivery.url).netloc.lower()))


class FirstAttempts:
    """The first attempts of a batch's deliveries, on FIRST_ATTEMPT_THREADS threads, at most
    MAX_ATTEMPTS_AT_ONCE per tenant and per receiver, started until START_RESERVE_SECONDS before the
    deadline. A delivery not delivered (failed, or not started by then) is handed to `hand_off`: a retry
    chain, whose first attempt is at once for a delivery never attempted here (attempt 0)."""

    def __init__(
        self,
        attempt: Callable[[DeliveryTask], DeliveryTask],
        hand_off: Callable[[DeliveryTask], None],
        *,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._attempt = attempt
        self._hand_off = hand_off
        self._start_by = deadline - START_RESERVE_SECONDS
        self._end_by = deadline - END_RESERVE_SECONDS
        self._clock = clock

    def run(self, jobs: Sequence[tuple[str, Delivery]]) -> set[str]:
        """The ids of the records with a delivery neither done nor handed over (their record is retried)."""
        pending = [_Job(record_id, delivery) for record_id, delivery in jobs]
        # Each future's job, and the tenant and receiver slots it holds (none for a hand-off alone).
        running: dict[Future[bool], tuple[_Job, tuple[tuple[str, str], ...]]] = {}
        busy: Counter[tuple[str, str]] = Counter()
        failed: set[str] = set()
        pool = ThreadPoolExecutor(max_workers=FIRST_ATTEMPT_THREADS, thread_name_prefix="webhook-attempt")
        try:
            while pending and self._clock() < self._start_by:
                job = self._startable(pending, busy) if len(running) < FIRST_ATTEMPT_THREADS else None
                if job is None:
                    self._collect(running, busy, failed, until=self._start_by)
                    continue
                pending.remove(job)
                busy.update(job.keys)
                running[pool.submit(self._first_attempt, job.delivery)] = (job, job.keys)
            if pending:
                _count("WebhookAttemptsDeferred", len(pending))
            for job in pending:
                running[pool.submit(self._handed_off, DeliveryTask(delivery=job.delivery, attempt=0))] = (
                    job,
                    (),
                )
            while running and self._clock() < self._end_by:
                self._collect(running, busy, failed, until=self._end_by)
            for job, _ in running.values():
                logger.error(
                    "webhook delivery still under way at the deadline; its stream record is retried",
                    extra=_delivery_ids(job.delivery),
                )
                failed.add(job.record_id)
        finally:
            # Never wait for a straggler: its record is retried, and the pool's threads end with it.
            pool.shutdown(wait=False, cancel_futures=True)
        return failed

    @staticmethod
    def _startable(pending: list[_Job], busy: Counter[tuple[str, str]]) -> _Job | None:
        """The first pending job whose tenant and receiver have a slot free."""
        return next(
            (job for job in pending if all(busy[key] < MAX_ATTEMPTS_AT_ONCE[key[0]] for key in job.keys)),
            None,
        )

    def _collect(
        self,
        running: dict[Future[bool], tuple[_Job, tuple[tuple[str, str], ...]]],
        busy: Counter[tuple[str, str]],
        failed: set[str],
        *,
        until: float,
    ) -> None:
        """Wait (a slice at most, not past `until`) for work to finish; free its slots, note failures."""
        timeout = max(0.0, min(until - self._clock(), WAIT_SLICE_SECONDS))
        finished, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in finished:
            job, held = running.pop(future)
            busy.subtract(held)
            if not future.result():
                failed.add(job.record_id)

    def _first_attempt(self, delivery: Delivery) -> bool:
        """The attempt, then the retry chain unless it is done; False when the hand-off failed."""
        task = first_attempt(self._attempt, delivery)
        return task.done or self._handed_off(task)

    def _handed_off(self, task: DeliveryTask) -> bool:
        try:
            self._hand_off(task)
        except Exception:
            logger.exception(
                "webhook retry chain not started; the stream retries its record",
                extra=_delivery_ids(task.delivery),
            )
            return False
        return True


def first_attempt(attempt: Callable[[DeliveryTask], DeliveryTask], delivery: Delivery) -> DeliveryTask:
    """Attempt 1 of a delivery. One whose own reads or writes failed counts as made and failed: the
    retry chain takes it on (its webhook never stays `pending` without one)."""
    try:
        return attempt(DeliveryTask(delivery=delivery, attempt=1))
    except Exception:
        logger.exception("webhook attempt not recorded", extra=_delivery_ids(delivery))
        return DeliveryTask(delivery=delivery, attempt=1)


def _count(name: str, value: int = 1) -> None:
    with _metrics_lock:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def _delivery_ids(delivery: Delivery) -> dict[str, str]:
    return {"execution_id": delivery.execution_id, "webhook_id": delivery.webhook_id}


def _delivery(
    execution: Execution, event_type: EventType, destination: str, url: str, body: str, redelivery: int = 0
) -> Delivery:
    """The delivery of one event to one destination; the webhook-id names the event, not the attempt."""
    return Delivery(
        webhook_id=webhook_id(execution, event_type, destination),
        tenant=execution.tenant,
        execution_id=execution.execution_id,
        event_type=event_type,
        destination=destination,
        url=url,
        body=body,
        redelivery=redelivery,
    )


def start_delivery(deps: Deps, delivery: Delivery) -> None:
    """The first attempt at once; if it neither succeeds nor is given up, the retry state machine."""
    outcome = first_attempt(lambda task: attempt(deps, task), delivery)
    if not outcome.done:
        deps.delivery_retries.start(outcome)


def redeliver(deps: Deps, principal: Principal, execution_id: str) -> Execution:
    """Deliver a failed execution webhook's terminal event again, with a fresh schedule of attempts;
    the execution as it is after the first of them."""
    execution = get_owned(deps, principal, execution_id)
    if execution.webhook.url is None:
        raise WebhookNotConfigured("the execution has no webhook.url", details={"state": "none"})
    event_type = terminal_event(execution)
    # Only a terminal event's delivery ever fails the webhook (a live execution's is never `failed`).
    redelivery = None
    if event_type is not None and event_type in execution.webhook.events:
        redelivery = deps.executions.claim_redelivery(execution.execution_id)
    if event_type is None or redelivery is None:
        current = deps.executions.get(execution.execution_id) or execution
        raise WebhookNotFailed(
            "only a failed webhook is redelivered", details={"state": current.webhook.state}
        )
    # Terminal executions never change again, so this is the write that emitted the event: the same
    # webhook-id and the same body timestamp as the first delivery.
    body = event_body(deps, event_type, _pending(execution))
    delivery = _delivery(
        execution, event_type, EXECUTION_DESTINATION, execution.webhook.url, body, redelivery
    )
    try:
        start_delivery(deps, delivery)
    except Exception:
        # No retry chain: the webhook is failed again (never left pending with nothing to end it), and
        # the redelivery may be asked for again.
        deps.executions.record_webhook_attempt(
            execution.execution_id,
            WebhookAttempt(at=deps.clock(), error="the redelivery's retries could not be scheduled"),
            state="failed",
        )
        raise
    return deps.executions.get(execution.execution_id) or execution


def _pending(execution: Execution) -> Execution:
    """The execution as the redelivery left it: its webhook pending again."""
    return execution.model_copy(update={"webhook": execution.webhook.model_copy(update={"state": "pending"})})


def _destinations(deps: Deps, execution: Execution, event_type: EventType) -> list[tuple[str, str]]:
    destinations = []
    if execution.webhook.url and event_type in execution.webhook.events:
        destinations.append((EXECUTION_DESTINATION, execution.webhook.url))
    destinations.extend(
        (endpoint.endpoint_id, endpoint.url)
        for endpoint in deps.webhooks.subscribed(execution.tenant, event_type)
    )
    return destinations


def _target(deps: Deps, delivery: Delivery, now: datetime) -> Target | None:
    """The URL and the secrets to sign with, looked up at each attempt (a deleted or disabled endpoint
    gets nothing more; a rotated secret is used at once, the old one beside it until it expires)."""
    if delivery.destination == EXECUTION_DESTINATION:
        return Target(delivery.url, [deps.webhooks.get_or_create_secret(delivery.tenant)])
    endpoint = deps.webhooks.get(delivery.tenant, delivery.destination)
    if endpoint is None or endpoint.disabled:
        return None
    return Target(endpoint.url, endpoint.signing_secrets(now))


def attempt(deps: Deps, task: DeliveryTask) -> DeliveryTask:
    """One signed attempt; `done` when delivered, refused for good, or out of attempts. Whatever goes
    wrong in the exchange is this attempt's failure (recorded, tried again later), never an exception;
    only the attempt's own reads and writes may raise."""
    delivery = task.delivery
    now = deps.clock()
    target = _target(deps, delivery, now)
    if target is None:
        logger.info("endpoint gone; delivery abandoned", extra=_delivery_ids(delivery))
        return task.model_copy(update={"done": True})
    body = deps.delivery_retries.body_of(delivery)
    headers = signed_headers(target.secrets, delivery.webhook_id, now, body)
    refused = False
    try:
        outcome = post_webhook(
            target.url, body.encode(), headers, allow_loopback_http=deps.settings.allow_loopback_webhooks
        )
    except InvalidWebhookUrl as error:
        outcome, refused = AttemptOutcome(None, f"refused: {error}"), True
    except Exception as error:
        logger.exception("webhook attempt failed unexpectedly", extra=_delivery_ids(delivery))
        outcome = AttemptOutcome(None, f"{type(error).__name__}: {error}")
    gone = outcome.status_code == GONE and delivery.destination != EXECUTION_DESTINATION
    if gone:
        deps.webhooks.disable(delivery.tenant, delivery.destination)
    done = outcome.delivered or refused or gone or task.attempt >= MAX_ATTEMPTS
    _count("WebhookDelivered" if outcome.delivered else "WebhookAttemptFailed")
    if delivery.destination == EXECUTION_DESTINATION:
        error_text = outcome.error[:MAX_ERROR_TEXT] if outcome.error else None
        deps.executions.record_webhook_attempt(
            delivery.execution_id,
            WebhookAttempt(at=now, status_code=outcome.status_code, error=error_text),
            state=_state_after(delivery.event_type, outcome, done),
        )
    return task.model_copy(update={"done": done, "delivered": outcome.delivered})


def _state_after(event_type: EventType, outcome: AttemptOutcome, done: bool) -> WebhookState | None:
    """The execution's webhook.state follows its terminal event: delivered, or failed once given up."""
    if event_type not in TERMINAL_EVENT_TYPES:
        return None
    if outcome.delivered:
        return "delivered"
    return "failed" if done else None
