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
@pytest.mark.parametrize("size", [(4000, 3000), (1200, 1600)])
def test_drafted_decode_agrees_with_full_decode(classifier, name, size):
    buffer = io.BytesIO()
    Image.open(PHOTOS[name]).convert("RGB").resize(size, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    spec = classifier.card.preprocessing
    full = decode_image(data, 50_000_000)
    drafted = decode_image(data, 50_000_000, draft_size=functools.partial(draft_size, spec))
    assert drafted.width < full.width  # the fast path was taken
    reference = classifier.scores(preprocess(full, spec))
    fast = classifier.scores(preprocess(drafted, spec))
    assert fast.argmax() == reference.argmax()
    assert np.abs(fast - reference).max() < 0.05
