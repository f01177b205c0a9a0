"""Webhook events from state transitions: the first delivery attempt right away, the retries by the
state machine, every attempt signed afresh and recorded."""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate.api.models import ExecutionView, WebhookEventBody
from asyncgate.delivery.signing import signed_headers
from asyncgate.delivery.tasks import EXECUTION_DESTINATION, Delivery, DeliveryTask
from asyncgate.delivery.transport import AttemptOutcome, post_webhook
from asyncgate.domain.execution import EventType, Execution, WebhookAttempt, WebhookState
from asyncgate.domain.webhook_events import MAX_ATTEMPTS, TERMINAL_EVENT_TYPES, events_for, webhook_id
from asyncgate.domain.webhook_url import InvalidWebhookUrl
from asyncgate.observability import logger, metrics
from asyncgate.services.deps import Deps

# A tenant endpoint answering 410 Gone asks never to be called again (Standard Webhooks).
GONE = 410


@dataclass(frozen=True)
class Target:
    url: str
    secret: str


def event_body(event_type: EventType, execution: Execution) -> str:
    # The transition's own time: the same on every attempt and every redelivery.
    return WebhookEventBody(
        type=event_type, timestamp=execution.updated_at, data=ExecutionView.of(execution)
    ).to_json()


def notify(deps: Deps, old: Execution | None, new: Execution) -> int:
    """Deliver the events of one write; returns how many deliveries were started."""
    started = 0
    for event_type in events_for(old, new):
        body = event_body(event_type, new)
        for destination, url in _destinations(deps, new, event_type):
            delivery = Delivery(
                webhook_id=webhook_id(new, event_type, destination),
                tenant=new.tenant,
                execution_id=new.execution_id,
                event_type=event_type,
                destination=destination,
                url=url,
                body=body,
            )
            outcome = attempt(deps, DeliveryTask(delivery=delivery, attempt=1))
            if not outcome.done:
                deps.delivery_retries.start(outcome)
            started += 1
    return started


def _destinations(deps: Deps, execution: Execution, event_type: EventType) -> list[tuple[str, str]]:
    destinations = []
    if execution.webhook.url and event_type in execution.webhook.events:
        destinations.append((EXECUTION_DESTINATION, execution.webhook.url))
    destinations.extend(
        (endpoint.endpoint_id, endpoint.url)
        for endpoint in deps.webhooks.subscribed(execution.tenant, event_type)
    )
    return destinations


def _target(deps: Deps, delivery: Delivery) -> Target | None:
    """The URL and the secret to sign with, looked up at each attempt (a deleted or disabled endpoint
    gets nothing more; a rotated secret is used at once)."""
    if delivery.destination == EXECUTION_DESTINATION:
        return Target(delivery.url, deps.webhooks.get_or_create_secret(delivery.tenant))
    endpoint = deps.webhooks.get(delivery.tenant, delivery.destination)
    if endpoint is None or endpoint.disabled:
        return None
    return Target(endpoint.url, endpoint.secret)


def attempt(deps: Deps, task: DeliveryTask) -> DeliveryTask:
    """One signed attempt; `done` when delivered, refused for good, or out of attempts."""
    delivery = task.delivery
    logger.append_keys(execution_id=delivery.execution_id, webhook_id=delivery.webhook_id)
    target = _target(deps, delivery)
    if target is None:
        logger.info("endpoint gone; delivery abandoned")
        return task.model_copy(update={"done": True})
    now = deps.clock()
    headers = signed_headers(target.secret, delivery.webhook_id, now, delivery.body)
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
