"""Shared fixtures for the model_export tests (TensorFlow and torch are needed; CI installs them)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_MODEL = REPO / "predict_function" / "model" / "model.onnx"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # keras_models / torch_models, also as module:function for the CLI


@pytest.fixture(scope="session")
def photos():
    from model_export.parity import sample_photos

    found = sample_photos()
    assert len(found) == 7, [name for name, _ in found]
    return found
