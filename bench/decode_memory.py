"""Peak memory of one request's decode, per kind of image: the evidence behind
``classifier.settings.DECODE_BYTES_PER_PIXEL`` (the pixels a request may decode at a MemorySize).

    python -m bench.decode_memory              # 20 MP and 50 MP images, 2 fresh processes each (~1 min)
    python -m bench.decode_memory --mp 10,30 --runs 3

Each run is a fresh ``<runtime python>`` (the function's Python 3.12 on the staged task root) that
loads the bundled model, serves one small warm-up image (decode + preprocess + inference, so the
runtime is as warm as after its first request), reads ``VmHWM``, then decodes, preprocesses and
classifies one image with the function's own code and reads ``VmHWM`` again. Printed: the peak
over the warm runtime, per decoded pixel. The images are the costly kinds Pillow decodes at full
size (a JPEG is decoded at reduced size, which the table shows too): lossless WebP and PNG with
alpha, a gray TIFF with associated alpha (mode La), 16-bit RGB PNG, float TIFF, GIF, and a baseline
JPEG decoded without reduction.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.cold_start import _staged_task_root, child_env, interleaved  # noqa: E402
from bench import crafted  # noqa: E402
from bench.crafted import builds_folder, encode, png_rgb16, tiff_associated_alpha  # noqa: E402

_CHILD = r"""
import base64, functools, json, sys
from classifier.decode import decode_image
from classifier.model import Classifier
from classifier.spec import draft_size, preprocess

def hwm_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024

model, image, full = sys.argv[1], sys.argv[2], sys.argv[3] == "full"
classifier = Classifier.load(model, intra_op_threads=1)
spec = classifier.card.preprocessing
fit = None if full else functools.partial(draft_size, spec)
warm = base64.b64decode(json.load(open("events/base64.json"))["image"])
classifier.classify(preprocess(decode_image(warm, 10**9, fit), spec))
before = hwm_mb()
decoded = decode_image(open(image, "rb").read(), 10**9, fit)
pixels = decoded.width * decoded.height
classifier.classify(preprocess(decoded, spec))
print(json.dumps({"warm_mb": before, "peak_mb": hwm_mb(), "decoded_pixels": pixels}))
"""


def _gradient(width: int, height: int) -> np.ndarray:
    base = (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)
    return np.stack([base, base[::-1], base[:, ::-1], base], -1)  # RGBA


KINDS: Dict[str, Callable[[np.ndarray], bytes]] = {
    "webp-lossless-rgba": lambda a: encode(Image.fromarray(a), "WEBP", lossless=True, quality=0),
    "png-rgba": lambda a: encode(Image.fromarray(a), "PNG", compress_level=1),
    "png-rgb-16bit": lambda a: png_rgb16(Image.fromarray(a[..., :3])),
    "tiff-gray-associated-alpha": lambda a: tiff_associated_alpha(Image.fromarray(a[..., [0, 3]], "LA"), compression="tiff_lzw"),
    "tiff-float": lambda a: encode(Image.fromarray(a[..., 0].astype(np.float32) / 255), "TIFF", compression="tiff_deflate"),
    "gif": lambda a: encode(Image.fromarray(a[..., :3]).convert("P"), "GIF"),
    "jpeg-full-decode": lambda a: encode(Image.fromarray(a[..., :3]), "JPEG", quality=90),
    "jpeg-reduced-decode": lambda a: encode(Image.fromarray(a[..., :3]), "JPEG", quality=90),
}


def make(folder: Path, megapixels: int) -> Dict[str, Path]:
    side = int((megapixels * 1_000_000) ** 0.5)
    pixels = _gradient(side, side)
    folder = builds_folder(folder, __file__, crafted.__file__)  # the file names carry the size
    paths = {}
    for kind, build in KINDS.items():
        path = folder / f"{kind}-{megapixels}mp"
        if not path.exists():
            path.write_bytes(build(pixels))
        paths[kind] = path
    return paths


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mp", default="20,50", help="image sizes in megapixels, comma-separated (default 20,50)")
    parser.add_argument("--runs", type=int, default=2, help="fresh processes per image (default 2)")
    parser.add_argument("--build-dir", type=Path, default=REPO / ".build" / "bench")
    args = parser.parse_args(argv)
    task_root, python, image_env = _staged_task_root(args.build_dir / "stage")
    model = task_root / "model" / "model.onnx"
    env = child_env(task_root, image_env, LAMBDA_TASK_ROOT=str(task_root))
    print(f"{'image':<26} {'MP':>4} {'decoded MP':>10} {'warm MB':>8} {'peak MB':>8} {'+MB':>6} {'bytes/px':>9}")
    for megapixels in (int(mp) for mp in args.mp.split(",")):
        images = make(args.build_dir / "decode_memory", megapixels)
        commands = {kind: [str(python), "-c", _CHILD, str(model), str(path),
                           "reduced" if kind == "jpeg-reduced-decode" else "full"] for kind, path in images.items()}
        results = interleaved(commands, args.runs, env, REPO)
        for kind, series in results.items():
            warm, peak = statistics.median(series["warm_mb"]), statistics.median(series["peak_mb"])
            decoded = statistics.median(series["decoded_pixels"])
            print(f"{kind:<26} {megapixels:>4} {decoded / 1e6:>10.1f} {warm:>8.0f} {peak:>8.0f} {peak - warm:>6.0f} "
                  f"{(peak - warm) * 2**20 / decoded:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
