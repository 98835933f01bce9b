"""The errors ``model_export`` ends with. Third-party exceptions (tf2onnx, torch,
onnxruntime) are translated into these at one boundary per source, chained with
``raise ... from exc`` so the original traceback is kept."""

from __future__ import annotations


class ExportError(Exception):
    """The model could not be converted, or the options do not fit the model."""


class ParityError(ExportError):
    """The ONNX model does not give the source model's answers (every mismatch is listed)."""

    def __init__(self, message: str, mismatches: list[str] | None = None) -> None:
        super().__init__(message)
        self.mismatches = list(mismatches or [])


class QuantizationError(ExportError):
    """A quantized model disagrees with the fp32 model beyond the allowed threshold."""
