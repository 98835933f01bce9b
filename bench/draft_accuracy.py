"""How far reduced-size JPEG decoding (spec.DRAFT_HEADROOM) moves the model's scores.

    .venv/bin/python -m bench.draft_accuracy [--headroom 2.0 1.5 1.25]   # ~5 min on 2 cores

For 16 photos shipped with skimage/sklearn, resized (LANCZOS) to 8 sizes from 800x600 to 4000x3000,
with and without seeded sensor-like grain (sigma 4), saved as JPEG q90: the reference is
``decode_image`` without a draft + ``preprocess``; each headroom decodes with the draft the handler
uses. Prints, per headroom, the cases actually reduced, top-1 flips (with the reference's top-1
margin) and the max / p95 / median of the largest per-class score change. The evidence beside
``DRAFT_HEADROOM`` comes from this. Dev venv only (needs skimage, sklearn); not timed.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "predict_function"))

from classifier.decode import decode_image  # noqa: E402
from classifier.model import Classifier  # noqa: E402
from classifier.spec import draft_size, preprocess  # noqa: E402

SIZES = [(4000, 3000), (3000, 4000), (2000, 1500), (1600, 1200), (1224, 816), (1200, 1600), (1024, 768), (800, 600)]
SKIMAGE = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "hubble_deep_field.jpg",
           "retina.jpg", "camera.png", "coins.png", "moon.png", "ihc.png", "gravel.png", "color.png", "horse.png"]
SKLEARN = ["china.jpg", "flower.jpg"]


def photos() -> dict[str, Path]:
    import skimage.data
    import sklearn.datasets

    found = {name: Path(os.path.dirname(skimage.data.__file__)) / name for name in SKIMAGE}
    found.update({name: Path(os.path.dirname(sklearn.datasets.__file__)) / "images" / name for name in SKLEARN})
    return found


def jpeg(source: Image.Image, size: tuple[int, int], grain: bool) -> bytes:
    image = source.resize(size, Image.Resampling.LANCZOS)
    if grain:
        pixels = np.asarray(image).astype(np.int16)
        noise = np.random.default_rng(0).normal(0.0, 4.0, size=pixels.shape[:2] + (1,)).round().astype(np.int16)
        image = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headroom", type=float, nargs="+", default=[2.0, 1.5, 1.25])
    parser.add_argument("--model", default=str(REPO / "predict_function" / "model" / "model.onnx"))
    args = parser.parse_args(argv)
    classifier = Classifier.load(args.model)
    spec = classifier.card.preprocessing
    results: dict[float, list[tuple[str, float, bool, float]]] = {h: [] for h in args.headroom}
    for name, path in photos().items():
        source = Image.open(path).convert("RGB")
        for size in SIZES:
            for grain in (False, True):
                data = jpeg(source, size, grain)
                full = decode_image(data, 50_000_000)
                reference = classifier.scores(preprocess(full, spec))
                top = np.sort(reference)
                label = f"{name} {size[0]}x{size[1]}{' grain' if grain else ''}"
                for headroom in args.headroom:
                    fit = functools.partial(draft_size, spec, headroom=headroom)
                    drafted = decode_image(data, 50_000_000, draft_size=fit)
                    if drafted.width == full.width:
                        continue  # not reduced: identical by construction
                    scores = classifier.scores(preprocess(drafted, spec))
                    results[headroom].append((label, float(np.abs(scores - reference).max()),
                                              scores.argmax() != reference.argmax(), float(top[-1] - top[-2])))
    for headroom, rows in results.items():
        changes = [r[1] for r in rows]
        flips = [f"{r[0]} (margin {r[3]:.3f})" for r in rows if r[2]]
        print(f"headroom {headroom}: {len(rows)} reduced, {len(flips)} top-1 flips; max score change "
              f"{max(changes):.4f}, p95 {np.percentile(changes, 95):.4f}, median {np.median(changes):.4f}")
        for flip in flips:
            print(f"    flip: {flip}")


if __name__ == "__main__":
    main()
