"""The parity comparison itself, on hand-made outputs and tiny ONNX graphs (no TF/torch)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from classifier.spec import ModelCard
from model_export.errors import ExportError
from model_export.metadata import build_preprocessing, write_card
from model_export.parity import ParityReport, Tolerance, check_parity, compare

from onnx_models import tiny_model
from user_callables import no_tensor

CARD = ModelCard("t", "1", build_preprocessing(4, 4, preset="unit"), ("a", "b", "c"), "softmax")
# Three examples; the ONNX side ranks "c" first on two of them, within any atol given below.
SOURCE = np.array([[0.50, 0.10, 0.49], [0.50, 0.10, 0.49], [0.1, 0.9, 0.0]], np.float32)
ONNX = np.array([[0.49, 0.10, 0.50], [0.49, 0.10, 0.50], [0.1, 0.9, 0.0]], np.float32)


def compared(source, onnx_out, **tolerance) -> ParityReport:
    report = ParityReport("m.onnx", "src", Tolerance(**tolerance))
    compare(report, CARD, "photos", ["output"], ["x", "y", "z"][: len(source)], [source], [onnx_out])
    return report


def test_top1_flips_within_min_top1_are_notes_not_failures():
    report = compared(SOURCE, ONNX, atol=0.1, min_top1=0.3)
    assert report.ok and report.rows[0].ok and report.rows[0].top1_agree == 1
    assert len(report.notes) == 2 and "photos/output x: top-1 2 'c' from ONNX vs 0 'a' from source" in report.notes[0]
    table = report.table()
    assert "PASSED" in table and "note: photos/output y" in table and "MISMATCH" not in table


@pytest.mark.parametrize("min_top1", [1.0, 0.5])
def test_top1_flips_fail_below_min_top1_and_the_row_says_so(min_top1):
    report = compared(SOURCE, ONNX, atol=0.1, min_top1=min_top1)
    assert not report.ok and not report.rows[0].ok and not report.notes
    assert report.mismatches[:2] == [
        "photos/output x: top-1 2 'c' from ONNX vs 0 'a' from source",
        "photos/output y: top-1 2 'c' from ONNX vs 0 'a' from source",
    ]
    assert f"top-1 agrees on 1/3, below the required {min_top1:.0%}" in report.mismatches[2]
    assert "MISMATCH" in report.table()


def test_a_value_mismatch_fails_whatever_min_top1_says():
    report = compared(SOURCE, ONNX, atol=1e-3, min_top1=0.0)
    assert not report.ok and not report.rows[0].ok
    assert report.mismatches[0].startswith("photos/output x: max abs diff 0.01 > atol 0.001; top-1 2 'c'")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("side", ["source", "ONNX"])
def test_non_finite_output_on_either_side_is_a_mismatch(bad, side):
    source = np.array([[0.2, 0.2, 0.1], [0.3, 0.2, 0.1]], np.float32)
    onnx_out = np.array([[5.0, 0.2, 0.1], [0.3, 0.2, 0.1]], np.float32)
    (source if side == "source" else onnx_out)[0, 0] = bad
    other = onnx_out if side == "source" else source
    other[0, 0] = 0.2
    report = compared(source, onnx_out, atol=1e9, min_top1=0.0)
    assert not report.ok and not report.rows[0].ok
    assert report.mismatches == [f"photos/output x: non-finite output from {side}"]
    assert report.rows[0].max_abs_diff == np.inf


@pytest.fixture
def binary_model(tmp_path):
    """One output computed by a Sigmoid node: a probability, P(positive)."""

    def write(labels, activation):
        path = tmp_path / f"binary-{len(labels)}-{activation}.onnx"
        card = ModelCard("b", "1", build_preprocessing(4, 4, preset="unit"), labels, activation)
        onnx.save(write_card(tiny_model(1, ("Sigmoid", "Identity")), card), str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return path, lambda x: session.run(None, {"input": x})

    return write


@pytest.mark.parametrize("labels", [(), ("dog",), ("cat", "dog")])
def test_binary_card_with_no_one_or_two_labels_passes(binary_model, photos, labels):
    report = check_parity(*binary_model(labels, "none"), photos=photos, n_random=2)
    assert report.ok, report.table()


def test_card_that_applies_sigmoid_twice_or_mislabels_fails(binary_model, photos):
    report = check_parity(*binary_model(("a", "b", "c"), "sigmoid"), photos=photos, n_random=2)
    assert not report.ok
    problems = [m for m in report.mismatches if m.startswith("card: ")]
    assert len(problems) == 2, report.mismatches
    assert "already computed by a Sigmoid node" in problems[0] and "--activation none" in problems[0]
    assert "3 labels given but the model outputs a single score" in problems[1]


def test_reference_preprocessing_must_return_a_tensor(binary_model, photos):
    with pytest.raises(ExportError, match="the reference preprocessing returned NoneType, not a tensor"):
        check_parity(*binary_model((), "none"), photos=photos, reference_preprocess=no_tensor)


def test_the_batch_of_one_the_function_runs_is_checked(tmp_path, photos):
    """A Squeeze without axes gives (N,) for the batched inputs, the same as the source, but a
    scalar for one image, which the function cannot read: a mismatch of its own."""
    path = tmp_path / "squeezed.onnx"
    card = ModelCard("s", "1", build_preprocessing(4, 4, preset="unit"), (), "sigmoid")
    onnx.save(write_card(tiny_model(1, ("Squeeze",)), card), str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    report = check_parity(path, lambda x: session.run(None, {"input": x}), photos=photos, n_random=2)
    assert not report.ok
    assert [m for m in report.mismatches if m.startswith("single/")] == [
        "single/output: shape () from ONNX for a batch of one, expected (1,) (the function runs one image "
        "at a time: keep the batch axis, e.g. squeeze(-1) or flatten(1) instead of squeeze())"
    ]
    # a well-formed model passes it
    good = tmp_path / "good.onnx"
    onnx.save(write_card(tiny_model(3), CARD), str(good))
    session = ort.InferenceSession(str(good), providers=["CPUExecutionProvider"])
    report = check_parity(good, lambda x: session.run(None, {"input": x}), photos=photos, n_random=2)
    assert report.ok, report.table()


def test_an_onnx_model_that_cannot_run_the_check_batch_is_an_export_error(tmp_path, photos):
    """``check`` on a file whose input batch is fixed at 1 (exported elsewhere, card added):
    onnxruntime's InvalidArgument is translated at the boundary, not a traceback."""
    model = write_card(tiny_model(3), CARD)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path / "batch1.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match=r"onnxruntime cannot run .*batch1.onnx on a batch of shape \(7, 4, 4, 3\)"):
        check_parity(path, lambda x: [np.zeros((len(x), 3), np.float32)], photos=photos, n_random=2)
