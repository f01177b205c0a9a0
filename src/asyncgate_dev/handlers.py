"""Load the Lambda handlers and the sample events the way the tests, benchmarks and local stack need them.

Every function's module is called `app.py`, so each is imported under its own module name
(`functions_<name>_app`) and cached: a test gets the same warm "container" on every call, as Lambda would.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

# src/asyncgate_dev/handlers.py -> the repository root (the package is installed in editable mode).
REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
FUNCTIONS_DIR = REPO_ROOT / "functions"
EVENTS_DIR = REPO_ROOT / "events"

_modules: dict[str, ModuleType] = {}
_lock = threading.Lock()


def load_handler(name: str) -> ModuleType:
    """functions/<name>/app.py as a module (imported once per process: one warm "container")."""
    return load_function_module(FUNCTIONS_DIR / name, "app", instance="")


def load_function_module(code_dir: Path, module: str, *, instance: str) -> ModuleType:
    """`<code_dir>/<module>.py` imported under its own name, once per (directory, instance): each
    instance is a separate copy of the module's globals, as each Lambda container has its own."""
    module_name = f"functions_{code_dir.name}_{module}" + (f"_{instance}" if instance else "")
    with _lock:
        loaded = _modules.get(module_name)
        if loaded is not None:
            return loaded
        path = code_dir / f"{module}.py"
        if not path.is_file():
            raise FileNotFoundError(f"no handler at {path}")
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[module_name]
            raise
        _modules[module_name] = loaded
        return loaded


def load_event(name: str) -> dict[str, Any]:
    """events/<name>.json, the sample event `sam local invoke` would use."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return event
