"""A limit on the scans a JPEG may make the decoder run, counted as the decoder reads.

A progressive JPEG refines the image in scans; libjpeg's standard progression uses 10 (6 for
grayscale). The format lets a file repeat a scan, and libjpeg only warns about it while every
repeat walks all the image's blocks again: a 150 KB file of one tiny scan repeated holds
seconds of CPU per decode, far beyond the function's timeout at a few hundred KB ("LJT-01-003"
in libjpeg-turbo's report on the JPEG standard; the pixel limit cannot see it). So the decoder
reads the file through :class:`ScanLimitedReader`, which counts start-of-scan markers in what
passes and refuses the image before the decoder gets the data that would exceed the limit.

Counting ``FF DA`` byte pairs is an upper bound of the scans: entropy-coded data cannot hold
one (an ``FF`` there is always followed by ``00`` or a restart number), and only a metadata
segment (an EXIF thumbnail, an ICC profile) can add a few more, far below the limit. Only
JPEGs libjpeg reads in several scans need it (``decode._several_scans``): progressive ones, and
sequential ones whose components come in separate scans (there a repeat costs a full pass too,
and with arithmetic coding a flat image's repeat is ~11 bytes: a 13 KB file of 7000 x 7000 held
30 s of CPU; arithmetic-coded JPEGs are now refused before decoding, ``_file_limits.ARITHMETIC_SOF``). A sequential JPEG with every component in its first scan ends after it, as
nearly every camera and encoder writes them. (numpy counts the pairs ~3.5x faster than
``bytes.count``: ~0.25 ms per MB.)

The limit shrinks for large images (:func:`scan_limit`): a repeated scan costs a pass over the
blocks, ~1.2 ms per megapixel for the costliest kind (an AC refinement of a component at full
resolution), so 100 scans of a 49 MP image held ~5.7 s of CPU from a 200 KB Huffman-coded file
(7.5 s arithmetic-coded). Capping scans x pixels at SCAN_PIXEL_BUDGET keeps the worst file near
~1.5 s, the order of a real 50 MP decode, while real progressive JPEGs (libjpeg 10 scans, 6 gray;
mozjpeg 7, 3 gray) stay far below it at every size.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np

from .errors import PayloadTooLargeError

# Ten times a standard progression; a real encoder's file stays far below it.
MAX_JPEG_SCANS = 100
# Past 12.5 MP the limit is SCAN_PIXEL_BUDGET / pixels, but never below MIN_JPEG_SCANS (25 at 50 MP,
# the largest image allowed by default: 2.5 standard progressions).
SCAN_PIXEL_BUDGET = 1_250_000_000
MIN_JPEG_SCANS = 25


def scan_limit(pixels: int) -> int:
    """The most scans a JPEG of ``pixels`` (full size: a reduced decode still walks every block) may have."""
    return max(MIN_JPEG_SCANS, min(MAX_JPEG_SCANS, SCAN_PIXEL_BUDGET // max(1, pixels)))


class ScanLimitedReader:
    """Reads ``raw`` for a JPEG decoder; raises PayloadTooLargeError past ``limit`` scans."""

    def __init__(self, raw: BinaryIO, limit: int = MAX_JPEG_SCANS) -> None:
        self._raw = raw
        self._limit = limit
        self._after_ff = False  # the last byte read was FF: a DA next completes a marker
        self.scans = 0

    def read(self, size: int | None = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self.scans += _count_markers(data) + (self._after_ff and data[0] == 0xDA)
            self._after_ff = data[-1] == 0xFF
            if self.scans > self._limit:
                raise PayloadTooLargeError(
                    f"the JPEG has more than {self._limit} scans (a normal one has about 10; the limit is lower "
                    "for larger images): refused, decoding it would take too long"
                )
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._after_ff = False
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def _count_markers(data: bytes) -> int:
    """How many FF DA pairs ``data`` holds."""
    octets = np.frombuffer(data, dtype=np.uint8)
    return int(np.count_nonzero(octets[:-1][octets[1:] == 0xDA] == 0xFF))
