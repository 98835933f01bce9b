"""The Dockerfile trims files the function never imports or loads; the staged task root must match,
every extension module left must still load (no library it needs was removed), and the function
must still serve. (tests/lambda/test_hostile.py decodes every accepted format through it.)"""

from __future__ import annotations

from pathlib import Path

from support import run_in_runtime

# Relative to the task root; each must match nothing after the Dockerfile's trim.
TRIMMED = (
    "numpy/tests", "numpy/*/tests", "numpy/f2py",
    "onnxruntime/transformers", "onnxruntime/quantization", "onnxruntime/tools",
    "onnxruntime/capi/libonnxruntime.so*",  # the C library for other packages; the binding has its own runtime
    "PIL/_avif.*", "pillow.libs/libavif-*",  # AVIF is not an accepted format
    "PIL/_imagingft.*", "pillow.libs/libfreetype-*", "pillow.libs/libharfbuzz-*",  # text rendering (ImageFont)
    "pillow.libs/libpng16-*", "pillow.libs/libbrotli*",  # FreeType's own dependencies
)

# Run by the function's Python in the trimmed task root: every extension module left loads, Pillow
# reports the trimmed codecs as absent (not broken), and an unknown image, which makes Pillow import
# every plugin (AVIF's included), is still just an unidentified image.
LOAD_EVERYTHING_LEFT = r"""
import glob, importlib, io, os
for path in sorted(glob.glob("PIL/_*.so")):
    importlib.import_module("PIL." + os.path.basename(path).split(".")[0])
from PIL import Image, UnidentifiedImageError, features
assert not features.check("avif") and not features.check("freetype2")
assert all(features.check(codec) for codec in ("jpg", "zlib", "webp", "libtiff"))
try:
    Image.open(io.BytesIO(b"not an image at all" * 10))
except UnidentifiedImageError:
    pass
else:
    raise AssertionError("garbage was identified")
import numpy as np, onnxruntime as ort
from classifier.model import Classifier
classifier = Classifier.load("model/model.onnx")
scores = classifier.scores(np.zeros((1, 3, 224, 224), np.float32))
assert scores.shape == (1000,), scores.shape
print("ok", len(glob.glob("PIL/_*.so")))
"""


def test_trimmed_paths_are_gone_from_the_task_root(staged_project):
    root = Path(staged_project.task_root)
    assert (root / "numpy" / "__init__.py").is_file() and (root / "onnxruntime" / "capi").is_dir()
    assert list(root.glob("onnxruntime/capi/onnxruntime_pybind11_state*.so"))  # the binding itself stays
    for pattern in TRIMMED:
        assert not list(root.glob(pattern)), pattern


def test_every_extension_module_left_loads_and_runs_the_model(staged_project):
    out = run_in_runtime(staged_project, LOAD_EVERYTHING_LEFT, staged_project.image_env).split()
    assert out[0] == "ok" and int(out[1]) >= 4


def test_the_trimmed_function_still_serves(lambda_function, cat_jpeg):
    import base64

    body = lambda_function.invoke({"image": base64.b64encode(cat_jpeg).decode(), "top_k": 1})
    assert body["predictions"][0]["score"] > 0
