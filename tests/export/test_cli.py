"""The command line, run as users run it (``python -m model_export`` in a subprocess)."""

from __future__ import annotations

import subprocess
import sys

import onnxruntime as ort
import pytest

from classifier.spec import ModelCard

from support import REPO

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "model_export", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_help():
    result = run("--help")
    assert result.returncode == 0
    for word in ("keras", "pytorch", "check", "show"):
        assert word in result.stdout
    result = run("keras", "--help")
    assert result.returncode == 0
    for option in ("--size", "--resize", "--crop-fraction", "--preset", "--scale", "--mean", "--std", "--layout",
                   "--channel-order", "--labels", "--activation", "--name", "--version", "--opset", "--atol",
                   "--quantize", "--min-agreement"):
        assert option in result.stdout, option


def test_no_arguments_is_an_error():
    assert run().returncode == 2


@pytest.fixture(scope="module")
def seed_model(tmp_path_factory):
    import keras_models

    path = tmp_path_factory.mktemp("cli") / "my_model.h5"
    keras_models.small_cnn(size=100).save(path)
    return path


def test_full_run_writes_the_card_it_was_given(seed_model, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("dog\n")
    out = tmp_path / "out" / "model.onnx"
    result = run("keras", str(seed_model), "--preset", "raw", "--resize", "bicubic", "--crop-fraction", "0.9",
                 "--labels", str(labels), "--name", "seed-cnn", "--version", "3", "--activation", "none",
                 "--channel-order", "RGB", "--output", str(out), "--quantize", "static", "--min-agreement", "0.5")
    assert result.returncode == 0, result.stderr
    assert "PASSED" in result.stdout and "wrote" in result.stdout
    assert "quantize (static)" in result.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
    pre = card.preprocessing
    assert (card.name, card.version, card.labels, card.activation) == ("seed-cnn", "3", ("dog",), "none")
    assert (pre.height, pre.width, pre.resize, pre.crop_fraction, pre.scale, pre.layout) == (
        100, 100, "bicubic", 0.9, 1.0, "NHWC")
    assert (tmp_path / "out" / "model-int8.onnx").is_file()
    shown = run("show", str(out))
    assert shown.returncode == 0 and ModelCard.from_json(shown.stdout) == card


def test_an_export_beside_an_older_int8_copy_says_it_is_stale(seed_model, tmp_path):
    out = tmp_path / "model.onnx"
    (tmp_path / "model-int8.onnx").write_bytes(b"the INT8 copy of the model before")
    result = run("keras", str(seed_model), "--preset", "raw", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "model-int8.onnx is the INT8 copy of the model" in result.stderr and "--quantize" in result.stderr
    assert "INT8 copy" not in run("keras", str(seed_model), "--preset", "raw", "--output", str(tmp_path / "b.onnx")).stderr


def test_failures_exit_non_zero(seed_model, tmp_path):
    out = tmp_path / "model.onnx"
    # a tolerance no float computation meets: the check must fail and leave nothing behind
    result = run("keras", str(seed_model), "--preset", "raw", "--atol", "-1", "--output", str(out))
    assert result.returncode == 1
    assert "parity check failed" in result.stderr and "MISMATCH" in result.stdout
    assert not out.exists()
    result = run("keras", str(tmp_path / "missing.h5"), "--preset", "raw", "--output", str(out))
    assert result.returncode == 2 and "not found" in result.stderr
    result = run("keras", str(seed_model), "--preset", "raw", "--size", "64x64", "--output", str(out))
    assert result.returncode == 2 and "fixed at 100x100" in result.stderr
