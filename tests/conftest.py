"""Shared fixtures: real photos that PyPI packages ship (no downloads). Constants live in support.py."""

from __future__ import annotations

import io

import pytest

from support import PHOTOS


@pytest.fixture(scope="session")
def photo_bytes():
    return {name: path.read_bytes() for name, path in PHOTOS.items()}


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(PHOTOS["chelsea.png"]).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
