"""`make bench`: the figures of issue 3, printed, never asserted.

1. Submit handler in-process on moto: p50/p99 per call next to the floor (the same boto3 calls and the
   same provider HTTP submit, with no framework) and their ratio (target <= 1.3x).
2. Cold import time of each handler module next to `import boto3` + Powertools alone (target <= 1.3x).
3. AWS calls per execution on a full lifecycle: submit, a non-final tick.
4. Provider polls per job, with and without progress, and the completion lag, on a simulated clock
   (the real services and store on moto; the clock jumps to each tick's delivery, SQS's whole-second
   delay rounding included), over several seeds: the issue's 20 s job (sim-video's expected duration),
   and jobs shorter and longer than expected. Lambda and SQS delivery latency (tens of ms) is not in it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncgate_dev import motofix
from asyncgate_dev.awsenv import use_dummy_aws_env

use_dummy_aws_env()
os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
motofix.install()

import boto3  # noqa: E402
import requests  # noqa: E402
from moto import mock_aws  # noqa: E402

from asyncgate import aws  # noqa: E402
from asyncgate.domain.schedule import sqs_hop_seconds  # noqa: E402
from asyncgate.providers.base import Output, PollResult, ProviderJob, ProviderState  # noqa: E402
from asyncgate.providers.registry import provider_for  # noqa: E402
from asyncgate.scheduling import PollScheduler, TickMessage  # noqa: E402
from asyncgate.services.deps import default_deps  # noqa: E402
from asyncgate.services.executions import SubmitCommand, submit  # noqa: E402
from asyncgate.services.tenants import create_tenant, issue_key  # noqa: E402
from asyncgate.services.ticks import process_tick  # noqa: E402
from asyncgate.settings import get_settings  # noqa: E402
from asyncgate.store.items import to_item  # noqa: E402
from asyncgate.store.keys import ALL_SCOPES, Principal  # noqa: E402
from asyncgate_dev.apigw import http_event, read_response  # noqa: E402
from asyncgate_dev.handlers import FUNCTIONS_DIR, REPO_ROOT, TEMPLATE_PATH, load_handler  # noqa: E402
from asyncgate_dev.lambda_runtime import LambdaContext  # noqa: E402
from asyncgate_dev.simprovider import SimProviderServer  # noqa: E402
from asyncgate_dev.template import load_template, provision  # noqa: E402
from bench.local_stack import bench_local_stack  # noqa: E402

SUBMIT_CALLS = 300
IMPORT_RUNS = 9
LIFECYCLE_SEEDS = 20
EXPECTED_SECONDS = 20.0  # sim-video's expectedDurationSeconds
JOB_LENGTHS = (20.0, 14.0, 31.0)  # the issue's 20 s job, and jobs shorter and longer than expected


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@contextmanager
def stack_on_moto(sim_url: str) -> Iterator[None]:
    with mock_aws():
        stack = provision(
            load_template(TEMPLATE_PATH), boto3.client("dynamodb"), boto3.client("sqs"), base_dir=REPO_ROOT
        )
        os.environ.update(stack.function_environment("SubmitFunction"))
        os.environ["SIM_PROVIDER_URL"] = sim_url
        for cached in (
            aws.reset_clients,
            get_settings.cache_clear,
            default_deps.cache_clear,
            provider_for.cache_clear,
        ):
            cached()
        deps = default_deps()
        create_tenant(deps, "bench", credits=10**12)
        issue_key(deps, "bench", ALL_SCOPES, api_key="bench-key")
        yield


class CallCounter:
    """Counts AWS API calls made through the layer's clients, by service and operation."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        for client in (aws.dynamodb(), aws.sqs()):
            client.meta.events.register("before-call.*.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    @contextmanager
    def measure(self) -> Iterator[Counter[str]]:
        before = Counter(self.calls)
        measured: Counter[str] = Counter()
        yield measured
        measured.update(self.calls - before)


def submit_event() -> dict[str, Any]:
    body = {"model": "sim-video", "input": {"prompt": "a red fox", "sim": {"durationSeconds": 60}}}
    return http_event(
        "POST",
        "/v1/executions",
        route_key="POST /v1/executions",
        headers={"content-type": "application/json", "x-api-key": "bench-key"},
        body=json.dumps(body).encode(),
    )


def bench_submit(sim: SimProviderServer) -> None:
    print("\n## 1. Submit handler, in-process on moto (inline dispatch to the simulated provider)")
    with stack_on_moto(sim.url):
        handler = load_handler("submit").lambda_handler
        context = LambdaContext(function_name="submit")
        event = submit_event()
        for _ in range(20):  # warm: imports, clients, the key cache
            assert read_response(handler(event, context)).status == 202
        handler_times = []
        for _ in range(SUBMIT_CALLS):
            started = time.perf_counter()
            answer = read_response(handler(event, context))
            handler_times.append(time.perf_counter() - started)
            assert answer.status == 202

        dynamodb, sqs, settings = aws.dynamodb(), aws.sqs(), get_settings()
        session = requests.Session()
        template_item = to_item(default_deps().executions.get(answer.json()["executionId"]))  # type: ignore[arg-type]
        floor_times = []
        for _ in range(SUBMIT_CALLS):
            started = time.perf_counter()
            item = {**template_item, "pk": {"S": f"EXEC#{uuid.uuid4()}"}, "version": {"N": "1"}}
            dynamodb.put_item(
                TableName=settings.table_name, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
            job = session.post(
                f"{sim.url}/v1/jobs",
                json={"model": "sim-video", "input": {"sim": {"durationSeconds": 60}}},
                timeout=10,
            )
            dynamodb.update_item(
                TableName=settings.table_name,
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET #s = :s, providerRequestId = :p, version = :v",
                ConditionExpression="version = :one",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":s": {"S": "running"},
                    ":p": {"S": job.json()["id"]},
                    ":v": {"N": "2"},
                    ":one": {"N": "1"},
                },
            )
            sqs.send_message(QueueUrl=settings.poll_queue_url, MessageBody="{}", DelaySeconds=5)
            floor_times.append(time.perf_counter() - started)
    for label, values in (("handler", handler_times), ("floor", floor_times)):
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        print(f"  {label:8} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    print(
        f"  ratio    p50 {percentile(handler_times, 0.5) / percentile(floor_times, 0.5):.2f}x"
        f"   p99 {percentile(handler_times, 0.99) / percentile(floor_times, 0.99):.2f}x   (target <= 1.3x)"
    )


# As in Lambda, where the layer is a plain directory on the path (/opt/python), not an editable install.
LAMBDA_LIKE_ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO_ROOT / "layers" / "asyncgate"),
    "PYTHONDONTWRITEBYTECODE": "1",
}


def import_seconds(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=LAMBDA_LIKE_ENV
    ).stdout
    return float(output.strip().splitlines()[-1])


# What every Powertools handler pays: boto3, the event handler, and Logger/Tracer/Metrics made (the
# Tracer loads the X-Ray SDK, the largest single cost).
BASELINE_IMPORT = (
    "import boto3; from aws_lambda_powertools import Logger, Metrics, Tracer; "
    "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver; Logger(); Tracer(); Metrics()"
)


def bench_imports() -> None:
    print(f"\n## 2. Cold import time (median of {IMPORT_RUNS} fresh interpreters, alternating with baseline)")
    print(f"  {'handler':18} {'import':>9} {'baseline':>9}  ratio")
    for directory in sorted(FUNCTIONS_DIR.iterdir()):
        statement = (
            "import importlib.util as u; "
            f"s = u.spec_from_file_location('app', {str(directory / 'app.py')!r}); "
            "m = u.module_from_spec(s); s.loader.exec_module(m)"
        )
        # Alternating the two keeps a busy machine from favouring either side.
        pairs = [(import_seconds(statement), import_seconds(BASELINE_IMPORT)) for _ in range(IMPORT_RUNS)]
        handler = statistics.median(pair[0] for pair in pairs)
        baseline = statistics.median(pair[1] for pair in pairs)
        figures = f"{handler * 1000:6.1f} ms {baseline * 1000:6.1f} ms {handler / baseline:.2f}x"
        print(f"  {directory.name:18} {figures}  (target <= 1.3x)")


@dataclass
class SimulatedJob:
    """A provider job on the simulated clock: runs JOB_SECONDS from its submit."""

    started: datetime
    seconds: float
    report_progress: bool
    polls: int = 0


@dataclass
class ClockedWorld:
    """The services with a clock that jumps to each tick's delivery and a provider on the same clock."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 23, 12, tzinfo=UTC))
    pending: list[tuple[datetime, TickMessage]] = field(default_factory=list)
    jobs: dict[str, SimulatedJob] = field(default_factory=dict)
    report_progress: bool = True
    job_seconds: float = EXPECTED_SECONDS
    name: str = "clocked"

    # Provider protocol
    def submit(self, *, execution_id: str, provider_model: str, input: dict[str, Any]) -> ProviderJob:
        job_id = f"job_{len(self.jobs)}"
        self.jobs[job_id] = SimulatedJob(
            started=self.now, seconds=self.job_seconds, report_progress=self.report_progress
        )
        return ProviderJob(provider_request_id=job_id)

    def poll(self, provider_request_id: str) -> PollResult:
        job = self.jobs[provider_request_id]
        job.polls += 1
        elapsed = (self.now - job.started).total_seconds()
        if elapsed >= job.seconds:
            return PollResult(
                state=ProviderState.SUCCEEDED, progress=100.0, outputs=[Output(url="https://x/1.mp4")]
            )
        progress = 100.0 * elapsed / job.seconds if job.report_progress else None
        return PollResult(state=ProviderState.RUNNING, progress=progress)

    def cancel(self, provider_request_id: str) -> None:
        raise NotImplementedError

    def clock(self) -> datetime:
        return self.now


class RecordingScheduler(PollScheduler):
    """Keeps tick messages instead of sending them, delivered as SQS would (whole-second delays)."""

    def __init__(self, world: ClockedWorld, record: Callable[[], None]) -> None:
        self._world = world
        self._record = record

    def send(self, message: TickMessage, *, now: datetime) -> None:
        self._record()
        delay = sqs_hop_seconds((message.due_at - now).total_seconds())
        self._world.pending.append((now + timedelta(seconds=delay), message))


def simulate(
    report_progress: bool, seed: int, counter: CallCounter, job_seconds: float = EXPECTED_SECONDS
) -> tuple[int, float, Counter[str]]:
    """Polls, completion lag in seconds, and the AWS calls of the first non-final tick."""
    world = ClockedWorld(report_progress=report_progress, job_seconds=job_seconds)
    sends: Counter[str] = Counter()
    base = default_deps()
    deps = dataclasses.replace(
        base,
        scheduler=RecordingScheduler(world, lambda: sends.update(["sqs.SendMessage"])),
        providers=lambda _: world,
        clock=world.clock,
        rng=random.Random(seed),
    )
    command = SubmitCommand(model="sim-video", input={}, metadata={}, webhook_url=None, webhook_events=None)
    execution = submit(deps, Principal(tenant="bench", scopes=ALL_SCOPES), command).receipt
    job = world.jobs[execution.provider_request_id or ""]
    non_final_tick: Counter[str] = Counter()
    while world.pending:
        world.pending.sort(key=lambda entry: entry[0])
        world.now, message = world.pending.pop(0)
        sends_before = sends["sqs.SendMessage"]
        with counter.measure() as calls:
            process_tick(deps, message)
        current = deps.executions.get(execution.execution_id)
        assert current is not None
        if not current.terminal and not non_final_tick:
            non_final_tick = calls + Counter({"sqs.SendMessage": sends["sqs.SendMessage"] - sends_before})
    done = deps.executions.get(execution.execution_id)
    assert done is not None
    assert done.status.value == "succeeded", done.status
    assert done.completed_at is not None
    lag = (done.completed_at - job.started).total_seconds() - job.seconds
    return job.polls, lag, non_final_tick


def bench_lifecycle(sim: SimProviderServer) -> None:
    print("\n## 3. AWS calls per execution")
    with stack_on_moto(sim.url):
        counter = CallCounter()
        handler = load_handler("submit").lambda_handler
        context = LambdaContext(function_name="submit")
        read_response(handler(submit_event(), context))  # warm the key cache
        with counter.measure() as calls:
            assert read_response(handler(submit_event(), context)).status == 202
        print(f"  submit (warm):       {sum(calls.values())} calls  {dict(calls)}   (target <= 3)")
        _, _, tick_calls = simulate(True, 0, counter)
        writes = sum(
            count for name, count in tick_calls.items() if name in {"dynamodb.UpdateItem", "dynamodb.PutItem"}
        )
        print(
            f"  non-final tick:      {writes} DynamoDB write + {tick_calls['sqs.SendMessage']} SQS send"
            f"  {dict(tick_calls)}   (target <= 1 write + 1 send)"
        )

        print(f"\n## 4. Provider polls per job and completion lag ({LIFECYCLE_SEEDS} seeds, simulated clock)")
        for job_seconds in JOB_LENGTHS:
            for report_progress, poll_target, lag_target in ((True, 4, 0.05), (False, 7, 0.15)):
                results = [
                    simulate(report_progress, seed, counter, job_seconds) for seed in range(LIFECYCLE_SEEDS)
                ]
                polls = [result[0] for result in results]
                lags = [result[1] / job_seconds for result in results]
                label = f"{job_seconds:.0f} s job, " + ("with progress" if report_progress else "no progress")
                targets = (
                    f" (targets <= {poll_target}, <= {lag_target:.0%})"
                    if job_seconds == EXPECTED_SECONDS
                    else ""
                )
                print(
                    f"  {label:28} polls mean {statistics.mean(polls):4.1f} max {max(polls):2}"
                    f"   lag mean {statistics.mean(lags):5.1%} max {max(lags):5.1%}{targets}"
                )


def main() -> None:
    print(f"asyncgate bench on Python {sys.version.split()[0]}, {os.cpu_count()} cores; moto in-process")
    with SimProviderServer() as sim:
        bench_submit(sim)
        bench_imports()
        bench_lifecycle(sim)
    bench_local_stack()


if __name__ == "__main__":
    main()
