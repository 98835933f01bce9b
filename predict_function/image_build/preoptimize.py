"""Save each model's graph after onnxruntime's full optimisation, for this CPU's layout.

Run by the Dockerfile's ``model`` stage after ``external_weights``:
``python -m image_build.preoptimize model``. For each ``model/NAME.onnx`` it writes
``model/optimized/<cpu>/NAME.onnx`` (+ ``.data``, ``.json``, ``.probe``), the format
``classifier.preoptimized`` documents and reads at cold start. The build machine's CPU decides
the layout (``x86_64-nchwc8`` or ``x86_64-nchwc16``): a function whose CPU has the other one
loads the portable model as before, so a variant can only save time.

Skipped, with a line saying why: a quantized model (its rewrites depend on more of the CPU than
the layout), a CPU the layouts do not cover (arm64), an input with a symbolic dimension other
than the batch. A variant that does not reproduce the portable model's outputs here (on a fixed
input) is deleted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from classifier import preoptimized

MIN_EXTERNAL_BYTES = 1024
LAYOUT_PROBE = Path(__file__).with_name("layout_probe.onnx")


def _options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return options


def preoptimize(model: Path, layout: str | None) -> tuple[Path | None, str]:
    """Write ``model``'s variant for ``layout``: (its path, "written") or (None, why not)."""
    if layout is None:
        return None, "no optimised variant for this CPU (only x86-64 layouts are made)"
    portable = ort.InferenceSession(str(model), _options(), providers=["CPUExecutionProvider"])
    reason = skip_reason(portable.get_inputs()[0].shape, op_types(model.read_bytes()))
    if reason is not None:
        return None, reason
    target = Path(preoptimized.variant_path(str(model), layout))
    probe = Path(f"{target}{preoptimized.PROBE_SUFFIX}")
    _remove(target)  # onnxruntime appends to an existing data file
    target.parent.mkdir(parents=True, exist_ok=True)
    _save_optimised(model, target, external_weights=True)
    _save_optimised(LAYOUT_PROBE, probe, external_weights=False)
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


def _save_optimised(source: Path, target: Path, external_weights: bool) -> None:
    options = _options()
    options.optimized_model_filepath = str(target)
    if external_weights:
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", target.name + ".data")
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                         str(MIN_EXTERNAL_BYTES))
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _prebuilt(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), preoptimized.prebuilt_options(_options()), providers=["CPUExecutionProvider"])


def _probe_reference() -> list[np.ndarray]:
    """The probe's output with no graph optimisation: plain NCHW convolutions, on any CPU."""
    return preoptimized.run(_prebuilt(LAYOUT_PROBE))


def skip_reason(input_shape: list, ops: set[str]) -> str | None:
    quantized = sorted(ops & preoptimized.QUANTIZED_OPS)
    if quantized:
        return f"quantized ({', '.join(quantized)}): its optimised graph depends on more of the CPU than the layout"
    if not all(isinstance(d, int) and d > 0 for d in input_shape[1:]):
        return f"input shape {input_shape} has a symbolic dimension after the batch"
    return None


def _remove(target: Path) -> None:
    for path in (target, Path(f"{target}.data"), Path(f"{target}.json"), Path(f"{target}{preoptimized.PROBE_SUFFIX}")):
        path.unlink(missing_ok=True)


# onnx is not installed in the image, so the op types come from the protobuf wire format:
# ModelProto.graph = field 7, GraphProto.node = field 1, NodeProto.op_type = field 4.
def op_types(model: bytes) -> set[str]:
    """The op types of an ONNX model's main graph."""
    ops: set[str] = set()
    for graph in _fields(memoryview(model), 7):
        for node in _fields(graph, 1):
            ops.update(bytes(op).decode("utf-8") for op in _fields(node, 4))
    return ops


def _fields(buf: memoryview, wanted: int) -> Iterator[memoryview]:
    """The length-delimited values of field ``wanted`` in one protobuf message."""
    at = 0
    while at < len(buf):
        key, at = _varint(buf, at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, at = _varint(buf, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            size, at = _varint(buf, at)
            if field == wanted:
                yield buf[at:at + size]
            at += size
        else:
            raise ValueError(f"not an ONNX protobuf (wire type {wire} at byte {at})")
    if at != len(buf):
        raise ValueError("not an ONNX protobuf (truncated)")


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
    layout = preoptimized.cpu_layout()
    for model in models:
        written, what = preoptimize(model, layout)
        print(f"{model.name}: {what}" + (f" ({written.relative_to(args.model_dir)}, {layout})" if written else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
