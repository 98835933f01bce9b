"""Paths and photos every test folder shares. Import with ``from support import ...``.

(Not from ``conftest``: pytest imports each conftest.py under the same module name, so
``from conftest import X`` would see whichever conftest loaded last.)
"""

from __future__ import annotations

import os
import subprocess
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


def run_in_runtime(staged_project, code: str, env: dict) -> str:
    """``code`` run by the function's Python in its staged task root (as the RIE starts it), with
    ``env`` on top of PATH, PYTHONPATH and LAMBDA_TASK_ROOT; its stdout, stripped. Fails the test
    with the child's stderr if it exits non-zero."""
    root = staged_project.task_root
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": root, "LAMBDA_TASK_ROOT": root}
    proc = subprocess.run([staged_project.runtime_python, "-c", code], cwd=root, env={**base, **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()
