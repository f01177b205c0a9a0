"""Small readings every adapter makes of a provider's answer: an output's content type when the provider
does not say it, and progress from the progress bars (tqdm) that model runners print to their logs."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from asyncgate.providers.base import Output

# tqdm's bar, as model runners print it: "45%|████▌     | 9/20 [00:03<00:04, 2.71it/s]".
_TQDM = re.compile(r"^\s*(\d{1,3})%\s*\|.+?\|\s*(\d+)/(\d+)")


def output(url: str, content_type: str | None = None) -> Output:
    """An output, its content type guessed from the URL path's extension when not given."""
    if not content_type:
        content_type, _ = mimetypes.guess_type(urlsplit(url).path, strict=False)
    return Output(url=url, content_type=content_type)


def tqdm_progress(messages: Iterable[str]) -> float | None:
    """The percentage of the last tqdm progress line in log messages (oldest first), or None."""
    # tqdm redraws its bar with carriage returns: each redraw is a line here.
    lines = [line for message in messages for line in message.splitlines()]
    for line in reversed(lines):
        if match := _TQDM.match(line):
            return min(float(match.group(1)), 100.0)
    return None
