"""What travels from the notifier to the retry state machine and the deliver function: references and
the signed body, never a secret (Step Functions keeps execution input in its history)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from asyncgate.domain.execution import EventType

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

# The destination of an execution's own webhook.url; tenant endpoints are named by their id.
EXECUTION_DESTINATION = "execution"


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
    # The exact body of every attempt: the execution as it was when the event happened.
    body: str
    # 0 for the event's own delivery, n for its n-th redelivery on request: the webhook-id stays the
    # event's (receivers de-duplicate on it) while each redelivery gets a retry chain of its own.
    redelivery: int = 0

    @property
    def chain_name(self) -> str:
        return self.webhook_id if self.redelivery == 0 else f"{self.webhook_id}-r{self.redelivery}"


class DeliveryTask(Wire):
    delivery: Delivery
    attempt: int
    delivered: bool = False
    # Nothing more to try: delivered, refused for good, or out of attempts.
    done: bool = False


class DeliveryRetries:
    """Hands a failed first delivery to the retry state machine."""

    def __init__(self, client: SFNClient, state_machine_arn: str) -> None:
        self._client = client
        self._arn = state_machine_arn

    def start(self, task: DeliveryTask) -> None:
        # The same delivery started twice (a redelivered stream record) is one execution.
        with contextlib.suppress(self._client.exceptions.ExecutionAlreadyExists):
            self._client.start_execution(
                stateMachineArn=self._arn,
                # Named by the delivery: a redelivered stream record cannot start a second retry chain.
                name=task.delivery.chain_name,
                input=task.model_dump_json(by_alias=True),
            )
