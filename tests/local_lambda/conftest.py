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
