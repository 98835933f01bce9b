"""Paths and photos every test folder shares. Import with ``from support import ...``.

(Not from ``conftest``: pytest imports each conftest.py under the same module name, so
``from conftest import X`` would see whichever conftest loaded last.)
"""

from __future__ import annotations

import os
from pathlib import Path

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
