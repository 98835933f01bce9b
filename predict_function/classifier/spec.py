"""The model card stored inside the ONNX file: preprocessing, output activation, labels.

This module is the single definition shared by ``model_export`` (which writes the
card and checks parity through :func:`preprocess`) and by the Lambda handler
(which reads the card from the model it loads and applies the very same
:func:`preprocess`). Only numpy and Pillow are used here.

The card is one JSON document stored under :data:`METADATA_KEY` in the ONNX
``metadata_props``; onnxruntime exposes it as
``session.get_modelmeta().custom_metadata_map[METADATA_KEY]``.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
from PIL import Image

METADATA_KEY = "image_classifier.card"
SCHEMA_VERSION = 1

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
ACTIVATIONS = ("none", "softmax", "sigmoid")


class SpecError(ValueError):
    """The card is missing, malformed, or of an unknown schema version."""


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the model's input tensor.

    Order of operations (the same at export-check time and at serving time):
    1. optional center crop: a square of side ``int(crop_fraction * min(w, h))``;
    2. resize to ``width x height`` with ``resize`` filter;
    3. ``(pixel * scale - mean) / std`` per channel, in ``channel_order``;
    4. ``layout`` NCHW or NHWC, float32, batch of one.
    """

    height: int
    width: int
    resize: str = "bilinear"
    crop_fraction: float | None = None
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str = "NHWC"
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        if not (_is_int(self.height) and _is_int(self.width)) or self.height < 1 or self.width < 1:
            raise SpecError(f"input size must be positive integers, got {self.height!r}x{self.width!r}")
        if self.resize not in RESAMPLE:
            raise SpecError(f"resize must be one of {sorted(RESAMPLE)}, got {self.resize!r}")
        if self.crop_fraction is not None and not (_is_real(self.crop_fraction) and 0.0 < self.crop_fraction <= 1.0):
            raise SpecError(f"crop_fraction must be a number in (0, 1] or null, got {self.crop_fraction!r}")
        if self.layout not in LAYOUTS:
            raise SpecError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise SpecError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if not _is_finite(self.scale):
            raise SpecError(f"scale must be a finite number, got {_preview(self.scale)}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or len(values) != 3 or not all(map(_is_finite, values)):
                raise SpecError(f"{name} needs exactly three finite numbers (one per channel), got {_preview(values)}")
        if any(s == 0 for s in self.std):
            raise SpecError("std values must be non-zero")
        # Plain Python numbers, and tuples so the dataclass stays hashable and immutable.
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: object) -> bool:
    """An integer, not a bool, nor a float that happens to be whole (8.0 would reach Pillow's resize)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    """A real number other than NaN and +-inf: a null or NaN here would turn every score into NaN."""
    return _is_real(value) and math.isfinite(value)  # type: ignore[arg-type]


# Presets for the common training recipes. Values are (scale, mean, std).
NORMALIZATION_PRESETS: dict[str, tuple[float, tuple[float, ...], tuple[float, ...]]] = {
    # Raw 0..255 floats; the model rescales itself (e.g. a Keras Rescaling layer).
    "raw": (1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    # Keras Rescaling(1/255) done outside the model.
    "unit": (1.0 / 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    # Keras/TF "tf" mode: [-1, 1].
    "tf": (1.0 / 127.5, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
    # torchvision ImageNet mean/std on [0, 1].
    "imagenet": (1.0 / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # TensorFlow EfficientNet-Lite eval: (pixel - 127) / 128.
    "efficientnet-lite": (1.0, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
}


@dataclass(frozen=True)
class ModelCard:
    """Everything the server needs to know about a model besides its graph."""

    name: str
    version: str
    preprocessing: Preprocessing
    labels: tuple[str, ...] = field(default_factory=tuple)
    activation: str = "softmax"  # how raw outputs become scores
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise SpecError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        # A string is iterable too: "abc" would silently become three labels.
        if not isinstance(self.labels, (list, tuple)) or not all(isinstance(label, str) for label in self.labels):
            raise SpecError(f"labels must be a list of strings, got {_preview(self.labels)}")
        object.__setattr__(self, "labels", tuple(self.labels))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise SpecError(f"model card is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelCard":
        if not isinstance(data, Mapping):
            raise SpecError("model card must be a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SpecError(f"unsupported model card schema_version {version!r} (this code reads {SCHEMA_VERSION})")
        try:
            pre = data["preprocessing"]
            if not isinstance(pre, Mapping):
                raise SpecError(f"preprocessing must be a JSON object, got {_preview(pre)}")
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                preprocessing=Preprocessing(**pre),
                labels=data.get("labels", ()),
                activation=data.get("activation", "softmax"),
                schema_version=version,
            )
        except (KeyError, TypeError) as exc:
            raise SpecError(f"model card is incomplete or has unknown fields: {exc}") from exc

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> "ModelCard":
        """Read the card from ONNX ``metadata_props`` (or onnxruntime's custom_metadata_map)."""
        if METADATA_KEY not in metadata:
            raise SpecError(
                f"model has no {METADATA_KEY!r} metadata; export it with `python -m model_export` "
                "so the preprocessing and labels travel with the model"
            )
        return cls.from_json(metadata[METADATA_KEY])


def crop_box(width: int, height: int, crop_fraction: float | None) -> tuple[int, int, int, int] | None:
    """The center-crop box (left, upper, right, lower), or None for no crop."""
    if crop_fraction is None:
        return None
    side = max(1, int(crop_fraction * min(width, height)))
    left = (width - side) // 2
    top = (height - side) // 2
    return (left, top, left + side, top + side)


# A JPEG may be decoded at reduced size as long as the region preprocess reads keeps this many
# times the model's resolution. Measured against a full decode (crop + bicubic), the crop mapped
# exactly onto the reduced pixels (source_box), on 256 JPEGs (16 skimage/sklearn photos at 8
# sizes from 800x600 to 4000x3000, with and without sensor-like grain; 160 of them reduced):
#   headroom 2.0:  max score change 0.058, median 0.0049; top-1 flipped on 6 near-ties (margins <= 0.063)
#   headroom 1.5:  max 0.085, median 0.0064, 9 flips;  1.25: max 0.085, median 0.0100, 12 flips
# For scale, a full decode with Pillow's reducing_gap=2 (box 2x before bicubic) flips 6 and
# moves scores by up to 0.062 on the same set: this model reacts to sub-pixel filter changes on
# near-ties, so headroom stays at 2.0. Reproduce: `python -m bench.draft_accuracy`;
# tests/functional/test_draft_parity.py keeps a fast subset.
DRAFT_HEADROOM = 2.0


def draft_size(spec: Preprocessing, width: int, height: int, headroom: float = DRAFT_HEADROOM) -> tuple[int, int]:
    """The smallest source size (width, height) that keeps ``headroom`` x the model's resolution
    inside what :func:`preprocess` reads (the center crop, or the whole image)."""
    if spec.crop_fraction is not None:
        side = spec.crop_fraction * min(width, height)
        scale = headroom * max(spec.width, spec.height) / side
    else:
        scale = headroom * max(spec.width / width, spec.height / height)
    scale = min(1.0, scale)
    return (min(width, math.ceil(width * scale)), min(height, math.ceil(height * scale)))


@dataclass(frozen=True)
class SourceGrid:
    """Where the pixels of a reduced-size decode sit in the full-size upright image.

    A JPEG decoded at 1/``scale`` (``Image.draft``) has pixel columns that each cover ``scale``
    full-size columns; the last one may be partial (the decoded size is rounded up), which puts
    the real image at an ``offset`` inside the decoded one once EXIF orientation flips that axis.
    Full-size coordinate ``x`` is ``x / scale + offset_x`` in the decoded image. ``decoded_size``
    is the size this holds for: an image cropped or resized afterwards no longer matches it.
    """

    width: int
    height: int
    scale: float
    decoded_size: tuple[int, int]
    offset_x: float = 0.0
    offset_y: float = 0.0


# Image.info key under which ``decode.decode_image`` leaves a ``SourceGrid`` for reduced decodes.
SOURCE_GRID_KEY = "classifier.source_grid"


def source_box(image: Image.Image, spec: Preprocessing) -> tuple[float, float, float, float] | None:
    """The region of ``image`` that :func:`preprocess` resizes to the model's input, or None
    for the whole image. For a reduced decode this is the center crop of the full-size image,
    mapped onto the decoded pixels with fractional coordinates: computing the crop on the
    reduced grid instead rounds it by up to one reduced pixel, a shift the model notices."""
    grid = image.info.get(SOURCE_GRID_KEY)
    if not isinstance(grid, SourceGrid) or grid.decoded_size != image.size:  # type-checked: info
        return crop_box(image.width, image.height, spec.crop_fraction)  # also holds file metadata
    box = crop_box(grid.width, grid.height, spec.crop_fraction) or (0, 0, grid.width, grid.height)
    left, top, right, bottom = box
    return (
        left / grid.scale + grid.offset_x,
        top / grid.scale + grid.offset_y,
        right / grid.scale + grid.offset_x,
        bottom / grid.scale + grid.offset_y,
    )


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """An RGB Pillow image -> the float32 input tensor (batch of one) the model expects."""
    if image.mode != "RGB":
        raise SpecError(f"preprocess expects an RGB image, got mode {image.mode!r}")
    box = source_box(image, spec)
    size = (spec.width, spec.height)
    if box is not None or image.size != size:
        image = image.resize(size, RESAMPLE[spec.resize], box=box)
    return normalise(np.asarray(image), spec)


def normalise(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """uint8 H x W x 3 RGB pixels -> ``(pixel * scale - mean) / std`` as the float32 batch of one.

    Three in-place float32 passes straight into the output layout (no float64, no temporary
    arrays, no final transposing copy): bit-identical to the straightforward formula.
    """
    height, width = pixels.shape[:2]
    if spec.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    mean = np.asarray(spec.mean, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std, dtype=np.float32)
    if spec.layout == "NCHW":
        out = np.empty((1, 3, height, width), dtype=np.float32)
        view = out[0]
        source = pixels.transpose(2, 0, 1)
        mean, inv_std = mean[:, None, None], inv_std[:, None, None]
    else:
        out = np.empty((1, height, width, 3), dtype=np.float32)
        view, source = out[0], pixels
    np.multiply(source, np.float32(spec.scale), out=view, dtype=np.float32)
    np.subtract(view, mean, out=view)
    np.multiply(view, inv_std, out=view)
    return out


def activate(raw: np.ndarray, activation: str) -> np.ndarray:
    """Raw model output for one example (1-D) -> scores."""
    raw = np.asarray(raw, dtype=np.float64).reshape(-1)
    if activation == "softmax":
        shifted = np.exp(raw - raw.max())
        return shifted / shifted.sum()
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-raw))
    return raw
