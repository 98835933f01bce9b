"""Tiny hand-built ONNX classifiers (no TF/torch needed) for the card and parity tests."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper


def tiny_model(classes: int = 3, tail: tuple[str, ...] = ()):
    """input (N, 4, 4, 3) -> flatten -> MatMul -> each single-input op of ``tail`` in turn
    (e.g. ``("Sigmoid", "Identity")``) -> output (N, classes)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4, 4, 3])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", classes])
    w = helper.make_tensor("w", TensorProto.FLOAT, [48, classes], np.linspace(-1, 1, 48 * classes).tolist())
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 48])
    values = ["logits"] + [f"tail_{i}" for i in range(len(tail))]
    values[-1] = "output"
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], [values[0]])]
    nodes += [helper.make_node(op, [values[i]], [values[i + 1]]) for i, op in enumerate(tail)]
    graph = helper.make_graph(nodes, "tiny", [x], [y], [w, shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
