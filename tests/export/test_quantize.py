"""INT8 quantization: size, top-1 agreement and score differences reported on check photos held
out from calibration; a quantized model that disagrees beyond the threshold is refused (and not
written); the committed INT8 variant is exactly what ``make model-int8`` writes."""

from __future__ import annotations

import dataclasses
import math

import onnx
import onnxruntime as ort
import pytest

from classifier.spec import ModelCard
from model_export.__main__ import main
from model_export.errors import ExportError, QuantizationError
from model_export.metadata import read_card
from model_export.parity import PHOTOS
from model_export.quantize import CALIBRATION_PHOTOS, QuantConfig, calibration_photos, quantize, with_views

from support import DEFAULT_MODEL

INT8_MODEL = DEFAULT_MODEL.with_name("model-int8.onnx")


@pytest.fixture(scope="module")
def static_int8(tmp_path_factory, photos):
    """What `make model-int8` runs."""
    out = tmp_path_factory.mktemp("q") / "model-int8.onnx"
    report = quantize(DEFAULT_MODEL, out, photos, mode="static", min_agreement=1.0, max_mean_score_diff=0.04)
    print(report.table())
    return out, report


def card_of(path) -> ModelCard:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)


def test_calibration_photos_are_held_apart_from_the_check_photos():
    assert not set(CALIBRATION_PHOTOS) & set(PHOTOS)
    assert ("skimage.data", "motorcycle_right.png") not in CALIBRATION_PHOTOS  # motorcycle_left.png's stereo twin
    found = calibration_photos()
    assert len(found) == len(CALIBRATION_PHOTOS) == 14  # every packaged image is installed (export extra)
    views = with_views(found[:2], 4)
    assert len(views) == 8 and views[0][1] is found[0][1]
    assert [v.size for _, v in with_views(found[:2], 4)] == [v.size for _, v in views]  # deterministic


def test_the_score_gate_refuses_scores_that_moved_although_top1_agrees(tmp_path, photos):
    # measured: MinMax x1 view keeps 7/7 top-1 with a mean largest score difference of 0.026 per photo
    out = tmp_path / "moved.onnx"
    with pytest.raises(QuantizationError, match="refusing to write") as info:
        quantize(DEFAULT_MODEL, out, photos, min_agreement=1.0, max_mean_score_diff=0.01, config=QuantConfig(views=1))
    message = str(info.value)
    assert "above the allowed 0.01 (--max-mean-score-diff)" in message
    assert "top-1 agrees with fp32 on 7/7" in message and "below the required" not in message
    assert "(required <= 0.01)" in message  # the table shows the requirement, like top-1's
    assert not out.exists()
    out.write_bytes(b"an older file")
    linked = tmp_path / "linked.onnx"  # a copy of the tree made with hard links shares this inode
    linked.hardlink_to(out)
    report = quantize(DEFAULT_MODEL, out, photos, min_agreement=1.0, max_mean_score_diff=0.05,
                      config=QuantConfig(views=1))
    assert report.written and 0.01 < report.mean_score_diff <= 0.05 and report.top1_agree == 7
    assert card_of(out).version == "1-int8"
    assert linked.read_bytes() == b"an older file"  # renamed over, not written through the link
    assert sorted(f.name for f in tmp_path.iterdir()) == ["linked.onnx", "moved.onnx"]  # no pending file left


@pytest.mark.parametrize("bad", [-0.01, float("nan")])
def test_max_mean_score_diff_below_0_is_refused_before_any_work(tmp_path, monkeypatch, bad):
    import model_export.quantize

    def no_work(*args, **kwargs):
        raise AssertionError("quantize started working on a bad max_mean_score_diff")

    monkeypatch.setattr(model_export.quantize, "read_card", no_work)
    with pytest.raises(ExportError, match=r"max_mean_score_diff must be a number >= 0, got "):
        quantize(DEFAULT_MODEL, tmp_path / "never.onnx", [], max_mean_score_diff=bad)


def test_static_int8_is_smaller_and_agrees_on_held_out_photos(static_int8, photos):
    out, report = static_int8
    assert report.written and out.is_file()
    assert report.count == len(photos) == 7
    assert report.calibration_count == 14 * 4
    assert report.top1_agree == 7 and not report.disagreements  # measured: 7/7 (MinMax, 4 views)
    assert 0 < report.mean_score_diff <= report.max_score_diff < 0.1  # measured 0.020 / 0.044
    assert report.int8_bytes < report.fp32_bytes / 3
    assert report.int8_bytes == out.stat().st_size
    assert "top-1 agrees with fp32 on 7/7 held-out photos" in report.table()
    assert "mean per photo 0.0197 (required <= 0.04)" in report.table()  # the gate's measurement, README
    fp32_card = read_card(DEFAULT_MODEL)
    assert card_of(out) == dataclasses.replace(fp32_card, version=f"{fp32_card.version}-int8")
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(out)).graph.node)


def test_committed_int8_variant_is_what_make_model_int8_writes(static_int8):
    out, _ = static_int8
    assert INT8_MODEL.is_file(), "run `make model-int8`"
    assert card_of(INT8_MODEL).version == "1-int8" and card_of(INT8_MODEL).name == "efficientnet-lite0"
    assert INT8_MODEL.read_bytes() == out.read_bytes(), "predict_function/model/model-int8.onnx is stale: `make model-int8`"


def test_refuses_below_threshold(tmp_path, photos):
    # dynamic (weights only) flips 2 of the 7 photos (model_export/README.md): below the default 1.0
    out = tmp_path / "refused.onnx"
    with pytest.raises(QuantizationError, match="refusing to write"):
        quantize(DEFAULT_MODEL, out, photos, mode="dynamic", min_agreement=1.0)
    assert not out.exists()


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan")])
def test_min_agreement_outside_0_1_is_refused_before_any_work(tmp_path, monkeypatch, bad):
    # like the CLI's --min-agreement: above 1 the gate could never pass, below 0 (or NaN) is no gate
    import model_export.quantize

    def no_work(*args, **kwargs):
        raise AssertionError("quantize started working on a bad min_agreement")

    monkeypatch.setattr(model_export.quantize, "read_card", no_work)
    monkeypatch.setattr(model_export.quantize, "_quantize_file", no_work)
    out = tmp_path / "never.onnx"
    with pytest.raises(ExportError, match=r"min_agreement must be a fraction in \[0, 1\], got "):
        quantize(DEFAULT_MODEL, out, [], min_agreement=bad)
    assert not out.exists()


def test_per_tensor_weights_disagree_and_are_refused(tmp_path, photos):
    # why per-channel is the default: per-tensor weight scales flip 2 of the 7 photos (measured)
    out = tmp_path / "per-tensor.onnx"
    with pytest.raises(QuantizationError, match="disagrees: ") as info:
        quantize(DEFAULT_MODEL, out, photos, config=QuantConfig(per_channel=False, views=1))
    assert not out.exists()
    assert "per-tensor" in str(info.value)


def test_excluded_nodes_stay_float(tmp_path, photos):
    out = tmp_path / "no-gemm.onnx"
    report = quantize(DEFAULT_MODEL, out, photos, min_agreement=0.0, max_mean_score_diff=math.inf,
                      config=QuantConfig(exclude=("node_linear",), views=1))
    graph = onnx.load(str(out)).graph
    (gemm,) = [n for n in graph.node if n.op_type == "Gemm"]
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert producers.get(gemm.input[0]) != "DequantizeLinear"  # its activation input is not quantized
    assert "fp32 nodes: node_linear" in report.table()


def test_dynamic_mode_reports_agreement(tmp_path, photos):
    out = tmp_path / "dyn.onnx"
    report = quantize(DEFAULT_MODEL, out, photos, mode="dynamic", min_agreement=0.0, max_mean_score_diff=math.inf)
    print(report.table())
    assert report.written and out.is_file() and report.mode == "dynamic"
    assert 0 <= report.top1_agree <= report.count == 7
    assert report.int8_bytes < report.fp32_bytes


def test_quantize_command(tmp_path, capsys):
    out = tmp_path / "cli-int8.onnx"
    assert main(["quantize", str(DEFAULT_MODEL), "-o", str(out), "--calibration-views", "1",
                 "--quantized-version-suffix=-q8", "--min-agreement", "0.5"]) == 0
    assert "written to" in capsys.readouterr().out
    assert card_of(out).version == "1-q8"
    assert main(["quantize", str(DEFAULT_MODEL), "-o", str(tmp_path / "x.onnx"), "--calibration-views", "0"]) == 2
    with pytest.raises(SystemExit) as info:  # a fraction, or the gate could never pass
        main(["quantize", str(DEFAULT_MODEL), "-o", str(tmp_path / "x.onnx"), "--min-agreement", "1.01"])
    assert info.value.code == 2
    # dynamic (weights only) flips 2 of the 7 photos (model_export/README.md): the gate fails
    assert main(["quantize", str(DEFAULT_MODEL), "-o", str(tmp_path / "x.onnx"), "--mode", "dynamic"]) == 1
    assert not (tmp_path / "x.onnx").exists()
    # 7/7 top-1, but a mean largest score difference of 0.020 (measured) is above 0.01
    assert main(["quantize", str(DEFAULT_MODEL), "-o", str(tmp_path / "x.onnx"), "--max-mean-score-diff", "0.01"]) == 1
    assert "above the allowed 0.01 (--max-mean-score-diff)" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    for bad in ("-1", "nan", "x"):
        with pytest.raises(SystemExit) as info:
            main(["quantize", str(DEFAULT_MODEL), "-o", str(tmp_path / "x.onnx"), "--max-mean-score-diff", bad])
        assert info.value.code == 2
    assert "must be a number >= 0, got -1" in capsys.readouterr().err


def test_quantize_refuses_to_write_over_its_own_fp32_input(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(DEFAULT_MODEL.read_bytes())
    assert main(["quantize", str(model), "-o", str(tmp_path / "." / "m.onnx")]) == 2
    assert "must differ from the model" in capsys.readouterr().err
    assert model.read_bytes() == DEFAULT_MODEL.read_bytes()


def test_bench_int8_prints_the_documented_numbers(capsys):
    from bench.int8 import main as bench_main

    assert bench_main(["--rounds", "3"]) == 0
    out = capsys.readouterr().out
    shipped = next(line for line in out.splitlines() if line.startswith("model-int8.onnx (1-int8)"))
    assert "7/7" in shipped and "81/84" in shipped, out  # model_export/README.md "INT8 variant"
    assert "int8/fp32 = " in out and "int8 5.2 MB" in out
