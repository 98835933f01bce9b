"""MemorySize enforced as Lambda enforces it (local_lambda's cgroup memory limit, no swap): the
function refuses what its memory cannot decode (413) instead of being killed, and decodes what
its budget allows without being killed, at 512 MB (the template's smallest size) and 1024 MB.

The costliest decode per pixel is a lossless WebP with alpha (17 bytes a pixel over the warm
runtime, ``python -m bench.decode_memory``); such a file of one colour is 38 bytes at 50 MP.
"""

from __future__ import annotations

import base64
import io
import math

import pytest
from PIL import Image

from classifier.decode import DECODE_BYTES_PER_ROW
from classifier.settings import DECODE_BYTES_PER_PIXEL, decode_pixel_budget
from local_lambda.memory_limit import MemoryLimit
from local_lambda.template import function_emulator, read_function
from support import REPO


def webp_rgba(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side), (10, 200, 30, 128)).save(buffer, "WEBP", lossless=True, quality=0, method=0)
    return buffer.getvalue()


def event(data: bytes) -> dict:
    return {"image": base64.b64encode(data).decode(), "top_k": 1}


@pytest.fixture(scope="module", params=[512, 1024], ids=lambda mb: f"{mb}MB")
def limited_function(request, staged_project):
    limit, note = MemoryLimit.create(request.param, name="test-memory-size")
    if limit is None:
        pytest.skip(f"no writable cgroup memory controller here: {note}")
    fn = read_function(REPO / "template.yaml", "PredictFunction", {"MemorySize": str(request.param)})
    emulator, _ = function_emulator(fn, staged_project, {}, shell_env={})
    emulator.memory_limit = limit
    try:
        with emulator:
            yield emulator, limit
    finally:
        limit.close()


def test_an_image_over_what_the_memory_decodes_is_a_413_not_a_killed_runtime(limited_function):
    function, limit = limited_function
    response = function.invoke(event(webp_rgba(7000)))  # 49 MP: ~0.9 GB to decode, within MaxImagePixels
    assert response.get("error", {}).get("code") == "payload_too_large", (response, function.logs[-2000:])
    assert "MemorySize" in response["error"]["message"]
    assert limit.oom_kills() in (0, None)


def test_the_largest_image_the_budget_allows_decodes_under_the_limit(limited_function, cat_jpeg):
    function, limit = limited_function
    memory_mb = limit.limit_bytes // 2**20
    budget = decode_pixel_budget(memory_mb)  # 18 MP at 512 MB, 48 MP at 1024 MB
    side = math.isqrt(budget)
    while side * side + -(-side * DECODE_BYTES_PER_ROW // DECODE_BYTES_PER_PIXEL) > budget:  # its rows count too
        side -= 1
    response = function.invoke(event(webp_rgba(side)))
    assert "predictions" in response, (response, function.logs[-2000:])
    assert limit.oom_kills() in (0, None)  # the runtime was never killed
    assert limit.peak_bytes() is None or limit.peak_bytes() < limit.limit_bytes
    phone = io.BytesIO()
    Image.open(io.BytesIO(cat_jpeg)).resize((4000, 3000)).save(phone, "JPEG", quality=85)  # 12 MP, decoded reduced
    assert "predictions" in function.invoke(event(phone.getvalue()))
