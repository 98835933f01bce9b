"""Paths and photos every test folder shares. Import with ``from support import ...``.

(Not from ``conftest``: pytest imports each conftest.py under the same module name, so
``from conftest import X`` would see whichever conftest loaded last.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO / "events"
DEFAULT_MODEL = REPO / "predict_function" / "model" / "model.onnx"


def copy_project(dst: Path, files=("template.yaml", "samconfig.toml", "pyproject.toml")) -> Path:
    """``files`` and predict_function/ copied to ``dst`` (the .onnx models hard-linked: replace
    one by unlinking it first, never by writing into it, or the repository's file changes too)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copy2(REPO / name, dst / name)

    def copy(s, d):
        if Path(s).suffix == ".onnx":
            try:
                os.link(s, d)
                return d
            except OSError:
                pass
        return shutil.copy2(s, d)

    shutil.copytree(REPO / "predict_function", dst / "predict_function", copy_function=copy,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


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


def tiny_model(path, card, output_dim: int = 1, input_shape=("batch", 8, 8, 3), final_op: str | None = None,
               class_dim: str | None = None) -> str:
    """An ONNX model carrying ``card``: mean(input) - 0.5, repeated ``output_dim`` times, then the
    unary ``final_op`` if given (``"Sigmoid"``: a model that outputs probabilities; ``"Sqrt"``: NaN
    for a dark image). ``class_dim`` names the output's last dimension: symbolic, known only per run."""
    import onnx
    from onnx import TensorProto, helper

    from classifier.spec import METADATA_KEY

    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["mean"], keepdims=0),
        helper.make_node("Sub", ["mean", "half"], ["centered"]),
        helper.make_node("Unsqueeze", ["centered", "one"], ["column"]),
        helper.make_node("Tile", ["column", "reps"], ["tiled" if final_op else "output"]),
    ]
    reps = helper.make_tensor("reps", TensorProto.INT64, [2], [1, output_dim])
    if class_dim:  # reps = [1, batch / batch * output_dim]: unknown until run time
        reps = helper.make_tensor("dim", TensorProto.INT64, [1], [output_dim])
        nodes[-1:-1] = [
            helper.make_node("Shape", ["input"], ["shape"], end=1),
            helper.make_node("Div", ["shape", "shape"], ["ones"]),
            helper.make_node("Mul", ["ones", "dim"], ["classes"]),
            helper.make_node("Concat", ["one", "classes"], ["reps"], axis=0),
        ]
    if final_op:
        nodes.append(helper.make_node(final_op, ["tiled"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", output_dim if class_dim is None else class_dim])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
            reps,
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, {METADATA_KEY: card.to_json()})
    onnx.save(model, str(path))
    return str(path)


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


def assert_refused_before_connecting(url: str, allow_private: bool, ports: tuple[int, ...] = (80, 443)) -> int:
    """Safety pre-flight before a URL goes to a function under test: the guard (the same code as
    staged) refuses ``url`` with no lookup or connect. Returns the status it refuses with."""
    import pytest

    from classifier.errors import BadRequestError, BlockedUrlError
    from classifier.fetch import FetchPolicy, check_url

    def forbidden(*args, **kwargs):
        raise AssertionError(f"the guard would resolve or connect for {url!r}: not sending it to the function")

    policy = FetchPolicy(allow_private_urls=allow_private, allowed_ports=ports, resolver=forbidden, connector=forbidden)
    with pytest.raises((BlockedUrlError, BadRequestError)) as refused:
        check_url(url, policy)
    return refused.value.status


def logs_once_they_hold(emulator, text: str, patience_s: float = 30.0) -> str:
    """The emulator's logs once ``text`` is in them (or as they are after ``patience_s``): the RIE writes its
    REPORT line after the response has gone out, and the log reader thread may not have read it yet."""
    give_up = time.monotonic() + patience_s
    while text not in emulator.logs and time.monotonic() < give_up:
        time.sleep(0.02)
    return emulator.logs
