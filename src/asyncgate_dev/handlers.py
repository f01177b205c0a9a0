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
    """functions/<name>/app.py as a module (imported once per test process)."""
    with _lock:
        module = _modules.get(name)
        if module is not None:
            return module
        path = FUNCTIONS_DIR / name / "app.py"
        if not path.is_file():
            raise FileNotFoundError(f"no handler at {path}")
        module_name = f"functions_{name}_app"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        _modules[name] = module
        return module


def load_event(name: str) -> dict[str, Any]:
    """events/<name>.json, the sample event `sam local invoke` would use."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return event
