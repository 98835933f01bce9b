"""The INT8 variant against the fp32 model: agreement, score differences, size, speed.

    python -m bench.int8                 # the committed model-int8.onnx vs model.onnx
    python -m bench.int8 --configs       # also re-quantize with each alternative tried (slower)

Both models run through ``classifier.model.Classifier`` (the handler's session options), one
image at a time as served. Agreement and score differences are measured on the 7 check photos
(model_export.parity.PHOTOS), which calibration never sees, and on 12 views of each (the photo
plus 11 deterministic random crops/flips: 84 inputs). Speed: both sessions in this process,
runs interleaved, medians (the machine is shared: compare the ratio, not the milliseconds).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "predict_function" / "model"
if str(REPO / "predict_function") not in sys.path:
    sys.path.insert(0, str(REPO / "predict_function"))

from classifier.model import Classifier  # noqa: E402

from model_export.parity import batch, sample_photos  # noqa: E402
from model_export.quantize import QuantConfig, quantize, with_views  # noqa: E402

HELD_OUT_VIEWS = 12
VIEW_SEED = 100  # not the calibration seed (0)
# (name, mode, config) tried against the default; QuantConfig() is what `make model-int8` ships.
ALTERNATIVES = (
    ("minmax, 1 view per calibration photo", "static", QuantConfig(views=1)),
    ("minmax, 8 views", "static", QuantConfig(views=8)),
    ("percentile 99.999", "static", QuantConfig(method="percentile")),
    ("percentile 99.99", "static", QuantConfig(method="percentile", percentile=99.99)),
    ("entropy", "static", QuantConfig(method="entropy")),
    ("distribution", "static", QuantConfig(method="distribution")),
    ("reduce-range", "static", QuantConfig(reduce_range=True)),
    ("per-tensor weights", "static", QuantConfig(per_channel=False)),
    ("first Conv kept fp32", "static", QuantConfig(exclude=("node_Conv_881",))),
    ("last Gemm kept fp32", "static", QuantConfig(exclude=("node_linear",))),
    ("QOperator format", "static", QuantConfig(quant_format="qoperator")),
    ("dynamic (weights only)", "dynamic", QuantConfig()),
)


def scores_of(classifier: Classifier, x: np.ndarray) -> np.ndarray:
    return np.stack([classifier.scores(x[i : i + 1]) for i in range(len(x))])


def compare(fp32: np.ndarray, int8: np.ndarray) -> dict:
    top_fp32, top_int8 = fp32.argmax(axis=1), int8.argmax(axis=1)
    diff = np.abs(fp32 - int8)
    rows = np.arange(len(fp32))
    return {
        "agree": int((top_fp32 == top_int8).sum()),
        "count": len(fp32),
        "max_diff": float(diff.max()),
        "mean_max_diff": float(diff.max(axis=1).mean()),  # per input: its largest score difference
        "top1_score_diff": float(np.abs(fp32[rows, top_fp32] - int8[rows, top_fp32]).mean()),
        "top5_overlap": float(np.mean([len(set(np.argsort(-a)[:5]) & set(np.argsort(-b)[:5])) / 5
                                       for a, b in zip(fp32, int8)])),
        "flips": [i for i in rows if top_fp32[i] != top_int8[i]],
    }


def line(name: str, size: int, photos: dict, views: dict) -> str:
    return (f"{name:<38} {size / 1e6:>5.1f} MB  {photos['agree']}/{photos['count']:<3} {photos['mean_max_diff']:>7.3f} "
            f"{views['agree']:>3}/{views['count']:<3} {views['max_diff']:>8.3f} {views['mean_max_diff']:>8.3f} "
            f"{views['top1_score_diff']:>8.3f} {views['top5_overlap']:>6.2f}")


HEADER = (f"{'model':<38} {'size':>8}  {'photos':<6} {'mean|d|':>7} {'views':>7} {'max|d|':>8} {'mean|d|':>8} "
          f"{'top1|d|':>8} {'top5':>6}")


def speed(a: Classifier, b: Classifier, x: np.ndarray, rounds: int) -> tuple[float, float]:
    for _ in range(5):
        a.scores(x), b.scores(x)
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(rounds):
        order = ((0, a), (1, b)) if i % 2 == 0 else ((1, b), (0, a))
        for k, model in order:
            start = time.perf_counter()
            model.scores(x)
            times[k].append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.int8", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", default=str(MODEL_DIR / "model.onnx"))
    parser.add_argument("--int8", default=str(MODEL_DIR / "model-int8.onnx"))
    parser.add_argument("--configs", action="store_true", help="also re-quantize with each alternative")
    parser.add_argument("--rounds", type=int, default=100, help="timed runs per model (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1, ~Lambda at 2 GB)")
    args = parser.parse_args(argv)

    fp32 = Classifier.load(args.fp32, intra_op_threads=args.threads)
    int8 = Classifier.load(args.int8, intra_op_threads=args.threads)
    photos = sample_photos()
    views = with_views(photos, HELD_OUT_VIEWS, seed=VIEW_SEED)
    x_photos, x_views = batch(photos, fp32.card), batch(views, fp32.card)
    ref_photos, ref_views = scores_of(fp32, x_photos), scores_of(fp32, x_views)
    labels = fp32.card.labels

    print(f"held out from calibration: {len(photos)} check photos, {len(views)} views of them "
          f"(|d| = absolute score difference vs fp32; mean|d| = mean over inputs of each input's largest, the "
          f"photos' one is what quantize gates with --max-mean-score-diff; "
          f"top1|d| = on fp32's top-1 class; top5 = overlap of the top-5 sets)")
    print(HEADER)
    shipped_photos = compare(ref_photos, scores_of(int8, x_photos))
    shipped_views = compare(ref_views, scores_of(int8, x_views))
    print(line(f"{Path(args.int8).name} ({int8.card.version})", Path(args.int8).stat().st_size,
               shipped_photos, shipped_views))
    for i in shipped_views["flips"]:
        got = int(scores_of(int8, x_views[i : i + 1])[0].argmax())
        print(f"  flip: {views[i][0]}: fp32 {labels[int(ref_views[i].argmax())]!r} -> int8 {labels[got]!r}")

    if args.configs:
        with tempfile.TemporaryDirectory(prefix="bench_int8_") as tmp:
            for k, (name, mode, config) in enumerate(ALTERNATIVES):
                out = Path(tmp) / f"{k}.onnx"
                quantize(args.fp32, out, photos, mode=mode, config=config, min_agreement=0.0,
                         max_mean_score_diff=math.inf)
                candidate = Classifier.load(str(out), intra_op_threads=args.threads)
                print(line(name, out.stat().st_size, compare(ref_photos, scores_of(candidate, x_photos)),
                           compare(ref_views, scores_of(candidate, x_views))), flush=True)

    fp32_ms, int8_ms = speed(fp32, int8, x_photos[:1], args.rounds)
    print(f"inference, 1 image, {args.threads} thread(s), median of {args.rounds} interleaved runs: "
          f"fp32 {fp32_ms:.2f} ms, int8 {int8_ms:.2f} ms, int8/fp32 = {int8_ms / fp32_ms:.2f}")
    print(f"size: fp32 {Path(args.fp32).stat().st_size / 1e6:.1f} MB, int8 {Path(args.int8).stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
