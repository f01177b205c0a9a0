"""`make chaos`: `python -m chaos [--faults a,b] [--executions N] [--short] [--seed S]`.

Prints one row per fault (executions, converged, seconds to converge after the last submit, faults
injected, invariant violations), then every violation; exits 1 on any. `--short` is the run of
`make test` (the faults marked short, 50 executions each); `--failure-model` prints the table of
faults for docs/architecture.md; `--list` their names.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from asyncgate_dev.awsenv import use_dummy_aws_env
from chaos.faults import FAULTS, Fault, by_name
from chaos.harness import FaultResult, Matrix
from chaos.logs import capture_everything

DEFAULT_EXECUTIONS = 60
SHORT_EXECUTIONS = 50
# Small enough that webhook retry gaps (about 30 min in all) and SQS visibility timeouts pass in
# seconds; the sweeper runs every 0.6 s.
TIME_SCALE = 0.01


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--faults", help="comma-separated fault names (default: all)")
    parser.add_argument("--executions", type=int, help=f"executions per fault (default {DEFAULT_EXECUTIONS})")
    parser.add_argument("--short", action="store_true", help="the faults of `make test`, fewer executions")
    parser.add_argument("--seed", type=int, default=None, help="seed of the workloads and fault draws")
    parser.add_argument("--time-scale", type=float, default=TIME_SCALE)
    parser.add_argument("--log-file", type=Path, help="where everything logged goes (default: a temp file)")
    parser.add_argument("--log-level", default="INFO", help="the handlers' log level (default INFO)")
    parser.add_argument("--list", action="store_true", help="print the fault names and exit")
    parser.add_argument("--failure-model", action="store_true", help="print the failure model table and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(fault.name for fault in FAULTS))
        return 0
    if args.failure_model:
        print(failure_model())
        return 0
    try:
        faults = _chosen(args.faults, short=args.short)
    except ValueError as error:
        parser.error(str(error))
    executions = args.executions or (SHORT_EXECUTIONS if args.short else DEFAULT_EXECUTIONS)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    log_file = args.log_file or Path(tempfile.mkstemp(prefix="chaos-", suffix=".log")[1])
    return run(
        faults,
        executions=executions,
        seed=seed,
        time_scale=args.time_scale,
        log_file=log_file,
        log_level=args.log_level,
    )


def _chosen(names: str | None, *, short: bool) -> list[Fault]:
    if names:
        return by_name([name.strip() for name in names.split(",") if name.strip()])
    return [fault for fault in FAULTS if fault.short or not short]


def run(
    faults: list[Fault], *, executions: int, seed: int, time_scale: float, log_file: Path, log_level: str
) -> int:
    use_dummy_aws_env()
    # The handlers log at this level (the local stack's default is WARNING): more to search for secrets.
    os.environ["ASYNCGATE_LOG_LEVEL"] = log_level
    capture, terminal = capture_everything(log_file, log_level)
    print(
        f"chaos: {len(faults)} faults x {executions} executions, seed {seed}, logs in {log_file}",
        file=terminal,
    )
    print(_row("fault", "execs", "converged", "seconds", "injected", "violations"), file=terminal, flush=True)
    matrix = Matrix(time_scale=time_scale, seed=seed, capture=capture)
    results: list[FaultResult] = []
    started = time.monotonic()
    matrix.start()
    try:
        for number, fault in enumerate(faults, start=1):
            result = matrix.run(fault, number, executions)
            results.append(result)
            _print_row(result, terminal)
    finally:
        matrix.stop()
    return report(results, terminal, seconds=time.monotonic() - started, seed=seed)


def _row(*cells: object) -> str:
    name, *numbers = cells
    return f"{name!s:32} " + " ".join(f"{cell!s:>10}" for cell in numbers)


def _print_row(result: FaultResult, out: TextIO) -> None:
    seconds = f"{result.seconds:.1f}" if result.seconds is not None else "no"
    print(
        _row(
            result.fault.name,
            result.executions,
            result.converged,
            seconds,
            result.injected,
            len(result.violations),
        ),
        file=out,
        flush=True,
    )


def report(results: list[FaultResult], out: TextIO, *, seconds: float, seed: int) -> int:
    violations = [(result.fault.name, violation) for result in results for violation in result.violations]
    unconverged = [result.fault.name for result in results if result.seconds is None]
    print(f"\n{len(results)} faults in {seconds:.0f} s (seed {seed})", file=out)
    if unconverged:
        print(f"not converged within their bound: {', '.join(unconverged)}", file=out)
    if not violations:
        print("no invariant violated", file=out, flush=True)
        return 1 if unconverged else 0
    print(f"\n{len(violations)} violations:", file=out)
    for name, violation in violations:
        print(f"  [{name}] {violation}", file=out)
    out.flush()
    return 1


def failure_model() -> str:
    lines = ["| fault | what it does | how it converges |", "| --- | --- | --- |"]
    lines += [f"| `{fault.name}` | {fault.does} | {fault.converges} |" for fault in FAULTS]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
