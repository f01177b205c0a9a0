"""Webhook events from state transitions: the first delivery attempt right away, the retries by the
state machine, every attempt signed afresh and recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate.api.models import ExecutionView, WebhookEventBody
from asyncgate.delivery.signing import signed_headers
from asyncgate.delivery.tasks import EXECUTION_DESTINATION, Delivery, DeliveryTask
from asyncgate.delivery.transport import AttemptOutcome, post_webhook
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
from asyncgate.store.keys import Principal

# A tenant endpoint answering 410 Gone asks never to be called again (Standard Webhooks).
GONE = 410


@dataclass(frozen=True)
class Target:
    url: str
    # More than one during a rotation's overlap: each signs, so receivers on either secret verify.
    secrets: list[str]


def event_body(deps: Deps, event_type: EventType, execution: Execution) -> str:
    # The transition's own time: the same on every attempt and every redelivery. Copied outputs'
    # presigned URLs are made now: every retry of this delivery carries them, valid for
    # ResultUrlSeconds from here (a redelivery renders the body, and so the URLs, afresh).
    return WebhookEventBody(
        type=event_type,
        timestamp=execution.updated_at,
        data=ExecutionView.of(execution, deps.results.url_for),
    ).to_json()


def notify(deps: Deps, old: Execution | None, new: Execution) -> int:
    """Deliver the events of one write; returns how many deliveries were started."""
    started = 0
    for event_type in events_for(old, new):
        body = event_body(deps, event_type, new)
        for destination, url in _destinations(deps, new, event_type):
            start_delivery(deps, _delivery(new, event_type, destination, url, body))
            started += 1
    return started


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


def start_delivery(deps: Deps, delivery: Delivery) -> DeliveryTask:
    """The first attempt at once; if it neither succeeds nor is given up, the retry state machine."""
    outcome = attempt(deps, DeliveryTask(delivery=delivery, attempt=1))
    if not outcome.done:
        deps.delivery_retries.start(outcome)
    return outcome


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
    start_delivery(
        deps, _delivery(execution, event_type, EXECUTION_DESTINATION, execution.webhook.url, body, redelivery)
    )
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
    """One signed attempt; `done` when delivered, refused for good, or out of attempts."""
    delivery = task.delivery
    logger.append_keys(execution_id=delivery.execution_id, webhook_id=delivery.webhook_id)
    now = deps.clock()
    target = _target(deps, delivery, now)
    if target is None:
        logger.info("endpoint gone; delivery abandoned")
        return task.model_copy(update={"done": True})
    headers = signed_headers(target.secrets, delivery.webhook_id, now, delivery.body)
    try:
        outcome = post_webhook(
            target.url,
            delivery.body.encode(),
            headers,
            allow_loopback_http=deps.settings.allow_loopback_webhooks,
        )
        refused = False
    except InvalidWebhookUrl as error:
        outcome, refused = AttemptOutcome(None, f"refused: {error}"), True
    gone = outcome.status_code == GONE and delivery.destination != EXECUTION_DESTINATION
    if gone:
        deps.webhooks.disable(delivery.tenant, delivery.destination)
    done = outcome.delivered or refused or gone or task.attempt >= MAX_ATTEMPTS
    metrics.add_metric(
        name="WebhookDelivered" if outcome.delivered else "WebhookAttemptFailed",
        unit=MetricUnit.Count,
        value=1,
    )
    if delivery.destination == EXECUTION_DESTINATION:
        deps.executions.record_webhook_attempt(
            delivery.execution_id,
            WebhookAttempt(at=now, status_code=outcome.status_code, error=outcome.error),
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
