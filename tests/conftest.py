"""Shared fixtures: paths, and real photos that PyPI packages ship (no downloads)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO / "events"
DEFAULT_MODEL = REPO / "predict_function" / "model" / "model.onnx"


def _skimage_data(name: str) -> Path:
    import skimage.data

    return Path(os.path.dirname(skimage.data.__file__)) / name


def _sklearn_image(name: str) -> Path:
    import sklearn.datasets

    return Path(os.path.dirname(sklearn.datasets.__file__)) / "images" / name


PHOTOS = {
    "chelsea.png": _skimage_data("chelsea.png"),  # a tabby cat
    "coffee.png": _skimage_data("coffee.png"),  # a cup of espresso
    "china.jpg": _sklearn_image("china.jpg"),  # a pagoda
    "flower.jpg": _sklearn_image("flower.jpg"),
}
# ImageNet-1k indices of the domestic cats: tabby, tiger cat, Persian, Siamese, Egyptian.
CAT_CLASS_INDICES = range(281, 286)


@pytest.fixture(scope="session")
def photo_bytes():
    return {name: path.read_bytes() for name, path in PHOTOS.items()}


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(PHOTOS["chelsea.png"]).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
