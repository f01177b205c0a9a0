"""A provider calling back about a job: the use case behind `POST /v1/callbacks/{provider}/{id}`.

A callback is a hint, never the job's state: once its token (and the provider's signature, where the
provider signs) checks out, the execution's tick is re-armed to run now, and the poll tick reads the
job from the provider with the same transition code as any poll. So a forged body cannot make a job
succeed, a duplicate costs at most one extra poll, a late one (the job already finished) changes
nothing, and a lost one is caught by the slow safety-net poll.
"""

from __future__ import annotations

from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate.domain.callbacks import token_matches
from asyncgate.domain.execution import Execution, called_back_early, rearmed
from asyncgate.errors import Unauthorized
from asyncgate.observability import logger, metrics
from asyncgate.providers.base import CallbackRejected, CallbackRequest
from asyncgate.services.deps import Deps
from asyncgate.services.lifecycle import RECORD_ATTEMPTS, commit
from asyncgate.store.executions import StaleWrite

# One answer for every refusal, so a caller learns nothing of which check failed (nor whether the
# execution exists).
NOT_ACCEPTED = "callback not accepted"


class CallbackOutcome(StrEnum):
    POLL_ARMED = "poll_armed"  # the job is polled now
    NOTED_EARLY = "noted_early"  # its dispatch is not recorded yet: the first poll will come at once
    ALREADY_FINISHED = "already_finished"  # a late callback: the execution is terminal, nothing to do


def receive_callback(
    deps: Deps, *, provider: str, execution_id: str, token: str | None, request: CallbackRequest
) -> CallbackOutcome:
    """Accept a provider's callback about one execution, or raise Unauthorized (401) without saying why."""
    logger.append_keys(execution_id=execution_id)
    if not _token_valid(deps, provider, execution_id, token):
        raise _refused("token")
    for _ in range(RECORD_ATTEMPTS):
        execution = deps.executions.get(execution_id)
        if execution is None or execution.provider != provider:
            raise _refused("execution")
        try:
            outcome = _act_on(deps, execution, request)
        except StaleWrite:
            continue  # another writer moved it meanwhile: look again
        metrics.add_metric(name="CallbacksAccepted", unit=MetricUnit.Count, value=1)
        logger.info("provider callback", extra={"provider": provider, "outcome": outcome.value})
        return outcome
    raise RuntimeError(f"could not record the callback for {execution_id}")


def _act_on(deps: Deps, execution: Execution, request: CallbackRequest) -> CallbackOutcome:
    now = deps.clock()
    if execution.job_ref is not None:
        try:
            deps.providers(execution.provider).verify_callback(request, job_ref=execution.job_ref, now=now)
        except CallbackRejected as rejected:
            raise _refused("signature", reason=str(rejected)) from None
    if execution.terminal:
        return CallbackOutcome.ALREADY_FINISHED
    if execution.provider_request_id is None:
        # The provider answered our submit and finished before the dispatch was written down: there is
        # no job id to poll yet, so leave word for the dispatch to poll as soon as it records.
        if not execution.early_callback:
            deps.executions.update(execution, called_back_early(execution, now=now))
        return CallbackOutcome.NOTED_EARLY
    commit(deps, execution, rearmed(execution, now=now), now=now)
    return CallbackOutcome.POLL_ARMED


def _token_valid(deps: Deps, provider: str, execution_id: str, token: str | None) -> bool:
    if not token:
        return False
    try:
        key = deps.callback_key()
    except Exception:
        logger.exception("callback key could not be read")
        return False
    return key is not None and token_matches(key, provider, execution_id, token)


def _refused(check: str, *, reason: str | None = None) -> Unauthorized:
    metrics.add_metric(name="CallbacksRejected", unit=MetricUnit.Count, value=1)
    logger.warning("provider callback refused", extra={"failedCheck": check, "reason": reason})
    return Unauthorized(NOT_ACCEPTED)
