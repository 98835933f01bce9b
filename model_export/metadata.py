"""Build the model card from export options and store it in / read it from an ONNX file.

The card is :class:`classifier.spec.ModelCard`, serialised as JSON under
:data:`classifier.spec.METADATA_KEY` in the ONNX ``metadata_props``; onnxruntime
exposes it as ``session.get_modelmeta().custom_metadata_map``.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

from classifier.spec import METADATA_KEY, NORMALIZATION_PRESETS, ModelCard, Preprocessing, SpecError

from model_export.errors import ExportError

log = logging.getLogger("model_export")

_CALLABLE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def build_preprocessing(
    height: int,
    width: int,
    *,
    preset: str | None = None,
    scale: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: str = "bilinear",
    crop_fraction: float | None = None,
    layout: str = "NHWC",
    channel_order: str = "RGB",
) -> Preprocessing:
    """A :class:`Preprocessing` from a preset and/or explicit values (explicit ones win).

    The normalization must be stated: either a preset or at least one of scale/mean/std.
    A silent default is how a model ends up served with the wrong scale.
    """
    if preset is None and scale is None and mean is None and std is None:
        raise ExportError(
            "say how pixels were normalized in training: --preset "
            f"{{{','.join(NORMALIZATION_PRESETS)}}} and/or --scale/--mean/--std"
        )
    if preset is not None:
        if preset not in NORMALIZATION_PRESETS:
            raise ExportError(f"unknown preset {preset!r}; choose one of {sorted(NORMALIZATION_PRESETS)}")
        p_scale, p_mean, p_std = NORMALIZATION_PRESETS[preset]
    else:
        p_scale, p_mean, p_std = 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    try:
        result = Preprocessing(
            height=int(height),
            width=int(width),
            resize=resize,
            crop_fraction=crop_fraction,
            scale=float(p_scale if scale is None else scale),
            mean=tuple(p_mean if mean is None else _three(mean, "mean")),
            std=tuple(p_std if std is None else _three(std, "std")),
            layout=layout,
            channel_order=channel_order,
        )
    except SpecError as exc:
        raise ExportError(f"invalid preprocessing: {exc}") from exc
    if scale is None:  # an explicit --scale 1 says the pixels really are 0..255
        _warn_unit_mean_std(result.scale, mean, std)
    return result


def _warn_unit_mean_std(scale: float, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    """Warn when --mean/--std look like values for [0, 1] pixels (torchvision's 0.485 / 0.229) but the
    pixels reach them unscaled, as 0..255 (no --scale, and no preset that divides by 255)."""
    if scale != 1.0:
        return
    suspicious = [
        f"--{name} {' '.join(f'{v:g}' for v in values)}"
        for name, values, identity in (("mean", mean, 0.0), ("std", std, 1.0))
        if values and any(float(v) != identity for v in values) and all(abs(float(v)) <= 1.0 for v in values)
    ]
    if suspicious:
        log.warning(
            "%s: values <= 1 as for pixels in [0, 1], but no --scale (nor a preset that scales) is given, so they "
            "apply to pixels 0..255 "
            "(e.g. (255 - 0.485) / 0.229 = 1111); add --scale 0.00392156862745098 (1/255), or --preset imagenet "
            "for torchvision's mean/std, unless the model was really trained on these values",
            " and ".join(suspicious),
        )


def _three(values: Sequence[float], what: str) -> tuple[float, float, float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ExportError(f"--{what} takes one value or three (one per channel), got {len(values)}")
    return tuple(values)  # type: ignore[return-value]


def resolve_callable(ref: str):
    """``package.module:function`` -> the function."""
    if not _CALLABLE_REF.match(ref):
        raise ExportError(f"{ref!r} is not of the form package.module:function")
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ExportError(f"cannot import {module_name!r} (from {ref!r}): {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ExportError(f"{module_name!r} has no attribute {attr!r}") from exc


def user_callable(ref: str, what: str):
    """``package.module:function`` -> that function, wrapped so that anything it raises
    becomes an :class:`ExportError` naming ``what`` and ``ref`` (exit 2, not a traceback)."""
    function = resolve_callable(ref)
    if not callable(function):
        raise ExportError(f"{what} {ref} is a {type(function).__name__}, not a function")

    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ExportError:
            raise
        except Exception as exc:  # the user's code raises anything; one boundary
            raise ExportError(f"{what} {ref} raised {type(exc).__name__}: {exc}") from exc

    return call


def is_callable_ref(text: str) -> bool:
    return bool(_CALLABLE_REF.match(text)) and not Path(text).exists()


def load_labels(source: str | Path) -> tuple[str, ...]:
    """Labels from a file (one per line, or a JSON list) or from ``package.module:function``."""
    text_source = str(source)
    if is_callable_ref(text_source):
        labels = user_callable(text_source, "the labels function")()
        return _clean_labels(labels, text_source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ExportError(f"cannot read labels file {path}: {exc}") from exc
    except UnicodeDecodeError as exc:  # a cp1252 or UTF-16 file from a Windows editor
        raise ExportError(f"labels file {path} is not UTF-8 text ({exc}): save it as UTF-8") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExportError(f"labels file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise ExportError(f"labels file {path} must hold a JSON list of strings")
        return _clean_labels(data, str(path))
    data = _json_list(text)  # another name holding a JSON list is read as one;
    if data is not None:  # lines that only start with "[" ("[unused0]", "[background]") are labels
        return _clean_labels(data, str(path))
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if "" in lines:
        raise ExportError(f"labels file {path} has an empty line {lines.index('') + 1}: one label per line")
    return _clean_labels(lines, str(path))


def _json_list(text: str) -> list | None:
    if not text.lstrip().startswith("["):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, list) else None


def _clean_labels(labels: Iterable[object], where: str) -> tuple[str, ...]:
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        raise ExportError(f"labels from {where} must be a list of strings, got {type(labels).__name__}")
    out = []
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise ExportError(f"label {i} from {where} is not a non-empty string: {label!r}")
        out.append(label.strip())
    if not out:
        raise ExportError(f"no labels in {where}")
    dupes = sorted({label for label in out if out.count(label) > 1})
    if dupes:
        raise ExportError(f"duplicate labels in {where}: {dupes[:5]}")
    return tuple(out)


def write_labels(path: str | Path, labels: Sequence[str]) -> Path:
    """Write labels one per line (the format ``--labels`` reads)."""
    path = Path(path)
    path.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    return path


def label_count_problem(count: int, output_size: int | None) -> str | None:
    """Why ``count`` labels cannot name ``output_size`` scores (None when they can).

    Several scores: one label each, in output order. One score (a binary classifier whose
    output is P(positive)): no label, 1 label, or 2 labels = [negative, positive].
    """
    if not count or output_size is None or count == output_size:
        return None
    if output_size == 1:
        if count == 2:
            return None
        return (f"{count} labels given but the model outputs a single score (binary): give 1 label, "
                "or 2 labels [negative, positive]")
    return (f"{count} labels given but the model outputs {output_size} scores; "
            "the labels file must have exactly one label per output, in output order")


def validate_labels(labels: Sequence[str], output_size: int | None) -> None:
    """Fail clearly when the label count does not match the classifier's output size."""
    problem = label_count_problem(len(labels), output_size)
    if problem:
        raise ExportError(problem)


def activation_problem(model, activation: str) -> str | None:
    """Why the card's ``activation`` does not fit the graph's first output (None when it does):
    applying sigmoid/softmax to an output a Sigmoid/Softmax node already computed squeezes
    the scores (sigmoid of a probability lies in [0.5, 0.73]) while parity still passes,
    and softmax over a single score is always 1.0."""
    from model_export.graph import PROBABILITY_OPS, output_producer

    if activation == "none":
        return None
    producer = output_producer(model)
    if producer in PROBABILITY_OPS:
        return (f"activation {activation}: the model's output is already computed by a {producer} node "
                f"(probabilities), so {activation} would be applied twice; use --activation none (or auto)")
    if activation == "softmax" and output_size(model) == 1:
        return ("activation softmax over a single score is always 1.0; use --activation sigmoid for a raw "
                "logit, none for a probability (or auto)")
    return None


def output_size(model) -> int | None:
    """Scores per example of the (first) graph output: the product of its dimensions after the batch, as
    the function counts them ([N, 4, 1, 1] is 4 classes), or None when one is not static."""
    dims = list(model.graph.output[0].type.tensor_type.shape.dim)[1:]
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return math.prod(int(d.dim_value) for d in dims)


def write_card(model, card: ModelCard):
    """Store ``card`` in ``model.metadata_props`` (replacing any previous card); returns the model."""
    for i in reversed(range(len(model.metadata_props))):
        if model.metadata_props[i].key == METADATA_KEY:
            del model.metadata_props[i]
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = card.to_json()
    if not model.doc_string:
        model.doc_string = f"{card.name} v{card.version}; model card in metadata_props[{METADATA_KEY!r}]"
    return model


def read_card(model_or_path) -> ModelCard:
    """The card of an ONNX model (a path or a loaded ``onnx.ModelProto``)."""
    if isinstance(model_or_path, (str, Path)):
        import onnx

        try:
            model = onnx.load(str(model_or_path), load_external_data=False)
        except Exception as exc:  # protobuf DecodeError, OSError...
            raise ExportError(f"cannot read ONNX model {model_or_path}: {type(exc).__name__}: {exc}") from exc
    else:
        model = model_or_path
    metadata = {p.key: p.value for p in model.metadata_props}
    return ModelCard.from_metadata(metadata)
