"""Turn a Keras or PyTorch image classifier into a single ONNX file that carries its own
model card (preprocessing, labels, activation) and prove it answers like the original.

Run ``python -m model_export --help``. TensorFlow and torch are imported lazily, only
for the source actually converted.
"""

from model_export.errors import ExportError, ParityError, QuantizationError

__all__ = ["ExportError", "ParityError", "QuantizationError"]
