"""Init, measured a second way: importing the handler module in a fresh Python 3.12 process.

Each run is a fresh ``<runtime python> -c ...`` in the staged task root with the function's own
environment (what awslambdaric does at init: import the handler module, which for both functions also
creates the InferenceSession at module level). ``-X importtime`` gives the per-package split:
the *self* time of every imported module summed by top-level package (so nothing is counted twice;
the handler module's self time includes what it runs at import: settings, model load, session).
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from typing import Dict, List

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def _run(python: str, code: str, cwd: str, env: Dict[str, str], extra: List[str] = ()) -> subprocess.CompletedProcess:
    result = subprocess.run([python, *extra, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{python} -c {code!r} failed:\n{result.stderr[-3000:]}")
    return result


def handler_module(handler: str) -> str:
    return handler.rsplit(".", 1)[0]


def import_seconds(python: str, module: str, cwd: str, env: Dict[str, str]) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(_run(python, code, cwd, env).stdout.strip().splitlines()[-1])


def interpreter_seconds(python: str, cwd: str, env: Dict[str, str]) -> float:
    started = time.perf_counter()
    _run(python, "pass", cwd, env)
    return time.perf_counter() - started


def importtime_by_package(python: str, module: str, cwd: str, env: Dict[str, str]) -> Dict[str, float]:
    """Milliseconds of module self time per top-level package, for ``import module``."""
    stderr = _run(python, f"import {module}", cwd, env, extra=["-X", "importtime"]).stderr
    totals: Dict[str, float] = {}
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if not match:
            continue
        name = match.group(4)
        root = name.split(".")[0]
        if name == module:
            root = f"{module} (module body)"
        totals[root] = totals.get(root, 0.0) + int(match.group(1)) / 1000.0
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def profile_init(targets: Dict[str, dict], repeats: int) -> Dict[str, dict]:
    """``targets``: ``{name: {"python", "handler", "cwd", "env"}}``; runs interleaved across targets."""
    samples = {name: {"imports": [], "interpreter": [], "ric": []} for name in targets}
    for i in range(repeats):
        for name in (list(targets) if i % 2 == 0 else list(targets)[::-1]):
            t = targets[name]
            s = samples[name]
            s["imports"].append(import_seconds(t["python"], handler_module(t["handler"]), t["cwd"], t["env"]))
            s["interpreter"].append(interpreter_seconds(t["python"], t["cwd"], t["env"]))
            s["ric"].append(import_seconds(t["python"], "awslambdaric.bootstrap", t["cwd"], t["env"]))
    out = {}
    for name, t in targets.items():
        module = handler_module(t["handler"])
        by_package = importtime_by_package(t["python"], module, t["cwd"], t["env"])
        top = dict(list(by_package.items())[:12])
        top["(other)"] = sum(list(by_package.values())[12:])
        s = samples[name]
        out[name] = {
            "module": module,
            "import_handler_s": {"median": statistics.median(s["imports"]), "samples": s["imports"]},
            "interpreter_start_s": {"median": statistics.median(s["interpreter"]), "samples": s["interpreter"]},
            "import_awslambdaric_s": {"median": statistics.median(s["ric"]), "samples": s["ric"]},
            "importtime_self_ms_by_package": {k: round(v, 2) for k, v in top.items()},
            "method": "fresh `python -c 'import <handler module>'` in the staged task root with the function's env "
                      "(interleaved across functions); -X importtime self times summed by top-level package (one run)",
        }
    return out
