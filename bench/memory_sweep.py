"""Which MemorySize: cold start, warm latency and cost per request of ours and the baseline, per memory size.

    python -m bench.memory_sweep                          # ~3 min
    python -m bench.memory_sweep --sizes 1024,2048 --sessions 5

Lambda gives a function CPU time in proportion to its memory (one vCPU's worth per 1769 MB), so
the memory size sets the speed as well as the price of a GB-second. For each size, both functions
(staged once, as ``python -m bench`` stages them) run with that ``MemorySize`` (their
``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``: ours sizes its onnxruntime threads from it, one per started
1769 MB) under a cgroup CPU quota of MemorySize/1769 CPUs, in fresh emulators (real RIE +
awslambdaric, Python 3.12), sessions interleaved, images from the loopback server. Printed per size
and function: the cold start (start -> first response), the first invoke's Billed Duration (init
included, as Lambda bills container images), warm p50 per URL input, and the warm 1 MP request's
billed duration p50 with what a million of those cost: Billed Duration x GB x the GB-second price
+ the request fee (``--gb-second-usd``, ``--request-usd``: x86_64 list prices; check your region's).

Needs a writable cgroup CPU controller (e.g. root); sizes above what the machine's CPUs can give
(``len(CPUs) x 1769 MB``) are refused. Memory is enforced where cgroups allow it (a cgroup memory limit of
MemorySize, as ``local_lambda --lambda-memory``): a function that outgrows it fails its session.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.functions import BASELINE, OURS, StagedFunction, stage_functions  # noqa: E402
from bench.images import make_images  # noqa: E402
from bench.report import percentile  # noqa: E402
from bench.run import BenchError, _cpus, log, make_cpu_quota, make_inputs, make_memory_limit, run_session  # noqa: E402
from bench.server import ImageServer  # noqa: E402
from local_lambda.cpu_quota import lambda_cpus  # noqa: E402

DEFAULT_SIZES = (1024, 1536, 2048, 3008)
# x86_64 list prices (us-east-1, first pricing tier): USD per GB-second of duration, per request.
GB_SECOND_USD = 0.0000166667
REQUEST_USD = 0.0000002
COST_INPUT = "jpeg_1mp_url"
DEFAULT_OUTPUT = REPO / "bench" / "results" / "memory_sweep.json"


def sweep(sizes: List[int], sessions: int, warm: int, build_dir: Path) -> Dict[int, Dict[str, List[dict]]]:
    images = make_images(build_dir / "images")
    runs: Dict[int, Dict[str, List[dict]]] = {}
    with ImageServer() as server:
        inputs = make_inputs(images, server, with_base64=False)
        log("staging ours and the baseline")
        staged = stage_functions(build_dir, server.port)
        for size in sizes:
            quota, _ = make_cpu_quota("on", size)  # BenchError where the machine allows none
            memory_limit, memory_note = make_memory_limit(size)
            log(f"{size} MB: {memory_note}")
            functions = {name: dataclasses.replace(fn, memory_mb=size) for name, fn in staged.items()}
            runs[size] = {OURS: [], BASELINE: []}
            try:
                for i in range(sessions):
                    for name in ((OURS, BASELINE) if i % 2 == 0 else (BASELINE, OURS)):
                        log(f"{size} MB ({quota.cpus:.2f} CPUs): session {i + 1}/{sessions}: {name}")
                        runs[size][name].append(run_session(functions[name], inputs, warm, cpu_quota=quota, seed=i,
                                                            memory_limit=memory_limit))
            finally:
                for group in (quota, memory_limit):
                    if group is not None:
                        group.close()
    return runs


def summarize(runs: List[dict], size: int, gb_second_usd: float, request_usd: float) -> dict:
    warm: Dict[str, List[float]] = {}
    billed: Dict[str, List[int]] = {}
    for run in runs:
        for key, values in run["warm_ms"].items():
            warm.setdefault(key, []).extend(values)
        for key, values in run["billed_ms"].items():
            billed.setdefault(key, []).extend(values)
    billed_mean = {key: statistics.fmean(values) for key, values in billed.items() if values}
    # A million requests cost a million times the MEAN billed duration: below one vCPU the tail is
    # long (1 MP p95 63 ms at 1024 MB), and a median would price it away.
    cost_billed = billed_mean.get(COST_INPUT)
    cold_billed = [r["cold_billed_ms"] for r in runs if r["cold_billed_ms"] is not None]
    return {
        "cold_start_s": statistics.median(r["cold_start_s"] for r in runs),
        "cold_billed_ms": statistics.median(cold_billed) if cold_billed else None,
        "warm_p50_ms": {key: percentile(values, 50) for key, values in warm.items()},
        "warm_p95_ms": {key: percentile(values, 95) for key, values in warm.items()},
        "billed_p50_ms": {key: percentile(values, 50) for key, values in billed.items()},
        "billed_mean_ms": billed_mean,
        "usd_per_million": (None if cost_billed is None else
                            1e6 * (cost_billed / 1000.0 * size / 1024.0 * gb_second_usd + request_usd)),
    }


def render(summary: Dict[int, Dict[str, dict]], meta: dict) -> str:
    lines = [
        f"MemorySize sweep: {meta['sessions']} fresh starts per function and size (interleaved), {meta['warm']} warm "
        f"rounds each (back to back); CPU quota MemorySize/1769 CPUs; medians",
        f"cost: mean Billed Duration of a warm {COST_INPUT} request x GB x ${meta['gb_second_usd']}/GB-s + "
        f"${meta['request_usd'] * 1e6:.2f} per million requests",
        "",
        f"{'MB':>5} {'CPUs':>5} {'function':9} {'cold s':>7} {'cold billed':>11} {'PNG p50':>8} {'1 MP p50':>8} "
        f"{'1 MP p95':>8} {'12 MP p50':>9} {'1 MP billed mean':>16} {'$ / 1M (1 MP)':>13}",
    ]
    for size, by_function in summary.items():
        for name, s in by_function.items():
            p50, p95 = s["warm_p50_ms"], s["warm_p95_ms"]
            cost = s["usd_per_million"]
            lines.append(
                f"{size:>5} {lambda_cpus(size):>5.2f} {name:9} {s['cold_start_s']:>7.3f} "
                f"{_ms(s['cold_billed_ms']):>11} {p50.get('png_0.3mp_url', 0):>8.1f} {p50.get('jpeg_1mp_url', 0):>8.1f} "
                f"{p95.get('jpeg_1mp_url', 0):>8.1f} {p50.get('jpeg_12mp_url', 0):>9.1f} "
                f"{_ms((s.get('billed_mean_ms') or {}).get(COST_INPUT)):>16} {'-' if cost is None else f'{cost:.2f}':>13}")
    return "\n".join(lines)


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help=f"MemorySize values in MB, comma-separated (default {','.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--sessions", type=int, default=3, help="fresh starts per function and size (default 3)")
    parser.add_argument("--warm", type=int, default=5, help="warm rounds per session, one request per input (default 5)")
    parser.add_argument("--gb-second-usd", type=float, default=GB_SECOND_USD, help=f"default {GB_SECOND_USD} (x86_64)")
    parser.add_argument("--request-usd", type=float, default=REQUEST_USD, help=f"default {REQUEST_USD}")
    parser.add_argument("--build-dir", type=Path, default=REPO / ".build" / "bench")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results (default bench/results/memory_sweep.json)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    too_big = [s for s in sizes if lambda_cpus(s) > _cpus()]
    if too_big:
        parser.error(f"{too_big} MB would need more than this machine's {_cpus()} CPUs (1 per 1769 MB)")
    try:
        runs = sweep(sizes, args.sessions, args.warm, args.build_dir)
    except BenchError as exc:
        print(f"bench.memory_sweep: {exc}", file=sys.stderr)
        return 1
    summary = {size: {name: summarize(rs, size, args.gb_second_usd, args.request_usd) for name, rs in by_fn.items()}
               for size, by_fn in runs.items()}
    meta = {"command": "python -m bench.memory_sweep " + " ".join(argv if argv is not None else sys.argv[1:]),
            "sessions": args.sessions, "warm": args.warm, "gb_second_usd": args.gb_second_usd,
            "request_usd": args.request_usd, "cpus": _cpus()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1) + "\n")
    print(render(summary, meta))
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
