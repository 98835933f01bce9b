"""Cold start: the model loads on a background thread, is warmed up, and still fails loudly."""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from classifier.model import Classifier, ModelLoadError
from classifier.spec import METADATA_KEY, ModelCard, Preprocessing, preprocess
from support import DEFAULT_MODEL


def test_background_load_gives_the_same_scores_as_a_plain_load():
    plain = Classifier.load(str(DEFAULT_MODEL), intra_op_threads=1)
    loading = Classifier.load_in_background(str(DEFAULT_MODEL), intra_op_threads=1)
    background = loading.result()
    assert background.card == plain.card
    image = Image.radial_gradient("L").convert("RGB")
    tensor = preprocess(image, plain.card.preprocessing)
    np.testing.assert_allclose(background.scores(tensor), plain.scores(tensor), rtol=0, atol=1e-6)
    assert loading.result() is background  # result() can be asked again


def test_background_load_runs_on_another_thread_and_returns_while_it_works():
    started, release = threading.Event(), threading.Event()
    seen = {}

    class Slow(Classifier):
        @classmethod
        def load(cls, path, intra_op_threads=0, warm_up=False):
            seen["thread"], seen["warm_up"] = threading.current_thread().name, warm_up
            started.set()
            release.wait(10)
            return super().load(path, intra_op_threads, warm_up)

    loading = Slow.load_in_background(str(DEFAULT_MODEL), 1)
    assert started.wait(10)  # the caller got control back while the load is still going
    release.set()
    assert isinstance(loading.result(), Slow)
    assert seen == {"thread": "model-load", "warm_up": True}


def test_background_load_errors_reach_the_cold_start(tmp_path):
    loading = Classifier.load_in_background(str(tmp_path / "missing.onnx"))
    with pytest.raises(ModelLoadError, match="not found"):
        loading.result()


def _reshape_model(path, card: ModelCard) -> str:
    """Any height/width in its signature, but the graph only runs on 4x4 images."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["output"])],
        "fixed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "h", "w", 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 48])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [1, 48])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, {METADATA_KEY: card.to_json()})
    onnx.save(model, str(path))
    return str(path)


def test_a_model_that_cannot_run_its_own_input_fails_the_warm_up(tmp_path):
    card = ModelCard(name="t", version="0", preprocessing=Preprocessing(height=8, width=8), activation="none")
    path = _reshape_model(tmp_path / "m.onnx", card)
    Classifier.load(path)  # the signature fits the card: loading alone does not notice
    with pytest.raises(ModelLoadError, match=r"warm-up inference on a \(1, 8, 8, 3\) float32 input"):
        Classifier.load(path, warm_up=True)
    with pytest.raises(ModelLoadError, match="warm-up"):
        Classifier.load_in_background(path).result()
    fits = ModelCard(name="t", version="0", preprocessing=Preprocessing(height=4, width=4), activation="none")
    Classifier.load(_reshape_model(tmp_path / "ok.onnx", fits), warm_up=True)


def test_decoders_are_registered_at_import_so_no_request_imports_a_plugin(tmp_path):
    """Left to Image.open, the first WebP/GIF/BMP/TIFF request would import every Pillow plugin."""
    import io
    import subprocess
    import sys

    from classifier.decode import ALLOWED_FORMATS

    for fmt in ALLOWED_FORMATS:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format=fmt)
        (tmp_path / fmt).write_bytes(buffer.getvalue())
    code = f"""
import pathlib, sys
import classifier.decode as decode
before = set(sys.modules)
for fmt in decode.ALLOWED_FORMATS:
    assert decode.decode_image(pathlib.Path({str(tmp_path)!r}, fmt).read_bytes(), 10**6).size == (8, 8)
print(sorted(m for m in set(sys.modules) - before if m.startswith("PIL")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
