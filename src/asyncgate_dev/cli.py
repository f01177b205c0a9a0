"""`asyncgate`: the command line for any deployment's public API, `asyncgate dev` for the local stack,
and `asyncgate admin` for operators (tenants, keys and credits, straight to a stack's table).

Exit status: 0 success (for `submit --wait` and `wait`: the execution succeeded), 1 the execution ended
failed or cancelled, 2 a usage error, an API or admin error (its code on stderr) or an unreachable API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from asyncgate.domain.accounts import DEFAULT_QUEUE_LIMIT
from asyncgate_client import ApiError, Client, Execution, Status, TransportError
from asyncgate_client.client import DEFAULT_API_KEY, DEFAULT_BASE_URL

EXIT_OK = 0
EXIT_EXECUTION_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """An argument argparse cannot check itself: JSON that does not parse, a file that cannot be read."""


class Output:
    """Human output through rich, or JSON only on stdout (one value a line) with --json."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # markup off: ids, URLs and server messages may hold square brackets.
        self.console = Console(highlight=False, markup=False)
        if not self.console.is_terminal and "COLUMNS" not in os.environ:
            # Piped output goes to grep and scripts: no cutting or wrapping at rich's 80-column default.
            self.console.width = 1000
        self.errors = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)

    def json(self, value: Any) -> None:
        # Plain print, not rich: no wrapping or colour may touch machine-read output.
        print(json.dumps(value), flush=True)

    def line(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, soft_wrap=True)

    def error(self, text: str) -> None:
        self.errors.print(text, style="red")

    def warning(self, text: str) -> None:
        self.errors.print(text, style="yellow")

    def fields(self, fields: list[tuple[str, str | None]]) -> None:
        """Name and value a line; empty values are left out."""
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for name, value in fields:
            if value:
                grid.add_row(name, value)
        self.console.print(grid)


Handler = Callable[[Client, argparse.Namespace, Output], int]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits on usage errors (2) and --help (0); main() returns the code so it runs in-process.
        return exc.code if isinstance(exc.code, int) else EXIT_OK if exc.code is None else EXIT_USAGE
    out = Output(args.json)
    if args.command == "dev":
        return _dev(args)
    if args.command == "admin":
        # Imported here: boto3 and the layer's stores, which the API commands do not need.
        from asyncgate_dev.admin import run_admin  # noqa: PLC0415

        return run_admin(args, out)
    handler: Handler = args.handler
    client = Client(args.base_url, args.api_key)
    try:
        return handler(client, args, out)
    except UsageError as exc:
        out.error(f"asyncgate: error: {exc}")
        return EXIT_USAGE
    except ApiError as exc:
        details = f" {json.dumps(exc.details, separators=(',', ':'))}" if exc.details else ""
        out.error(f"asyncgate: {exc.code} (HTTP {exc.status}): {exc.message}{details}")
        return EXIT_USAGE
    except TransportError as exc:
        out.error(f"asyncgate: cannot reach {args.base_url}: {exc.reason}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asyncgate", description="asyncgate's public API from the shell.")
    parser.add_argument(
        "--base-url",
        default=os.environ.get("ASYNCGATE_URL") or DEFAULT_BASE_URL,
        help="the API's base URL (env ASYNCGATE_URL; default %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("ASYNCGATE_API_KEY") or DEFAULT_API_KEY,
        help="the API key (env ASYNCGATE_API_KEY; default dev-key)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON only")
    # Per command too; SUPPRESS keeps an absent per-command flag from resetting the global one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", parents=[common], help="run the local stack")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--tenants", type=Path, default=None, metavar="FILE", help="JSON list of tenants")
    dev.add_argument("--time-scale", type=float, default=1.0, metavar="F", help="multiplies scheduled waits")

    submit = commands.add_parser("submit", parents=[common], help="submit a job")
    submit.add_argument("model")
    submit.add_argument("--input", required=True, metavar="JSON|@FILE", help="the input object")
    submit.add_argument("--webhook", metavar="URL", help="this execution's webhook URL")
    submit.add_argument("--metadata", metavar="JSON", help="object of string values")
    submit.add_argument("--wait", action="store_true", help="follow the execution to its end")
    submit.set_defaults(handler=_submit)

    for name, handler, text in (
        ("status", _status, "show one execution"),
        ("wait", _wait, "follow one execution to its end"),
        ("cancel", _cancel, "cancel one execution"),
    ):
        command = commands.add_parser(name, parents=[common], help=text)
        command.add_argument("execution_id", metavar="ID")
        command.set_defaults(handler=handler)

    listing = commands.add_parser("list", parents=[common], help="your executions, newest first")
    listing.add_argument("--status", choices=[status.value for status in Status])
    listing.add_argument("--model")
    listing.add_argument("--limit", type=int)
    listing.set_defaults(handler=_list)

    commands.add_parser("models", parents=[common], help="the model catalog").set_defaults(handler=_models)
    commands.add_parser("account", parents=[common], help="your account").set_defaults(handler=_account)

    webhooks = commands.add_parser("webhooks", parents=[common], help="tenant webhook endpoints")
    actions = webhooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="list endpoints").set_defaults(handler=_webhooks_list)
    create = actions.add_parser("create", parents=[common], help="create an endpoint")
    create.add_argument("url")
    create.add_argument("--events", metavar="E,...", help="comma-separated event types")
    create.set_defaults(handler=_webhooks_create)
    delete = actions.add_parser("delete", parents=[common], help="delete an endpoint")
    delete.add_argument("endpoint_id", metavar="ID")
    delete.set_defaults(handler=_webhooks_delete)
    actions.add_parser(
        "secret", parents=[common], help="the secret signing per-execution webhooks"
    ).set_defaults(handler=_webhooks_secret)
    _add_admin(commands, common)
    return parser


def _add_admin(commands: Any, common: argparse.ArgumentParser) -> None:
    """`admin ...`: straight to a stack's table, not through the API (asyncgate_dev.admin). Each command
    names its action in `admin_action`."""
    # On every level, like --json: `admin --local tenant list` and `admin tenant list --local` alike.
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "--table",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="the stack's table, its output ExecutionsTableName (env ASYNCGATE_TABLE)",
    )
    target.add_argument("--region", default=argparse.SUPPRESS, help="the table's AWS region")
    target.add_argument(
        "--endpoint-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="another DynamoDB endpoint (env AWS_ENDPOINT_URL)",
    )
    target.add_argument(
        "--dlq-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="the poll queue's dead-letter queue, the stack's output PollDeadLetterQueueUrl "
        "(env ASYNCGATE_POLL_DLQ_URL)",
    )
    target.add_argument(
        "--local", action="store_true", default=argparse.SUPPRESS, help="the running local stack (make dev)"
    )
    parents = [common, target]
    admin = commands.add_parser(
        "admin", parents=parents, help="tenants, API keys, credits, queue limits, dead poll ticks"
    )
    objects = admin.add_subparsers(dest="admin_object", required=True, metavar="OBJECT")

    def group(name: str, text: str) -> Any:
        return objects.add_parser(name, parents=parents, help=text).add_subparsers(
            dest="admin_verb", required=True, metavar="ACTION"
        )

    def command(actions: Any, name: str, action: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, parents=parents, help=text)
        parser.set_defaults(admin_action=action)
        return parser

    tenant = group("tenant", "tenant accounts")
    create = command(tenant, "create", "tenant create", "open a tenant's account")
    create.add_argument("tenant", metavar="TENANT")
    create.add_argument("--queue-limit", type=int, default=DEFAULT_QUEUE_LIMIT, metavar="N")
    create.add_argument("--credits", type=_credits, default=0, metavar="X", help="the opening balance")
    command(tenant, "show", "tenant show", "a tenant's account").add_argument("tenant", metavar="TENANT")
    command(tenant, "list", "tenant list", "every tenant's account")

    key = group("key", "a tenant's API keys")
    issue = command(key, "issue", "key issue", "issue a key (shown once: only its hash is stored)")
    issue.add_argument("tenant", metavar="TENANT")
    issue.add_argument("--scopes", metavar="S,...", help="comma-separated scopes (default: all)")
    issue.add_argument("--name", help="a label for the key")
    command(key, "list", "key list", "a tenant's keys").add_argument("tenant", metavar="TENANT")
    revoke = command(key, "revoke", "key revoke", "revoke a key")
    revoke.add_argument("tenant", metavar="TENANT")
    revoke.add_argument("key_id", metavar="KEY_ID")

    add = command(group("credits", "a tenant's credits"), "add", "credits add", "grant credits")
    add.add_argument("tenant", metavar="TENANT")
    add.add_argument("amount", type=_credits, metavar="AMOUNT", help="negative: a correction")
    add.add_argument("--note", metavar="TEXT", help="why, kept in the ledger")

    limit = command(group("queue-limit", "a tenant's queue limit"), "set", "queue-limit set", "set it")
    limit.add_argument("tenant", metavar="TENANT")
    limit.add_argument("queue_limit", type=int, metavar="N")

    ledger = command(objects, "ledger", "ledger", "a tenant's credit movements, newest first")
    ledger.add_argument("tenant", metavar="TENANT")
    ledger.add_argument("--limit", type=int, default=20, metavar="N", help="entries shown (default 20)")

    dlq = group("dlq", "the poll queue's dead-letter queue: ticks that failed five times")
    listed = command(dlq, "list", "dlq list", "the dead ticks, each with its execution's state now")
    listed.add_argument("--limit", type=int, default=100, metavar="N", help="ticks shown (default 100)")
    redrive = command(dlq, "redrive", "dlq redrive", "send dead ticks back to the poll queue, due at once")
    redrive.add_argument("--limit", type=int, default=1000, metavar="N", help="ticks moved (default 1000)")


def _dev(args: argparse.Namespace) -> int:
    # Imported here: the local stack pulls in the server and the AWS emulator, which no other command needs.
    from asyncgate_dev.localstack import run_dev  # noqa: PLC0415

    return run_dev(host=args.host, port=args.port, tenants_file=args.tenants, time_scale=args.time_scale)


def _submit(client: Client, args: argparse.Namespace, out: Output) -> int:
    payload = _json_object(args.input, "--input", allow_file=True)
    metadata = None if args.metadata is None else _json_object(args.metadata, "--metadata")
    accepted = client.submit(args.model, payload, webhook_url=args.webhook, metadata=metadata)
    if out.as_json:
        out.json(accepted.to_wire())
    else:
        out.line(f"accepted {accepted.execution_id} ({accepted.model}, {accepted.status})")
    return _follow(client, accepted.execution_id, out) if args.wait else EXIT_OK


def _status(client: Client, args: argparse.Namespace, out: Output) -> int:
    execution = client.get(args.execution_id)
    if out.as_json:
        out.json(execution.to_wire())
    else:
        _print_execution(execution, out)
    return EXIT_OK


def _wait(client: Client, args: argparse.Namespace, out: Output) -> int:
    return _follow(client, args.execution_id, out)


def _cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    answer = client.cancel(args.execution_id)
    if out.as_json:
        out.json(answer.to_wire())
    else:
        out.line(f"{answer.execution_id}: {answer.previous_status} -> {answer.status}  {answer.message}")
    return EXIT_OK


def _list(client: Client, args: argparse.Namespace, out: Output) -> int:
    page = client.list(status=args.status, model=args.model, limit=args.limit)
    if out.as_json:
        out.json(page.to_wire())
        return EXIT_OK
    if not page.items:
        out.line("no executions")
        return EXIT_OK
    table = Table(box=None)
    # Ids are what the other commands take: never cut, whatever the terminal's width.
    table.add_column("ID", no_wrap=True, min_width=max(len(e.execution_id) for e in page.items))
    for name in ("MODEL", "STATUS", "PROGRESS", "CREATED"):
        table.add_column(name)
    for execution in page.items:
        table.add_row(
            execution.execution_id,
            execution.model,
            execution.status,
            _percent(execution.progress),
            display_time(execution.created_at),
        )
    out.console.print(table)
    if page.next_cursor is not None:
        out.line("more executions exist (the API's nextCursor pages through them)", style="dim")
    return EXIT_OK


def _models(client: Client, args: argparse.Namespace, out: Output) -> int:
    models = client.models()
    if out.as_json:
        out.json({"items": [model.to_wire() for model in models]})
        return EXIT_OK
    table = Table("MODEL", "PROVIDER", "ASYNC", "CANCEL", "EXPECTED", "MAX", "CREDITS", box=None)
    for model in models:
        table.add_row(
            model.model,
            model.provider,
            _yes_no(model.is_async),
            _yes_no(model.cancel),
            f"{model.expected_duration_seconds:g}s",
            f"{model.max_duration_seconds:g}s",
            f"{model.price.credits:g}",
        )
    out.console.print(table)
    return EXIT_OK


def _account(client: Client, args: argparse.Namespace, out: Output) -> int:
    account = client.account()
    if out.as_json:
        out.json(account.to_wire())
        return EXIT_OK
    out.fields(
        [
            ("tenant", account.tenant),
            ("credits", display_number(account.credits)),
            ("reserved", display_number(account.reserved_credits)),
            ("live", f"{account.live_executions} of {account.queue_limit}"),
            ("scopes", ", ".join(account.scopes)),
        ],
    )
    return EXIT_OK


def _webhooks_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    endpoints = client.webhooks()
    if out.as_json:
        out.json({"items": [endpoint.to_wire() for endpoint in endpoints]})
        return EXIT_OK
    if not endpoints:
        out.line("no webhook endpoints")
        return EXIT_OK
    table = Table("ID", "URL", "EVENTS", "CREATED", box=None)
    for endpoint in endpoints:
        table.add_row(
            endpoint.id, endpoint.url, ", ".join(endpoint.events), display_time(endpoint.created_at)
        )
    out.console.print(table)
    return EXIT_OK


def _webhooks_create(client: Client, args: argparse.Namespace, out: Output) -> int:
    events = None if args.events is None else [e.strip() for e in args.events.split(",") if e.strip()]
    endpoint = client.create_webhook(args.url, events=events)
    if out.as_json:
        out.json(endpoint.to_wire())
        return EXIT_OK
    out.fields(
        [
            ("id", endpoint.id),
            ("url", endpoint.url),
            ("events", ", ".join(endpoint.events)),
            ("secret", f"{endpoint.secret} (shown only now)" if endpoint.secret else None),
        ],
    )
    return EXIT_OK


def _webhooks_delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    client.delete_webhook(args.endpoint_id)
    if out.as_json:
        out.json({"id": args.endpoint_id, "deleted": True})
    else:
        out.line(f"deleted {args.endpoint_id}")
    return EXIT_OK


def _webhooks_secret(client: Client, args: argparse.Namespace, out: Output) -> int:
    secret = client.webhook_secret()
    if out.as_json:
        out.json({"secret": secret})
    else:
        out.line(secret)
    return EXIT_OK


def _follow(client: Client, execution_id: str, out: Output) -> int:
    """Wait for the end, showing each change; the exit status says whether the execution succeeded."""
    if out.as_json:
        # Every change a line; the terminal state is a change too, so it is the last line.
        final = client.wait(execution_id, on_change=lambda execution: out.json(execution.to_wire()))
    elif out.console.is_terminal:
        final = _follow_with_bar(client, execution_id, out)
    else:
        started = time.monotonic()
        final = client.wait(
            execution_id,
            on_change=lambda execution: out.line(
                f"{time.monotonic() - started:6.1f}s  {execution.status}  {_percent(execution.progress)}"
            ),
        )
    if not out.as_json:
        _print_outcome(final, out)
    return EXIT_OK if final.status == Status.SUCCEEDED else EXIT_EXECUTION_FAILED


def _follow_with_bar(client: Client, execution_id: str, out: Output) -> Execution:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out.console) as bar:
        # No total until the provider reports progress: the bar pulses instead of sitting at 0 %.
        task = bar.add_task(execution_id, total=None)

        def show(execution: Execution) -> None:
            description = f"{execution.execution_id} {execution.status}"
            if execution.progress is None:
                bar.update(task, description=description)
            else:
                bar.update(task, description=description, total=100.0, completed=execution.progress)

        return client.wait(execution_id, on_change=show)


def _print_outcome(execution: Execution, out: Output) -> None:
    took = ""
    if execution.completed_at is not None:
        seconds = (execution.completed_at - (execution.started_at or execution.created_at)).total_seconds()
        took = f" in {seconds:.1f}s"
    if execution.status == Status.SUCCEEDED:
        cost = f", {execution.cost.credits:g} credits" if execution.cost is not None else ""
        out.line(f"succeeded {execution.execution_id}{took}{cost}", style="green")
        for output in execution.result.outputs if execution.result is not None else []:
            out.line(f"  {output.url}" + (f"  ({output.content_type})" if output.content_type else ""))
    elif execution.error is not None:
        message = f"{execution.error.code}: {execution.error.message}"
        out.line(f"{execution.status} {execution.execution_id}{took}: {message}", style="red")
    else:
        out.line(f"{execution.status} {execution.execution_id}{took}", style="yellow")


def _print_execution(execution: Execution, out: Output) -> None:
    result = execution.result
    error = execution.error
    webhook = execution.webhook
    out.fields(
        [
            ("id", execution.execution_id),
            ("model", execution.model),
            ("status", str(execution.status)),
            ("progress", _percent(execution.progress) or None),
            ("created", display_time(execution.created_at)),
            ("started", display_time(execution.started_at)),
            ("completed", display_time(execution.completed_at)),
            ("provider id", execution.provider_request_id),
            ("outputs", "\n".join(o.url for o in result.outputs) if result and result.outputs else None),
            ("error", f"{error.code}: {error.message}" if error else None),
            ("cost", f"{execution.cost.credits:g} credits" if execution.cost else None),
            ("metadata", json.dumps(execution.metadata) if execution.metadata else None),
            (
                "webhook",
                f"{webhook.state}, {len(webhook.attempts)} attempt(s), {webhook.url}"
                if webhook.configured
                else None,
            ),
            ("deleted after", display_time(execution.cleanup_after)),
        ],
    )


def _json_object(text: str, option: str, *, allow_file: bool = False) -> dict[str, Any]:
    if allow_file and text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{option}: cannot read {path}: {exc}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{option}: must be a JSON object")
    return value


def _credits(text: str) -> int | float:
    """A credit amount: an integer when written as one."""
    with contextlib.suppress(ValueError):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _percent(progress: float | None) -> str:
    return "" if progress is None else f"{progress:.0f}%"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def display_time(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%SZ")


def display_number(value: float) -> str:
    """Credits as written, never in exponent form (`:g` shows a million as 1e+06)."""
    return f"{value:f}".rstrip("0").rstrip(".")


if __name__ == "__main__":
    sys.exit(main())
