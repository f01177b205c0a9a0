"""The running local stack's connection file: where `asyncgate admin --local` finds its AWS emulator and
table. `asyncgate dev` writes it when it is ready and removes it when it stops.

The file is `.asyncgate/local.json` under the repository root, or the path in `ASYNCGATE_LOCAL_FILE`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from asyncgate_dev.handlers import REPO_ROOT

LOCAL_FILE_ENV = "ASYNCGATE_LOCAL_FILE"
DEFAULT_LOCAL_FILE = REPO_ROOT / ".asyncgate" / "local.json"


class LocalConnection(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    api_url: str
    aws_endpoint: str
    region: str
    table_name: str
    # The poll queue's dead-letter queue (`asyncgate admin dlq`); None in files of older stacks.
    poll_dlq_url: str | None = None


class LocalStackNotRunning(Exception):
    pass


def local_file() -> Path:
    return Path(os.environ.get(LOCAL_FILE_ENV) or DEFAULT_LOCAL_FILE)


def write_local_file(connection: LocalConnection) -> Path:
    path = local_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then renamed over: a reader never sees half a file.
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(_text(connection), encoding="utf-8")
    partial.replace(path)
    return path


def remove_local_file(path: Path, connection: LocalConnection) -> None:
    """Remove the file if it still describes `connection`: a stack started since owns it now."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text(encoding="utf-8") == _text(connection):
            path.unlink()


def read_local_file() -> LocalConnection:
    path = local_file()
    try:
        return LocalConnection.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise LocalStackNotRunning(
            f"no local stack is running ({path} does not exist): start one with `make dev`"
        ) from None
    except (OSError, ValidationError) as error:
        raise LocalStackNotRunning(f"cannot read {path}: {error}") from None


def _text(connection: LocalConnection) -> str:
    return connection.model_dump_json(by_alias=True, indent=2) + "\n"
