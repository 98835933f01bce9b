"""Small ONNX graph helpers shared by the Keras and PyTorch paths."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

log = logging.getLogger("model_export")


def rename_value(model, old: str, new: str) -> None:
    """Rename a graph input/output (and every reference to it)."""
    if old == new:
        return
    graph = model.graph
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for collection in (graph.input, graph.output, graph.value_info):
        for value in collection:
            if value.name == old:
                value.name = new


def standardize_io(model, input_name: str = "input", output_name: str = "output"):
    """One input named ``input``; outputs ``output`` (or ``output_0``, ``output_1``...).

    tf2onnx and torch name outputs differently per path; the server should not care.
    """
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        from model_export.errors import ExportError

        raise ExportError(f"an image classifier must have exactly one input, this one has {len(inputs)}")
    check_io_types(inputs[0], list(model.graph.output))
    rename_value(model, inputs[0].name, input_name)
    outputs = [value.name for value in model.graph.output]
    if len(outputs) == 1:
        rename_value(model, outputs[0], output_name)
    else:
        for i, name in enumerate(outputs):
            rename_value(model, name, f"{output_name}_{i}")
    return model


# onnx.TensorProto element types: the scores (first output) are read as numpy floats; every
# output must come back to numpy at all (not bfloat16, float8, int4 or strings) for the parity check.
SCORE_TYPES = (1, 10, 11)  # FLOAT, FLOAT16, DOUBLE
NUMPY_TYPES = (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13)


def check_io_types(model_input, outputs) -> None:
    """The function feeds one float32 tensor and reads the first output as scores: refuse other
    element types at export, not as a 500 on every request."""
    from onnx import TensorProto

    from model_export.errors import ExportError

    def name(value) -> str:
        return TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()

    if model_input.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ExportError(f"the model's input is {name(model_input)}; the function feeds float32 "
                          "(cast to float32 at the start of the model)")
    if outputs and outputs[0].type.tensor_type.elem_type not in SCORE_TYPES:
        raise ExportError(f"the model's first output (its scores) is {name(outputs[0])}; the function reads "
                          "float32, float16 or double (cast the scores to float32 at the end of the model)")
    for value in outputs[1:]:
        if value.type.tensor_type.elem_type not in NUMPY_TYPES:
            raise ExportError(f"output {value.name!r} is {name(value)}, which onnxruntime cannot return to numpy")


# Node metadata that records where the exporter ran (torch.onnx's stack traces hold the absolute
# paths of the exporting machine's site-packages).
BUILD_PATH_METADATA = ("pkg.torch.onnx.stack_trace",)


def strip_build_paths(model) -> int:
    """Drop node metadata that records the exporting machine's file paths, so that the same
    model exported from another checkout or venv is the same file. Returns how many went."""
    removed = 0
    for node in model.graph.node:
        kept = [entry for entry in node.metadata_props if entry.key not in BUILD_PATH_METADATA]
        if len(kept) != len(node.metadata_props):
            removed += len(node.metadata_props) - len(kept)
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
    return removed


# Ops that only reshape or pass a value on: looked through to find what computed an output.
PASS_THROUGH = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze")
# Ops whose output already is probabilities: the card's activation must then be "none".
PROBABILITY_OPS = ("Sigmoid", "Softmax")


def output_producer(model, index: int = 0) -> str | None:
    """The op type that computes graph output ``index`` (e.g. ``Sigmoid``), looking through
    :data:`PASS_THROUGH` ops; None when the output is a graph input or initializer."""
    producers = {name: node for node in model.graph.node for name in node.output}
    name = model.graph.output[index].name
    seen = set()
    while name in producers and name not in seen:
        seen.add(name)
        node = producers[name]
        if node.op_type not in PASS_THROUGH or not node.input:
            return node.op_type
        name = node.input[0]
    return None


def order_outputs(model, names) -> None:
    """Reorder the graph outputs to ``names`` (the names of every output, each once)."""
    by_name = {value.name: value for value in model.graph.output}
    ordered = [type(value)() for value in model.graph.output]
    for copy, name in zip(ordered, names):
        copy.CopyFrom(by_name[name])
    del model.graph.output[:]
    model.graph.output.extend(ordered)


def opset_of(model) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def save_single_file(model, path: str | Path) -> Path:
    """Save as ONE .onnx file (no external ``.onnx.data``); refuse models over protobuf's 2 GB."""
    import onnx

    from model_export.errors import ExportError

    path = Path(path)
    if model.ByteSize() >= 2**31 - 1:
        raise ExportError("model is over 2 GB and cannot be stored as a single .onnx file")
    onnx.save_model(model, str(path), save_as_external_data=False)
    return path


@contextlib.contextmanager
def written_beside(output: Path, pending_name: str) -> Iterator[Path]:
    """A path beside ``output`` (named ``pending_name``) for the block to write; renamed over ``output``
    when the block ends without an error, removed in any case. Never a half-written ``output``, and a
    file hard-linked to the old one (a copy of the tree) keeps its content. A directory that cannot be
    made or a rename that fails is an ExportError; what the block raises passes through."""
    from model_export.errors import ExportError

    pending = output.with_name(pending_name)
    try:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot write {output}: {exc}") from exc
        yield pending
        try:
            os.replace(pending, output)
        except OSError as exc:
            raise ExportError(f"cannot write {output}: {exc}") from exc
    finally:
        if pending.exists():
            pending.unlink()
