"""Pillow's resampling, run as its two passes, each split across CPUs.

``Image.resize`` with a convolution filter is two separable passes over 8-bit images:
horizontal (every source row the result needs -> the output width), then vertical. Each
output pixel of a pass depends only on that pass's coefficients, which Pillow computes from
the box edges, the source length and the output length along that axis. So a pass can be cut
into bands (rows for the horizontal pass, columns for the vertical one) and each band run by
its own ``Image.resize`` call, on its own thread (Pillow releases the GIL while it resamples),
with the same coefficients: the result is the same bytes as the passes run whole
(tests/unit/test_resize.py), whatever the number of bands.

The passes always run horizontal first, as Pillow has done for years; Pillow 13 runs a
one-call resize of a much taller than wide image vertically first, which moves some pixels
of the 8-bit intermediate by one level. Here the result does not depend on the image's shape
or on how many CPUs the function has.

Cutting a pass at a fractional box edge instead (two ``resize`` calls with half boxes) is
not exact: the band's box and scale are recomputed in floating point and Pillow's fixed-point
weights round differently.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]

# Half-widths of Pillow's convolution filters (libImaging/Resample.c), in source pixels at scale 1.
SUPPORT = {
    Image.Resampling.BOX: 0.5,
    Image.Resampling.BILINEAR: 1.0,
    Image.Resampling.HAMMING: 1.0,
    Image.Resampling.BICUBIC: 2.0,
    Image.Resampling.LANCZOS: 3.0,
}

# A band shorter than this is not worth a thread hand-off (~0.05 ms).
MIN_BAND = 32


@dataclass(frozen=True)
class Workers:
    """Threads that run all bands but one of each pass (the caller's thread runs that one)."""

    pool: Executor
    bands: int

    @classmethod
    def for_cpus(cls, cpus: int) -> "Workers | None":
        """One band per CPU; None with one CPU (threads would only take turns)."""
        if cpus < 2:
            return None
        return cls(ThreadPoolExecutor(cpus - 1, thread_name_prefix="resize"), cpus)


def resize(image: Image.Image, size: tuple[int, int], resample: int, box: Box | None = None,
           workers: Workers | None = None) -> np.ndarray:
    """``image.resize(size, resample, box=box)`` as an (height, width, channels) uint8 array.

    With ``workers``, each pass is cut into up to ``workers.bands`` bands, one run here and
    the rest on the workers' pool; without, the passes run whole. Filters without a support
    (NEAREST) go to Pillow in one call.
    """
    if resample not in SUPPORT:
        return np.asarray(image.resize(size, resample, box=box))
    box = box or (0, 0, image.width, image.height)
    pool, bands = (workers.pool, workers.bands) if workers else (None, 1)
    middle = _horizontal(image, size, resample, box, pool, bands)
    return _vertical(middle, size[1], resample, box, pool, bands)


def _horizontal(image: Image.Image, size: tuple[int, int], resample: int, box: Box, pool: Executor | None,
                bands: int) -> Image.Image:
    """The source rows the vertical pass reads, resampled to the output width (other rows left black)."""
    width = size[0]
    x0, y0, x1, y1 = box
    if width == image.width and x0 == 0 and x1 == image.width:
        return image  # Pillow skips this pass too
    first, last = _rows_read(image.height, size[1], y0, y1, resample)

    def band(top: int, bottom: int) -> Image.Image:
        rows = image.crop((0, top, image.width, bottom))  # whole rows: the x coefficients stay the same
        return rows.resize((width, bottom - top), resample, box=(x0, 0, x1, bottom - top))

    middle = Image.new(image.mode, (width, image.height))
    for top, part in _run(band, _cuts(first, last, bands), pool):
        middle.paste(part, (0, top))
    return middle


def _vertical(middle: Image.Image, height: int, resample: int, box: Box, pool: Executor | None, bands: int) -> np.ndarray:
    _, y0, _, y1 = box
    if height == middle.height and y0 == 0 and y1 == middle.height:
        return np.asarray(middle)

    def band(left: int, right: int) -> Image.Image:
        columns = middle if (left, right) == (0, middle.width) else middle.crop((left, 0, right, middle.height))
        return columns.resize((right - left, height), resample, box=(0, y0, right - left, y1))

    parts = [np.asarray(part) for _, part in _run(band, _cuts(0, middle.width, bands), pool)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _rows_read(source_height: int, height: int, y0: float, y1: float, resample: int) -> tuple[int, int]:
    """Source rows [first, last) holding every row the vertical pass can read, plus a margin.

    Pillow reads output row ``j`` from the rows within ``support * max(scale, 1)`` of its
    center ``y0 + (j + 0.5) * scale``; rows the pass never reads may stay black.
    """
    support = SUPPORT[resample] * max((y1 - y0) / height, 1.0)
    return max(0, math.floor(y0 - support) - 2), min(source_height, math.ceil(y1 + support) + 2)


def _cuts(start: int, stop: int, bands: int) -> list[tuple[int, int]]:
    bands = max(1, min(bands, (stop - start) // MIN_BAND))
    edges = [start + (stop - start) * i // bands for i in range(bands + 1)]
    return list(zip(edges, edges[1:]))


def _run(work: Callable[[int, int], Image.Image], cuts: list[tuple[int, int]],
         pool: Executor | None) -> list[tuple[int, Image.Image]]:
    """``work`` over every cut: all but the first on the pool, the first here meanwhile."""
    if pool is None or len(cuts) == 1:
        return [(start, work(start, stop)) for start, stop in cuts]
    futures = [(start, pool.submit(work, start, stop)) for start, stop in cuts[1:]]
    first = (cuts[0][0], work(*cuts[0]))
    return [first] + [(start, future.result()) for start, future in futures]
