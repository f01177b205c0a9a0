"""The fault matrix: every fault the gateway must converge through, what it does and how it converges.

A fault is injected into the real handlers on the local stack by one or more of: rules on the product's
AWS clients (chaos.injection), the simulated provider's server switches (SimFaults), how the webhook
receiver behaves, the clock, or the catalog. Its executions are checked against the invariants
(chaos.invariants) with what the fault may legitimately change: error codes it may end executions with,
executions it dooms, how its webhooks end. A new feature adds its faults here.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass, field
from enum import StrEnum

from asyncgate_dev.simprovider import SimFaults
from chaos.injection import (
    DYNAMODB_INTERNAL,
    DYNAMODB_THROTTLED,
    ITEM_TOO_LARGE,
    S3_INTERNAL,
    S3_SLOW_DOWN,
    SQS_INTERNAL,
    SQS_THROTTLED,
    THROTTLED,
    Action,
    Params,
    Rule,
)
from chaos.invariants import WebhooksEnd
from chaos.workload import Mix

WRITES = frozenset({"UpdateItem", "TransactWriteItems", "PutItem", "DeleteItem"})
READS = frozenset({"GetItem", "Query", "BatchGetItem"})
UPLOADS = frozenset({"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"})
SEND = frozenset({"SendMessage"})
START = frozenset({"StartExecution"})
# A failed dispatch record is never retried by a second submit: the sweeper fails it instead.
SUBMIT_FAILED = "PROVIDER_SUBMIT_FAILED"
UNREACHABLE = "PROVIDER_UNREACHABLE"


class ReceiverMode(StrEnum):
    HEALTHY = "healthy"
    FLAKY = "flaky"  # 503 to the first attempt of every delivery
    FAILING = "failing"  # 503 to everything
    SLOW = "slow"  # some answers past the 10 s a delivery may take
    DOWN_THEN_UP = "down_then_up"  # nothing listens until a while after the submits
    REDIRECT = "redirect"  # 307 to another URL, which must never be followed
    GONE = "gone"  # 410 to everything
    HUGE = "huge"  # 200 with a body of 64 MiB


@dataclass(frozen=True)
class Fault:
    name: str
    # One line each, for the table of docs/architecture.md (`python -m chaos --failure-model`).
    does: str
    converges: str
    rules: tuple[Rule, ...] = ()
    sim: SimFaults | None = None
    receiver: ReceiverMode = ReceiverMode.HEALTHY
    # Half of the product's clock reads are off by up to this many seconds, either way.
    clock_skew_seconds: float = 0.0
    # This share of the executions can never record a poll (a write that always fails).
    doom_share: float = 0.0
    # A model removed from the catalog once the executions are submitted.
    drop_model: str | None = None
    mix: Mix = field(default_factory=Mix)
    # Error codes an execution may end with besides the one its plan asked for.
    allowed: frozenset[str] = frozenset()
    webhooks_end: WebhooksEnd = "delivered"
    # The sweeper's grace (real seconds): longer than the slowest tick the fault makes (a provider
    # call that times out), or the sweeper takes a slow tick for a lost one.
    sweep_grace_seconds: float = 3.0
    # Seconds after the last submit (and cancel) within which everything must have converged.
    bound_seconds: float = 90.0
    # In the short run of `make test`.
    short: bool = False


def records_poll_of(doomed: Set[str]) -> Callable[[Params], bool]:
    """A DynamoDB write (an update, or one inside a transaction) that records a poll of a doomed
    execution: the writes of its poll ticks, and no other (counting a failed tick, giving it up)."""

    def doomed_poll(params: Params) -> bool:
        updates = (
            [params]
            if "Key" in params
            else [op["Update"] for op in params.get("TransactItems", []) if "Update" in op]
        )
        return any(
            update["Key"]["pk"]["S"].removeprefix("EXEC#") in doomed
            and "pollCount" in update.get("ExpressionAttributeNames", {}).values()
            for update in updates
        )

    return doomed_poll


def doom_rule(doomed: Set[str]) -> Rule:
    """Every write of a poll of a doomed execution refused, as DynamoDB refuses an item past 400 KB."""
    return Rule(
        "dynamodb",
        frozenset({"UpdateItem", "TransactWriteItems"}),
        Action.ERROR,
        rate=1.0,
        error=ITEM_TOO_LARGE,
        attempts=4,
        when=records_poll_of(doomed),
    )


FAULTS: tuple[Fault, ...] = (
    Fault(
        "dynamodb-errors",
        "DynamoDB answers 500 to 10% of reads and writes (botocore retries them) and to 3% of writes on "
        "every try (the caller sees the error)",
        "single errors are retried by botocore; a failed tick is counted and tried again after a backoff; "
        "a dispatch record is retried, else failed by the sweeper, never submitted twice; a failed submit "
        "answers 500 and a client with an Idempotency-Key retries into the same execution",
        rules=(
            Rule("dynamodb", WRITES | READS, Action.ERROR, 0.10, error=DYNAMODB_INTERNAL),
            Rule("dynamodb", WRITES, Action.ERROR, 0.03, error=DYNAMODB_INTERNAL, attempts=4),
        ),
        allowed=frozenset({SUBMIT_FAILED}),
    ),
    Fault(
        "dynamodb-throttling",
        "DynamoDB throttles 20% of reads and writes for two tries, and 5% of transactions for every try",
        "botocore backs off and retries; what still fails is a failed tick (retried after a backoff) or a "
        "500 the client retries with its Idempotency-Key",
        rules=(
            Rule("dynamodb", WRITES | READS, Action.ERROR, 0.20, error=DYNAMODB_THROTTLED, attempts=2),
            Rule(
                "dynamodb", frozenset({"TransactWriteItems"}), Action.ERROR, 0.05, error=THROTTLED, attempts=4
            ),
        ),
        allowed=frozenset({SUBMIT_FAILED}),
    ),
    Fault(
        "dynamodb-lost-answer",
        "10% of DynamoDB writes commit and their answer is lost: the caller sees a timeout",
        "a versioned write reads the item back and finds its own write; a submit whose transaction "
        "answer was lost answers 500, its retry with the key replays the execution, one without a key "
        "leaves an execution the sweeper carries to its end",
        rules=(Rule("dynamodb", WRITES, Action.LOST_ANSWER, 0.10),),
        allowed=frozenset({SUBMIT_FAILED}),
    ),
    Fault(
        "dynamodb-retried-commit",
        "10% of DynamoDB writes commit, lose their answer and are retried by botocore: the retry fails "
        "its condition (the caller sees ConditionalCheckFailed for its own write)",
        "a lost race is told from a won one by reading the item back: the write is taken as done",
        rules=(Rule("dynamodb", WRITES, Action.RETRIED_COMMIT, 0.10),),
        allowed=frozenset({SUBMIT_FAILED}),
        short=True,
    ),
    Fault(
        "dynamodb-unwritable-item",
        "20% of the executions can never record a poll: each such write is refused as an item past "
        "400 KB would be",
        "each failed tick is counted on the execution; after 5 in a row it is given up: failed "
        "INTERNAL_ERROR (cancelled if cancel was asked), refunded, its webhook sent",
        doom_share=0.2,
    ),
    Fault(
        "catalog-model-removed",
        "sim-image leaves the catalog while its executions run",
        "their ticks fail (unknown model); after 5 in a row each is given up INTERNAL_ERROR, refunded",
        drop_model="sim-image",
        mix=Mix(durations=(1.0, 3.0)),
        allowed=frozenset({"INTERNAL_ERROR"}),
    ),
    Fault(
        "sqs-errors",
        "SQS answers 500 to 20% of sends (retried by botocore) and throttles 10% of them on every try",
        "a tick that could not be sent leaves its execution overdue; the sweeper re-arms it",
        rules=(
            Rule("sqs", SEND, Action.ERROR, 0.20, error=SQS_INTERNAL),
            Rule("sqs", SEND, Action.ERROR, 0.10, error=SQS_THROTTLED, attempts=4),
        ),
    ),
    Fault(
        "sqs-lost-tick",
        "20% of poll ticks are lost: the send answers success and no message exists",
        "the sweeper finds the execution overdue (past its grace) and re-arms it; 5 lost in a row give "
        "it up INTERNAL_ERROR",
        rules=(Rule("sqs", SEND, Action.DROP, 0.20),),
        allowed=frozenset({"INTERNAL_ERROR"}),
    ),
    Fault(
        "sqs-duplicates",
        "half of the poll ticks are delivered twice",
        "the copy carries a tick id the execution no longer waits for (or loses the versioned write): "
        "dropped without a provider call",
        rules=(Rule("sqs", SEND, Action.DUPLICATE, 0.5),),
        short=True,
    ),
    Fault(
        "sqs-reordered",
        "30% of poll ticks wait up to 3 s longer than asked, and 30% are delivered again up to 5 s late",
        "a late tick is stale (another tick id is current) and dropped; the current one carries on",
        rules=(
            Rule("sqs", SEND, Action.DELAY, 0.3, delay_seconds=3),
            Rule("sqs", SEND, Action.DUPLICATE, 0.3, delay_seconds=5),
        ),
    ),
    Fault(
        "s3-errors",
        "S3 slows down 30% of output uploads for one try and fails 20% on every try",
        "a failed copy is tried again at the next tick, twice more on the final one, then the output "
        "keeps the provider's URL (stored: false): the job succeeds all the same",
        rules=(
            Rule("s3", UPLOADS, Action.ERROR, 0.3, error=S3_SLOW_DOWN),
            Rule("s3", UPLOADS, Action.ERROR, 0.2, error=S3_INTERNAL, attempts=4),
        ),
        # A tick copying under SlowDown backs off for seconds: the grace outlasts its copy budget (40 s).
        sweep_grace_seconds=45.0,
        bound_seconds=180.0,
    ),
    Fault(
        "stepfunctions-errors",
        "Step Functions throttles 30% of the webhook retry chains' starts on every try (40 in all); "
        "the receiver answers 503 to everything",
        "notify parks the delivery on its claim item and the record is done; a sweeper round hands it "
        "to the state machine again (the chain named by the webhook-id starts once); after 5 attempts "
        "in all webhook.state is failed",
        rules=(Rule("sfn", START, Action.ERROR, 0.3, limit=40, error=THROTTLED, attempts=4),),
        receiver=ReceiverMode.FAILING,
        webhooks_end="failed",
    ),
    Fault(
        "handler-killed",
        "4% of DynamoDB writes and SQS sends, and 10% of retry chain starts, are the last thing their "
        "invocation does: it dies right after (a timeout, an out-of-memory kill); the receiver refuses "
        "every delivery's first attempt, so retry chains start",
        "a killed tick's message returns after its visibility timeout and the sweeper re-arms what has "
        "no tick; a killed submit answers 500 (retried with its key), its dispatch failed by the sweeper "
        "if the provider's answer was not recorded; a killed notify's stream record is retried, its "
        "first attempts claimed already: counted as made, not repeated",
        rules=(
            Rule("dynamodb", WRITES, Action.KILL, 0.04),
            Rule("sqs", SEND, Action.KILL, 0.04),
            Rule("sfn", START, Action.KILL, 0.10),
        ),
        receiver=ReceiverMode.FLAKY,
        allowed=frozenset({SUBMIT_FAILED}),
        short=True,
    ),
    Fault(
        "provider-5xx",
        "the provider answers 503 to 30% of submits, polls, cancels and output downloads",
        "a refused submit fails PROVIDER_SUBMIT_FAILED (never retried); polls back off within the "
        "model's error budget, past it PROVIDER_UNREACHABLE; a failed copy keeps the provider's URL",
        sim=SimFaults(error_rate=0.3),
        allowed=frozenset({SUBMIT_FAILED, UNREACHABLE}),
    ),
    Fault(
        "provider-timeout",
        "the provider answers 8% of submits, polls and cancels after 11 s, past the 10 s the gateway waits",
        "a timed-out poll is a transient error (backoff, error budget); a timed-out submit fails "
        "PROVIDER_SUBMIT_FAILED (its job, if made, runs unfollowed)",
        sim=SimFaults(
            slow_rate=0.08, slow_seconds=11.0, max_faults=12, routes=frozenset({"submit", "poll", "cancel"})
        ),
        allowed=frozenset({SUBMIT_FAILED, UNREACHABLE}),
        sweep_grace_seconds=30.0,
        bound_seconds=180.0,
    ),
    Fault(
        "provider-hang",
        "the provider never answers 8% of submits, polls and cancels (the connection is held 30 s)",
        "the gateway's read timeout ends the call: as a timeout",
        sim=SimFaults(
            hang_rate=0.08, hang_seconds=30.0, max_faults=8, routes=frozenset({"submit", "poll", "cancel"})
        ),
        allowed=frozenset({SUBMIT_FAILED, UNREACHABLE}),
        sweep_grace_seconds=30.0,
        bound_seconds=180.0,
    ),
    Fault(
        "provider-garbage",
        "the provider answers 15% of submits, polls and cancels 200 with an HTML page",
        "a garbled submit answer fails PROVIDER_SUBMIT_FAILED (the job's id is unknown); a garbled poll "
        "says nothing of the job: polled again within the model's error budget, past it "
        "PROVIDER_UNREACHABLE",
        sim=SimFaults(garbage_rate=0.15, routes=frozenset({"submit", "poll", "cancel"})),
        allowed=frozenset({SUBMIT_FAILED, "PROVIDER_UNREACHABLE"}),
    ),
    Fault(
        "provider-finished-before-cancel",
        "every cancel finds the provider's job already finished (it succeeded just before): 409",
        "the refusal is logged and the job polled: the execution ends cancelled with its result, and "
        "is charged like a success",
        sim=SimFaults(finish_on_cancel=True),
        mix=Mix(
            durations=(4.0, 8.0),
            outcomes=(("succeed", 1.0),),
            cancel_share=0.7,
            cancel_after=(0.3, 1.5),
        ),
        short=True,
    ),
    Fault(
        "callback-races-tick",
        "every provider callback arrives 3 times at once, and 2 more while the job runs",
        "each callback re-arms the tick; of concurrent writers only one wins the versioned write, the "
        "newer tick id retires the older: one chain, one terminal transition",
        sim=SimFaults(callback_copies=3, early_callbacks=2),
        mix=Mix(durations=(0.05, 1.0)),
    ),
    Fault(
        "receiver-slow",
        "30% of webhook answers come after 10.5-13 s, past the 10 s a delivery may take",
        "first attempts run concurrently and bounded per host; a timed-out attempt is retried by the "
        "state machine until one is answered in time",
        receiver=ReceiverMode.SLOW,
        bound_seconds=240.0,
    ),
    Fault(
        "receiver-down",
        "the webhook receiver listens only from 5 s after the last submit",
        "failed attempts are retried about 2, 4, 8, 16 minutes (time-scaled) later, and delivered",
        receiver=ReceiverMode.DOWN_THEN_UP,
        bound_seconds=120.0,
    ),
    Fault(
        "receiver-redirect",
        "the webhook receiver answers 307 to another URL",
        "redirects are never followed: 5 failed attempts, then webhook.state failed",
        receiver=ReceiverMode.REDIRECT,
        webhooks_end="failed",
    ),
    Fault(
        "receiver-gone",
        "the webhook receiver answers 410 Gone",
        "the tenant endpoint is disabled at once; an execution's own URL fails its 5 attempts, then "
        "webhook.state failed",
        receiver=ReceiverMode.GONE,
        webhooks_end="failed",
    ),
    Fault(
        "receiver-huge-answer",
        "the webhook receiver answers 200 with a 64 MiB body",
        "only the status is read: delivered",
        receiver=ReceiverMode.HUGE,
    ),
    Fault(
        "clock-skew",
        "half of the gateway's clock reads are off by up to 1.5 s either way",
        "ticks that arrive early by that clock are sent on; the sweeper's grace outlasts the skew",
        clock_skew_seconds=1.5,
    ),
)


def by_name(names: list[str]) -> list[Fault]:
    known = {fault.name: fault for fault in FAULTS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown faults: {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[name] for name in names]
