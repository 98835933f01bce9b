"""INT8 quantization: size and top-1 agreement reported; a quantized model that disagrees
beyond the threshold is refused (and not written)."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from classifier.spec import ModelCard
from model_export.errors import QuantizationError
from model_export.metadata import read_card
from model_export.quantize import quantize

from support import DEFAULT_MODEL


@pytest.fixture(scope="module")
def static_int8(tmp_path_factory, photos):
    out = tmp_path_factory.mktemp("q") / "model-int8.onnx"
    report = quantize(DEFAULT_MODEL, out, photos, mode="static", min_agreement=0.8)
    print(report.table())
    return out, report


def test_static_int8_is_smaller_and_agrees(static_int8, photos):
    out, report = static_int8
    assert report.written and out.is_file()
    assert report.count == len(photos) == 7
    assert report.top1_agree >= 6  # measured: 6/7; the one flip is chelsea, tiger cat <-> Egyptian cat
    assert report.int8_bytes < report.fp32_bytes / 3
    assert report.int8_bytes == out.stat().st_size
    assert "top-1 agrees with fp32" in report.table()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map) == read_card(DEFAULT_MODEL)
    assert any(node.op_type == "QuantizeLinear" for node in __import__("onnx").load(str(out)).graph.node)


def test_refuses_below_threshold(tmp_path, photos):
    out = tmp_path / "refused.onnx"
    with pytest.raises(QuantizationError, match="refusing to write"):
        quantize(DEFAULT_MODEL, out, photos, mode="static", min_agreement=1.01)
    assert not out.exists()


def test_dynamic_mode_reports_agreement(tmp_path, photos):
    out = tmp_path / "dyn.onnx"
    report = quantize(DEFAULT_MODEL, out, photos, mode="dynamic", min_agreement=0.0)
    print(report.table())
    assert report.written and out.is_file() and report.mode == "dynamic"
    assert 0 <= report.top1_agree <= report.count == 7
    assert report.int8_bytes < report.fp32_bytes
