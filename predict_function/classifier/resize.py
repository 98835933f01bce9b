"""Pillow's resampling, cut into bands that run on the function's CPUs: the same bytes, sooner.

``Image.resize`` with a convolution filter is two separable passes over 8-bit images, one per
axis. Each output pixel of a pass depends only on that pass's coefficients, which Pillow
computes from the box edges, the source length and the output length along that axis. So a
pass can be cut into bands (rows for the horizontal pass, columns for the vertical one), each
run by its own ``Image.resize`` call on its own thread (Pillow releases the GIL while it
resamples) with the same coefficients, in the order Pillow itself runs the passes: the result
is the bytes of ``image.resize(size, resample, box=box)`` (tests/unit/test_resize.py).

Pillow 13 runs the horizontal pass first unless the height shrinks by more than twice as many
pixels as the width (then vertical first); :func:`_horizontal_first` is that rule. Without
workers, or for NEAREST, this is one ``Image.resize`` call.

Cutting the output at a fractional box edge instead (two calls with half boxes) is not exact:
each band's box and scale are recomputed in floating point and Pillow's fixed-point weights
then round differently.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from concurrent.futures import Executor

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

# Modes Pillow resamples as they are (LA and RGBA go through premultiplied alpha around the
# whole resize, so cutting the passes apart would round the alpha differently; others are special).
BANDED_MODES = ("RGB", "L")


class Workers:
    """Threads that run all bands but one of each pass (the caller's thread runs that one).

    (Plain classes here, not dataclasses: creating a dataclass costs 0.5-2 ms of every cold start.)
    """

    __slots__ = ("pool", "bands")

    def __init__(self, pool: "Executor", bands: int) -> None:
        self.pool = pool
        self.bands = bands

    @classmethod
    def for_cpus(cls, cpus: int) -> "Workers | None":
        """One band per CPU; None with one CPU (threads would only take turns)."""
        if cpus < 2:
            return None
        from concurrent.futures import ThreadPoolExecutor  # only then (~1 ms of import)

        return cls(ThreadPoolExecutor(cpus - 1, thread_name_prefix="resize"), cpus)


def resize(image: Image.Image, size: tuple[int, int], resample: int, box: Box | None = None,
           workers: Workers | None = None) -> np.ndarray:
    """``image.resize(size, resample, box=box)`` as an (height, width, channels) uint8 array.

    With ``workers``, each pass is cut into up to ``workers.bands`` bands, one run here and
    the rest on the workers' pool (RGB and L images; other modes get Pillow's one call).
    """
    if workers is None or workers.bands < 2 or resample not in SUPPORT or image.mode not in BANDED_MODES:
        return np.asarray(image.resize(size, resample, box=box))
    box = box or (0, 0, image.width, image.height)
    passes = Passes(image.size, size, resample, tuple(float(np.float32(v)) for v in box), workers)
    if _horizontal_first(image.size, size):
        return np.asarray(passes.vertical(passes.horizontal(image, rows=passes.rows_read())))
    return np.asarray(passes.horizontal(passes.vertical(image, columns=passes.columns_read())))


def _horizontal_first(source: tuple[int, int], size: tuple[int, int]) -> bool:
    """Pillow 13's order (libImaging/Resample.c): vertical first only when the height shrinks
    by more than twice as many pixels as the width."""
    shrink_y, shrink_x = source[1] - size[1], source[0] - size[0]
    return not (shrink_y > 0 and shrink_y > 2 * shrink_x)


class Passes:
    """One resize's two passes, each run in bands."""

    __slots__ = ("source", "size", "resample", "box", "workers")

    def __init__(self, source: tuple[int, int], size: tuple[int, int], resample: int, box: Box, workers: Workers) -> None:
        self.source = source
        self.size = size
        self.resample = resample
        self.box = box  # as Pillow sees it (float32)
        self.workers = workers

    def horizontal(self, image: Image.Image, rows: tuple[int, int] | None = None) -> Image.Image:
        """Resample ``image``'s rows (those in ``rows``, others left black) to the output width."""
        x0, _, x1, _ = self.box
        if self.size[0] == self.source[0] and x0 == 0 and x1 == self.source[0]:
            return image  # Pillow skips this pass too
        width = self.size[0]

        def band(top: int, bottom: int) -> Image.Image:
            strip = image.crop((0, top, image.width, bottom))  # whole rows: the coefficients stay the same
            return strip.resize((width, bottom - top), self.resample, box=(x0, 0, x1, bottom - top))

        return self._assemble(band, rows or (0, image.height), (width, image.height), vertical=False)

    def vertical(self, image: Image.Image, columns: tuple[int, int] | None = None) -> Image.Image:
        """Resample ``image``'s columns (those in ``columns``, others left black) to the output height."""
        _, y0, _, y1 = self.box
        if self.size[1] == self.source[1] and y0 == 0 and y1 == self.source[1]:
            return image
        height = self.size[1]

        def band(left: int, right: int) -> Image.Image:
            strip = image.crop((left, 0, right, image.height))  # whole columns
            return strip.resize((right - left, height), self.resample, box=(0, y0, right - left, y1))

        return self._assemble(band, columns or (0, image.width), (image.width, height), vertical=True)

    def rows_read(self) -> tuple[int, int]:
        return _span_read(self.source[1], self.size[1], self.box[1], self.box[3], self.resample)

    def columns_read(self) -> tuple[int, int]:
        return _span_read(self.source[0], self.size[0], self.box[0], self.box[2], self.resample)

    def _assemble(self, band: Callable[[int, int], Image.Image], span: tuple[int, int], size: tuple[int, int],
                  vertical: bool) -> Image.Image:
        parts = _run(band, _cuts(*span, self.workers.bands), self.workers.pool)
        if len(parts) == 1 and (parts[0][1].size == size):
            return parts[0][1]
        canvas = Image.new(parts[0][1].mode, size)
        for start, part in parts:
            canvas.paste(part, (start, 0) if vertical else (0, start))
        return canvas


def _span_read(source_length: int, length: int, start: float, stop: float, resample: int) -> tuple[int, int]:
    """Source pixels [first, last) holding every one a pass can read along one axis, plus a margin.

    Pillow reads output pixel ``j`` from the source pixels within ``support * max(scale, 1)`` of
    its center ``start + (j + 0.5) * scale``; pixels the pass never reads may stay black.
    """
    support = SUPPORT[resample] * max((stop - start) / length, 1.0)
    return max(0, math.floor(start - support) - 2), min(source_length, math.ceil(stop + support) + 2)


def _cuts(start: int, stop: int, bands: int) -> list[tuple[int, int]]:
    bands = max(1, min(bands, (stop - start) // MIN_BAND))
    edges = [start + (stop - start) * i // bands for i in range(bands + 1)]
    return list(zip(edges, edges[1:]))


def _run(work: Callable[[int, int], Image.Image], cuts: list[tuple[int, int]],
         pool: "Executor") -> list[tuple[int, Image.Image]]:
    """``work`` over every cut: all but the first on the pool, the first here meanwhile."""
    futures = [(start, pool.submit(work, start, stop)) for start, stop in cuts[1:]]
    first = (cuts[0][0], work(*cuts[0]))
    return [first] + [(start, future.result()) for start, future in futures]
