"""The floor: decode, preprocessing and inference alone, outside any handler.

Run by the benchmark with the staged runtime's Python 3.12, ``cwd`` = our staged task root and the
function's own environment (``PYTHONPATH`` = the task root, like /var/task), so the very same
onnxruntime/numpy/Pillow wheels are timed. Prints one JSON document on stdout. Stdlib + staged deps
only; imports nothing from the benchmark package.

    python floor.py '{"images": {"key": "path", ...}, "repeats": 15, "model_path": "..."}'

What is timed (medians of ``repeats`` after one warm-up; milliseconds):

* ``decode``: ``Image.open(BytesIO(data)); image.load()``: the full-size decode every handler must do
  at least once (no orientation, no mode conversion, no copy);
* ``decode_draft``: the same with ``image.draft("RGB", size)`` first, ``size`` from the handler's own
  ``classifier.spec.draft_size`` (JPEG only: the decoder's DCT scaling to 1/2, 1/4 or 1/8 that keeps
  twice the model's resolution inside the center crop, as the handler decodes it);
* ``handler_decode``: our ``classifier.decode.decode_image`` (format allow-list, pixel check, load,
  EXIF transpose, RGB);
* ``handler_decode_after_run``: the same, each time right after an inference with our session
  (onnxruntime's intra-op threads spin-wait after ``run``, competing with the decode on few cores);
* ``preprocess_ours``: our ``classifier.spec.preprocess`` (center crop 0.875 + bicubic resize to 224 +
  normalise, NCHW) on the decoded RGB image; ``preprocess_ours_after_draft`` the same on the drafted image;
* ``preprocess_baseline``: the tutorial's ``convert('RGB').resize((224, 224), NEAREST)`` + numpy
  normalise/transpose;
* ``inference_ours`` / ``inference_default``: ``session.run`` on a prepared (1, 3, 224, 224) float32
  tensor, with our SessionOptions (``classifier.model.session_options``) / onnxruntime's defaults;
* ``session_create_ours`` / ``session_create_default``: ``InferenceSession(model)`` (median of 3);
* ``python_loop_2m``: a plain Python loop of 2M additions, a scalar-speed index of the host (results from
  different machines differ by how fast they run scalar code, see "host" in the table's header).
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time


def _median_ms(fn, repeats: int, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000.0)
    return {"median": statistics.median(samples), "min": min(samples), "n": len(samples)}


def _after(before, fn, repeats: int) -> dict:
    """Time ``fn()`` right after ``before()`` (untimed), ``repeats`` times after one warm-up."""
    samples = []
    for i in range(repeats + 1):
        before()
        started = time.perf_counter()
        fn()
        if i:
            samples.append((time.perf_counter() - started) * 1000.0)
    return {"median": statistics.median(samples), "min": min(samples), "n": len(samples)}


def _python_loop() -> None:
    total = 0
    for i in range(2_000_000):
        total += i


def main(config: dict) -> dict:
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    from classifier.decode import decode_image
    from classifier.model import session_options
    from classifier.spec import ModelCard, draft_size, preprocess

    repeats = int(config.get("repeats", 15))
    model_path = config["model_path"]
    out: dict = {"repeats": repeats, "python": sys.version.split()[0], "onnxruntime": ort.__version__,
                 "numpy": np.__version__, "pillow": Image.__version__, "images": {}}

    def create(options=None):
        return ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])

    ours_session = create(session_options(0))
    default_session = create()
    card = ModelCard.from_metadata(ours_session.get_modelmeta().custom_metadata_map)
    spec = card.preprocessing
    out["python_loop_2m"] = _median_ms(_python_loop, 3, warmup=0)
    out["intra_op_threads_ours"] = session_options(0).intra_op_num_threads
    out["session_create_ours"] = _median_ms(lambda: create(session_options(0)), 3, warmup=0)
    out["session_create_default"] = _median_ms(lambda: create(), 3, warmup=0)

    tensor = None
    for key, path in config["images"].items():
        with open(path, "rb") as handle:
            data = handle.read()
        row: dict = {}

        def decode():
            image = Image.open(io.BytesIO(data))
            image.load()
            return image

        first = decode()
        row["format"] = first.format
        row["decode"] = _median_ms(decode, repeats)
        if first.format == "JPEG":
            def decode_draft():
                image = Image.open(io.BytesIO(data))
                image.draft("RGB", draft_size(spec, *image.size))
                image.load()
                return image

            drafted = decode_draft().convert("RGB")
            row["draft_size"] = f"{drafted.width}x{drafted.height}"
            row["decode_draft"] = _median_ms(decode_draft, repeats)
            row["preprocess_ours_after_draft"] = _median_ms(lambda: preprocess(drafted, spec), repeats)
        row["handler_decode"] = _median_ms(lambda: decode_image(data, 50_000_000), repeats)
        rgb = decode_image(data, 50_000_000)
        if tensor is None:
            tensor = preprocess(rgb, spec)
        name = ours_session.get_inputs()[0].name
        row["handler_decode_after_run"] = _after(lambda: ours_session.run(None, {name: tensor}),
                                                 lambda: decode_image(data, 50_000_000), repeats)
        row["preprocess_ours"] = _median_ms(lambda: preprocess(rgb, spec), repeats)

        def preprocess_baseline():
            image = first.convert("RGB").resize((224, 224), Image.NEAREST)
            x = (np.array(image).astype(np.float32) - 127.0) / 128.0
            return np.expand_dims(x.transpose(2, 0, 1), 0)

        row["preprocess_baseline"] = _median_ms(preprocess_baseline, repeats)
        if key == "jpeg_1mp":
            tensor = preprocess(rgb, spec)
        out["images"][key] = row

    name = ours_session.get_inputs()[0].name
    out["inference_ours"] = _median_ms(lambda: ours_session.run(None, {name: tensor}), repeats * 2, warmup=3)
    out["inference_default"] = _median_ms(lambda: default_session.run(None, {name: tensor}), repeats * 2, warmup=3)
    return out


if __name__ == "__main__":
    json.dump(main(json.loads(sys.argv[1])), sys.stdout)
