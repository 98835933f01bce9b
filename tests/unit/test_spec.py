import json

import numpy as np
import pytest
from PIL import Image

from classifier.spec import (
    METADATA_KEY,
    NORMALIZATION_PRESETS,
    ModelCard,
    Preprocessing,
    SpecError,
    activate,
    crop_box,
    draft_size,
    preprocess,
)


def gradient(width=64, height=48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    r = np.broadcast_to(x, (height, width))
    g = np.broadcast_to(y[:, None], (height, width))
    b = np.full((height, width), 200, np.float32)
    return Image.fromarray(np.stack([r, g, b], -1).astype(np.uint8))


def card(**pre) -> ModelCard:
    return ModelCard(name="m", version="1", preprocessing=Preprocessing(**{"height": 8, "width": 8, **pre}), labels=("a", "b"))


def test_card_round_trips_through_json_and_metadata():
    original = card(resize="bicubic", crop_fraction=0.875, scale=1 / 255, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4), layout="NCHW")
    assert ModelCard.from_json(original.to_json()) == original
    assert ModelCard.from_metadata({METADATA_KEY: original.to_json()}) == original


@pytest.mark.parametrize(
    "bad",
    [
        {"resize": "magic"},
        {"layout": "CHW"},
        {"crop_fraction": 1.5},
        {"crop_fraction": 0.0},
        {"std": (1.0, 0.0, 1.0)},
        {"mean": (1.0, 2.0)},
        {"height": 0},
        {"channel_order": "GBR"},
    ],
)
def test_invalid_preprocessing_is_refused(bad):
    with pytest.raises(SpecError):
        Preprocessing(**{"height": 8, "width": 8, **bad})


@pytest.mark.parametrize(
    "bad",
    [
        {"height": 8.0},  # whole, but a float would reach Pillow's resize on every request
        {"width": "8"},
        {"height": True},
        {"scale": None},  # np.float32(None) is NaN: NaN scores
        {"scale": float("nan")},
        {"scale": float("inf")},
        {"scale": "0.5"},
        {"mean": "127"},  # a string is three characters, not three means
        {"std": "111"},
        {"mean": (0.0, None, 0.0)},
        {"std": [1.0, float("inf"), 1.0]},
        {"mean": {"r": 0, "g": 0, "b": 0}},
        {"crop_fraction": "0.875"},
        {"crop_fraction": float("nan")},
    ],
)
def test_preprocessing_values_of_the_wrong_type_are_refused(bad):
    with pytest.raises(SpecError):
        Preprocessing(**{"height": 8, "width": 8, **bad})
    data = json.loads(card().to_json())
    data["preprocessing"].update(bad)
    with pytest.raises(SpecError):  # as read from a model's metadata
        ModelCard.from_json(json.dumps(data))


@pytest.mark.parametrize("labels", ["abc", ["a", 1], [None], {"a": 1}])
def test_labels_must_be_a_list_of_strings(labels):
    data = json.loads(card().to_json())
    data["labels"] = labels
    with pytest.raises(SpecError, match="labels"):
        ModelCard.from_dict(data)
    with pytest.raises(SpecError, match="labels"):
        ModelCard(name="m", version="1", preprocessing=Preprocessing(height=8, width=8), labels=labels)


def test_card_values_become_plain_python_types():
    pre = Preprocessing(height=np.int64(8), width=8, scale=np.float32(0.5), mean=[1, 2, 3], std=(1, 1, 2))
    assert type(pre.height) is int and type(pre.scale) is float
    assert pre.mean == (1.0, 2.0, 3.0) and all(type(v) is float for v in pre.mean + pre.std)
    assert ModelCard.from_json(card(mean=[1, 2, 3]).to_json()).preprocessing.mean == (1.0, 2.0, 3.0)
    assert ModelCard(name="m", version="1", preprocessing=pre, labels=["a", "b"]).labels == ("a", "b")


def test_unknown_schema_version_and_missing_card_are_refused():
    data = json.loads(card().to_json())
    data["schema_version"] = 99
    with pytest.raises(SpecError, match="schema_version"):
        ModelCard.from_dict(data)
    with pytest.raises(SpecError, match="model_export"):
        ModelCard.from_metadata({})
    with pytest.raises(SpecError):
        ModelCard.from_json("{not json")


def test_layouts_hold_the_same_values():
    image = gradient()
    nhwc = preprocess(image, Preprocessing(height=8, width=8, layout="NHWC"))
    nchw = preprocess(image, Preprocessing(height=8, width=8, layout="NCHW"))
    assert nhwc.shape == (1, 8, 8, 3) and nchw.shape == (1, 3, 8, 8)
    assert nhwc.dtype == np.float32 and nhwc.flags["C_CONTIGUOUS"] and nchw.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(nhwc[0].transpose(2, 0, 1), nchw[0])


def test_normalisation_matches_the_formula():
    image = gradient(8, 8)
    scale, mean, std = NORMALIZATION_PRESETS["imagenet"]
    got = preprocess(image, Preprocessing(height=8, width=8, scale=scale, mean=mean, std=std))
    expected = (np.asarray(image, np.float32) / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("preset", sorted(NORMALIZATION_PRESETS))
def test_normalisation_is_bit_identical_to_the_plain_float32_formula(layout, order, preset):
    # The in-place passes must give exactly what the straightforward float32 expression gives.
    pixels = np.random.default_rng(7).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    scale, mean, std = NORMALIZATION_PRESETS[preset]
    spec = Preprocessing(height=12, width=10, scale=scale, mean=mean, std=std, layout=layout, channel_order=order)
    got = preprocess(Image.fromarray(pixels), spec)
    plain = pixels.astype(np.float32)[..., ::-1] if order == "BGR" else pixels.astype(np.float32)
    plain = (plain * np.float32(scale) - np.asarray(mean, np.float32)) * (np.float32(1.0) / np.asarray(std, np.float32))
    if layout == "NCHW":
        plain = plain.transpose(2, 0, 1)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"] and got.shape == (1, *plain.shape)
    np.testing.assert_array_equal(got[0], plain)


def test_bgr_reverses_channels():
    image = gradient(8, 8)
    rgb = preprocess(image, Preprocessing(height=8, width=8))
    bgr = preprocess(image, Preprocessing(height=8, width=8, channel_order="BGR"))
    np.testing.assert_array_equal(rgb[..., ::-1], bgr)


def test_center_crop_then_resize():
    assert crop_box(400, 300, 0.875) == (69, 19, 331, 281)
    assert crop_box(400, 300, None) is None
    # A crop of the whole short side equals resizing the centered square by hand.
    image = gradient(80, 40)
    got = preprocess(image, Preprocessing(height=20, width=20, resize="bilinear", crop_fraction=1.0))
    by_hand = image.crop((20, 0, 60, 40)).resize((20, 20), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(got[0], np.asarray(by_hand, np.float32), atol=1e-4)


def test_preprocess_refuses_non_rgb():
    with pytest.raises(SpecError):
        preprocess(gradient().convert("L"), Preprocessing(height=8, width=8))


def test_activations():
    logits = np.array([1.0, 2.0, 3.0])
    soft = activate(logits, "softmax")
    assert soft.sum() == pytest.approx(1.0) and soft.argmax() == 2
    assert activate(np.array([0.0]), "sigmoid")[0] == pytest.approx(0.5)
    np.testing.assert_array_equal(activate(logits, "none"), logits)


def test_draft_size_keeps_twice_the_model_resolution_inside_the_crop():
    spec = Preprocessing(height=224, width=224, crop_fraction=0.875)
    width, height = draft_size(spec, 4000, 3000)
    assert 0.875 * min(width, height) >= 2 * 224
    assert (width, height) == (683, 512)
    assert draft_size(spec, 300, 200) == (300, 200)  # never asks for more than the source
    plain = Preprocessing(height=100, width=300)
    width, height = draft_size(plain, 3000, 3000)
    assert width >= 600 and height >= 200
