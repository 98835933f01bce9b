"""Keras (.h5 / .keras) -> ONNX through tf2onnx.

TensorFlow is imported only when this module's functions run. Under Keras 3,
``tf2onnx.convert.from_keras`` works for Functional models but fails on Sequential
ones (``KeyError: 'keras_tensor_NN'``: it looks up output names Sequential models
lack), so conversion tries, in order: ``from_keras`` on the model as loaded,
``from_keras`` on the model wrapped in a Functional model, then
``from_function`` on a ``tf.function``. The path used is logged and returned.

A model returning a dict of outputs: Keras and TensorFlow flatten dicts in sorted-key
order, so the ONNX outputs come out sorted, named by their keys. They are put back in
the dict's own order (the order the model was built with, the one ``predictor`` returns),
so ONNX output 0, which the server reads, is the model's first head.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from model_export.errors import ExportError
from model_export.graph import order_outputs, standardize_io

log = logging.getLogger("model_export")

SUFFIXES = (".h5", ".hdf5", ".keras")


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import keras
    except ImportError as exc:
        raise ExportError(
            "converting a Keras model needs the export extra: pip install -e '.[export]'"
        ) from exc
    return tf, keras


def load(path: str | Path):
    """Load a Keras model for inference (not compiled)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ExportError(f"{path} is not a Keras model file ({', '.join(SUFFIXES)})")
    if not path.is_file():
        raise ExportError(f"Keras model file not found: {path}")
    _, keras = _tf()
    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # keras raises many types; one boundary
        raise ExportError(f"Keras could not load {path}: {exc}") from exc


def input_size(model) -> tuple[int | None, int | None]:
    """(height, width) of the model's image input (None where the model accepts any size)."""
    inputs = getattr(model, "inputs", None)
    if inputs and len(inputs) != 1:
        raise ExportError(f"an image classifier must have exactly one input (the image), this one has {len(inputs)}: "
                          f"{[tuple(value.shape) for value in inputs]}")
    shape = inputs[0].shape if inputs else model.input_shape
    shape = tuple(shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ExportError(f"expected a (batch, height, width, 3) image input, the model takes {shape}")
    return (None if shape[1] is None else int(shape[1]), None if shape[2] is None else int(shape[2]))


def convert(model, height: int, width: int, opset: int = 17):
    """Convert to an ``onnx.ModelProto`` with input ``input`` (None, H, W, 3) float32.

    Returns (model_proto, path_used).
    """
    tf, keras = _tf()
    import tf2onnx

    h, w = input_size(model)
    if (h is not None and h != height) or (w is not None and w != width):
        raise ExportError(f"the model's input is fixed at {h}x{w}, not {height}x{width}")
    signature = (tf.TensorSpec((None, height, width, 3), tf.float32, name="input"),)

    def via_from_keras():
        return tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)[0]

    def via_functional_wrapper():
        inp = keras.Input(shape=(height, width, 3), name="input", dtype="float32")
        wrapped = keras.Model(inp, model(inp), name=f"{model.name}_functional")
        return tf2onnx.convert.from_keras(wrapped, input_signature=signature, opset=opset)[0]

    def via_tf_function():
        @tf.function(input_signature=signature)
        def serve(x):
            return model(x, training=False)

        return tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)[0]

    attempts = [
        ("tf2onnx.from_keras", via_from_keras),
        ("tf2onnx.from_keras(functional wrapper)", via_functional_wrapper),
        ("tf2onnx.from_function(tf.function)", via_tf_function),
    ]
    if isinstance(model, keras.Sequential):
        # Known to fail under Keras 3 (KeyError 'keras_tensor_NN'); go straight to the wrapper.
        attempts = attempts[1:]
        log.info("Sequential model: using a Functional wrapper (from_keras fails on Sequential under Keras 3)")

    failures = []
    for label, attempt in attempts:
        try:
            proto = attempt()
        except Exception as exc:  # tf2onnx raises anything; translated below
            log.warning("conversion path %s failed: %s: %s", label, type(exc).__name__, exc)
            failures.append((label, exc))
            continue
        log.info("converted with %s (opset %d)", label, opset)
        _order_dict_outputs(proto, model, label)
        return standardize_io(proto), label
    summary = "; ".join(f"{label}: {type(exc).__name__}: {exc}" for label, exc in failures)
    raise ExportError(f"tf2onnx could not convert the model ({summary})") from failures[-1][1]


def dict_output_keys(model) -> list[str] | None:
    """The keys of a model whose outputs are a dict, in the model's own order; else None."""
    try:
        structure = model.output
    except (AttributeError, ValueError):  # a subclassed model without a symbolic output
        return None
    return [str(key) for key in structure] if isinstance(structure, dict) else None


def _order_dict_outputs(proto, model, path_used: str) -> None:
    """Match ONNX outputs to dict outputs by name and put them in the dict's order."""
    keys = dict_output_keys(model)
    if not keys:
        return
    names = [value.name for value in proto.graph.output]
    if sorted(names) != sorted(keys):
        raise ExportError(
            f"the model returns a dict of outputs {keys}, but {path_used} named the ONNX outputs {names}, "
            "so they cannot be matched: make the model return a list (or a single output) instead"
        )
    order_outputs(proto, keys)
    log.info("dict outputs %s matched by name (ONNX output 0 is %r)", keys, keys[0])


def predictor(model, layout: str = "NHWC"):
    """``batch (card layout) -> [outputs]`` running Keras itself, for the parity check."""
    if layout != "NHWC":
        raise ExportError("Keras models take NHWC input; use --layout NHWC")

    def predict(batch: np.ndarray) -> list[np.ndarray]:
        try:
            out = model(batch, training=False)
        except Exception as exc:  # Keras/TF raise many types (a source that does not take the card's input)
            raise ExportError(f"the Keras model raised {type(exc).__name__} on a batch of shape {batch.shape} "
                              f"(the card's input): {exc}") from exc
        if isinstance(out, dict):  # matched to ONNX outputs by name in convert
            out = [out[key] for key in dict_output_keys(model) or out]
        if not isinstance(out, (list, tuple)):
            out = [out]
        return [np.asarray(o, dtype=np.float32) for o in out]

    return predict


def input_normalisation(model) -> list:
    """The ``Rescaling`` / ``Normalization`` layers the model applies to its input itself: those met, in the
    layers' (topological) order, before the first layer with weights (Conv, Dense, BatchNormalization...),
    looking inside nested models. Such a layer after a weighted one is part of the network, not of the input
    preprocessing, and is left out."""
    _, keras = _tf()
    found, _ = _input_prefix(model.layers, (keras.layers.Rescaling, keras.layers.Normalization), keras.Model)
    return found


def _input_prefix(layers, normalising: tuple, nested: type) -> tuple[list, bool]:
    """(normalising layers before the first weighted one, whether a weighted one was met)."""
    found: list = []
    for layer in layers:
        if isinstance(layer, nested):
            inner, stopped = _input_prefix(layer.layers, normalising, nested)
            found.extend(inner)
            if stopped:
                return found, True
        elif isinstance(layer, normalising):  # Normalization holds weights (mean, variance): test it first
            found.append(layer)
        elif layer.weights:
            return found, True
    return found, False


def describe_normalisation(layer) -> str:
    """``Rescaling 'rescaling' (x * 0.003922 + 0)`` / ``Normalization 'norm' (mean [...], variance [...])``."""
    kind = type(layer).__name__
    if hasattr(layer, "scale"):
        return f"{kind} {layer.name!r} (x * {_numbers(layer.scale)} + {_numbers(layer.offset)})"
    invert = ", inverted" if getattr(layer, "invert", False) else ""
    mean = layer.input_mean if layer.mean is None else layer.mean  # None until built (or adapted)
    variance = layer.input_variance if layer.mean is None else layer.variance
    return f"{kind} {layer.name!r} (mean {_numbers(mean)}, variance {_numbers(variance)}{invert})"


def _numbers(values) -> str:
    if values is None:
        return "unknown"
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    text = [f"{v:.4g}" for v in flat]
    return text[0] if len(text) == 1 else f"[{', '.join(text)}]"


def _value_range(x: np.ndarray) -> str:
    """``[lo, hi]`` over all channels of a (N, 1, 1, C) batch."""
    return f"[{float(x.min()):.4g}, {float(x.max()):.4g}]"


def warn_double_normalisation(model, preprocessing) -> list:
    """Warn (and return the layers) when the model normalises its input itself (:func:`input_normalisation`)
    while the card's preprocessing is not raw 0..255 pixels: the parity check feeds both sides the card's
    tensors, so it passes, and the served model sees its input normalised twice."""
    from classifier.spec import NORMALIZATION_PRESETS

    raw = NORMALIZATION_PRESETS["raw"]
    pre = preprocessing
    if (pre.scale, pre.mean, pre.std) == (raw[0], tuple(raw[1]), tuple(raw[2])):
        return []
    layers = input_normalisation(model)
    if not layers:
        return []
    pixels = np.array([0.0, 255.0], np.float32).reshape(2, 1, 1, 1) * np.ones((1, 1, 1, 3), np.float32)
    card_x = (pixels * pre.scale - np.array(pre.mean, np.float32)) / np.array(pre.std, np.float32)
    seen, meant = _through(layers, card_x), _through(layers, pixels)
    log.warning(
        "the Keras model normalises its input itself before its first weighted layer: %s; but the card "
        "normalises the pixels too (scale %.4g, mean %s, std %s: 0..255 becomes %s), so the first weighted layer "
        "will see %s "
        "where raw pixels would give it %s. If these layers are the model's own preprocessing, export with "
        "--preset raw; otherwise check the card with --reference-preprocess (your training preprocessing): "
        "the parity check feeds both sides the card's tensors and cannot see this",
        "; ".join(describe_normalisation(layer) for layer in layers), pre.scale, _numbers(pre.mean),
        _numbers(pre.std), _value_range(card_x), seen, meant,
    )
    return layers


def _through(layers, x: np.ndarray) -> str:
    """The value range after ``layers`` applied in turn to the (N, 1, 1, 3) batch ``x``."""
    try:
        for layer in layers:
            x = np.asarray(layer(x), dtype=np.float64)
    except Exception as exc:  # Keras raises many types (an unbuilt Normalization): the warning still stands
        return f"an unknown range ({type(exc).__name__}: {exc})"
    return _value_range(x)


def default_name(path: str | Path) -> str:
    return Path(path).stem
