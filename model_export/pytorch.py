"""PyTorch (TorchScript file or ``package.module:function`` factory) -> ONNX.

torch is imported only when this module's functions run. ``torch.onnx.export`` is
tried with the dynamo exporter first (the default since torch 2.9; it needs
onnxscript and writes opset >= 18 whatever opset is asked for) and falls back to
the TorchScript exporter (needed for TorchScript files, which torch.export cannot
trace). ``external_data=False`` keeps the weights inside the one .onnx file.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
from pathlib import Path

import numpy as np

from model_export.errors import ExportError
from model_export.graph import opset_of, standardize_io
from model_export.metadata import is_callable_ref, user_callable

log = logging.getLogger("model_export")

# The dynamo exporter emits opset 18 ops; asking it for less triggers a failing
# down-conversion (e.g. "No Adapter To Version $17 for Pad") and it keeps 18 anyway.
DYNAMO_MIN_OPSET = 18


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ExportError("converting a PyTorch model needs the export extra: pip install -e '.[export]'") from exc
    return torch


def load(source: str):
    """A TorchScript file path, or ``package.module:function`` returning an ``nn.Module``."""
    torch = _torch()
    path = Path(source)
    if path.is_file():
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ExportError(
                f"{path} is not a TorchScript file torch.jit.load can read ({exc}); a pickled state_dict "
                "needs its model code: pass a factory as package.module:function instead"
            ) from exc
    elif is_callable_ref(source):
        module = user_callable(source, "the model factory")()
        if not isinstance(module, torch.nn.Module):
            raise ExportError(f"{source} returned {type(module).__name__}, not a torch.nn.Module")
    else:
        raise ExportError(f"{source!r} is neither an existing TorchScript file nor package.module:function")
    _check_one_input(module)
    return module.eval()


def _required_inputs(module) -> list[str] | None:
    """The names of the arguments ``forward`` cannot run without, or None if it cannot be told."""
    schema = getattr(module.forward, "schema", None)  # a TorchScript method: its schema, self first
    if schema is not None:
        return [a.name for a in schema.arguments[1:] if not a.has_default_value() and not a.kwarg_only]
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in positional and p.default is inspect.Parameter.empty]


def _check_one_input(module) -> None:
    """The function feeds one tensor (the image): say so before torch.onnx fails with a long trace."""
    required = _required_inputs(module)
    if required is not None and len(required) != 1:
        raise ExportError(f"an image classifier's forward() must take exactly one input (the image), this one "
                          f"needs {len(required)}: {required}; wrap it in a module whose forward(x) supplies the rest")


def default_name(source: str) -> str:
    if is_callable_ref(source):
        return source.rpartition(":")[2].replace("_", "-")
    return Path(source).stem


def _nhwc_wrapper(module):
    torch = _torch()

    class NHWCInput(torch.nn.Module):
        """Takes (N, H, W, 3) like the card says and feeds the wrapped model (N, 3, H, W)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2))

    return NHWCInput(module).eval()


def convert(module, height: int, width: int, opset: int = 17, layout: str = "NCHW"):
    """Export to an ``onnx.ModelProto`` (one file, dynamic batch). Returns (model_proto, path_used)."""
    torch = _torch()
    import onnx

    if layout == "NHWC":
        module = _nhwc_wrapper(module)
        example = torch.rand(2, height, width, 3)
    else:
        example = torch.rand(2, 3, height, width)
    is_script = isinstance(module, torch.jit.ScriptModule)

    def dynamo(target: Path):
        torch.onnx.export(
            module, (example,), str(target), input_names=["input"], output_names=["output"],
            dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=max(opset, DYNAMO_MIN_OPSET),
            external_data=False, dynamo=True, verbose=False,
        )

    def torchscript(target: Path):
        torch.onnx.export(
            module, (example,), str(target), input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=opset,
            external_data=False, dynamo=False,
        )

    attempts = [("torch.onnx.export(dynamo)", dynamo), ("torch.onnx.export(torchscript)", torchscript)]
    if is_script:
        attempts = attempts[1:]  # torch.export cannot trace a ScriptModule
    failures = []
    with tempfile.TemporaryDirectory(prefix="model_export_") as tmp:
        for label, attempt in attempts:
            target = Path(tmp) / f"{label.split('(')[1].rstrip(')')}.onnx"
            try:
                with torch.no_grad():
                    attempt(target)
            except Exception as exc:
                log.warning("export path %s failed: %s: %s", label, type(exc).__name__, str(exc)[:500])
                failures.append((label, exc))
                continue
            extra = [p.name for p in Path(tmp).iterdir() if p.suffix != ".onnx"]
            if extra:
                raise ExportError(f"{label} wrote external data files {extra}; expected one .onnx file")
            proto = onnx.load(str(target))
            actual = opset_of(proto)
            if actual != opset:
                log.warning("asked for opset %d, %s wrote opset %d", opset, label, actual)
            log.info("converted with %s (opset %d)", label, actual)
            return standardize_io(proto), label
    summary = "; ".join(f"{label}: {type(exc).__name__}: {str(exc)[:300]}" for label, exc in failures)
    raise ExportError(f"torch.onnx.export could not convert the model ({summary})") from failures[-1][1]


def predictor(module, layout: str = "NCHW"):
    """``batch (card layout) -> [outputs]`` running PyTorch itself, for the parity check."""
    torch = _torch()
    if layout == "NHWC":
        module = _nhwc_wrapper(module)

    def predict(batch: np.ndarray) -> list[np.ndarray]:
        try:
            with torch.no_grad():
                out = module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        except Exception as exc:  # the user's forward() raises anything (a source that does not take the card's input)
            raise ExportError(f"the PyTorch model raised {type(exc).__name__} on a batch of shape {batch.shape} "
                              f"(the card's input): {exc}") from exc
        return [_to_numpy(torch, o) for o in _leaves(out)]

    return predict


def _leaves(out) -> list:
    """A forward() result's outputs in the order both ONNX exporters flatten it: dicts in their own
    (insertion) order, lists and tuples in order, nested; None left out, as neither writes it."""
    if out is None:
        return []
    if isinstance(out, dict):
        return [leaf for value in out.values() for leaf in _leaves(value)]
    if isinstance(out, (list, tuple)):
        return [leaf for value in out for leaf in _leaves(value)]
    return [out]


def _to_numpy(torch, output) -> np.ndarray:
    if not isinstance(output, torch.Tensor):
        raise ExportError(f"forward() returned a {type(output).__name__} among its outputs: "
                          "the parity check compares tensors")
    return output.detach().cpu().numpy().astype(np.float32)
