"""onnxruntime session options: what each costs at session creation, first run, warm run, per request and RSS.

    python -m bench.session_options                 # 10 fresh processes per variant (~1.5 min)
    python -m bench.session_options --runs 20 --model predict_function/model/model-int8.onnx
    python -m bench.session_options --cpu-quota off  # the whole machine instead of Lambda's CPU time

Each run is a fresh ``<runtime python>`` (the function's Python 3.12 on the staged task root) that
imports onnxruntime, builds one session with ``classifier.model.session_options`` (what the
function uses) changed by one variant, and runs the model on the 1 MP bench JPEG, decoded and
preprocessed by the function's own code: session creation (the first session of the process, so
onnxruntime's one-time set-up is in it, as at a cold start), the first run, the median of 30 warm
runs, and the process's peak RSS (``VmHWM``) after creation and after the runs; then ``request``:
the median of decode (``classifier.decode``, reduced JPEG decoding included) + preprocess +
inference over the 1 MP JPEG, the 12 MP JPEG and the 0.3 MP PNG back to back, 20 rounds, which
shows what worker threads that spin after a run cost the next image's decode. As in
``python -m bench``, each process runs under Lambda's CPU time for 2048 MB (a cgroup CPU quota of
1.16 CPUs) where the machine allows it (``--cpu-quota auto``). Variants alternate; medians over
the runs are printed. Compare within one run; the machine's load moves everything.

Variants: ``ours`` (the function's options), ``no-arena`` (``enable_cpu_mem_arena=False``),
``no-mem-pattern`` (``enable_mem_pattern=False``), ``no-prepack`` (``session.disable_prepacking``),
and combinations; ``ours, 1 thread`` (one intra-op thread); ``ort-default`` is a session with
onnxruntime's defaults (the baseline's: threads that spin).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.cold_start import _staged_task_root, child_env, interleaved  # noqa: E402
from bench.images import make_images  # noqa: E402
from bench.run import make_cpu_quota  # noqa: E402
from local_lambda.cpu_quota import CpuQuota  # noqa: E402

VARIANTS: Dict[str, Dict[str, object]] = {
    "ours": {},
    "ours, 1 thread": {"threads": 1},
    "no-arena": {"arena": False},
    "no-mem-pattern": {"mem_pattern": False},
    "no-prepack": {"prepack": False},
    "no-arena + no-prepack": {"arena": False, "prepack": False},
    "no-arena + no-mem-pattern": {"arena": False, "mem_pattern": False},
    "ort-default": {"default": True},
}

_CHILD = r"""
import functools, json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import onnxruntime as ort
from PIL import Image
from classifier.decode import decode_image
from classifier.model import session_options
from classifier.spec import ModelCard, draft_size, preprocess

variant = json.loads(sys.argv[4])
images = sys.argv[3].split(",")
if variant.get("default"):
    options = ort.SessionOptions()
else:
    options = session_options(int(variant.get("threads") or sys.argv[5]))
    if variant.get("arena") is False:
        options.enable_cpu_mem_arena = False
    if variant.get("mem_pattern") is False:
        options.enable_mem_pattern = False
    if variant.get("prepack") is False:
        options.add_session_config_entry("session.disable_prepacking", "1")

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0

started = time.perf_counter()
session = ort.InferenceSession(sys.argv[2], sess_options=options, providers=["CPUExecutionProvider"])
created = time.perf_counter()
rss_session = hwm_mb()
card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
with Image.open(images[0]) as image:
    tensor = preprocess(image.convert("RGB"), card.preprocessing)
feed = {session.get_inputs()[0].name: tensor}
first = time.perf_counter()
session.run(None, feed)
first_done = time.perf_counter()
warm = []
for _ in range(30):
    t = time.perf_counter()
    session.run(None, feed)
    warm.append(time.perf_counter() - t)
rss_runs = hwm_mb()
fit = functools.partial(draft_size, card.preprocessing)
datas = [open(path, "rb").read() for path in images]
requests = []
for _ in range(20):
    for data in datas:
        t = time.perf_counter()
        x = preprocess(decode_image(data, 50_000_000, draft_size=fit), card.preprocessing)
        session.run(None, {session.get_inputs()[0].name: x})
        requests.append(time.perf_counter() - t)
print(json.dumps({"session_ms": (created - started) * 1e3, "first_run_ms": (first_done - first) * 1e3,
                  "warm_ms": statistics.median(warm) * 1e3, "request_ms": statistics.median(requests) * 1e3,
                  "rss_after_session_mb": rss_session, "rss_after_runs_mb": rss_runs}))
"""

def measure(task_root: Path, python: Path, model: Path, images: List[Path], runs: int, threads: int,
            variants: Dict[str, Dict[str, object]], quota: Optional[CpuQuota] = None,
            image_env: Optional[Dict[str, str]] = None) -> Dict[str, Dict[str, List[float]]]:
    env = child_env(task_root, image_env)
    commands = {name: [str(python), "-c", _CHILD, str(REPO / "predict_function"), str(model),
                       ",".join(str(i) for i in images), json.dumps(variant), str(threads)]
                for name, variant in variants.items()}
    if quota is not None:  # in the quota from the start
        commands = {name: quota.command(argv) for name, argv in commands.items()}
    return interleaved(commands, runs, env, task_root)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.session_options", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per variant (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2: 2048 MB)")
    parser.add_argument("--model", type=Path, default=None,
                        help="default: model/model.onnx of the staged task root, as the function serves it "
                             "(graph + external weights from the Dockerfile's model stage)")
    parser.add_argument("--cpu-quota", choices=("auto", "on", "off"), default="auto",
                        help="Lambda's CPU time at 2048 MB (a cgroup CPU quota) where the machine allows it (default auto)")
    parser.add_argument("--build-dir", type=Path, default=REPO / ".build" / "bench")
    args = parser.parse_args(argv)

    images = make_images(args.build_dir / "images")
    task_root, python, image_env = _staged_task_root(args.build_dir / "stage")
    model = args.model.resolve() if args.model else task_root / "model" / "model.onnx"
    quota, cpu = make_cpu_quota(args.cpu_quota, 2048)
    try:
        result = measure(task_root, python, model,
                         [Path(images[k].path) for k in ("jpeg_1mp", "jpeg_12mp", "png_0.3mp")],
                         args.runs, args.threads, VARIANTS, quota, image_env)
    finally:
        if quota is not None:
            quota.close()
    print(f"{model.name}{'' if args.model else ' (staged)'}, {args.threads} intra-op threads, {args.runs} fresh processes per variant, medians")
    print(f"CPU: {cpu}")
    print(f"{'variant':28s} {'session ms':>10s} {'first run':>10s} {'sum':>7s} {'warm ms':>8s} {'request ms':>11s}"
          f" {'RSS session MB':>15s} {'RSS runs MB':>12s}")
    for name, values in result.items():
        m = {k: statistics.median(v) for k, v in values.items()}
        total = statistics.median([a + b for a, b in zip(values["session_ms"], values["first_run_ms"])])
        print(f"{name:28s} {m['session_ms']:10.1f} {m['first_run_ms']:10.1f} {total:7.1f} {m['warm_ms']:8.2f}"
              f" {m['request_ms']:11.2f} {m['rss_after_session_mb']:15.1f} {m['rss_after_runs_mb']:12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
