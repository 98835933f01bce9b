"""Save each model's graph after onnxruntime's full optimisation, for this CPU's layout.

Run by the Dockerfile's ``model`` stage after ``external_weights``:
``python -m image_build.preoptimize model``. For each ``model/NAME.onnx`` it writes
``model/optimized/<cpu>/NAME.onnx`` (+ ``.data``, ``.json``, ``.probe``), the format
``classifier.preoptimized`` documents and reads at cold start. The layout (``x86_64-nchwc8`` or
``x86_64-nchwc16``) is the NCHWc block size onnxruntime applies on the build machine, read from
the layout probe it optimises here: a function whose CPU has the other one loads the portable
model as before, so a variant can only save time.

Skipped, with a line saying why: a quantized model (its rewrites depend on more of the CPU than
the layout), a machine without an x86-64 NCHWc layout (arm64), a model the function could not
feed (not one float input, or a symbolic dimension other than the batch), and a model whose
optimisation fails. A variant that does not reproduce the portable model's outputs here (on a
fixed input) is deleted. The build never fails because of a variant.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from classifier import preoptimized
from image_build.external_weights import save_model

LAYOUT_PROBE = Path(__file__).with_name("layout_probe.onnx")


def _options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return options


def preoptimize(model: Path) -> tuple[Path | None, str]:
    """Write ``model``'s variant for this machine's layout: (its path, "written") or (None, why not).
    Never raises for a model it cannot handle: the image keeps the portable graph, which the
    function loads (and, for a model it cannot serve, refuses at cold start) as before."""
    try:
        return _preoptimize(model)
    except Exception as exc:  # noqa: BLE001 - a failed variant is a skipped variant
        layout = _build_layout()
        if layout is not None:
            _remove(Path(preoptimized.variant_path(str(model), layout)))
        return None, f"not optimised ({type(exc).__name__}: {exc})"


def _preoptimize(model: Path) -> tuple[Path | None, str]:
    layout = _build_layout()
    if layout is None:
        return None, "no optimised variant on this CPU (onnxruntime made no x86-64 NCHWc layout here)"
    portable = ort.InferenceSession(str(model), _options(), providers=["CPUExecutionProvider"])
    reason = skip_reason(portable.get_inputs(), op_types(model.read_bytes()))
    if reason is not None:
        return None, reason
    target = Path(preoptimized.variant_path(str(model), layout))
    probe = Path(f"{target}{preoptimized.PROBE_SUFFIX}")
    _remove(target)  # onnxruntime appends to an existing data file
    target.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, target, _options())
    _save_probe(probe)
    reason = preoptimized.mismatch(preoptimized.run(_prebuilt(target)), preoptimized.run(portable))
    if reason is None:
        meta = {
            "format": preoptimized.FORMAT,
            "onnxruntime": ort.__version__,
            "layout": layout,
            "source": preoptimized.source_digest(str(model)),
            "probe": {"outputs": [np.asarray(out, dtype=np.float32).tolist() for out in _probe_reference()]},
        }
        Path(f"{target}.json").write_text(json.dumps(meta, separators=(",", ":")) + "\n", encoding="utf-8")
        if preoptimized.open_session(str(model), _options, layout) is None:
            reason = "the function would not load it here"
    if reason is not None:
        _remove(target)
        return None, f"its optimised graph is not kept: {reason}"
    return target, "written"


@functools.cache
def _build_layout() -> str | None:
    """This machine's layout as onnxruntime applies it: the NCHWc block size read from the probe
    it optimises here, not from /proc/cpuinfo (under Docker's x86-64 emulation on an arm64 host,
    cpuinfo describes the host). None off x86-64 or where onnxruntime makes no NCHWc graph."""
    if os.uname().machine.lower() not in preoptimized.X86_64_MACHINES:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / "probe.onnx"
        _save_probe(probe)
        block = nchwc_block(probe.read_bytes())
    return preoptimized.layout_name(block) if block in (8, 16) else None


def _save_probe(target: Path) -> None:
    """The layout probe as onnxruntime optimises it here, in one file (its weights are 43 KB)."""
    options = _options()
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(LAYOUT_PROBE), options, providers=["CPUExecutionProvider"])


def _prebuilt(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), preoptimized.prebuilt_options(_options()), providers=["CPUExecutionProvider"])


def _probe_reference() -> list[np.ndarray]:
    """The probe's output with no graph optimisation: plain NCHW convolutions, on any CPU."""
    return preoptimized.run(_prebuilt(LAYOUT_PROBE))


def is_quantized(op: str) -> bool:
    """ONNX's and onnxruntime's quantized ops (QuantizeLinear, QLinearConv, QGemm, MatMulInteger,
    MatMulNBits, ...): their graph rewrites depend on more of the CPU than the layout (u8/s8, VNNI)."""
    return ("quantize" in op.lower() or "Integer" in op or op in ("MatMulNBits", "MatMulBnb4")
            or op.startswith(("QLinear", "QGemm", "QAttention", "QOrdered", "QEmbed")))


def skip_reason(inputs: list, ops: set[str]) -> str | None:
    quantized = sorted(op for op in ops if is_quantized(op))
    if quantized:
        return f"quantized ({', '.join(quantized)}): its optimised graph depends on more of the CPU than the layout"
    if len(inputs) != 1 or inputs[0].type != "tensor(float)":
        return f"inputs {[(i.name, i.type) for i in inputs]}: the function feeds one tensor(float)"
    shape = inputs[0].shape
    if not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return f"input shape {shape} has a symbolic dimension after the batch"
    return None


def _remove(target: Path) -> None:
    for path in (target, Path(f"{target}.data"), Path(f"{target}.json"), Path(f"{target}{preoptimized.PROBE_SUFFIX}")):
        path.unlink(missing_ok=True)


# onnx is not installed in the image, so the graphs are read from the protobuf wire format.
# ModelProto: graph 7, functions 25. GraphProto: node 1, initializer 5. NodeProto: op_type 4,
# attribute 5, domain 7. AttributeProto: g 6, graphs 11. FunctionProto: node 7. TensorProto: dims 1.
def op_types(model: bytes) -> set[str]:
    """The op types of an ONNX model: its graph, the subgraphs of its nodes (If, Loop, Scan) and
    its model-local functions."""
    buf = memoryview(model)
    ops: set[str] = set()
    for graph in _fields(buf, 7):
        _graph_ops(graph, ops)
    for function in _fields(buf, 25):
        _node_ops(_fields(function, 7), ops)
    return ops


def _graph_ops(graph: memoryview, ops: set[str]) -> None:
    _node_ops(_fields(graph, 1), ops)


def _node_ops(nodes: Iterator[memoryview], ops: set[str]) -> None:
    for node in nodes:
        ops.update(bytes(op).decode("utf-8") for op in _fields(node, 4))
        for attribute in _fields(node, 5):
            for subgraph in (*_fields(attribute, 6), *_fields(attribute, 11)):
                _graph_ops(subgraph, ops)


def nchwc_block(model: bytes) -> int | None:
    """The NCHWc block size of a graph onnxruntime optimised (the layout probe): the largest
    power of two dividing the output channels of every 4-D weight, which the layout pads to the
    block (the probe's 24 and 40 channels stay 24 and 40 with 8-float blocks, become 32 and 48
    with 16). None when the graph has no NCHWc node."""
    buf = memoryview(model)
    for graph in _fields(buf, 7):
        domains = {bytes(d).decode("utf-8") for node in _fields(graph, 1) for d in _fields(node, 7)}
        if "com.microsoft.nchwc" not in domains:
            return None
        channels = [dims[0] for tensor in _fields(graph, 5) if len(dims := _ints(tensor, 1)) == 4]
        return math.gcd(*channels) & -math.gcd(*channels) if channels else None
    return None


def _records(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field, wire type, value) of each varint field (an int) and length-delimited field (its bytes)
    of one protobuf message; fixed-width fields are skipped."""
    at = 0
    while at < len(buf):
        key, at = _varint(buf, at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(buf, at)
            yield field, wire, value
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        elif wire == 2:
            size, at = _varint(buf, at)
            yield field, wire, buf[at:at + size]
            at += size
        else:
            raise ValueError(f"not an ONNX protobuf (wire type {wire} at byte {at})")
    if at != len(buf):
        raise ValueError("not an ONNX protobuf (truncated)")


def _fields(buf: memoryview, wanted: int) -> Iterator[memoryview]:
    """The length-delimited values of field ``wanted`` in one protobuf message."""
    for field, wire, value in _records(buf):
        if field == wanted and wire == 2:
            yield value  # type: ignore[misc]


def _ints(buf: memoryview, wanted: int) -> list[int]:
    """A repeated integer field, packed or not."""
    values: list[int] = []
    for field, wire, value in _records(buf):
        if field != wanted:
            continue
        if wire == 0:
            values.append(value)  # type: ignore[arg-type]
        elif wire == 2:
            at = 0
            while at < len(value):  # type: ignore[arg-type]
                item, at = _varint(value, at)  # type: ignore[arg-type]
                values.append(item)
    return values


def _varint(buf: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(buf):
            raise ValueError("not an ONNX protobuf (truncated varint)")
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_build.preoptimize", description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path, help="directory of NAME.onnx models (as external_weights wrote them)")
    args = parser.parse_args(argv)
    models = sorted(args.model_dir.glob("*.onnx"))
    if not models:
        parser.error(f"no *.onnx in {args.model_dir}")
    for model in models:
        written, what = preoptimize(model)
        print(f"{model.name}: {what}" + (f" ({written.relative_to(args.model_dir)})" if written else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
