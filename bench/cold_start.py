"""Cold start of the handler code at two git revisions, in fresh Python 3.12 processes.

    python -m bench.cold_start                      # the work tree vs HEAD~1, 2 CPUs and 1 CPU
    python -m bench.cold_start --against f38bc97 --runs 20

Each run is a fresh ``<runtime python>`` (the function's, as staged by local_lambda) that imports
``awslambdaric.bootstrap``, then ``classifier.handler`` (its ``cold_start()``: settings, model,
fetch policy) and serves one 1 MP JPEG as base64 (the first request): what a cold start costs
without the RIE's own start-up. Only ``predict_function/classifier`` differs between the
variants (both copied to a temporary folder and compiled by the runtime's Python, as the
Dockerfile does); dependencies and model come from one staged task root, so a revision that
imports a dependency the work tree has dropped needs ``--task-root`` pointing at one that still
has it. Runs alternate between the variants; the "1 CPU" column pins each process to one CPU
with ``taskset`` (Lambda at <= 1769 MB has one vCPU's worth of CPU time), the "1.16 CPUs" column
runs it on both CPUs under a cgroup CPU quota of 1.16 CPUs (Lambda's CPU time at 2048 MB; only
where the machine allows a quota, ``local_lambda.cpu_quota``). Prints medians and the ratio;
compare ratios, not milliseconds, across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.functions import DEFAULT_CACHE  # noqa: E402
from bench.images import make_images  # noqa: E402
from bench.run import make_cpu_quota  # noqa: E402
from local_lambda.cpu_quota import CpuQuota  # noqa: E402

_CHILD = """
import base64, contextlib, io, json, resource, sys, time
started = time.perf_counter()
import awslambdaric.bootstrap  # what the runtime imports before the handler
sys.path.insert(0, sys.argv[1])
import classifier.handler as handler
imported = time.perf_counter()

class Context:
    aws_request_id = "bench"
    function_name = "bench"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
    def get_remaining_time_in_millis(self):
        return 20000

event = {"image": base64.b64encode(open(sys.argv[2], "rb").read()).decode()}
with contextlib.redirect_stdout(io.StringIO()):  # the request's JSON log line
    reply = handler.lambda_handler(event, Context())
served = time.perf_counter()
assert reply.get("predictions"), reply
usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread's CPU time, the interpreter's start-up included
print(json.dumps({"import_ms": (imported - started) * 1e3, "first_request_ms": (served - started) * 1e3,
                  "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1e3}))
"""


def _variant_from_work_tree(into: Path) -> Path:
    shutil.copytree(REPO / "predict_function" / "classifier", into / "predict_function" / "classifier",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return into / "predict_function"


def _variant_from_git(revision: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", revision, "predict_function/classifier"], cwd=REPO,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "predict_function"


def _staged_task_root(build_dir: Path) -> tuple[Path, Path, Dict[str, str]]:
    """The work tree's function staged like the image: task root, runtime Python, the image's ENV."""
    from local_lambda import stage

    staged = stage(REPO / "predict_function" / "Dockerfile", REPO / "predict_function", build_dir=build_dir,
                   function_name="ColdStart", lint=False, cache_dir=DEFAULT_CACHE)
    return Path(staged.task_root), Path(staged.runtime_python), dict(staged.image_env)


def measure(variants: Dict[str, Path], task_root: Path, python: Path, image: Path, runs: int,
            pin_one_cpu: bool, quota: Optional[CpuQuota] = None,
            image_env: Optional[Dict[str, str]] = None) -> Dict[str, Dict[str, List[float]]]:
    env = child_env(task_root, image_env, LAMBDA_TASK_ROOT=str(task_root), AWS_LAMBDA_FUNCTION_MEMORY_SIZE="2048")
    prefix = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if pin_one_cpu else []
    commands = {name: [*prefix, str(python), "-c", _CHILD, str(path), str(image)] for name, path in variants.items()}
    if quota is not None:  # in the quota from the start
        commands = {name: quota.command(argv) for name, argv in commands.items()}
    return interleaved(commands, runs, env, task_root)


def child_env(task_root: Path, image_env: Optional[Dict[str, str]] = None, **extra: str) -> Dict[str, str]:
    """A fresh child's environment: the image's ENV, the staged task root on the path, nothing
    from the caller's shell but PATH, no bytecode written into the task root."""
    return {**(image_env or {}), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "PYTHONPATH": str(task_root), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", **extra}


def interleaved(commands: Dict[str, List[str]], runs: int, env: Dict[str, str], cwd: Path) -> Dict[str, Dict[str, List[float]]]:
    """Run each command ``runs`` times as a fresh process, rotating their order every round; each
    prints one JSON object of numbers as its last line: per command, the lists of those numbers."""
    names = list(commands)
    out: Dict[str, Dict[str, List[float]]] = {name: {} for name in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            result = subprocess.run(commands[name], env=env, cwd=str(cwd), capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
            for key, value in json.loads(result.stdout.strip().splitlines()[-1]).items():
                out[name].setdefault(key, []).append(value)
    return out


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="HEAD~1", help="git revision to compare the work tree with (default HEAD~1)")
    parser.add_argument("--runs", type=int, default=14, help="fresh processes per variant and CPU setting (default 14)")
    parser.add_argument("--build-dir", type=Path, default=REPO / ".build" / "bench")
    parser.add_argument("--task-root", type=Path, default=None,
                        help="use this staged task root (dependencies + model) instead of staging the work tree's")
    args = parser.parse_args(argv)
    images = make_images(args.build_dir / "images")
    task_root, python, image_env = _staged_task_root(args.build_dir / "stage")
    task_root = args.task_root or task_root
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"work tree": _variant_from_work_tree(Path(tmp) / "work"),
                    args.against: _variant_from_git(args.against, Path(tmp) / "against")}
        for path in variants.values():  # both compiled like the Dockerfile does (no stale or missing .pyc)
            subprocess.run([str(python), "-m", "compileall", "-q", str(path / "classifier")], check=True)
        if shutil.which("taskset") is None:
            print("taskset not found: the 1-CPU column is skipped", file=sys.stderr)
        settings = [("2 CPUs" if len(os.sched_getaffinity(0)) > 1 else "all CPUs", False, None)]
        if shutil.which("taskset"):
            settings.append(("1 CPU", True, None))
        quota, cpu = make_cpu_quota("auto", 2048)  # Lambda's CPU time at 2048 MB, over both CPUs
        if quota is not None:
            settings.append(("1.16 CPUs", False, quota))
        else:
            print(f"{cpu}: the 1.16-CPU column is skipped", file=sys.stderr)
        print(f"cold start = import awslambdaric + classifier.handler + first 1 MP base64 request; "
              f"{args.runs} fresh processes per cell, medians (ms); the image's ENV {image_env}; "
              "cpu = the process's CPU time (all threads) at the end")
        try:
            for label, pin, cell_quota in settings:
                result = measure(variants, task_root, python, Path(images["jpeg_1mp"].path), args.runs, pin,
                                 cell_quota, image_env)
                medians = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in result.items()}
                base = medians[args.against]["first_request_ms"]
                for name, m in medians.items():
                    print(f"  {label:9s} {name:>12s}: init {m['import_ms']:6.1f}   init + first request "
                          f"{m['first_request_ms']:6.1f}   ({m['first_request_ms'] / base:.3f}x)   cpu {m['cpu_ms']:6.1f}")
        finally:
            if quota is not None:
                quota.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
