"""`asyncgate dev`: the whole system on one machine, no AWS account and no Docker.

Faithful rather than a second implementation: moto runs as a real server on loopback (in a process of
its own, asyncgate_dev.motoserver; Step Functions in this one) and the handlers reach it through
boto3's own AWS_ENDPOINT_URL; every resource, route, environment variable, timeout, event source and
schedule is read from template.yaml by the loader the tests use; each function runs in
"containers" (separate copies of its module, one request at a time each), as in Lambda. The simulated
provider runs on its own loopback port. Nothing persists across restarts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import queue
import re
import secrets
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from asyncgate.domain.accounts import TENANT_ID
from asyncgate.domain.catalog import Number
from asyncgate.domain.webhooks import check_webhook_secret, new_webhook_secret
from asyncgate_dev import motofix, routerfix
from asyncgate_dev.apigw import http_event, match_route, read_response
from asyncgate_dev.awsenv import use_dummy_aws_env
from asyncgate_dev.handlers import REPO_ROOT, TEMPLATE_PATH, load_function_module
from asyncgate_dev.lambda_runtime import InvocationDied, InvocationKilled, LambdaContext, deliver_sqs_batch
from asyncgate_dev.localfile import LocalConnection, remove_local_file, write_local_file
from asyncgate_dev.motoserver import EmulatorProcess
from asyncgate_dev.simprovider import SimProviderServer
from asyncgate_dev.stepfunctions import start_state_machine_runner
from asyncgate_dev.streams import start_stream_runners
from asyncgate_dev.template import (
    FunctionSpec,
    Route,
    SqsEventSource,
    Stack,
    TemplateError,
    load_template,
    provision,
)

# API Gateway's own limit on a request body, and its answers when it cannot reach a function.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
GATEWAY_ERROR = b'{"message":"Internal Server Error"}'
# How many requests one function serves at once (Lambda's concurrency, kept small on a laptop).
DEFAULT_CONCURRENCY = 8
STOP_WITHIN_SECONDS = 5.0
# Concurrent receivers per SQS event source mapping (Lambda starts with a handful, too).
MAX_POLLERS = 4
ALL_SCOPES = ["execution:write", "execution:read", "execution:cancel", "webhook:manage"]
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}

log = logging.getLogger("asyncgate.dev")


class TenantSeed(BaseModel):
    """One entry of `--tenants FILE` (API.md: every field but tenant and apiKey optional)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    tenant: str = Field(pattern=TENANT_ID.pattern)
    api_key: str = Field(min_length=1, max_length=256)
    scopes: list[str] = Field(default_factory=lambda: list(ALL_SCOPES))
    queue_limit: int = Field(default=100_000, ge=0)
    credits: Number = Field(default=1_000_000, ge=0)
    # Standard Webhooks: `whsec_` + standard base64 of 24-64 bytes (checked: see check_webhook_secret).
    webhook_secret: str = Field(default_factory=new_webhook_secret)

    @field_validator("webhook_secret")
    @classmethod
    def _standard_webhooks_secret(cls, secret: str) -> str:
        return check_webhook_secret(secret)


DEFAULT_TENANT = TenantSeed(tenant="dev", api_key="dev-key")


def load_tenants(path: Path | None) -> list[TenantSeed]:
    if path is None:
        return [DEFAULT_TENANT]
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entries, list) or not entries:
            raise ValueError("expected a non-empty JSON list of tenants")
        tenants = [TenantSeed.model_validate(entry) for entry in entries]
        tenant_secrets(tenants)
    except (OSError, ValueError, ValidationError) as error:
        raise StackError(f"--tenants {path}: {error}") from error
    return tenants


def tenant_secrets(tenants: list[TenantSeed]) -> dict[str, str]:
    """Each tenant's webhook signing secret: the one its entries give (a tenant may have several keys,
    hence several entries), else the first entry's generated one. Two different given secrets for one
    tenant are refused (ValueError)."""
    generated: dict[str, str] = {}
    given: dict[str, str] = {}
    for seed in tenants:
        generated.setdefault(seed.tenant, seed.webhook_secret)
        explicit = "webhook_secret" in seed.model_fields_set
        if explicit and given.setdefault(seed.tenant, seed.webhook_secret) != seed.webhook_secret:
            raise ValueError(f"tenant {seed.tenant!r} has entries with different webhookSecrets")
    return generated | given


def unset_leaves_developers_own(template: dict[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The template's variables, except those it leaves empty (a parameter not set) that the developer
    has set: their `REPLICATE_API_TOKEN`, `ASYNCGATE_FAL_URL` and the like reach the handlers, so the
    local stack calls a real provider when its key is exported (docs/providers.md)."""
    return {name: value for name, value in template.items() if value or not environ.get(name)}


DEVELOPER_KNOBS = ("PROVIDER_CALLBACKS", "CALLBACK_SAFETY_NET_SECONDS")


class StackError(Exception):
    """A startup failure worth one line to the user (a busy port, a bad tenants file)."""


def rate_seconds(expression: str) -> float:
    """The period of an EventBridge `rate(...)` expression."""
    found = _RATE.match(expression.strip())
    if not found:
        raise TemplateError(f"the local stack runs rate(...) schedules only, not {expression!r}")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2).removesuffix("s")]


@dataclass
class FunctionRuntime:
    """A function's warm containers: separate copies of its module, each serving one call at a time."""

    spec: FunctionSpec
    concurrency: int = DEFAULT_CONCURRENCY
    _idle: queue.LifoQueue[ModuleType] = field(default_factory=queue.LifoQueue)
    _created: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: threading.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = threading.Semaphore(self.concurrency)

    @property
    def name(self) -> str:
        return self.spec.logical_id

    def _handler_parts(self) -> tuple[Path, str, str]:
        module, _, function = self.spec.handler.rpartition(".")
        return REPO_ROOT / self.spec.code_uri, module, function

    @contextlib.contextmanager
    def _container(self) -> Iterator[ModuleType]:
        with self._slots:
            try:
                module = self._idle.get_nowait()
            except queue.Empty:
                with self._lock:
                    self._created += 1
                    instance = str(self._created)
                code_dir, module_name, _ = self._handler_parts()
                module = load_function_module(code_dir, module_name, instance=instance)
            died = False
            try:
                yield module
            except InvocationDied:
                died = True  # Lambda replaces a sandbox that died: this copy serves nothing more
                raise
            finally:
                if not died:
                    self._idle.put(module)

    def invoke(self, event: dict[str, Any], context: LambdaContext | None = None) -> Any:
        """Call the handler in a free container (waiting for one past the concurrency limit)."""
        _, _, function = self._handler_parts()
        with self._container() as module:
            context = context or LambdaContext(
                function_name=self.name, timeout_seconds=float(self.spec.timeout)
            )
            try:
                return getattr(module, function)(event, context)
            except InvocationKilled as killed:
                raise InvocationDied(f"{self.name} died mid-invocation: {killed}") from None

    def warm(self) -> None:
        """Import the handler once now, so the first request does not pay the import (and a broken
        handler fails at startup, not at first use)."""
        with self._container():
            pass


@dataclass
class LocalStack:
    host: str = "127.0.0.1"
    port: int = 3000
    time_scale: float = 1.0
    tenants: list[TenantSeed] = field(default_factory=lambda: [DEFAULT_TENANT])
    template_path: Path = TEMPLATE_PATH

    stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _moto: Any = None
    _emulator: EmulatorProcess | None = None
    _sim: SimProviderServer | None = None
    _http: ThreadingHTTPServer | None = None
    stack: Stack | None = None
    functions: dict[str, FunctionRuntime] = field(default_factory=dict)

    @property
    def sim(self) -> SimProviderServer:
        assert self._sim is not None
        return self._sim

    @property
    def sim_url(self) -> str:
        assert self._sim is not None
        return self._sim.url

    @property
    def url(self) -> str:
        assert self._http is not None
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalStack:
        # The port first: a busy port is the likeliest failure and should cost nothing to report.
        self._http = _bind(self.host, self.port, self)
        # The emulator in a process of its own (asyncgate_dev.motoserver): the handlers get a core.
        self._emulator = EmulatorProcess.spawn()
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - heavy, only when the stack runs

        motofix.install()
        # Many requests at once in one process: each must see only its own event, as in Lambda.
        routerfix.install()
        # Step Functions in this process: asyncgate_dev.stepfunctions records outcomes in moto's own objects.
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        moto_host, moto_port = self._moto.get_host_and_port()
        use_dummy_aws_env()
        os.environ["AWS_ENDPOINT_URL"] = self._emulator.url()
        os.environ["AWS_ENDPOINT_URL_SFN"] = f"http://{moto_host!s}:{moto_port}"
        self._sim = SimProviderServer().start()

        import boto3  # noqa: PLC0415 - after AWS_ENDPOINT_URL is set

        template = load_template(self.template_path)
        refuse_what_does_not_run(template)
        self.stack = provision(
            template,
            boto3.client("dynamodb"),
            boto3.client("sqs"),
            base_dir=REPO_ROOT,
            stepfunctions=boto3.client("stepfunctions"),  # state machines: asyncgate_dev.stepfunctions
            # The results bucket on moto's S3: presigned URLs signed against the emulator's endpoint work.
            s3=boto3.client("s3"),
            secretsmanager=boto3.client("secretsmanager"),
        )
        self._scale_visibility_timeouts(boto3.client("sqs"))
        self._export_environment()
        self._seed_tenants()
        self.functions = {
            logical_id: FunctionRuntime(spec) for logical_id, spec in self.stack.functions().items()
        }
        for runtime in self.functions.values():
            runtime.warm()
        self._start_sqs_runners()
        # DynamoDB Streams event sources (asyncgate_dev.streams): one poller thread per mapping.
        start_stream_runners(self.stack, self.functions, self.stopping, self._spawn)
        self._start_schedules()
        # Step Functions (asyncgate_dev.stepfunctions): executions moto records are run by the interpreter.
        start_state_machine_runner(
            self.stack, self.functions, self.stopping, self._spawn, time_scale=self.time_scale
        )
        self._spawn(self._http.serve_forever, "http")
        return self

    def _scale_visibility_timeouts(self, sqs: Any) -> None:
        """A failed message's wait before it is retried is a scheduled wait too: it shrinks with the
        time scale (whole seconds, at least 1, as SQS allows)."""
        assert self.stack is not None
        for logical_id, resource in self.stack.template["Resources"].items():
            if resource.get("Type") != "AWS::SQS::Queue":
                continue
            queue_url = self.stack.ref(logical_id)
            current = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
            seconds = int(current["Attributes"]["VisibilityTimeout"])
            scaled = max(1, math.ceil(seconds * self.time_scale))
            sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": str(scaled)})

    @property
    def aws_endpoint(self) -> str:
        return os.environ["AWS_ENDPOINT_URL"]

    def connection(self) -> LocalConnection:
        """Where `asyncgate admin --local` finds this stack: its table is the output a deployed stack
        names it by, too."""
        assert self.stack is not None
        outputs = self.stack.outputs()
        return LocalConnection(
            api_url=self.url,
            aws_endpoint=self.aws_endpoint,
            region=os.environ["AWS_DEFAULT_REGION"],
            table_name=outputs["ExecutionsTableName"],
            poll_dlq_url=outputs["PollDeadLetterQueueUrl"],
        )

    def _export_environment(self) -> None:
        """The functions' environment, from the template. One process holds every function, so their
        variables must agree; a variable two functions set differently is refused, not guessed."""
        assert self.stack is not None
        merged: dict[str, str] = {}
        for logical_id in self.stack.functions():
            for name, value in self.stack.function_environment(logical_id).items():
                if merged.setdefault(name, value) != value:
                    raise StackError(
                        f"functions disagree on {name}; the local stack runs them in one process"
                    )
        assert self._sim is not None
        merged |= {
            "SIM_PROVIDER_URL": self._sim.url,
            # Providers call back where clients come in: the local gateway itself.
            "PUBLIC_URL": self.url,
            "TIME_SCALE": str(self.time_scale),
            "ALLOW_LOOPBACK_WEBHOOKS": "true",
            # Quiet by default: no per-request metric documents on the console.
            "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
            "POWERTOOLS_LOG_LEVEL": os.environ.get("ASYNCGATE_LOG_LEVEL", "WARNING"),
        }
        # Knobs a developer's own environment turns, whatever the template's default (e.g.
        # PROVIDER_CALLBACKS=off: every job polled, as without callbacks).
        merged |= {name: os.environ[name] for name in DEVELOPER_KNOBS if os.environ.get(name)}
        os.environ.update(unset_leaves_developers_own(merged, os.environ))

    def _seed_tenants(self) -> None:
        from asyncgate.services.deps import default_deps  # noqa: PLC0415 - reads the exported env
        from asyncgate.services.tenants import create_tenant, issue_key  # noqa: PLC0415
        from asyncgate.store.keys import Scope  # noqa: PLC0415

        deps = default_deps()
        try:
            secrets_by_tenant = tenant_secrets(self.tenants)
        except ValueError as error:
            raise StackError(str(error)) from None
        for seed in self.tenants:
            # A tenant's first entry opens its account; later ones only add keys.
            create_tenant(
                deps,
                seed.tenant,
                queue_limit=seed.queue_limit,
                credits=seed.credits,
                webhook_secret=secrets_by_tenant[seed.tenant],
            )
            issue_key(
                deps, seed.tenant, frozenset(Scope(scope) for scope in seed.scopes), api_key=seed.api_key
            )

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=f"asyncgate-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_sqs_runners(self) -> None:
        import boto3  # noqa: PLC0415

        assert self.stack is not None
        sqs = boto3.client("sqs")
        for source in self.stack.sqs_event_sources():
            if not source.enabled:
                continue
            runtime = self.functions[source.function]
            pollers = min(runtime.concurrency, source.maximum_concurrency or runtime.concurrency, MAX_POLLERS)
            for index in range(pollers):
                self._spawn(
                    partial(self._poll_queue, sqs, self.stack.ref(source.queue), runtime, source),
                    f"sqs-{source.function}-{index}",
                )

    def _poll_queue(self, sqs: Any, queue_url: str, runtime: FunctionRuntime, source: SqsEventSource) -> None:
        """One poller of an event source mapping: receive a batch, invoke, delete what succeeded."""
        while not self.stopping.is_set():
            try:
                deliver_sqs_batch(
                    sqs,
                    queue_url,
                    runtime.invoke,
                    batch_size=source.batch_size,
                    wait_seconds=min(20, max(1, source.maximum_batching_window_seconds)),
                    timeout_seconds=float(runtime.spec.timeout),
                    function_name=runtime.name,
                    report_batch_item_failures="ReportBatchItemFailures" in source.function_response_types,
                )
            except Exception:
                if not self.stopping.is_set():
                    log.exception("SQS poller for %s failed; retrying", runtime.name)
                    self.stopping.wait(1.0)

    def _start_schedules(self) -> None:
        assert self.stack is not None
        for schedule in self.stack.schedules():
            if not schedule.enabled:
                continue
            period = rate_seconds(schedule.expression) * self.time_scale
            runtime = self.functions[schedule.function]
            self._spawn(
                partial(self._run_schedule, runtime, period, schedule.input), f"schedule-{schedule.function}"
            )

    def _run_schedule(self, runtime: FunctionRuntime, period: float, payload: str | None) -> None:
        while not self.stopping.wait(period):
            event = json.loads(payload) if payload else scheduled_event(runtime.name)
            try:
                runtime.invoke(event)
            except Exception:
                log.exception("scheduled run of %s failed", runtime.name)

    def route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The template's route for a request, as API Gateway picks it: exact paths before paths with
        parameters, then the `$default` route."""
        assert self.stack is not None
        routes = self.stack.http_routes()
        ranked = sorted(
            (route for route in routes if route.path != "$default"), key=lambda route: route.path.count("{")
        )
        for route in ranked:
            parameters = match_route(route.path, path)
            if parameters is not None and route.method in {method, "ANY"}:
                return route, parameters
        fallback = next((route for route in routes if route.path == "$default"), None)
        return (fallback, {}) if fallback else None

    def stop(self) -> None:
        self.stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        deadline = time.monotonic() + STOP_WITHIN_SECONDS - 1
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._sim is not None:
            self._sim.stop()
        if self._moto is not None:
            self._moto.stop()
        if self._emulator is not None:
            self._emulator.stop()


# What the local stack runs. Anything else in the template is refused at startup rather than silently
# left out, so the local stack never pretends to be the whole system when it is not.
RUNS_RESOURCES = frozenset(
    {
        "AWS::Serverless::Function",
        "AWS::Serverless::LayerVersion",
        "AWS::Serverless::HttpApi",
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::SecretsManager::Secret",
        "AWS::Logs::LogGroup",
        "AWS::Serverless::StateMachine",  # run by asyncgate_dev.stepfunctions
        "AWS::StepFunctions::StateMachine",
    }
)
RUNS_EVENTS = frozenset({"HttpApi", "SQS", "Schedule", "DynamoDB"})


def refuse_what_does_not_run(template: dict[str, Any]) -> None:
    missing = set()
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") not in RUNS_RESOURCES:
            missing.add(f"{logical_id} ({resource.get('Type')})")
        for name, event in (resource.get("Properties", {}).get("Events") or {}).items():
            if event.get("Type") not in RUNS_EVENTS:
                missing.add(f"{logical_id}.{name} ({event.get('Type')} event)")
    if missing:
        raise StackError("the local stack does not run " + ", ".join(sorted(missing)) + " yet")


def scheduled_event(function: str) -> dict[str, Any]:
    """The event EventBridge sends a scheduled rule's target."""
    return {
        "version": "0",
        "id": secrets.token_hex(16),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{function}-schedule"],
        "detail": {},
    }


def _bind(host: str, port: int, stack: LocalStack) -> ThreadingHTTPServer:
    handler = type("BoundGatewayHandler", (GatewayHandler,), {"stack": stack})
    try:
        server = GatewayServer((host, port), handler)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise StackError(f"port {port} on {host} is already in use") from None
        raise StackError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return server


class GatewayServer(ThreadingHTTPServer):
    # A burst of clients must queue, not be reset (the default backlog is 5).
    request_queue_size = 512
    daemon_threads = True


class GatewayHandler(BaseHTTPRequestHandler):
    """API Gateway (HTTP API, payload 2.0) in front of the template's functions."""

    stack: LocalStack
    protocol_version = "HTTP/1.1"
    server_version = "asyncgate-local"
    # Headers and body go out as separate writes: without this, keep-alive clients wait ~40 ms each
    # answer on the delayed-ACK / Nagle interplay.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._answer(413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}')
            return
        body = self.rfile.read(length) if length else None
        found = self.stack.route(self.command, split.path)
        if found is None:
            self._answer(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
            return
        route, parameters = found
        event = http_event(
            self.command,
            split.path,
            route_key=route.route_key,
            path_parameters=parameters or None,
            headers={name: value for name, value in self.headers.items()},
            raw_query=split.query,
            body=body,
            source_ip=self.client_address[0],
        )
        try:
            answer = read_response(self.stack.functions[route.function].invoke(event))
        except Exception:
            log.exception("function %s failed", route.function)
            self._answer(500, {"content-type": "application/json"}, GATEWAY_ERROR)
            return
        self._answer(answer.status, answer.headers, answer.body, answer.cookies)

    def _answer(
        self, status: int, headers: dict[str, str], body: bytes, cookies: tuple[str, ...] = ()
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name not in {"content-length", "connection", "transfer-encoding"}:
                self.send_header(name, value)
        for cookie in cookies:
            self.send_header("set-cookie", cookie)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def __getattr__(self, name: str) -> Any:
        # Every method, as API Gateway's ANY route takes them (the base class answers 501 for a
        # method without a `do_` handler, TRACE or QUERY say, where the contract wants 404 NOT_FOUND).
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def run_dev(*, host: str, port: int, tenants_file: Path | None, time_scale: float) -> int:
    """Serve until Ctrl-C or SIGTERM; the exit code of `asyncgate dev`."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # Requests that publish no metric of their own (a 404, a stale tick) are normal, not worth a warning.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    if time_scale <= 0:
        print("asyncgate dev: --time-scale must be greater than 0", file=sys.stderr)
        return 2
    try:
        stack = LocalStack(
            host=host, port=port, time_scale=time_scale, tenants=load_tenants(tenants_file)
        ).start()
    except StackError as error:
        print(f"asyncgate dev: {error}", file=sys.stderr)
        return 1
    done = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for seed in stack.tenants:
        print(f"tenant {seed.tenant}: API key {seed.api_key} (scopes: {', '.join(seed.scopes)})")
    print(f"simulated provider at {stack.sim_url}; AWS emulator at {stack.aws_endpoint}")
    print(f"time scale {time_scale}: every scheduled wait is {time_scale}x its length in AWS")
    connection = stack.connection()
    connection_file = write_local_file(connection)
    print(f"connection file for `asyncgate admin --local`: {connection_file}")
    print(f"asyncgate ready at {stack.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
        stack.stop()
    finally:
        remove_local_file(connection_file, connection)
    print("asyncgate stopped", flush=True)
    return 0
