"""Fuzz the decode path: any bytes end in an RGB image or a typed ClassifierError, nothing else."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from PIL import Image

from classifier.decode import decode_image
from classifier.errors import ClassifierError

MAX_PIXELS = 4_000_000
# Pillow warns about the corrupt metadata it skips; that is the point of this test.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _seed(fmt: str, mode: str = "RGB", **kw) -> bytes:
    image = Image.linear_gradient("L").resize((48, 32)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _noisy_seed(fmt: str, mode: str = "RGB", **kw) -> bytes:
    """A gradient whose right half is noisy: libwebp codes the two halves with their own code groups."""
    pixels = np.repeat(np.asarray(Image.linear_gradient("L").resize((48, 32)), np.int16)[..., None], len(mode), 2)
    pixels[:, 24:] += np.random.default_rng(7).normal(0, 40, (32, 24, len(mode))).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode).save(buffer, format=fmt, **kw)
    return buffer.getvalue()


SEEDS = [
    _seed("JPEG"),
    _seed("JPEG", progressive=True),
    _seed("PNG"),
    _seed("PNG", "RGBA"),
    _seed("PNG", "P"),
    _seed("GIF", "P"),
    _seed("WEBP"),
    _seed("BMP"),
    _seed("TIFF"),
    _seed("TIFF", "CMYK"),
    _seed("TIFF", compression="jpeg"),  # libtiff's paths: _file_limits reads their strips
    _seed("TIFF", "L", compression="tiff_adobe_deflate"),
    _seed("PNG", save_all=True, append_images=[Image.new("RGB", (48, 32))], default_image=True),  # APNG
    # _webp_lossless walks these: transforms, colour cache, entropy image (a noisy image gets them all)
    _noisy_seed("WEBP", lossless=True, method=6, quality=100),
    _noisy_seed("WEBP", "RGBA", method=6, quality=80, alpha_quality=100),  # the alpha in an ALPH chunk, coded losslessly
]


def _decode_or_typed_error(data: bytes) -> None:
    try:
        image = decode_image(data, MAX_PIXELS)
    except ClassifierError as error:
        assert 400 <= error.status < 500, error
        return
    assert image.mode == "RGB" and image.width * image.height <= MAX_PIXELS


@st.composite
def mutated_images(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "truncate", "insert", "zero-run"]))
        if action == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif action == "truncate":
            del data[position:]
            if not data:
                break
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[position : position + 8] = bytes(8)
    return bytes(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_images())
@example(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")  # found by CI at 872437c: an IHDR cut short (IndexError)
@example(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x000\x00\x00\x00 \x08\x02")
def test_mutated_images_never_escape_as_untyped_errors(data):
    _decode_or_typed_error(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_escape_as_untyped_errors(data):
    _decode_or_typed_error(data)
