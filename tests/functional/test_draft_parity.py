"""Decoding phone-size JPEGs at reduced size must not change the answer."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
from PIL import Image

from classifier.decode import decode_image
from classifier.model import Classifier
from classifier.spec import draft_size, preprocess
from support import DEFAULT_MODEL, PHOTOS


@pytest.fixture(scope="module")
def classifier():
    return Classifier.load(str(DEFAULT_MODEL), intra_op_threads=1)


@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize(
    "size, orientation",
    [((4000, 3000), 1), ((1200, 1600), 1), ((4001, 3003), 6), ((1603, 1205), 3)],  # odd sizes: partial blocks
)
def test_drafted_decode_agrees_with_full_decode(classifier, name, size, orientation):
    upright = Image.open(PHOTOS[name]).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    stored = {1: upright, 3: upright.transpose(Image.Transpose.ROTATE_180),
              6: upright.transpose(Image.Transpose.ROTATE_90)}[orientation]  # exif_transpose undoes it
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    data = buffer.getvalue()
    spec = classifier.card.preprocessing
    full = decode_image(data, 50_000_000)
    drafted = decode_image(data, 50_000_000, draft_size=functools.partial(draft_size, spec))
    assert full.size == size and drafted.width < full.width  # upright, and the fast path was taken
    reference = classifier.scores(preprocess(full, spec))
    fast = classifier.scores(preprocess(drafted, spec))
    assert fast.argmax() == reference.argmax()
    assert np.abs(fast - reference).max() < 0.05
