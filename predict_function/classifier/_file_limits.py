"""Work limits read from a file's own structure, before Pillow parses it.

Some of Pillow's parsers walk a file in Python, one step per structure the file lists, however few
pixels it has: the pixel and byte limits cannot see that cost. Each check here reads only the
structure (a few hundred bytes for a real file) and refuses a file that would make Pillow take
orders of magnitude more steps than any real one. The progressive-JPEG scan limit, which is
counted while libjpeg decodes, is in ``_jpeg_scans``; the same limit holds a JPEG-compressed TIFF's strips
here (``_check_jpeg_strips``). An arithmetic-coded JPEG is refused outright (see ``ARITHMETIC_SOF``).
A lossless WebP's Huffman code groups, which libwebp builds before any pixel, are counted in
``_webp_lossless``.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np

from . import _webp_lossless
from ._jpeg_scans import MAX_JPEG_SCANS, scan_limit
from .errors import PayloadTooLargeError, UnsupportedMediaError

# Pillow decodes an uncompressed TIFF strip by strip (or tile by tile) in Python, ~10 us each, and
# takes one per StripOffsets/TileOffsets entry however few pixels the image has (past the last row
# it starts over): at 2 bytes an entry, a 2-pixel TIFF of 15 MB held a minute of CPU and ~2 GB.
# A real file lists a few thousand at most (libtiff writes strips of ~8 KB).
MAX_TIFF_STRIPS = 65536
# Pillow also parses every entry of that directory in Python: a BigTIFF may list millions (700,000
# in 14 MB: ~0.6 s and ~0.2 GB). A real directory has tens.
MAX_TIFF_ENTRIES = 4096
TIFF_PREFIXES = (b"MM\x00*", b"II*\x00", b"MM*\x00", b"II\x00*", b"MM\x00+", b"II+\x00")  # Pillow's
_TIFF_OFFSETS_TAGS = (273, 324)  # StripOffsets, TileOffsets
# A JPEG-compressed TIFF (compression 7) is a JPEG stream per strip or tile, which libtiff hands to
# libjpeg without anything of ours in between: a strip may repeat a scan like a progressive JPEG
# file (libtiff stops at 100 scans a strip), and many strips may point at the same data. One strip
# of 7000 x 7000 at 99 scans, 200 KB, held 6.4 s of CPU (arithmetic-coded, 1.4 KB: 8.5 s). So the
# scans of every strip (FF DA pairs in its bytes, an upper bound as for a JPEG file) times its pixels
# are held to what a JPEG file of the image's size may cost (_jpeg_scans.scan_limit). Old-style
# JPEG in TIFF (compression 6, replaced in 1995 by TIFF Technical Note 2) is refused (415).
_TIFF_OLD_JPEG, _TIFF_JPEG = 6, 7
# Every integer type libtiff accepts for sizes, offsets and counts (BYTE, SHORT, LONG, SBYTE, SSHORT,
# SLONG, IFD, LONG8, SLONG8, IFD8): reading only the usual ones would let an odd type hide a tag.
_TIFF_TYPES = {1: "u1", 3: "u2", 4: "u4", 6: "i1", 8: "i2", 9: "i4", 13: "u4", 16: "u8", 17: "i8", 18: "u8"}
# A JPEG-compressed TIFF lists a strip per 8 or 16 rows, or a tile per 256 x 256: ~800 at 50 MP.
MAX_TIFF_JPEG_STRIPS = 8192

# Pillow reads a JPEG's header (everything before the first scan) in Python: a step per segment
# and per byte between segments (fill bytes, junk). A 15 MB file of empty APP segments or of fill
# bytes held ~5 s of CPU and up to ~0.5 GB. A real header has tens of segments (an ICC profile or
# extended XMP split into 64 KB chunks adds one per chunk) and no bytes between them.
MAX_JPEG_SEGMENTS = 1000
MAX_JPEG_LOOSE_BYTES = 65536
# Start-of-frame markers of arithmetic-coded JPEGs (SOF9-11, SOF13-15). Chrome and Firefox do not
# display them (both closed the request as WontFix) and cameras do not write them, but libjpeg decodes
# them, and arithmetic coding makes a repeated scan of a flat image a few bytes however many blocks it
# walks: at the scan limit (_jpeg_scans) a 434-byte file of 7000 x 7000 held 1.8 s of CPU (100 scans:
# 7.5 s); the Huffman-coded equivalent needs 193 KB. Refused (415) before Pillow or libjpeg reads them.
ARITHMETIC_SOF = frozenset((0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
# Pillow reads a GIF's extensions before its first image in Python (skipping stray bytes there one at
# a time) and keeps every comment sub-block: 15 MB of one-byte comments held ~1.4 s of CPU and ~0.5 GB
# (more than a 512 MB function has). A real GIF has a few extensions there (loop count, frame control,
# a comment, XMP) and no stray bytes.
MAX_GIF_BLOCKS = 65536
# Pillow reads every chunk of a PNG in Python, before the image, between IDATs and after them: 12 MB
# of empty ancillary chunks held ~2.5 s of CPU (1M chunks), empty IDATs ~0.9 s. A real file has tens
# of chunks plus its IDATs (libpng writes 8 KB each: ~1,900 in the largest file the byte cap lets in;
# an animated PNG adds two per frame).
MAX_PNG_CHUNKS = 65536
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The most compressed image data a PNG may carry: this times its filtered rows (twice for an animated
# PNG: the default image and the first frame), plus PNG_DATA_SLACK. See _check_png_image_data.
PNG_DATA_EXPANSION = 1.25
PNG_DATA_SLACK = 65536
# A 16-bit RGB PNG with a colour key (tRNS) is decoded twice (decode._apply_sixteen_bit_key), so its
# image data may be half the default download cap: inflating it costs no more than any other file at
# the cap. Before, 12 MB of empty Deflate blocks behind a black 1280 x 1280 keyed image (within 1.25x
# its rows) held 3.1-4 s of CPU, the costliest request allowed; at 7.5 MiB, 2.1-2.8 s (bench.worst_case).
PNG_KEYED_16_BIT_DATA = 15 * 1024 * 1024 // 2
# Compressed zTXt, iTXt and iCCP chunks in all: an ICC profile is tens to hundreds of KB, XMP text less.
MAX_PNG_COMPRESSED_METADATA = 2 * 1024 * 1024
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_ADAM7 = ((0, 8, 0, 8), (4, 8, 0, 8), (0, 4, 4, 8), (2, 4, 0, 4), (0, 2, 2, 4), (1, 2, 0, 2), (0, 1, 1, 2))  # x0, dx, y0, dy
# The markers Pillow's parser takes without a length (JpegImagePlugin.MARKER, no handler): JPG, RSTn,
# SOI, EOI (which does not stop it: it reads on to the first SOS) and JPGn. It refuses a marker below
# 0xC0 ("no marker found") and stops at the first SOS (libjpeg takes over).
_NO_LENGTH = frozenset(range(0xD0, 0xDA)) | {0xC8} | frozenset(range(0xF0, 0xFE))
_START_OF_SCAN = 0xDA
_START_OF_FRAME_LIST = [m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)]  # SOF0-15 (not DHT, JPG, DAC)


def check(source: BinaryIO, max_pixels: int) -> int | None:
    """Refuse (413) a TIFF, JPEG, GIF or PNG whose structure would hold Pillow's parser far beyond a real
    file's cost, or a lossless WebP that would hold libwebp so (``_webp_lossless``; an image over
    ``max_pixels`` is left to the pixel limit), and (415) an arithmetic-coded JPEG. Leaves ``source``'s
    position anywhere: the caller seeks back. Returns, for a JPEG, the number of components its first
    scan lists (None if none was found, or not a JPEG)."""
    source.seek(0)
    head = source.read(16)
    if head.startswith(TIFF_PREFIXES):
        _check_tiff_strips(source, head)
    elif head.startswith(b"\xff\xd8\xff"):
        return _check_jpeg_header(source)
    elif head[:6] in (b"GIF87a", b"GIF89a"):
        _check_gif_extensions(source, head)
    elif head.startswith(PNG_SIGNATURE):
        _check_png_chunks(source)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        _webp_lossless.check(source, max_pixels)
    return None


def _check_tiff_strips(source: BinaryIO, head: bytes) -> None:
    """More than MAX_TIFF_ENTRIES entries, or MAX_TIFF_STRIPS strips or tiles, in the first directory
    (the frame decoded)."""
    endian, order = ("<", "little") if head[:2] == b"II" else (">", "big")
    big = head[2] == 43  # BigTIFF, as Pillow tells it: 8-byte counts and offsets
    offset = head[8:16] if big else head[4:8]
    if len(offset) < (8 if big else 4) or int.from_bytes(offset, order) >= 2**63:  # Pillow's to refuse
        return
    source.seek(int.from_bytes(offset, order))
    entries = int.from_bytes(source.read(8 if big else 2), order)
    if entries > MAX_TIFF_ENTRIES:
        raise PayloadTooLargeError(f"the TIFF's directory has more than {MAX_TIFF_ENTRIES} entries (a real one has "
                                   "tens): refused, parsing it would take too long")
    entry = np.dtype([("tag", endian + "u2"), ("type", endian + "u2"),
                      ("count", endian + ("u8" if big else "u4")), ("value", f"V{8 if big else 4}")])
    table = source.read(entries * entry.itemsize)
    table = np.frombuffer(table, entry, count=len(table) // entry.itemsize)
    strips = table["count"][np.isin(table["tag"], _TIFF_OFFSETS_TAGS)]
    if strips.size and strips.max() > MAX_TIFF_STRIPS:
        raise PayloadTooLargeError(
            f"the TIFF has more than {MAX_TIFF_STRIPS} strips or tiles: refused, decoding it would take too long"
        )
    _check_tiff_data(_TiffDirectory(source, table, endian, order))


class _TiffDirectory:
    """The first directory's entries as libtiff reads them (the first of a repeated tag; libtiff
    ignores the others)."""

    def __init__(self, source: BinaryIO, table: np.ndarray, endian: str, order: str) -> None:
        self.source, self.table, self.endian, self.order = source, table, endian, order

    def values(self, tag: int) -> np.ndarray | None:
        """The tag's values (any integer type), or None if it is absent or not integers (libtiff refuses those)."""
        hits = np.flatnonzero(self.table["tag"] == tag)
        entry = self.table[hits[0]] if hits.size else None
        if entry is None or int(entry["type"]) not in _TIFF_TYPES:
            return None
        kind = np.dtype(self.endian + _TIFF_TYPES[int(entry["type"])])
        size, raw = int(entry["count"]) * kind.itemsize, bytes(entry["value"])
        if size > len(raw):  # stored elsewhere: the field holds its offset
            self.source.seek(int.from_bytes(raw, self.order))
            raw = self.source.read(size)
        return np.frombuffer(raw[:size], kind, count=min(size, len(raw)) // kind.itemsize).astype(np.int64)

    def value(self, tag: int, default: int = 0) -> int:
        values = self.values(tag)
        return int(values[0]) if values is not None and values.size else default


def _check_tiff_data(directory: _TiffDirectory) -> None:
    """For a compressed TIFF (libtiff decodes it): old-style JPEG (415); strips or tiles whose byte counts
    add up to more than the file (413: libtiff decodes each, so shared bytes multiply the work: 1 MB of
    empty Deflate blocks behind 64 one-pixel strips held 10 s of CPU, 65,536 of them would hold hours;
    with the bytes decoded at most the file's, 15 MB of such blocks cost ~2.4 s); and for JPEG
    compression, the checks of ``_check_jpeg_strips``."""
    compression = directory.value(259, 1)
    if compression == _TIFF_OLD_JPEG:
        raise UnsupportedMediaError("old-style JPEG compression in TIFF (compression 6, obsolete since 1995) is not "
                                    "supported: send the JPEG itself, or a TIFF with JPEG (7), LZW or Deflate compression")
    if compression == 1:
        return  # uncompressed: Pillow reads the strips itself (MAX_TIFF_STRIPS)
    width, height = directory.value(256), directory.value(257)
    size = directory.source.seek(0, io.SEEK_END)
    raw = b""  # the file's bytes, read once and only for JPEG strips
    # Strips and tiles both, whichever libtiff takes the file for (tiled when TileWidth or TileLength is there).
    # A strip's JPEG may be a whole strip tall where fewer rows are left (libtiff allows it; a JPEG codes
    # up to 32 rows at a time): up to RowsPerStrip, but not past the image's height rounded up to 64.
    layouts = ((273, 279, width, min(directory.value(278, height), -(-height // 64) * 64)),
               (324, 325, directory.value(322, width), directory.value(323, height)))
    for offsets_tag, counts_tag, segment_width, segment_height in layouts:
        offsets, counts = directory.values(offsets_tag), directory.values(counts_tag)
        if offsets is None or not offsets.size:
            continue
        starts = np.clip(offsets, 0, size)
        has_counts = counts is not None and counts.size == offsets.size
        ends = np.clip(offsets + counts, starts, size) if has_counts else np.full_like(starts, size)
        if int((ends - starts).sum()) > size:
            raise PayloadTooLargeError("the TIFF's strips or tiles add up to more bytes than the file holds (they share "
                                       "their data; a real file stores each once): refused, decoding it would take too long")
        if compression == _TIFF_JPEG:
            if not raw:
                directory.source.seek(0)
                raw = directory.source.read()
            _check_jpeg_strips(raw, starts, ends, (segment_width, segment_height), width * height)


def _check_jpeg_strips(raw: bytes, starts: np.ndarray, ends: np.ndarray, segment: tuple[int, int], pixels: int) -> None:
    """A JPEG-compressed TIFF's strips (or tiles), which libtiff hands to libjpeg as they are (413):
    more than MAX_TIFF_JPEG_STRIPS; scans (FF DA pairs in each strip's bytes, an upper bound as for a
    JPEG file) x strip pixels beyond what a JPEG file of the image's size may cost (_jpeg_scans.scan_limit;
    one 49 MP strip at 99 scans held 6.4 s of CPU); or any frame header in a strip larger than the
    strip: libtiff lets the last strip's frame be taller (of each plane), and a progressive frame is
    decoded whole (a 402-byte TIFF of 20000 x 1 whose strip said 20000 x 30000 held 1.1 GB). The frame
    headers are found as byte pairs (FF SOFn) anywhere in the strips, not by walking each stream:
    libjpeg skips junk that a walk would stop at. A table byte pair that looks like one can only make
    the check stricter. Any arithmetic-coded frame is refused (415), as in a JPEG file."""
    if starts.size > MAX_TIFF_JPEG_STRIPS:
        raise PayloadTooLargeError(f"the TIFF has more than {MAX_TIFF_JPEG_STRIPS} JPEG strips or tiles (a real one has "
                                   "hundreds): refused, decoding it would take too long")
    data = np.frombuffer(raw, np.uint8)
    markers = np.flatnonzero((data[:-1] == 0xFF) & (data[1:] == 0xDA))  # where each FF DA starts
    scans = np.maximum(np.searchsorted(markers, ends - 1) - np.searchsorted(markers, starts), 0)
    segment_width, segment_height = segment
    if scans.max() > MAX_JPEG_SCANS or int(scans.sum()) * segment_width * segment_height > scan_limit(pixels) * pixels:
        raise PayloadTooLargeError(
            "the TIFF's JPEG strips or tiles have more scans than an image of its size may (a normal one has "
            "one a strip): refused, decoding it would take too long"
        )
    frames = np.flatnonzero((data[:-8] == 0xFF) & np.isin(data[1:-7], _START_OF_FRAME_LIST))
    order = np.argsort(starts, kind="stable")
    first, reach = starts[order], np.maximum.accumulate(ends[order])  # how far the strips starting so far reach
    strip = np.searchsorted(first, frames, side="right") - 1
    frames = frames[(strip >= 0) & (frames + 9 <= reach[np.maximum(strip, 0)])]  # whole frame headers inside strips
    if np.isin(data[frames + 1], list(ARITHMETIC_SOF)).any():
        raise UnsupportedMediaError("the TIFF's JPEG strips are arithmetic-coded, which is not supported: "
                                    "send a standard (Huffman-coded) JPEG TIFF")
    heights = data[frames + 5].astype(np.int64) << 8 | data[frames + 6]
    widths = data[frames + 7].astype(np.int64) << 8 | data[frames + 8]
    if (heights > segment_height).any() or (widths > segment_width).any():
        raise PayloadTooLargeError(f"a JPEG strip or tile of the TIFF is larger than its {segment_width} x "
                                   f"{segment_height} pixels: refused, decoding it would take too much memory")


def _check_jpeg_header(source: BinaryIO) -> int | None:
    """More than MAX_JPEG_SEGMENTS segments, or MAX_JPEG_LOOSE_BYTES bytes between them, before the
    first scan (413), or an arithmetic-coded frame (415). Walks the header as Pillow does, seeking
    over each segment's payload. Returns the components the first scan lists (None: no scan)."""
    source.seek(2)  # past SOI
    segments = loose = 0
    while segments <= MAX_JPEG_SEGMENTS and loose <= MAX_JPEG_LOOSE_BYTES:
        byte = source.read(1)
        if byte != b"\xff":
            if not byte:
                return None  # truncated: Pillow's to report
            loose += 1
            continue
        marker = source.read(1)
        while marker == b"\xff" and loose <= MAX_JPEG_LOOSE_BYTES:  # fill bytes
            loose += 1
            marker = source.read(1)
        if not marker:
            return None
        if marker[0] == _START_OF_SCAN:
            scan = source.read(3)  # length, then the number of components in the scan
            return scan[2] if len(scan) == 3 else None
        if marker == b"\xff":
            break  # too many fill bytes
        if marker[0] in ARITHMETIC_SOF:
            raise UnsupportedMediaError("arithmetic-coded JPEGs are not supported (Chrome and Firefox do not "
                                        "display them either): send a standard (Huffman-coded) JPEG")
        segments += 1
        if marker[0] == 0x00:  # an escaped FF: junk to Pillow too
            loose += 1
        elif marker[0] < 0xC0:
            return None  # Pillow's to refuse
        elif marker[0] not in _NO_LENGTH:
            length = int.from_bytes(source.read(2), "big")
            if length < 2:
                return None  # Pillow's to refuse
            source.seek(length - 2, io.SEEK_CUR)
    raise PayloadTooLargeError(
        f"the JPEG header has more than {MAX_JPEG_SEGMENTS} segments or {MAX_JPEG_LOOSE_BYTES} bytes between "
        "them (a real one has tens and none): refused, parsing it would take too long"
    )


def _check_gif_extensions(source: BinaryIO, head: bytes) -> None:
    """More than MAX_GIF_BLOCKS extension blocks, data sub-blocks and stray bytes in all before the
    first image. Walks as Pillow does, which skips a byte that is not an extension ("!"), the image
    (",") or the end (";") one step at a time."""
    flags = head[10] if len(head) > 10 else 0
    source.seek(13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 13))  # past the global colour table
    blocks = 0
    while blocks <= MAX_GIF_BLOCKS:
        introducer = source.read(1)
        if introducer in (b"", b",", b";"):  # the image, the end, or the file's end
            return
        if introducer != b"!":
            blocks += 1  # a stray byte
            continue
        source.seek(1, io.SEEK_CUR)  # the extension's label
        size = b"!"
        while size not in (b"", b"\x00") and blocks <= MAX_GIF_BLOCKS:
            blocks += 1
            size = source.read(1)
            source.seek(size[0] if size else 0, io.SEEK_CUR)
    raise PayloadTooLargeError(
        f"the GIF has more than {MAX_GIF_BLOCKS} extension blocks or stray bytes before its image (a real one "
        "has a few blocks): refused, parsing it would take too long"
    )


def _check_png_chunks(source: BinaryIO) -> None:
    """More than MAX_PNG_CHUNKS chunks up to IEND, or in an animated PNG up to the second frame's fcTL,
    where Pillow stops reading for the first frame; more image data there than the pixels can need
    (_check_png_image_data); or more than MAX_PNG_COMPRESSED_METADATA bytes of compressed text and
    colour profiles (zTXt, compressed iTXt, iCCP: Pillow inflates each whole, and zlib's cost follows
    its input: 14 MB of empty Deflate blocks in one held 2.0-2.4 s). Reads each chunk's 8-byte header
    and seeks over its data and CRC (a URL's body is then downloaded before the decoder starts: PNG only)."""
    source.seek(len(PNG_SIGNATURE))
    chunks = data_bytes = metadata_bytes = 0
    animated = image_data = has_frames = keyed = False
    headers: list[bytes] = []
    while chunks <= MAX_PNG_CHUNKS:
        header = source.read(8)
        kind, length = header[4:], int.from_bytes(header[:4], "big")
        if len(header) < 8 or kind == b"IEND" or (kind == b"fcTL" and animated and image_data):
            _check_png_image_data(headers, data_bytes, has_frames, keyed)
            return  # the end, the next frame, or a truncated file (Pillow's to report)
        chunks += 1
        if kind == b"IHDR" and length >= 13:  # Pillow takes any, and the last before the image data
            fields = source.read(13)
            if len(fields) == 13:  # else truncated: Pillow's to report
                headers.append(fields)
            length -= 13
        if kind == b"acTL" and length >= 4:  # num_frames first: more than one, and Pillow animates
            frames = int.from_bytes(source.read(4), "big")
            animated, has_frames, length = 1 < frames <= 2**31, True, length - 4
        keyed |= kind == b"tRNS" and not image_data  # a later one is ignored (decode_image)
        if kind in (b"IDAT", b"DDAT", b"fdAT"):  # what Pillow's load_read takes as image data
            image_data = True
            data_bytes += length - 4 * (kind == b"fdAT")  # an fdAT starts with its sequence number
        if kind in (b"zTXt", b"iCCP") or (kind == b"iTXt" and _compressed_itxt(source, length)):
            metadata_bytes += length
            if metadata_bytes > MAX_PNG_COMPRESSED_METADATA:
                raise PayloadTooLargeError(
                    f"the PNG has more than {MAX_PNG_COMPRESSED_METADATA} bytes of compressed text or colour profile "
                    "(a real one has kilobytes): refused, decoding it would take too long"
                )
        source.seek(length + 4, io.SEEK_CUR)
    raise PayloadTooLargeError(
        f"the PNG has more than {MAX_PNG_CHUNKS} chunks (a real one has tens, plus its image data in chunks "
        "of 8 KB or more): refused, parsing it would take too long"
    )


def _compressed_itxt(source: BinaryIO, length: int) -> bool:
    """Whether the iTXt chunk whose data starts here is compressed (keyword, NUL, then the flag);
    leaves the position where it was."""
    at = source.tell()
    head = source.read(min(length, 81))
    source.seek(at)
    nul = head.find(b"\x00")
    return 0 <= nul < len(head) - 1 and head[nul + 1] == 1


def _png_row_bytes(fields: bytes) -> int:
    """The filtered rows an IHDR's image decodes to: a filter byte and the row, per Adam7 pass if interlaced."""
    width, height = int.from_bytes(fields[:4], "big"), int.from_bytes(fields[4:8], "big")
    bits = fields[8] * _PNG_CHANNELS.get(fields[9], 4)
    rows = 0
    for x0, dx, y0, dy in _ADAM7 if fields[12] == 1 else ((0, 1, 0, 1),):
        pass_width, pass_height = -(-max(width - x0, 0) // dx), -(-max(height - y0, 0) // dy)
        if pass_width and pass_height:
            rows += pass_height * (1 + -(-pass_width * bits // 8))
    return rows


def _check_png_image_data(headers: list[bytes], data_bytes: int, has_frames: bool, keyed: bool) -> None:
    """More compressed image data than PNG_DATA_EXPANSION x the filtered rows it decodes to (413),
    sized by the smallest of the IHDRs (a real file has one) and doubled when an acTL is there (the
    default image and a first frame); more than PNG_KEYED_16_BIT_DATA in a 16-bit RGB PNG with a colour
    key (``keyed``: a tRNS before the image data), which is decoded twice.

    zlib inflates at a cost set by its input, not its output: 14 MB of empty Deflate blocks behind a
    1 x 1 PNG held 2.2 s of CPU (4.3 s as a 16-bit RGB PNG with a colour key, which
    decode._apply_sixteen_bit_key decodes twice). A real encoder never writes much more than the rows
    themselves (stored blocks add 5 bytes in 65,535; fixed Huffman codes on noise ~10 %)."""
    if not headers:
        return  # no IHDR: Pillow's to refuse
    rows = min(_png_row_bytes(fields) for fields in headers)
    if data_bytes > rows * PNG_DATA_EXPANSION * (2 if has_frames else 1) + PNG_DATA_SLACK:
        raise PayloadTooLargeError(
            "the PNG holds more compressed image data than its pixels can need: refused, decoding it would take too long"
        )
    if keyed and data_bytes > PNG_KEYED_16_BIT_DATA and any(fields[8] == 16 and fields[9] == 2 for fields in headers):
        raise PayloadTooLargeError(
            f"the 16-bit RGB PNG with a colour key holds more than {PNG_KEYED_16_BIT_DATA} bytes of compressed image "
            "data (it is decoded twice): refused, decoding it would take too long; save it without the key or in 8 bits"
        )
