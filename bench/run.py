"""Benchmark the function against the tutorial baseline through the Docker-free Lambda path.

    python -m bench            # full run (5 fresh starts per function, 10 warm requests per input each)
    python -m bench --quick    # short run (2 fresh starts, 3 warm requests per input each)
    python bench/run.py --help

Writes a table on stdout and JSON to bench/results/latest.json (git-ignored). See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import profile as init_profile  # noqa: E402
from bench import report, sizes  # noqa: E402
from bench.functions import BASELINE, OURS, REPO, StagedFunction, stage_functions  # noqa: E402
from bench.images import IMAGE_KEYS, TestImage, make_images  # noqa: E402
from bench.server import ImageServer  # noqa: E402
from local_lambda.cpu_quota import CpuQuota, lambda_cpus  # noqa: E402
from local_lambda.memory_limit import MemoryLimit  # noqa: E402

DEFAULT_BUILD_DIR = REPO / ".build" / "bench"
DEFAULT_OUTPUT = REPO / "bench" / "results" / "latest.json"
FLOOR_SCRIPT = Path(__file__).resolve().parent / "floor.py"
COLD_START_INPUT = "jpeg_1mp_url"
BASE64_IMAGES = ("png_0.3mp", "jpeg_1mp")  # the 12 MP JPEG as base64 nears the 6 MB invoke payload limit
_INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([\d.]+)\)")
# The RIE's per-invoke REPORT line, as Lambda's: Duration and the Billed Duration (whole ms) it is charged for.
_REPORT = re.compile(r"^REPORT RequestId: \S+\t(?:Init Duration: [\d.]+ ms\t)?Duration: ([\d.]+) ms\t"
                     r"Billed Duration: (\d+) ms", re.MULTILINE)
_FUNCTIONS = (OURS, BASELINE)


class BenchError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# inputs ---------------------------------------------------------------------------------------
def make_inputs(images: Dict[str, TestImage], server: ImageServer, with_base64: bool = True) -> Dict[str, dict]:
    """``{input key: event}``: every image by URL from the loopback server, the small ones also as base64."""
    inputs: Dict[str, dict] = {}
    for key in IMAGE_KEYS:
        image = images[key]
        data = Path(image.path).read_bytes()
        inputs[f"{key}_url"] = {"url": server.add(f"/{Path(image.path).name}", data, image.format)}
    if with_base64:
        for key in BASE64_IMAGES:
            inputs[f"{key}_b64"] = {"image": base64.b64encode(Path(images[key].path).read_bytes()).decode()}
    return inputs


# one fresh execution environment ---------------------------------------------------------------
def _check(result, function: str, key: str, emulator) -> dict:
    try:
        body = result.json()
    except ValueError:
        body = None
    if result.status != 200 or not isinstance(body, dict) or not body.get("predictions"):
        raise BenchError(f"{function} failed on {key}: HTTP {result.status}: {result.text[:500]}\n"
                         f"--- emulator log tail ---\n{emulator.logs[-3000:]}")
    return body


def _peak_rss_mb(emulator) -> Optional[float]:
    return emulator.runtime_memory_mb().get("peak_rss")


def run_session(fn: StagedFunction, inputs: Dict[str, dict], warm: int, null_invokes: int = 0,
                cpu_quota: Optional[CpuQuota] = None, pause_s: float = 0.0, seed: int = 0,
                memory_limit: Optional[MemoryLimit] = None) -> dict:
    """Start a fresh emulator, time the cold start (first response complete), then warm requests
    (back to back, or ``pause_s`` apart: traffic that leaves the function idle in between), in
    an order shuffled each round from ``seed`` (give both functions of a session the same seed)."""
    emulator = fn.emulator(cpu_quota=cpu_quota, memory_limit=memory_limit)
    started = time.perf_counter()
    with emulator:
        listening = time.perf_counter() - started
        first = emulator.invoke_raw(inputs[COLD_START_INPUT])
        _check(first, fn.name, COLD_START_INPUT, emulator)
        cold = emulator.cold_start_s
        rss_after_cold = _peak_rss_mb(emulator)
        cpu_after_cold = emulator.runtime_cpu_ms()
        top1 = {}
        for key, event in inputs.items():  # one unrecorded warm-up per input
            top1[key] = _check(emulator.invoke_raw(event), fn.name, key, emulator)["predictions"][0]["label"]
        samples: Dict[str, List[float]] = {key: [] for key in inputs}
        keys = list(inputs)
        recorded: List[Optional[str]] = [None] * (1 + len(keys))  # per invoke, in order: the key of a recorded sample
        order = random.Random(seed)
        for _ in range(warm):
            # A fresh order each round: every input follows every other (a rotation kept each input's
            # predecessor the same 8 rounds in 10, so small URL images never followed the 12 MP photo).
            shuffled = order.sample(keys, len(keys))
            for key in shuffled:
                if pause_s:
                    time.sleep(pause_s)
                result = emulator.invoke_raw(inputs[key])
                _check(result, fn.name, key, emulator)
                samples[key].append(result.seconds * 1000.0)
                recorded.append(key)
        nulls = [emulator.invoke_raw({}).seconds * 1000.0 for _ in range(null_invokes)]
        recorded += [None] * null_invokes
        rss_after_warm = _peak_rss_mb(emulator)
        time.sleep(0.1)  # let the log reader catch up
        logs = emulator.logs
    match = _INIT_REPORT.search(logs)
    billed = [int(m.group(2)) for m in _REPORT.finditer(logs)]
    billed_ms: Dict[str, List[int]] = {}
    if len(billed) == len(recorded):  # else a REPORT line went missing: no billed figures rather than wrong ones
        for key, ms in zip(recorded, billed):
            if key is not None:
                billed_ms.setdefault(key, []).append(ms)
    return {
        "cold_start_s": cold,
        "rie_listening_s": listening,
        "init_ms": float(match.group(1)) if match else None,
        "peak_rss_mb_after_cold_start": rss_after_cold,
        "cold_start_cpu_ms": cpu_after_cold,
        "peak_rss_mb": rss_after_warm,
        "warm_ms": samples,
        "null_invoke_ms": nulls,
        "top1": top1,
        "handler_stage_ms": _stage_timings(logs) if fn.name == OURS else {},
        "cold_billed_ms": billed[0] if billed else None,  # the first invoke's, init included (as for images)
        "billed_ms": billed_ms,
    }


def _stage_timings(logs: str) -> Dict[str, Dict[str, List[float]]]:
    """Our handler's own per-stage timings (its "request served" log lines), by input kind and image size."""
    out: Dict[str, Dict[str, List[float]]] = {}
    seen: set = set()
    for line in logs.splitlines():
        if '"timings_ms"' not in line or '"request served"' not in line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("cold_start"):
            continue
        key = f"{doc.get('input_kind')} {doc.get('image_size')}"
        if key not in seen:  # the first warm line of each kind is its unrecorded warm-up
            seen.add(key)
            continue
        for stage, ms in (doc.get("timings_ms") or {}).items():
            out.setdefault(key, {}).setdefault(stage, []).append(float(ms))
    return out


# floor ------------------------------------------------------------------------------------------
def run_floor(fn: StagedFunction, images: Dict[str, TestImage], repeats: int,
              cpu_quota: Optional[CpuQuota] = None) -> dict:
    config = {"images": {k: images[k].path for k in IMAGE_KEYS}, "repeats": repeats,
              "model_path": str(fn.model_path())}
    argv = [str(fn.runtime_python), str(FLOOR_SCRIPT), json.dumps(config)]
    result = subprocess.run(cpu_quota.command(argv) if cpu_quota else argv,  # the function's CPU time
                            cwd=str(fn.task_root), env=fn.environment(), capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise BenchError(f"floor subprocess failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def merge_floors(floors: List[dict]) -> dict:
    """One floor from several runs (one per round, so it sees the same machine load): median of medians."""
    def merge(items: List[Any]) -> Any:
        first = items[0]
        if isinstance(first, dict) and "median" in first:
            return {"median": statistics.median(i["median"] for i in items), "min": min(i["min"] for i in items),
                    "n": sum(i["n"] for i in items), "runs": len(items)}
        if isinstance(first, dict):
            return {k: merge([i[k] for i in items]) for k in first}
        return first

    return merge(floors)


# the whole run ----------------------------------------------------------------------------------
def _summary(values: List[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0, "median": None, "samples": []}
    return {"n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values),
            "samples": [round(v, 4) for v in values]}


def _latency(values: List[float]) -> dict:
    return {"n": len(values), "p50": report.percentile(values, 50), "p95": report.percentile(values, 95),
            "mean": statistics.fmean(values) if values else None, "min": min(values) if values else None,
            "samples": [round(v, 3) for v in values]}


def run_benchmark(sessions: int, warm: int, floor_repeats: int, build_dir: Path = DEFAULT_BUILD_DIR,
                  cache_dir: Optional[Path] = None, with_base64: bool = True, init_profile_repeats: int = 3,
                  null_invokes: int = 5, tensorflow: bool = True, parameters: Optional[Dict[str, str]] = None,
                  cpu_quota_mode: str = "auto", pause_ms: float = 0.0,
                  baseline_env: Optional[Dict[str, str]] = None) -> dict:
    build_dir = Path(build_dir).resolve()
    started = time.perf_counter()
    load_before = _loadavg()
    log("making test images")
    images = make_images(build_dir / "images")
    with ImageServer() as server:
        inputs = make_inputs(images, server, with_base64)
        log("staging ours (predict_function/Dockerfile) and the baseline (bench/baseline/Dockerfile)")
        functions = stage_functions(build_dir, server.port, cache_dir, parameters, baseline_env)
        quota, quota_note = make_cpu_quota(cpu_quota_mode, functions[OURS].memory_mb)
        log(f"CPU: {quota_note}")
        memory_limit, memory_note = make_memory_limit(functions[OURS].memory_mb)
        log(f"memory: {memory_note}")
        runs: Dict[str, List[dict]] = {name: [] for name in _FUNCTIONS}
        floors: List[dict] = []
        try:
            for i in range(sessions):  # interleaved, alternating which goes first; the floor between rounds
                for name in (_FUNCTIONS if i % 2 == 0 else _FUNCTIONS[::-1]):
                    log(f"session {i + 1}/{sessions}: {name} (cold start + {warm} warm rounds x {len(inputs)} inputs)")
                    runs[name].append(run_session(functions[name], inputs, warm, null_invokes if name == OURS else 0,
                                                  quota, pause_s=pause_ms / 1000.0, seed=i, memory_limit=memory_limit))
                log(f"floor {i + 1}/{sessions}: decode / preprocess / inference alone (Python 3.12, staged deps)")
                floors.append(run_floor(functions[OURS], images, floor_repeats, quota))
        finally:
            for group in (quota, memory_limit):
                if group is not None:
                    group.close()
    floor = merge_floors(floors)
    log("init profile: fresh handler-module imports (-X importtime)")
    profiles = init_profile.profile_init(
        {name: {"python": str(fn.runtime_python), "handler": fn.handler, "cwd": str(fn.task_root),
                "env": fn.environment()} for name, fn in functions.items()},
        init_profile_repeats) if init_profile_repeats else {}
    log("sizes")
    size = {name: sizes.task_root_sizes(fn.task_root, fn.code_paths) for name, fn in functions.items()}
    tf = (sizes.tensorflow_sizes(sizes.requirement_names(REPO / "predict_function" / "requirements.txt"))
          if tensorflow else {"error": "skipped (--no-tensorflow)"})

    measured = {}
    for name in _FUNCTIONS:
        rs = runs[name]
        stage_ms: Dict[str, Dict[str, List[float]]] = {}
        for r in rs:
            for key, stages in r["handler_stage_ms"].items():
                for stage_name, values in stages.items():
                    stage_ms.setdefault(key, {}).setdefault(stage_name, []).extend(values)
        measured[name] = {
            "cold_start_s": _summary([r["cold_start_s"] for r in rs]),
            "init_ms": _summary([r["init_ms"] for r in rs]),
            "rie_listening_s": _summary([r["rie_listening_s"] for r in rs]),
            "peak_rss_mb_after_cold_start": _summary([r["peak_rss_mb_after_cold_start"] for r in rs]),
            "cold_start_cpu_ms": _summary([r["cold_start_cpu_ms"] for r in rs]),
            "peak_rss_mb": _summary([r["peak_rss_mb"] for r in rs]),
            "warm_ms": {key: _latency([v for r in rs for v in r["warm_ms"][key]]) for key in inputs},
            "null_invoke_ms": _latency([v for r in rs for v in r["null_invoke_ms"]]) if name == OURS else None,
            "top1": rs[0]["top1"] if rs else {},
            "handler_stage_ms_p50": {k: {s: report.percentile(v, 50) for s, v in st.items()} for k, st in stage_ms.items()},
            "init_profile": profiles.get(name),
            "size_bytes": size[name],
            "stage_seconds": functions[name].stage_seconds,
        }
    results = {
        "schema": 1,
        "meta": {
            "command": " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]) if sys.argv else "",
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": _git_commit(),
            "machine": platform.machine(),
            "cpus": _cpus(),
            "host": _host(),
            "runtime_python": floor.get("python"),
            "onnxruntime": floor.get("onnxruntime"), "numpy": floor.get("numpy"), "pillow": floor.get("pillow"),
            "memory_mb": functions[OURS].memory_mb,
            "cpu_quota": {"cpus": round(quota.cpus, 3) if quota else None, "note": quota_note},
            "memory_limit": memory_note,
            "sessions": sessions, "warm_rounds_per_session": warm, "floor_repeats": floor_repeats,
            "pause_ms_between_warm_requests": pause_ms,
            "cold_start_input": COLD_START_INPUT,
            "parameter_overrides": dict(parameters or {}),
            "baseline_env": dict(baseline_env or {}),
            "model_ours": functions[OURS].model_path().name,
            "seconds": None,
            "loadavg_1m_before_after": [load_before, _loadavg()],
            "definitions": report.DEFINITIONS,
        },
        "images": {k: v.to_dict() for k, v in images.items()},
        "inputs": sorted(inputs),
        "functions": measured,
        "floor": floor,
        "tensorflow": tf,
    }
    results["ratios"] = report.ratios(results)
    results["overhead"] = report.overheads(results)
    results["targets"] = report.targets(results)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    return results


def make_cpu_quota(mode: str, memory_mb: int) -> tuple:
    """``(CpuQuota or None, what the functions run on)`` for --cpu-quota auto|on|off."""
    if mode == "off":
        return None, f"no CPU quota (--cpu-quota off): {_cpus()} full CPUs, unlike Lambda at {memory_mb} MB"
    quota, note = CpuQuota.create(memory_mb, name="bench")
    if quota is None:
        if mode == "on":
            raise BenchError(f"--cpu-quota on: cannot set a CPU quota here ({note})")
        return None, (f"no CPU quota ({note}): {_cpus()} full CPUs, unlike Lambda at {memory_mb} MB "
                      f"({lambda_cpus(memory_mb):.2f} CPUs of time)")
    return quota, f"{note}, Lambda's CPU time at {memory_mb} MB (functions and floor)"


def make_memory_limit(memory_mb: int) -> tuple:
    """``(MemoryLimit or None, what the functions run with)``: Lambda's memory limit where cgroups allow
    it, so a function that outgrows MemorySize is killed here too (the session then fails). Named as
    make_cpu_quota's group: on cgroup v2 a process is in one group, which must carry both limits."""
    limit, note = MemoryLimit.create(memory_mb, name="bench")
    if limit is None:
        return None, f"memory not enforced ({note})"
    return limit, f"{note}: a runtime that outgrows it is killed, as on Lambda"


def _loadavg() -> Optional[float]:
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _host() -> Dict[str, Any]:
    """The CPU the figures came from: model name and the SIMD flags the decoders and onnxruntime use."""
    facts: Dict[str, Any] = {"cpu_model": None, "simd": []}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return facts
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    facts["cpu_model"] = model.group(1).strip() if model else None
    present = set(flags.group(1).split()) if flags else set()
    facts["simd"] = [f for f in ("sse4_2", "avx2", "avx512f", "avx512_vnni", "asimd") if f in present]
    return facts


def _git_commit() -> Optional[str]:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except OSError:
        return None


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Cold start, warm latency (p50/p95), peak RSS and installed size of the function vs the "
                    "tutorial baseline, under the real Lambda RIE + awslambdaric (Python 3.12), with images "
                    "from a 127.0.0.1 server; plus the decode/inference floor and the targets of issue 5.",
    )
    parser.add_argument("--quick", action="store_true", help="short run: 2 fresh starts per function, 3 warm rounds")
    parser.add_argument("--sessions", type=int, help="fresh starts per function (default 5, --quick 2)")
    parser.add_argument("--warm", type=int, help="warm rounds per session, each one request per input (default 10, --quick 3)")
    parser.add_argument("--floor-repeats", type=int, help="repeats per floor measurement and round (default 8, --quick 4)")
    parser.add_argument("--pause-ms", type=float, default=0.0,
                        help="idle time before each warm request (default 0: back to back, so under the CPU quota "
                             "one request's CPU time can throttle the next; e.g. 200: each starts with a full budget)")
    parser.add_argument("--no-base64", action="store_true", help="only URL inputs")
    parser.add_argument("--no-tensorflow", action="store_true", help="skip the tensorflow-cpu size comparison")
    parser.add_argument("--parameter-overrides", nargs="*", default=[], metavar="NAME=VALUE",
                        help="template parameters for ours, e.g. ModelVariant=int8 (the baseline keeps the fp32 model)")
    parser.add_argument("--baseline-env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="add to the baseline image's ENV, e.g. OPENBLAS_NUM_THREADS=1 (the one ENV line ours has "
                        "and the tutorial's Dockerfile lacks)")
    parser.add_argument("--cpu-quota", choices=("auto", "on", "off"), default="auto",
                        help="run the functions and the floor under Lambda's CPU time for the memory size "
                        "(MemorySize/1769 CPUs, a cgroup CPU quota): auto (default) where the machine allows it, "
                        "on (fail otherwise) or off")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR, help="images, staged task roots (default .build/bench)")
    parser.add_argument("--cache-dir", type=Path, help="local_lambda dependency cache (default .build/local_lambda/cache)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results (default bench/results/latest.json)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    sessions = args.sessions or (2 if args.quick else 5)
    warm = args.warm if args.warm is not None else (3 if args.quick else 10)
    floor_repeats = args.floor_repeats or (4 if args.quick else 8)
    try:
        results = run_benchmark(sessions, warm, floor_repeats, args.build_dir, args.cache_dir,
                                with_base64=not args.no_base64, init_profile_repeats=2 if args.quick else 3,
                                tensorflow=not args.no_tensorflow,
                                parameters=dict(p.split("=", 1) for p in args.parameter_overrides),
                                cpu_quota_mode=args.cpu_quota, pause_ms=args.pause_ms,
                                baseline_env=dict(p.split("=", 1) for p in args.baseline_env))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(report.render(results))
    log(f"wrote {args.output} ({results['meta']['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
