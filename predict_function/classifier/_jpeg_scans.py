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
30 s of CPU). A sequential JPEG with every component in its first scan ends after it, as
nearly every camera and encoder writes them. (numpy counts the pairs ~3.5x faster than
``bytes.count``: ~0.25 ms per MB.)
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np

from .errors import PayloadTooLargeError

# Ten times a standard progression; a real encoder's file stays far below it.
MAX_JPEG_SCANS = 100


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
                    f"the JPEG has more than {self._limit} scans (a normal one has about 10): "
                    "refused, decoding it would take too long"
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
