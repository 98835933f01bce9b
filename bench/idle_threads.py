"""onnxruntime's intra-op threads when requests leave the function idle in between, with Lambda's freeze.

    python -m bench.idle_threads                        # ~2 min
    python -m bench.idle_threads --pauses 0,200 --requests 30 --no-freeze

One long-lived ``<runtime python>`` per variant and pause (the function's Python 3.12 on the staged
task root, the image's ENV) serves requests the parent sends over a pipe: decode + preprocess +
inference of the 1 MP bench JPEG with the function's own code, on a session built by
``classifier.model.session_options`` changed by the variant. Before each request the parent waits
``pause`` ms. With ``--freeze`` (the default) it stops the child (SIGSTOP) 2 ms after each response
and continues it (SIGCONT) right before the next request, as Lambda freezes an execution environment
between invocations once the runtime has asked for the next event; the emulator (and so
``python -m bench``) does not. With a pause of 0 the child is stopped and continued at once: back to
back, nothing is frozen long. Each child runs under Lambda's CPU time for 2048 MB (1.16 CPUs of cgroup
quota) where the machine allows it (``--cpu-quota auto``).

Variants: ``ours`` (the function's options: 2 threads that do not spin), ``1-thread``, ``spin``
(onnxruntime's default: idle workers spin before they sleep) and ``spin-stop`` (spinning, plus
``session.force_spinning_stop``: the spin ends when a run returns). Printed per variant and pause:
the request's p50 and p95, inference p50 and the CPU time the process used per request (all
threads, from one response to the next: what a spin after a run costs). Compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.cold_start import _staged_task_root, child_env  # noqa: E402
from bench.report import percentile  # noqa: E402
from bench.images import make_images  # noqa: E402
from bench.run import make_cpu_quota  # noqa: E402
from local_lambda.cpu_quota import CpuQuota  # noqa: E402

VARIANTS: Dict[str, Dict[str, object]] = {
    "ours": {},
    "1-thread": {"threads": 1},
    "spin": {"spin": True},
    "spin-stop": {"spin": True, "stop": True},
}
WARM_UP = 5
FREEZE_AFTER_S = 0.002  # the handler returns, awslambdaric posts the response and asks for the next event

_CHILD = r"""
import functools, json, sys, time
sys.path.insert(0, sys.argv[1])
import onnxruntime as ort
from classifier.decode import decode_image
from classifier.model import session_options
from classifier.spec import ModelCard, draft_size, preprocess

variant = json.loads(sys.argv[4])
options = session_options(int(variant.get("threads", 2)), allow_spinning=bool(variant.get("spin")))
if variant.get("stop"):
    options.add_session_config_entry("session.force_spinning_stop", "1")
session = ort.InferenceSession(sys.argv[2], sess_options=options, providers=["CPUExecutionProvider"])
card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
fit = functools.partial(draft_size, card.preprocessing)
name = session.get_inputs()[0].name
data = open(sys.argv[3], "rb").read()
print("ready", flush=True)
for _ in sys.stdin:
    started = time.perf_counter()
    image = decode_image(data, 50_000_000, draft_size=fit)
    tensor = preprocess(image, card.preprocessing)
    ran = time.perf_counter()
    session.run(None, {name: tensor})
    done = time.perf_counter()
    print(json.dumps({"request_ms": (done - started) * 1e3, "inference_ms": (done - ran) * 1e3,
                      "cpu_s": time.process_time()}), flush=True)
"""


def serve(python: Path, task_root: Path, model: Path, image: Path, variant: Dict[str, object], requests: int,
          pause_s: float, freeze: bool, env: Dict[str, str], quota: Optional[CpuQuota]) -> Dict[str, List[float]]:
    """One child serving ``requests`` (after a few unrecorded ones), ``pause_s`` apart, frozen in between."""
    argv = [str(python), "-c", _CHILD, str(REPO / "predict_function"), str(model), str(image), json.dumps(variant)]
    child = subprocess.Popen(quota.command(argv) if quota else argv, env=env, cwd=str(task_root), text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: Dict[str, List[float]] = {"request_ms": [], "inference_ms": [], "cpu_ms": []}
    try:
        if child.stdout.readline().strip() != "ready":
            raise SystemExit(f"child failed:\n{child.stderr.read()[-3000:]}")
        last_cpu: Optional[float] = None
        for i in range(WARM_UP + requests):
            time.sleep(pause_s)
            if freeze:
                os.kill(child.pid, signal.SIGCONT)
            child.stdin.write("go\n")
            child.stdin.flush()
            reply = json.loads(child.stdout.readline())
            if freeze:
                time.sleep(FREEZE_AFTER_S)
                os.kill(child.pid, signal.SIGSTOP)
            if i >= WARM_UP:
                out["request_ms"].append(reply["request_ms"])
                out["inference_ms"].append(reply["inference_ms"])
                out["cpu_ms"].append((reply["cpu_s"] - last_cpu) * 1e3)
            last_cpu = reply["cpu_s"]
    finally:
        if freeze and child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
        child.stdin.close()
        child.wait(timeout=30)
    return out


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_threads", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60, help="recorded requests per variant and pause (default 60)")
    parser.add_argument("--pauses", default="0,20,200", help="idle ms before each request, comma-separated (default 0,20,200)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=2, help="children per variant and pause, order alternating (default 2)")
    parser.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=True,
                        help="stop the child between requests, as Lambda freezes the environment (default on)")
    parser.add_argument("--cpu-quota", choices=("auto", "on", "off"), default="auto",
                        help="Lambda's CPU time at 2048 MB (a cgroup CPU quota) where the machine allows it (default auto)")
    parser.add_argument("--build-dir", type=Path, default=REPO / ".build" / "bench")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    pauses = [float(p) for p in args.pauses.split(",") if p]

    images = make_images(args.build_dir / "images")
    task_root, python, image_env = _staged_task_root(args.build_dir / "stage")
    env = child_env(task_root, image_env)
    quota, cpu = make_cpu_quota(args.cpu_quota, 2048)
    results: Dict[tuple, Dict[str, List[float]]] = {}
    try:
        for pause in pauses:
            for repeat in range(args.repeats):
                for name in (variants if repeat % 2 == 0 else variants[::-1]):
                    got = serve(python, task_root, task_root / "model" / "model.onnx", Path(images["jpeg_1mp"].path),
                                VARIANTS[name], args.requests, pause / 1000.0, args.freeze, env, quota)
                    for key, values in got.items():
                        results.setdefault((name, pause), {}).setdefault(key, []).extend(values)
    finally:
        if quota is not None:
            quota.close()
    print(f"1 MP JPEG: decode + preprocess + inference, {args.requests} requests x {args.repeats} children per cell; "
          f"{'frozen (SIGSTOP) between requests, as Lambda' if args.freeze else 'never frozen'}")
    print(f"CPU: {cpu}")
    print(f"{'variant':10s} {'pause ms':>8s} {'request p50':>11s} {'p95':>7s} {'inference p50':>13s} {'CPU/request':>11s}")
    for (name, pause), values in results.items():
        print(f"{name:10s} {pause:8g} {statistics.median(values['request_ms']):11.2f} {percentile(values['request_ms'], 95):7.2f} "
              f"{statistics.median(values['inference_ms']):13.2f} {statistics.median(values['cpu_ms']):11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
