"""Find a CPython interpreter for the Python minor version of the image's FROM tag.

Looks where users' machines offer one, in order:

1. ``$LOCAL_LAMBDA_PYTHON`` (an explicit path; must be the right minor version);
2. ``pythonX.Y`` on ``PATH`` (a pyenv shim that is not activated does not count: each
   candidate is run and asked for its version);
3. pyenv: the highest installed ``X.Y.*`` from ``pyenv versions --bare`` (``pyenv prefix``),
   even when that version is not active;
4. uv: ``uv python find X.Y`` (uv-managed or system interpreters).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Tuple

_PROBE = "import sys, platform; print('%d.%d' % sys.version_info[:2], platform.python_implementation(), sys.executable)"


class InterpreterNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: str  # "3.12"
    found_by: str


def _probe(executable: str, env: Mapping[str, str]) -> Optional[Tuple[str, str]]:
    try:
        out = subprocess.run(
            [executable, "-c", _PROBE], capture_output=True, text=True, timeout=30, env=dict(env)
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    parts = out.stdout.strip().split(" ", 2)
    if len(parts) != 3 or parts[1] != "CPython":
        return None
    return parts[0], parts[2]


def _tool(name: str, path: str, beside_python: bool) -> Optional[str]:
    found = shutil.which(name, path=path)
    if found or not beside_python:
        return found
    # A tool installed in the same virtualenv as the running Python (e.g. uv in the dev venv).
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _candidates(version: str, env: Mapping[str, str], beside_python: bool) -> Iterator[Tuple[str, str]]:
    path = env.get("PATH", os.defpath)
    explicit = env.get("LOCAL_LAMBDA_PYTHON")
    if explicit:
        yield explicit, "LOCAL_LAMBDA_PYTHON"
    on_path = shutil.which(f"python{version}", path=path)
    if on_path:
        yield on_path, f"python{version} on PATH"

    pyenv = _tool("pyenv", path, beside_python)
    if pyenv:
        try:
            out = subprocess.run(
                [pyenv, "versions", "--bare", "--skip-aliases"], capture_output=True, text=True, timeout=30, env=dict(env)
            )
            lines = out.stdout.split() if out.returncode == 0 else []
        except (OSError, subprocess.TimeoutExpired):
            lines = []
        matching = [v for v in lines if re.fullmatch(re.escape(version) + r"\.\d+", v)]
        matching.sort(key=lambda v: int(v.rsplit(".", 1)[1]), reverse=True)
        for name in matching:
            try:
                prefix = subprocess.run(
                    [pyenv, "prefix", name], capture_output=True, text=True, timeout=30, env=dict(env)
                ).stdout.strip()
            except (OSError, subprocess.TimeoutExpired):
                continue
            if prefix:
                yield str(Path(prefix) / "bin" / f"python{version}"), f"pyenv ({name})"

    uv = _tool("uv", path, beside_python)
    if uv:
        try:
            out = subprocess.run(
                [uv, "python", "find", "--no-project", version], capture_output=True, text=True, timeout=60, env=dict(env)
            )
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            yield out.stdout.strip().splitlines()[-1], "uv python find"


def find_python(
    version: str, env: Optional[Mapping[str, str]] = None, why: str = "", beside_python: bool = True
) -> Interpreter:
    """Return a working CPython ``version`` (``"3.12"``) or raise :class:`InterpreterNotFound`.

    ``env`` stands for ``os.environ`` (``PATH``, ``PYENV_ROOT``, ``LOCAL_LAMBDA_PYTHON``...);
    ``beside_python`` also looks for pyenv/uv next to the running interpreter (its virtualenv).
    """
    env = os.environ if env is None else env
    tried: List[str] = []
    for executable, found_by in _candidates(version, env, beside_python):
        probed = _probe(executable, env)
        if probed and probed[0] == version:
            return Interpreter(executable=probed[1], version=version, found_by=found_by)
        tried.append(f"{found_by}: {executable} ({'Python ' + probed[0] if probed else 'does not run'})")
    reason = f" {why}" if why else ""
    details = ("\n  tried: " + "\n  tried: ".join(tried)) if tried else ""
    raise InterpreterNotFound(
        f"Python {version} is needed{reason}, but no Python {version} interpreter was found "
        f"(looked for python{version} on PATH, pyenv, uv).{details}\n"
        f"Install it with one of:\n"
        f"  pyenv install {version}\n"
        f"  uv python install {version}\n"
        f"or point LOCAL_LAMBDA_PYTHON at a python{version} executable."
    )
