"""Optional INT8 quantization with ``onnxruntime.quantization``, gated on top-1 agreement.

static: QDQ format, uint8 activations, int8 per-channel weights, MinMax calibration on
the check photos. dynamic: int8 weights, activations quantized at run time.
The quantized model is written only when its top-1 agrees with the fp32 model on the
check photos at least ``min_agreement`` of the time.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from model_export.errors import ExportError, QuantizationError
from model_export.metadata import read_card, write_card
from model_export.parity import batch, decisions, onnx_predictor

log = logging.getLogger("model_export")

MODES = ("static", "dynamic")


@dataclass(frozen=True)
class QuantReport:
    mode: str
    fp32_bytes: int
    int8_bytes: int
    top1_agree: int
    count: int
    max_abs_diff: float
    min_agreement: float
    written: bool
    output: str

    @property
    def agreement(self) -> float:
        return self.top1_agree / self.count if self.count else 0.0

    def table(self) -> str:
        return (
            f"quantize ({self.mode}): {self.fp32_bytes / 1e6:.1f} MB fp32 -> {self.int8_bytes / 1e6:.1f} MB int8; "
            f"top-1 agrees with fp32 on {self.top1_agree}/{self.count} photos ({self.agreement:.0%}, "
            f"required >= {self.min_agreement:.0%}); max |diff| of raw outputs {self.max_abs_diff:.3g}; "
            + (f"written to {self.output}" if self.written else "NOT written")
        )


class _Calibration:
    """onnxruntime CalibrationDataReader over a fixed batch, one example at a time."""

    def __init__(self, input_name: str, x: np.ndarray) -> None:
        self._items = iter([{input_name: x[i : i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self._items, None)

    def rewind(self):  # pragma: no cover - not needed by MinMax
        pass


def quantize(
    fp32_path: str | Path,
    output: str | Path,
    photos: Sequence,
    *,
    mode: str = "static",
    min_agreement: float = 1.0,
) -> QuantReport:
    """Quantize ``fp32_path``; write ``output`` only if top-1 agreement >= ``min_agreement``.

    Raises :class:`QuantizationError` (after nothing was written) when it disagrees too much.
    """
    if mode not in MODES:
        raise ExportError(f"quantization mode must be one of {MODES}, got {mode!r}")
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    fp32_path, output = Path(fp32_path), Path(output)
    card = read_card(fp32_path)
    x = batch(photos, card)
    run_fp32, _ = onnx_predictor(fp32_path)
    with tempfile.TemporaryDirectory(prefix="model_export_q_") as tmp:
        candidate = Path(tmp) / "int8.onnx"
        try:
            if mode == "static":
                quantize_static(
                    str(fp32_path), str(candidate), _Calibration("input", x),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax,
                )
            else:
                quantize_dynamic(str(fp32_path), str(candidate), weight_type=QuantType.QInt8)
        except Exception as exc:
            raise ExportError(f"onnxruntime.quantization ({mode}) failed: {type(exc).__name__}: {exc}") from exc
        model = onnx.load(str(candidate))
        write_card(model, card)  # make sure the card survives quantization
        onnx.save_model(model, str(candidate), save_as_external_data=False)
        run_int8, _ = onnx_predictor(candidate)
        ref, got = run_fp32(x)[0], run_int8(x)[0]
        agree = int((decisions(ref, card.activation) == decisions(got, card.activation)).sum())
        report = QuantReport(
            mode=mode, fp32_bytes=fp32_path.stat().st_size, int8_bytes=candidate.stat().st_size,
            top1_agree=agree, count=len(x), max_abs_diff=float(np.abs(ref - got).max()),
            min_agreement=min_agreement, written=False, output=str(output),
        )
        if report.agreement < min_agreement:
            raise QuantizationError(
                f"refusing to write {output}: INT8 top-1 agrees with fp32 on {agree}/{len(x)} photos "
                f"({report.agreement:.0%}), below the required {min_agreement:.0%}\n{report.table()}"
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidate, output)
    written = QuantReport(**{**report.__dict__, "written": True})
    return written
