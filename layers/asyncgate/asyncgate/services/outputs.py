"""Outputs into the results bucket: what a poll's outputs become on the execution, each copied from the
provider before the transition is written (the copy's outcome is part of the same write)."""

from __future__ import annotations

import hashlib
import time

from aws_lambda_powertools.metrics import MetricUnit

from asyncgate import budget
from asyncgate.domain.execution import Execution, OutputRef
from asyncgate.observability import logger, metrics
from asyncgate.providers.base import Output
from asyncgate.services.deps import Deps
from asyncgate.store.results import OUT_OF_TIME, redacted

# Copying one poll's outputs into the results bucket takes at most this long, all outputs and attempts
# together (poll_tick reserves it on top of the provider calls); what is left over is copied at the next
# tick (when the job has just succeeded, within the lifecycle's few extra copy rounds).
COPY_BUDGET_SECONDS = 40.0
# When the job has succeeded, the waits before the second and third attempt of a failed copy.
COPY_RETRY_WAITS = (0.5, 1.0)
# The most outputs an execution keeps (each is a few hundred bytes of its item, which holds 400 KB).
MAX_OUTPUTS = 100


def _output(output: Output) -> OutputRef:
    return OutputRef(url=output.url, content_type=output.content_type)


def kept_url(url: str) -> str:
    """The source URL as the execution keeps it: a `data:` URL (a text result, up to megabytes) only by
    its media type and digest, which still tells it apart from another; any other URL as it is."""
    if url[:5].lower() != "data:":
        return url
    digest = hashlib.sha256(url.encode()).hexdigest()
    return f"{url.partition(',')[0][:100]},sha256:{digest}"


def _kept(output: OutputRef) -> OutputRef:
    """A copied output keeps its source only by `kept_url` (it is read from the results bucket); one
    not copied keeps its URL whole, since that is where it is read."""
    return output.model_copy(update={"url": kept_url(output.url)}) if output.stored else output


def stored_outputs(
    deps: Deps, execution: Execution, outputs: list[Output], *, final: bool
) -> list[OutputRef]:
    """The polled outputs, each copied into the results bucket before the commit unless the execution
    already holds its copy (matched by the provider's URL). A failed copy is recorded on its output
    (`copy_error`) and tried again at the next tick; on the final poll of a job that succeeded, a
    failed copy is tried up to three times at once, and what still fails keeps the provider's URL: the
    execution succeeds all the same, and says which outputs are copied."""
    known = execution.result.outputs if execution.result else []
    deadline = time.monotonic() + budget.seconds_left(COPY_BUDGET_SECONDS)
    if len(outputs) > MAX_OUTPUTS:
        logger.warning("outputs beyond the bound are not kept", extra={"outputs": len(outputs)})
    stored: list[OutputRef] = []
    for index, polled in enumerate(outputs[:MAX_OUTPUTS]):
        output = _output(polled)
        before = _known_output(known, index, output.url)
        if before is not None and (before.stored or before.copy_refused):
            # Carried over, under the provider's latest URL (which may carry a renewed token).
            stored.append(_kept(before.model_copy(update={"url": output.url})))
            continue
        waits = COPY_RETRY_WAITS if final else ()
        stored.append(_kept(_copied(deps, execution, index, output, waits=waits, deadline=deadline)))
    if final:
        failed = [(index, output) for index, output in enumerate(stored) if output.copy_error]
        if failed:
            metrics.add_metric(name="OutputCopyFailures", unit=MetricUnit.Count, value=len(failed))
        for index, output in failed:
            logger.warning(
                "output not copied; it keeps the provider's URL",
                extra={"outputIndex": index, "source": redacted(output.url), "copyError": output.copy_error},
            )
    return stored


def _known_output(known: list[OutputRef], index: int, url: str) -> OutputRef | None:
    """The execution's record of an output: the one with the same URL, else the one at the same place
    with the same URL but for its query string (a provider that signs its URLs anew on each poll)."""
    for output in known:
        if output.url in {url, kept_url(url)}:
            return output
    if index < len(known) and redacted(known[index].url) == redacted(url) and not url.startswith("data:"):
        return known[index]
    return None


def _copied(
    deps: Deps,
    execution: Execution,
    index: int,
    output: OutputRef,
    *,
    waits: tuple[float, ...],
    deadline: float,
) -> OutputRef:
    """One output through its copy attempts: one, then one more after each wait while it fails (never
    for a refusal, never past the deadline)."""
    copied = output
    for wait in (0.0, *waits):
        if time.monotonic() + wait >= deadline:
            return copied if copied.copy_error else output.model_copy(update={"copy_error": OUT_OF_TIME})
        time.sleep(wait)
        try:
            copied = deps.results.copy(
                execution.execution_id, execution.tenant, index, output, deadline=deadline
            )
        except Exception as error:
            # A bug in the copy must not stop the execution: the output keeps the provider's URL.
            logger.exception("output copy failed unexpectedly", extra={"outputIndex": index})
            copied = output.model_copy(update={"copy_error": f"internal error: {type(error).__name__}"})
        if copied.copy_error is None or copied.copy_refused:
            return copied
    return copied


def out_of_time(outputs: list[OutputRef]) -> bool:
    """Whether some output's copy was cut short by the tick's budget (a big file, many outputs)."""
    return any(output.copy_error == OUT_OF_TIME for output in outputs)
