"""Write each ``*.onnx`` model as graph + card (``NAME.onnx``) and weights (``NAME.onnx.data``).

Run by the Dockerfile's ``model`` build stage: ``python -m image_build.external_weights SRC DEST``.
The repository keeps one self-contained ``.onnx`` per model; the image gets this split because
onnxruntime maps external weights from the file instead of parsing them out of the protobuf
while holding the GIL: the session constructor drops from ~19 to ~2.5 ms and the process's peak
RSS by ~16 MB (``bench/README.md``, "Cold start"). The graph, the card (metadata) and every
weight's bytes stay the same, so the model's outputs are bit-identical.

onnxruntime itself writes the files: a session with every graph optimisation disabled saves the
model it loaded (``optimized_model_filepath``) with its initializers in one external file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnxruntime as ort

#: Initializers smaller than this stay inside the graph file (shapes, scalars, small biases).
MIN_EXTERNAL_BYTES = 1024


def externalize(source: Path, dest_dir: Path) -> tuple[Path, Path]:
    """Write ``dest_dir/<name>.onnx`` and ``dest_dir/<name>.onnx.data`` from ``source``."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    graph = dest_dir / source.name
    if graph.resolve() == source.resolve():
        raise ValueError(f"{source}: the destination must be another directory")
    for stale in (graph, dest_dir / (source.name + ".data")):
        stale.unlink(missing_ok=True)  # onnxruntime appends to an existing data file
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return graph, save_model(source, graph, options)


def save_model(source: Path, graph: Path, options: ort.SessionOptions) -> Path:
    """Have onnxruntime save the model it loads from ``source`` with ``options`` (its graph
    optimisation level decides what it saves) as ``graph``, and the initializers of
    ``MIN_EXTERNAL_BYTES`` or more in ``graph.data``, which it returns. The caller removes a
    stale ``graph.data`` first: onnxruntime appends to an existing one."""
    data = graph.with_name(graph.name + ".data")
    options.optimized_model_filepath = str(graph)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", data.name)
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", str(MIN_EXTERNAL_BYTES)
    )
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_build.external_weights", description=__doc__.split("\n")[0])
    parser.add_argument("source_dir", type=Path, help="directory holding self-contained *.onnx models")
    parser.add_argument("dest_dir", type=Path, help="where to write NAME.onnx + NAME.onnx.data")
    args = parser.parse_args(argv)
    models = sorted(args.source_dir.glob("*.onnx"))
    if not models:
        parser.error(f"no *.onnx in {args.source_dir}")
    for source in models:
        try:
            graph, data = externalize(source, args.dest_dir)
        except ValueError as exc:
            parser.error(str(exc))
        print(f"{source.name}: {graph.stat().st_size} B graph + {data.stat().st_size} B weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
