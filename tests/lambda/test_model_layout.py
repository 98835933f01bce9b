"""The image carries each model as graph + card (``NAME.onnx``) and weights (``NAME.onnx.data``),
written at build by the Dockerfile's ``model`` stage from the repository's self-contained models:
the same card, the same outputs bit for bit, and onnxruntime maps the weights instead of parsing them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from classifier.preoptimized import cpu_layout
from classifier.spec import ModelCard, preprocess
from support import PHOTOS, REPO, logs_once_they_hold

MODELS = REPO / "predict_function" / "model"
MODEL_NAMES = ("model.onnx", "model-int8.onnx")
LAYOUT = cpu_layout()  # the machine that staged the image is the one running it here


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_the_image_has_each_model_split_and_nothing_else(staged_project):
    staged = Path(staged_project.task_root) / "model"
    optimized = [] if LAYOUT is None else ["optimized"]  # the float model's variant for this CPU: test_preoptimized.py
    assert sorted(p.name for p in staged.iterdir()) == sorted(
        [*MODEL_NAMES, *(n + ".data" for n in MODEL_NAMES), *optimized])
    if LAYOUT is not None:
        assert sorted(str(p.relative_to(staged)) for p in (staged / "optimized").rglob("*") if p.is_file()) == [
            f"optimized/{LAYOUT}/model.onnx{suffix}" for suffix in ("", ".data", ".json", ".probe")]
    for name in MODEL_NAMES:
        committed = (MODELS / name).stat().st_size
        graph, weights = (staged / name).stat().st_size, (staged / (name + ".data")).stat().st_size
        assert graph < 0.05 * committed < weights  # the weights moved out of the graph file
        assert abs(graph + weights - committed) < 0.02 * committed  # moved, not duplicated or lost
    root = Path(staged_project.task_root)
    assert not (root / "model-src").exists() and not (root / "image_build").exists()  # build stage only


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_split_model_has_the_same_card_and_answers_bit_for_bit(staged_project, name):
    committed, staged = _session(MODELS / name), _session(Path(staged_project.task_root) / "model" / name)
    assert staged.get_modelmeta().custom_metadata_map == committed.get_modelmeta().custom_metadata_map
    card = ModelCard.from_metadata(committed.get_modelmeta().custom_metadata_map)
    photo = preprocess(Image.open(PHOTOS["chelsea.png"]).convert("RGB"), card.preprocessing)
    noise = np.random.default_rng(5).normal(size=(3, *photo.shape[1:])).astype(np.float32)
    batch = np.concatenate([photo, noise])
    feed = {committed.get_inputs()[0].name: batch}
    expected, got = committed.run(None, feed), staged.run(None, feed)
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def test_the_function_loads_the_variant_made_for_this_cpu(lambda_function, cat_jpeg):
    import base64

    reply = lambda_function.invoke({"image": base64.b64encode(cat_jpeg).decode()})
    assert reply["predictions"][0]["label"] in ("tabby", "tiger cat", "Egyptian cat")
    graph = f'"model_graph":"{LAYOUT or "portable"}"'
    assert graph in logs_once_they_hold(lambda_function, graph)  # each request's log line, once the reader has it
    assert "loading the portable one" not in lambda_function.logs


def test_external_weights_is_deterministic_and_refuses_bad_input(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "image_build.external_weights", *args],
                              cwd=REPO / "predict_function", capture_output=True, text=True, timeout=300)

    first, second = tmp_path / "a", tmp_path / "b"
    for dest in (first, second):
        proc = run(str(MODELS), str(dest))
        assert proc.returncode == 0, proc.stderr
    assert "model.onnx: " in proc.stdout and "B weights" in proc.stdout
    for path in first.iterdir():  # same bytes every build: the image layer's digest does not churn
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    rerun = run(str(MODELS), str(first))  # over its own output: replaced, not appended to
    assert rerun.returncode == 0 and (first / "model.onnx.data").stat().st_size == (second / "model.onnx.data").stat().st_size
    (tmp_path / "empty").mkdir()
    empty = run(str(tmp_path / "empty"), str(tmp_path / "c"))
    assert empty.returncode == 2 and "no *.onnx" in empty.stderr
    same = run(str(first), str(first))
    assert same.returncode != 0 and "another directory" in same.stderr
