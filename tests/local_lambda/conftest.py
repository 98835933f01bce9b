"""Fixtures for the local_lambda tool's own tests: the runtime venv, tiny handlers, fixture templates."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from local_lambda.interpreters import find_python
from local_lambda.stage import ensure_runtime

REPO = Path(__file__).resolve().parents[2]
# Shared with `python -m local_lambda stage`: the runtime venv is created once per machine.
CACHE_DIR = REPO / ".build" / "local_lambda" / "cache"

TINY_HANDLER = textwrap.dedent(
    '''
    import base64, json, os, sys, time

    INIT_PID = os.getpid()
    print("tiny handler init", file=sys.stderr)

    def handler(event, context):
        action = event.get("action") if isinstance(event, dict) else None
        if action == "raise":
            raise ValueError("boom: " + event.get("message", ""))
        if action == "sleep":
            time.sleep(event["seconds"])
        print("handled", json.dumps(event, sort_keys=True))
        return {
            "event": event,
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "sys_path0": sys.path[0],
            "python": "%d.%d" % sys.version_info[:2],
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "env": dict(os.environ),
        }

    def proxy(event, context):
        """An API Gateway proxy integration: echoes the event; raw bytes for GET /image."""
        path = event.get("path") or event.get("rawPath")
        if path == "/image":
            return {"statusCode": 200, "headers": {"Content-Type": "image/png"},
                    "body": base64.b64encode(b"\\x89PNG\\r\\n\\x1a\\n-bytes").decode(), "isBase64Encoded": True}
        return {"statusCode": 201, "headers": {"Content-Type": "application/json", "X-Pid": str(os.getpid())},
                "body": json.dumps(event)}
    '''
)


@pytest.fixture(scope="session")
def runtime_python() -> Path:
    """The runtime venv (the FROM tag's Python 3.12 + awslambdaric only), as `stage` makes it."""
    return ensure_runtime(find_python("3.12"), CACHE_DIR)


@pytest.fixture
def cache_dir(tmp_path: Path, runtime_python: Path) -> Path:
    """A fresh stage cache (dependency installs start cold) that reuses the shared runtime venv."""
    cache = tmp_path / "cache"
    cache.mkdir()
    venv = runtime_python.parent.parent
    (cache / venv.name).symlink_to(venv, target_is_directory=True)
    return cache


@pytest.fixture
def tiny_task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    (root / "app.py").write_text(TINY_HANDLER)
    return root


def _reexport_root_conftest_names() -> None:
    """Keep ``from conftest import EVENTS`` (used in other test folders) working after this file loads.

    Without a tests/__init__.py, pytest imports every conftest.py as the module ``conftest``, dropping
    the previous one from sys.modules, so such imports see whichever conftest.py loaded last. Copy the
    root conftest's public constants and helpers (not its fixtures) into this module.
    """
    import importlib.util
    import sys

    from _pytest.fixtures import FixtureFunctionDefinition

    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_tests_root_conftest_names", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    here = sys.modules[__name__].__dict__
    for name, value in vars(module).items():
        if not name.startswith("_") and name not in here and not isinstance(value, FixtureFunctionDefinition):
            here[name] = value


_reexport_root_conftest_names()
