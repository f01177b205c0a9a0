"""What travels from the notifier to the retry state machine and the deliver function: references and
the signed body, never a secret (Step Functions keeps execution input in its history)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from asyncgate.domain.execution import EventType

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

# The destination of an execution's own webhook.url; tenant endpoints are named by their id.
EXECUTION_DESTINATION = "execution"
# Step Functions takes at most 256 KiB of input, and passes no more between states: a task larger than
# this (with room left for what the state machine adds) leaves its body in the results bucket.
MAX_INLINE_TASK_BYTES = 200 * 1024
BODY_PREFIX = "webhooks/"


class Wire(BaseModel):
    # extra ignored: the state machine adds its own fields (the jittered wait) to the task it passes on.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Delivery(Wire):
    webhook_id: str
    tenant: str
    execution_id: str
    event_type: EventType
    destination: str
    url: str
    # The exact body of every attempt: the execution as it was when the event happened. Empty when it
    # travels by reference: then `body_key` names it in the results bucket.
    body: str
    body_key: str | None = None
    # 0 for the event's own delivery, n for its n-th redelivery on request: the webhook-id stays the
    # event's (receivers de-duplicate on it) while each redelivery gets a retry chain of its own.
    redelivery: int = 0

    @property
    def chain_name(self) -> str:
        return self.webhook_id if self.redelivery == 0 else f"{self.webhook_id}-r{self.redelivery}"


class DeliveryTask(Wire):
    delivery: Delivery
    # The attempt made (or to make); 0 in a retry chain's input when no attempt was made yet.
    attempt: int
    delivered: bool = False
    # Nothing more to try: delivered, refused for good, or out of attempts.
    done: bool = False


class WebhookBodies:
    """Bodies too large for Step Functions, kept in the results bucket (its lifecycle rule expires them
    days after the retry chain has ended). Only the body is stored: what the receiver gets anyway."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def put(self, delivery: Delivery) -> Delivery:
        # One object per retry chain: a retried stream record writes the same object again.
        key = f"{BODY_PREFIX}{delivery.tenant}/{delivery.execution_id}/{delivery.chain_name}.json"
        self._client.put_object(
            Bucket=self._bucket, Key=key, Body=delivery.body.encode(), ContentType="application/json"
        )
        return delivery.model_copy(update={"body": "", "body_key": key})

    def get(self, key: str) -> str:
        return self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read().decode()


class DeliveryRetries:
    """Hands a delivery that is not done to the retry state machine."""

    def __init__(
        self, client: SFNClient, state_machine_arn: str, bodies: WebhookBodies | None = None
    ) -> None:
        self._client = client
        self._arn = state_machine_arn
        # None without a results bucket: every body then travels inline (Step Functions refuses one
        # past its input limit, and the stream record that emitted it is retried).
        self._bodies = bodies

    def prepare(self, task: DeliveryTask) -> DeliveryTask:
        """The task as a chain takes it: a body too large for Step Functions left in the results bucket."""
        if (
            self._bodies is not None
            and len(task.model_dump_json(by_alias=True).encode()) > MAX_INLINE_TASK_BYTES
        ):
            return task.model_copy(update={"delivery": self._bodies.put(task.delivery)})
        return task

    def start(self, task: DeliveryTask) -> None:
        """Start the delivery's retry chain: attempt 0 asks for the first attempt at once."""
        payload = self.prepare(task).model_dump_json(by_alias=True)
        # The same delivery started twice (a redelivered stream record) is one execution.
        with contextlib.suppress(self._client.exceptions.ExecutionAlreadyExists):
            self._client.start_execution(
                stateMachineArn=self._arn,
                # Named by the delivery: a redelivered stream record cannot start a second retry chain.
                name=task.delivery.chain_name,
                input=payload,
            )

    def body_of(self, delivery: Delivery) -> str:
        """The body to send: the delivery's own, or the one it left in the results bucket."""
        if delivery.body_key is None:
            return delivery.body
        if self._bodies is None:
            raise RuntimeError(f"no results bucket to read {delivery.body_key} from")
        return self._bodies.get(delivery.body_key)
