"""Optional INT8 quantization with ``onnxruntime.quantization``, gated on top-1 agreement and
score differences.

static: QDQ format (or QOperator), uint8 activations, int8 per-channel weights, MinMax
calibration on :data:`CALIBRATION_PHOTOS` (scikit-image photos that are *not* check photos)
and a few deterministic random crops/flips of each. dynamic: int8 weights, activations
quantized at run time. Every choice is a field of :class:`QuantConfig` (CLI options of
``python -m model_export``); the defaults are the best measured on the bundled model
(``python -m bench.int8``, model_export/README.md "INT8 variant").

The quantized model is checked on the check photos (held out from calibration) and written
only when its top-1 agrees with the fp32 model at least ``min_agreement`` of the time and the
mean over photos of each photo's largest score difference is at most ``max_mean_score_diff``
(top-1 alone passes a model whose scores all moved but kept their order). Its
card is the fp32 card with ``version_suffix`` appended to the version (default ``-int8``),
so the server reports which variant answered.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from classifier.spec import activate
from model_export.errors import ExportError, QuantizationError
from model_export.graph import written_beside
from model_export.metadata import read_card, write_card
from model_export.parity import batch, decisions, onnx_predictor, sample_photos

log = logging.getLogger("model_export")

MODES = ("static", "dynamic")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile", "distribution")
FORMATS = ("qdq", "qoperator")
# Calibration images shipped by scikit-image, disjoint from parity.PHOTOS (the check photos the
# agreement is measured on): photos, micrographs, textures and a colour wheel; 10 of the 14 are grey.
CALIBRATION_PHOTOS: tuple[tuple[str, str], ...] = tuple(
    ("skimage.data", name)
    for name in (
        "camera.png", "coins.png", "moon.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png",
        "brick.png", "grass.png", "gravel.png", "clock_motion.png", "cell.png", "horse.png",
        "page.png", "color.png",
    )
)
# Mean over the check photos of each photo's largest score difference, INT8 vs fp32. Measured on the bundled
# model: 0.020 shipped (MinMax x4 views), 0.018-0.026 for the alternatives about as good on 84 held-out views,
# 0.046 for Percentile 99.99 (mean 0.049 on the views), 0.15 for per-tensor weights and dynamic mode (5/7).
DEFAULT_MAX_MEAN_SCORE_DIFF = 0.04


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize (static mode); defaults measured best on EfficientNet-Lite0."""

    method: str = "minmax"  # calibration: minmax | entropy | percentile | distribution
    views: int = 4  # calibration inputs per calibration photo: the photo + views-1 random crops/flips
    per_channel: bool = True  # per-output-channel weight scales (per-tensor: 5/7 agreement)
    reduce_range: bool = False  # 7-bit weights (for old CPUs without VNNI; costs agreement)
    quant_format: str = "qdq"  # qdq | qoperator
    exclude: tuple[str, ...] = ()  # node names left in fp32 (e.g. the first Conv, the last Gemm)
    percentile: float = 99.999  # CalibPercentile, only for method=percentile
    seed: int = 0

    def describe(self) -> str:
        text = (f"{self.method} calibration x{self.views} views, {self.quant_format}, "
                f"{'per-channel' if self.per_channel else 'per-tensor'}"
                + (", reduce-range" if self.reduce_range else ""))
        return text + (f", fp32 nodes: {', '.join(self.exclude)}" if self.exclude else "")


@dataclass(frozen=True)
class QuantReport:
    mode: str
    fp32_bytes: int
    int8_bytes: int
    top1_agree: int
    count: int
    max_abs_diff: float  # raw outputs
    max_score_diff: float  # scores (after the card's activation), over every photo and class
    mean_score_diff: float  # mean over photos of the largest score difference of that photo
    min_agreement: float
    written: bool
    output: str
    calibration_count: int = 0
    config: str = ""
    max_mean_score_diff: float = math.inf
    disagreements: tuple[str, ...] = field(default=())

    @property
    def agreement(self) -> float:
        return self.top1_agree / self.count if self.count else 0.0

    def refusal(self) -> str | None:
        """Why the gate refuses this model (None when it passes)."""
        reasons = []
        if self.agreement < self.min_agreement:
            reasons.append(f"INT8 top-1 agrees with fp32 on {self.top1_agree}/{self.count} photos "
                           f"({self.agreement:.0%}), below the required {self.min_agreement:.0%}")
        if not self.mean_score_diff <= self.max_mean_score_diff:  # NaN scores too
            reasons.append(f"the mean over photos of the largest score difference is {self.mean_score_diff:.3g}, "
                           f"above the allowed {self.max_mean_score_diff:.3g} (--max-mean-score-diff)")
        return "; ".join(reasons) or None

    def table(self) -> str:
        lines = [
            f"quantize ({self.mode})" + (f" [{self.config}; {self.calibration_count} calibration inputs]"
                                          if self.config else "") + ": "
            f"{self.fp32_bytes / 1e6:.1f} MB fp32 -> {self.int8_bytes / 1e6:.1f} MB int8; "
            f"top-1 agrees with fp32 on {self.top1_agree}/{self.count} held-out photos ({self.agreement:.0%}, "
            f"required >= {self.min_agreement:.0%}); |score diff| max {self.max_score_diff:.3g}, "
            f"mean per photo {self.mean_score_diff:.3g} (required <= {self.max_mean_score_diff:.3g}); "
            f"max |diff| of raw outputs {self.max_abs_diff:.3g}; "
            + (f"written to {self.output}" if self.written else "NOT written")
        ]
        lines.extend(f"  disagrees: {d}" for d in self.disagreements)
        return "\n".join(lines)


def views(image: Image.Image, count: int, seed: int) -> list[Image.Image]:
    """``image`` itself plus ``count - 1`` deterministic random crops (40-100% of each side),
    half of them mirrored."""
    rng = np.random.default_rng(seed)
    out = [image]
    width, height = image.size
    for _ in range(count - 1):
        s = rng.uniform(0.4, 1.0)
        cw, ch = max(1, int(width * s)), max(1, int(height * s))
        x0, y0 = int(rng.integers(0, width - cw + 1)), int(rng.integers(0, height - ch + 1))
        view = image.crop((x0, y0, x0 + cw, y0 + ch))
        out.append(ImageOps.mirror(view) if rng.random() < 0.5 else view)
    return out


def with_views(photos: Sequence[tuple[str, Image.Image]], count: int, seed: int = 0) -> list[tuple[str, Image.Image]]:
    return [
        (name if i == 0 else f"{name}#{i}", view)
        for k, (name, image) in enumerate(photos)
        for i, view in enumerate(views(image, count, seed + k))
    ]


def calibration_photos(extra: Sequence[str | Path] = ()) -> list[tuple[str, Image.Image]]:
    return sample_photos(extra, shipped=CALIBRATION_PHOTOS)


class _Calibration:
    """onnxruntime CalibrationDataReader over a fixed batch, one example at a time."""

    def __init__(self, input_name: str, x: np.ndarray) -> None:
        self._inputs = [{input_name: x[i : i + 1]} for i in range(len(x))]
        self.rewind()

    def get_next(self):
        return next(self._items, None)

    def rewind(self):
        self._items = iter(self._inputs)


def scores(raw: np.ndarray, activation: str) -> np.ndarray:
    flat = np.asarray(raw).reshape(len(raw), -1)
    return np.stack([activate(row, activation) for row in flat])


def _quantize_file(fp32_path: Path, candidate: Path, calibration: np.ndarray, input_name: str,
                   mode: str, config: QuantConfig) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if mode == "dynamic":
        quantize_dynamic(str(fp32_path), str(candidate), weight_type=QuantType.QInt8,
                         per_channel=config.per_channel, reduce_range=config.reduce_range,
                         nodes_to_exclude=list(config.exclude))
        return
    quantize_static(
        str(fp32_path), str(candidate), _Calibration(input_name, calibration),
        quant_format=QuantFormat.QDQ if config.quant_format == "qdq" else QuantFormat.QOperator,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        per_channel=config.per_channel, reduce_range=config.reduce_range,
        nodes_to_exclude=list(config.exclude),
        calibrate_method={
            "minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile, "distribution": CalibrationMethod.Distribution,
        }[config.method],
        extra_options={"CalibPercentile": config.percentile} if config.method == "percentile" else {},
    )


def _validate(mode: str, config: QuantConfig, min_agreement: float, max_mean_score_diff: float) -> None:
    if mode not in MODES:
        raise ExportError(f"quantization mode must be one of {MODES}, got {mode!r}")
    if config.method not in CALIBRATION_METHODS:
        raise ExportError(f"calibration method must be one of {CALIBRATION_METHODS}, got {config.method!r}")
    if config.quant_format not in FORMATS:
        raise ExportError(f"quantization format must be one of {FORMATS}, got {config.quant_format!r}")
    if config.views < 1:
        raise ExportError(f"calibration views must be >= 1, got {config.views}")
    # above 1 the gate could never pass, below 0 (or NaN) it would be no gate
    if not 0.0 <= min_agreement <= 1.0:  # also False for NaN
        raise ExportError(f"min_agreement must be a fraction in [0, 1], got {min_agreement!r}")
    if not max_mean_score_diff >= 0.0:  # also False for NaN
        raise ExportError(f"max_mean_score_diff must be a number >= 0, got {max_mean_score_diff!r}")


def quantize(
    fp32_path: str | Path,
    output: str | Path,
    photos: Sequence,
    *,
    mode: str = "static",
    min_agreement: float = 1.0,
    max_mean_score_diff: float = DEFAULT_MAX_MEAN_SCORE_DIFF,
    calibration: Sequence | None = None,
    config: QuantConfig = QuantConfig(),
    version_suffix: str = "-int8",
) -> QuantReport:
    """Quantize ``fp32_path``; write ``output`` only if top-1 agreement on ``photos`` >= ``min_agreement``
    and the mean over ``photos`` of each photo's largest score difference <= ``max_mean_score_diff``.

    ``calibration`` (default :func:`calibration_photos`) feeds static calibration, each photo
    as ``config.views`` views; keep it disjoint from ``photos`` so the agreement is measured on
    held-out images. Raises :class:`QuantizationError` (after nothing was written) when it
    disagrees too much, and :class:`ExportError` (before any work) when ``min_agreement`` is not a
    fraction in [0, 1] or ``max_mean_score_diff`` is negative.
    """
    _validate(mode, config, min_agreement, max_mean_score_diff)
    import onnx

    fp32_path, output = Path(fp32_path), Path(output)
    card = read_card(fp32_path)
    x = batch(photos, card)
    run_fp32, _ = onnx_predictor(fp32_path)
    cal_inputs = 0
    cal_x = None
    if mode == "static":
        cal_images = with_views(calibration_photos() if calibration is None else calibration, config.views, config.seed)
        cal_x = batch(cal_images, card)
        cal_inputs = len(cal_x)
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="model_export_q_") as tmp:
        candidate = Path(tmp) / "int8.onnx"
        try:
            _quantize_file(fp32_path, candidate, cal_x, input_name, mode, config)
        except Exception as exc:
            raise ExportError(f"onnxruntime.quantization ({mode}) failed: {type(exc).__name__}: {exc}") from exc
        model = onnx.load(str(candidate))
        write_card(model, replace(card, version=f"{card.version}{version_suffix}"))
        onnx.save_model(model, str(candidate), save_as_external_data=False)
        run_int8, _ = onnx_predictor(candidate)
        ref, got = run_fp32(x)[0], run_int8(x)[0]
        top_ref, top_got = decisions(ref, card.activation), decisions(got, card.activation)
        score_diff = np.abs(scores(ref, card.activation) - scores(got, card.activation))
        label = (lambda i: card.labels[i] if card.labels and i < len(card.labels) else str(i))
        report = QuantReport(
            mode=mode, fp32_bytes=fp32_path.stat().st_size, int8_bytes=candidate.stat().st_size,
            top1_agree=int((top_ref == top_got).sum()), count=len(x),
            max_abs_diff=float(np.abs(ref - got).max()),
            max_score_diff=float(score_diff.max()), mean_score_diff=float(score_diff.max(axis=1).mean()),
            min_agreement=min_agreement, written=False, output=str(output),
            calibration_count=cal_inputs, config=config.describe() if mode == "static" else "",
            max_mean_score_diff=max_mean_score_diff,
            disagreements=tuple(
                f"{name}: int8 {label(int(b))!r}, fp32 {label(int(a))!r}"
                for (name, _), a, b in zip(photos, top_ref, top_got) if a != b
            ),
        )
        if len(set(top_ref.tolist())) == 1 and len(x) > 1:  # the gate cannot see the other classes
            log.warning("fp32 gives every check photo the same top-1 (%s): the top-1 gate cannot see damage to "
                        "the other classes; check the INT8 model on photos of each class (--images)",
                        label(int(top_ref[0])))
        refusal = report.refusal()
        if refusal:
            raise QuantizationError(f"refusing to write {output}: {refusal}\n{report.table()}")
        _install(candidate, output)
    return replace(report, written=True)


def _install(candidate: Path, output: Path) -> None:
    """Copy beside ``output``, then rename over it (``graph.written_beside``)."""
    with written_beside(output, f".{output.name}.pending") as pending:
        try:
            shutil.copyfile(candidate, pending)
        except OSError as exc:
            raise ExportError(f"cannot write {output}: {exc}") from exc
