"""Crafted image files for hostile-input tests and the soak: bombs whose headers lie, hand-built PNGs.

Shared by bench/soak.py and tests/lambda/test_hostile.py.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL
from PIL import Image


def builds_folder(folder: Path, *builders: str) -> Path:
    """``folder``/<key> for files built by the code in ``builders`` (source files), the key a hash of that
    code and Pillow's version: a change to a builder rebuilds its files instead of measuring old ones.
    Anything else in ``folder`` (older keys' files) is removed."""
    digest = hashlib.sha256(PIL.__version__.encode())
    for builder in builders:
        digest.update(Path(builder).read_bytes())
    keyed = folder / digest.hexdigest()[:12]
    if folder.is_dir():
        for old in folder.iterdir():
            if old != keyed:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
    keyed.mkdir(parents=True, exist_ok=True)
    return keyed


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_keyed(data: bytes, key: bytes) -> bytes:
    """``data`` (a PNG) with a tRNS chunk holding ``key`` (a colour key) right before its image data."""
    at = data.index(b"IDAT") - 4
    return data[:at] + png_chunk(b"tRNS", key) + data[at:]


def png_header_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A 70-byte PNG whose header claims 50000x50000 RGB (7.5 GB decoded)."""
    return png(width, height, 8, 2, zlib.compress(b"\x00" * 64))


def png_chunk_bomb(chunks: int = 1_000_000, kind: bytes = b"abCd", where: str = "before") -> bytes:
    """A valid 8x8 RGB PNG with ``chunks`` empty chunks of ``kind`` (an unknown ancillary chunk by default;
    ``IDAT`` for empty image-data chunks), ``where`` = before its image data or after it: Pillow reads
    each one in Python."""
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    idat = png_chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + b"\x80" * 24 for _ in range(8))))
    filler = png_chunk(kind, b"") * chunks
    body = filler + idat if where == "before" else idat + filler
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + body + png_chunk(b"IEND", b"")


def apng(frames: int) -> bytes:
    """An animated 1x1 RGB PNG of ``frames`` frames (acTL, then fcTL + IDAT, then fcTL + fdAT per frame)."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80\x80\x80")
    sequence = iter(range(2 * frames))

    def fctl() -> bytes:
        return png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", next(sequence), 1, 1, 0, 0, 1, 10, 0, 0))

    out = [png_chunk(b"IHDR", ihdr), png_chunk(b"acTL", struct.pack(">II", frames, 0)), fctl(),
           png_chunk(b"IDAT", pixels)]
    for _ in range(frames - 1):
        out += [fctl(), png_chunk(b"fdAT", struct.pack(">I", next(sequence)) + pixels)]
    return b"\x89PNG\r\n\x1a\n" + b"".join(out) + png_chunk(b"IEND", b"")


def png_real_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A complete, valid 1-bit PNG of 400 M pixels that is ~50 KB on disk (all zeros)."""
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    block = row * 256
    parts = [compressor.compress(block) for _ in range(height // 256)]
    parts += [compressor.compress(row * (height % 256)), compressor.flush()]
    return png(width, height, 1, 0, b"".join(parts))


def gif_header_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A 35-byte GIF whose logical screen and frame claim 50000x50000."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def jpeg_header_bomb() -> bytes:
    """A tiny JPEG whose start-of-frame claims 65000x65000."""
    data = bytearray(encode(Image.new("RGB", (8, 8), (10, 200, 10)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 65000, 65000)
    return bytes(data)


def bmp_header_bomb() -> bytes:
    data = bytearray(encode(Image.new("RGB", (8, 8)), "BMP"))
    struct.pack_into("<ii", data, 18, 60000, 60000)
    return bytes(data)


def tiff_header_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A hand-made 200-byte grayscale TIFF claiming 60000x60000 with one 16-byte strip."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 24) + b"\x00" * 16 + ifd


def tiff_strip_bomb(strips: int = 1_000_000, prefix: bytes = b"II*\x00") -> bytes:
    """A 1x2 gray, uncompressed TIFF of a row a strip whose StripOffsets lists ``strips`` strips, all
    the same byte (2 bytes an entry, ~2 MB by default): Pillow takes a tile per entry, starting over
    past the last row, and decodes each in Python (~10 us). ``prefix``: II*, MM*, or II+ (BigTIFF)."""
    big = prefix[2] == 43  # BigTIFF, as Pillow tells it
    endian = "<" if prefix[:2] == b"II" else ">"
    entry, count_format = (endian + "HHQQ", "Q") if big else (endian + "HHLL", "H")
    tags = [(256, 4, 1, 1), (257, 4, 1, 2), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 3, strips, 0), (277, 3, 1, 1), (278, 4, 1, 1)]
    head = prefix + (struct.pack(endian + "HHQ", 8, 0, 16) if big else struct.pack(endian + "L", 8))
    ifd_size = struct.calcsize(endian + count_format) + len(tags) * struct.calcsize(entry) + (8 if big else 4)
    pixel = len(head) + ifd_size
    array = pixel + 2
    values = [(tag, kind, count, array if tag == 273 else value) for tag, kind, count, value in tags]
    if not big and endian == ">":  # a SHORT held in the entry sits in its first 2 bytes
        values = [(t, k, c, v << 16 if k == 3 and c == 1 else v) for t, k, c, v in values]
    ifd = struct.pack(endian + count_format, len(tags)) + b"".join(struct.pack(entry, *v) for v in values)
    return head + ifd + bytes(8 if big else 4) + b"\x80\x00" + np.full(strips, pixel, endian + "u2").tobytes()


def jpeg_header_padding_bomb(segments: int = 3_700_000, fill: int = 0, segment: bytes = b"\xff\xe5\x00\x02") -> bytes:
    """A valid 8x8 JPEG with ``segments`` empty APP5 segments (4 bytes each) and ``fill`` FF fill
    bytes before its own header: Pillow walks both in Python (~1.3 us a segment, ~0.4 us a byte).
    ``segment``: another one to repeat, e.g. a marker Pillow takes without a length (SOI, EOI, JPGn)."""
    small = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "JPEG")
    return small[:2] + segment * segments + b"\xff" * fill + small[2:]


def gif_extension_bomb(extensions: int = 3_000_000, payload: bytes = b"\x01x", stray: bytes = b"") -> bytes:
    """A valid 8x8 GIF with ``extensions`` comment extensions before its image, each holding
    ``payload`` (sub-blocks) then the terminator: Pillow walks and keeps them all in Python.
    ``stray``: bytes before the extensions, which Pillow skips one at a time."""
    small = encode(Image.new("P", (8, 8), 1), "GIF")
    flags = small[10]
    start = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # past the global colour table
    return small[:start] + stray + (b"!\xfe" + payload + b"\x00") * extensions + small[start:]


def tiff_associated_alpha(image: Image.Image, **kw) -> bytes:
    """``image`` (mode LA) as a little-endian TIFF whose alpha is marked associated (premultiplied,
    ExtraSamples 1), which Pillow opens as mode La; Pillow itself writes LA as unassociated."""
    data = bytearray(encode(image, "TIFF", **kw))
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        if struct.unpack_from("<H", data, ifd + 2 + 12 * i)[0] == 338:  # ExtraSamples: 2 -> 1
            struct.pack_into("<H", data, ifd + 2 + 12 * i + 8, 1)
    return bytes(data)


def webp_header_bomb() -> bytes:
    """A lossless WebP whose VP8L header claims 16384x16384 (the format's maximum)."""
    data = bytearray(encode(Image.new("RGBA", (8, 8)), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = struct.unpack_from("<I", data, 21)[0]
    struct.pack_into("<I", data, 21, (bits & ~0xFFFFFFF) | 16383 | (16383 << 14))
    return bytes(data)


def png_rgb16(image: Image.Image) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write these, so build it by hand)."""
    array = np.asarray(image.convert("RGB"), np.uint16) * 257
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in array)
    return png(array.shape[1], array.shape[0], 16, 2, zlib.compress(raw))


def jpeg_segments(data: bytes):
    """(marker, bytes) for each segment after SOI; a scan's bytes include its entropy-coded data."""
    i = 2
    while i < len(data):
        marker = data[i + 1]
        if marker == 0xD9:
            yield marker, data[i:i + 2]
            return
        end = i + 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xDA:
            while True:  # entropy-coded data runs to the next marker that is not FF00 or a restart
                end = data.index(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        yield marker, data[i:end]
        i = end


def jpeg_repeat_last_scan(data: bytes, times: int) -> bytes:
    """The same JPEG with its last scan repeated ``times`` more times: libjpeg decodes every repeat
    (it only warns), each a full pass over the image's blocks."""
    parts = list(jpeg_segments(data))
    last = max(i for i, (marker, _) in enumerate(parts) if marker == 0xDA)
    return data[:2] + b"".join(chunk * (times + 1) if i == last else chunk for i, (_, chunk) in enumerate(parts))


def jpeg_scan_bomb(width: int = 1500, height: int = 1500, repeats: int = 3000) -> bytes:
    """A progressive gray JPEG whose last scan (a few bytes of end-of-band runs) is repeated:
    ~100 KB that costs `repeats` passes over the image when nothing limits the scans."""
    return jpeg_repeat_last_scan(encode(Image.new("L", (width, height), 128), "JPEG", progressive=True), repeats)


def jpeg_sequential_scans(width: int = 1024, height: int = 1024, repeats: int = 0) -> bytes:
    """A mid-gray sequential (baseline) JPEG with its 3 components in separate scans, the first scan
    repeated ``repeats`` more times (hand-built: Pillow writes every component in one scan). libjpeg
    reads any number of scans of such a frame, each a full pass over the blocks; arithmetic coding
    makes a repeat of a flat image ~11 bytes (a 13 KB file of 7000 x 7000 held 30 s of CPU), this
    Huffman one 2 bits a block (one-code tables: DC difference 0, end of block)."""
    def segment(marker: int, payload: bytes) -> bytes:
        return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload

    blocks = -(-width // 8) * -(-height // 8)
    bits = "00" * blocks + "1" * (-2 * blocks % 8)  # a byte of all ones cannot occur: no FF to stuff
    data = int(bits, 2).to_bytes(len(bits) // 8, "big")
    header = (b"\xff\xd8" + segment(0xDB, b"\x00" + b"\x01" * 64)
              + segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + b"".join(bytes((i, 0x11, 0)) for i in (1, 2, 3)))
              + segment(0xC4, b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00")  # DC table 0: one code, category 0
              + segment(0xC4, b"\x10" + b"\x01" + b"\x00" * 15 + b"\x00"))  # AC table 0: one code, end of block
    scans = [segment(0xDA, bytes((1, i, 0x00, 0, 63, 0))) + data for i in (1, 2, 3)]
    return header + scans[0] * (repeats + 1) + scans[1] + scans[2] + b"\xff\xd9"


def bmp_rle8(width: int, height: int, data: bytes | None = None) -> bytes:
    """A run-length-encoded 8-bit BMP whose rows each hold one pixel then end (4 bytes a row): Pillow
    pads every row to its width one byte at a time in Python. ``data``: other RLE codes instead."""
    rows = b"\x01\x07\x00\x00" * height + b"\x00\x01" if data is None else data
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows


def exif_with_odd_tag(orientation: int) -> bytes:
    """An EXIF block (APP1/eXIf payload) with ``orientation`` and ResolutionUnit stored as a LONG of
    100000 (Pillow's table says SHORT): rewriting it, as ImageOps.exif_transpose does after turning
    the image, raises struct.error (phone photos with such tags: Pillow issues #4037, #8965)."""
    entries = struct.pack("<HHLHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<HHLL", 0x0128, 4, 1, 100000)
    return b"Exif\x00\x00II*\x00" + struct.pack("<LH", 8, 2) + entries + struct.pack("<L", 0)


# Arithmetic-coded JPEGs of a flat 64 x 48 RGB image (200, 30, 90), made with libjpeg-turbo 2.1.5's
# `cjpeg -arithmetic -quality 90 [-progressive]` (Debian libjpeg-turbo-progs; Pillow cannot write
# arithmetic coding). Real files: Pillow decodes both to (200, 31, 90) when nothing refuses them.
_ARITHMETIC_JPEG = {
    False: (
        "ffd8ffe000104a46494600010100000100010000ffdb0043000302020302020303030304030304050805050404050a07"
        "0706080c0a0c0c0b0a0b0b0d0e12100d0e110e0b0b1016101113141515150c0f171816141812141514ffdb0043010304"
        "0405040509050509140d0b0d141414141414141414141414141414141414141414141414141414141414141414141414"
        "1414141414141414141414141414ffc90011080030004003012200021101031101ffcc000a0010100501101105ffda00"
        "0c03010002110311003f00ff00d20008cc40f34bf1ffd9"
    ),
    True: (
        "ffd8ffe000104a46494600010100000100010000ffdb0043000302020302020303030304030304050805050404050a07"
        "0706080c0a0c0c0b0a0b0b0d0e12100d0e110e0b0b1016101113141515150c0f171816141812141514ffdb0043010304"
        "0405040509050509140d0b0d141414141414141414141414141414141414141414141414141414141414141414141414"
        "1414141414141414141414141414ffca0011080030004003012200021101031101ffcc000600100110ffda000c030100"
        "02100310000001ff00a511b817938a50ffcc00041005ffda0008010100010502a8ffcc00041105ffda0008010301013f"
        "01c0ffcc00041105ffda0008010201013f01c0ffcc00041005ffda0008010100063f02a8ffcc00041005ffda00080101"
        "00013f21a8ffda000c03010002000300000010ff00ff00ff00ff00ff00ff00ff00ff00ff0080ffcc00041105ffda0008"
        "010301013f10c0ffcc00041105ffda0008010201013f10c0ffcc00041005ffda0008010100013f10a8ffd9"
    ),
}


def jpeg_arithmetic(progressive: bool = False) -> bytes:
    """A real arithmetic-coded JPEG (SOF9, or SOF10 when ``progressive``), 64 x 48."""
    return bytes.fromhex(_ARITHMETIC_JPEG[progressive])


def tiff_jpeg_strips(jpeg: bytes, width: int, height: int, strips: int = 1, compression: int = 7,
                     tile: int | None = None, shared: bool = False, rows: int | None = None) -> bytes:
    """A gray TIFF of ``width`` x ``height`` with JPEG compression (7; 6 for old-style JPEG; or any
    other, e.g. 8 with a zlib stream as ``jpeg``) whose ``strips`` strips of ``rows`` rows (default
    ``ceil(height / strips)``; or, with ``tile``, its tiles of ``tile`` x ``tile``) each hold a copy
    of the stream ``jpeg`` (``shared``: all point at one copy). libtiff hands each strip's bytes to
    libjpeg, so a progressive JPEG with repeated scans makes every strip repeat them."""
    if tile is not None:
        strips = -(-width // tile) * -(-height // tile)
    n_tags = 10 if tile is not None else 9
    arrays_at = 8 + 2 + n_tags * 12 + 4
    data_at = arrays_at + 8 * strips
    def entry(tag: int, kind: int, count: int, value: int) -> bytes:
        return struct.pack("<HHL", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<L", value))
    one_strip = strips == 1
    offsets = entry(324 if tile else 273, 4, strips, data_at if one_strip else arrays_at)
    counts = entry(325 if tile else 279, 4, strips, len(jpeg) if one_strip else arrays_at + 4 * strips)
    layout = ([entry(322, 4, 1, tile), entry(323, 4, 1, tile), offsets, counts] if tile is not None
              else [offsets, entry(278, 4, 1, rows or -(-height // strips)), counts])
    tags = sorted([entry(256, 4, 1, width), entry(257, 4, 1, height), entry(258, 3, 1, 8), entry(259, 3, 1, compression),
                   entry(262, 3, 1, 1), entry(277, 3, 1, 1), *layout], key=lambda e: struct.unpack("<H", e[:2])[0])
    starts = [data_at] * strips if shared else [data_at + i * len(jpeg) for i in range(strips)]
    arrays = struct.pack(f"<{strips}L", *starts) + struct.pack(f"<{strips}L", *([len(jpeg)] * strips))
    body = jpeg if shared else jpeg * strips
    return b"II*\x00" + struct.pack("<LH", 8, n_tags) + b"".join(tags) + struct.pack("<L", 0) + arrays + body


def lsb_bits(value: int, count: int) -> str:
    return "".join(str((value >> i) & 1) for i in range(count))


def pack_lsb_first(bits: str) -> bytes:
    """A string of '0'/'1' as bytes, each byte filled from its least significant bit (Deflate's and VP8L's order)."""
    return np.packbits(np.frombuffer(bits.encode(), np.uint8) - 48, bitorder="little").tobytes()


# One empty (not final) dynamic-Huffman Deflate block: it decodes to nothing, but zlib builds its
# code tables each time (HLIT 257, HDIST 1, code lengths for symbols 0/1/18 only, then 256 = end).
_EMPTY_DYNAMIC_BLOCK = (
    lsb_bits(0, 1) + lsb_bits(2, 2) + lsb_bits(0, 5) + lsb_bits(0, 5) + lsb_bits(14, 4)
    + "".join(lsb_bits({18: 1, 0: 2, 1: 2}.get(s, 0), 3) for s in (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1))
    + "11" + "0" + lsb_bits(127, 7) + "0" + lsb_bits(106, 7) + "11" + "10" + "1"
)


def zlib_with_empty_blocks(size: int, payload: bytes, compress: bool = False) -> bytes:
    """A zlib stream of ~``size`` bytes of empty dynamic Deflate blocks, then ``payload`` in stored
    blocks (or Deflate-compressed, ``compress``): inflating it costs ~0.16 s of CPU per MB of the
    empty blocks whatever the payload (a red-team's find)."""
    pieces = [] if compress else [payload[i:i + 65535] for i in range(0, len(payload), 65535)] or [b""]
    bits = _EMPTY_DYNAMIC_BLOCK * (size * 8 // len(_EMPTY_DYNAMIC_BLOCK))
    bits += ("1" if len(pieces) == 1 else "0") + "00"  # the first stored block's header, then byte alignment
    bits += "0" * (-len(bits) % 8)
    out = [pack_lsb_first(bits)]
    if compress:  # that first stored block empty, then the payload as raw Deflate (its own final block)
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        out += [struct.pack("<HH", 0, 0xFFFF), deflate.compress(payload), deflate.flush()]
    for i, piece in enumerate(pieces):
        if i:
            out.append(bytes((i == len(pieces) - 1,)))  # BFINAL, BTYPE 00 (stored), padding
        out.append(struct.pack("<HH", len(piece), 0xFFFF ^ len(piece)) + piece)
    return b"\x78\x01" + b"".join(out) + struct.pack(">L", zlib.adler32(payload))


# VP8L (RFC 9649) pieces for the lossless WebP builders below, as bit strings in stream order.
_VP8L_CODE_LENGTH_ORDER = (17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
_VP8L_SIMPLE = "1" + "0" + "0" + "0"  # a simple code of one symbol (0): no bits per use


def _vp8l_header(side: int) -> str:
    return lsb_bits(0x2F, 8) + lsb_bits(side - 1, 14) + lsb_bits(side - 1, 14) + lsb_bits(0, 4)


def _vp8l_normal_code(lengths: dict, body: str) -> str:
    """A normal code: the code-length code of ``lengths`` (code length symbol -> its length), then ``body``
    (the code lengths of the symbols, coded with it)."""
    k = max(_VP8L_CODE_LENGTH_ORDER.index(s) for s in lengths) + 1
    return ("0" + lsb_bits(k - 4, 4) + "".join(lsb_bits(lengths.get(s, 0), 3) for s in _VP8L_CODE_LENGTH_ORDER[:k])
            + "0" + body)


def _vp8l_all8(n: int) -> str:
    """A code of ``n`` symbols: 0-255 of length 8 (code = symbol), the rest absent."""
    return _vp8l_normal_code({0: 1, 8: 1}, "1" * 256 + "0" * (n - 256))


def webp_lossless_groups(long_codes: bool = False, side: int = 1024, cache_bits: int = 11, container: str = "VP8L",
                         groups: int = 65536) -> bytes:
    """A lossless WebP (VP8L) of ``side`` x ``side`` whose entropy image (4 x 4 tiles) names ``groups``
    Huffman code groups, each with a colour cache of ``cache_bits``: libwebp builds tables for every
    group before the first pixel (a red-team's find: 1 MP held 2.5 s of CPU and 364 MB with one-symbol
    codes, 288 KB; 5.4-6 s and ~1 GB with long codes, 11.5 MB). ``container``: "VP8L" (a plain
    lossless file), "ALPH" (the same stream as a lossy WebP's alpha) or "ANMF" (the first frame of an
    animation). Refused since _webp_lossless (MAX_CODE_GROUPS)."""

    def msb(code: int, count: int) -> str:
        return "".join(str((code >> i) & 1) for i in range(count - 1, -1, -1))

    def big_green(n: int) -> str:  # n symbols of lengths 11 and 12
        n12, codes = 2 * (n - 2048), {16: "0", 11: "10", 12: "11"}

        def run(symbol: int, count: int) -> str:
            out, count = codes[symbol], count - 1
            while count >= 6:
                out, count = out + codes[16] + lsb_bits(3, 2), count - 6
            while count >= 3:
                out, count = out + codes[16] + lsb_bits(0, 2), count - 3
            return out + codes[symbol] * count
        return _vp8l_normal_code({16: 1, 11: 2, 12: 2}, run(11, n - n12) + run(12, n12))

    simple = _VP8L_SIMPLE
    tiles = side // 4
    bits = _vp8l_header(side) + "0"  # no transform
    bits += "1" + lsb_bits(cache_bits, 4) + "1" + lsb_bits(0, 3)  # colour cache; meta codes, 4 x 4 tiles
    bits += "0" + _vp8l_all8(280) + _vp8l_all8(256) + simple * 3  # the entropy image's own codes (no cache)
    named = [i % groups for i in range(tiles * tiles)]
    bits += "".join(msb(i & 255, 8) + msb(i >> 8, 8) for i in named)  # tile i -> group i (mod groups)
    group = (big_green(280 + (1 << cache_bits)) if long_codes else simple) + simple * 4
    bits += group * groups + "0" * (11 * side * side if long_codes else 0) + "0" * 64
    return _webp_container(pack_lsb_first(bits), side, container)


def webp_chunk(kind: bytes, data: bytes) -> bytes:
    """A RIFF chunk of a WebP file (padded to an even length)."""
    return kind + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)


def webp_riff(chunks: bytes) -> bytes:
    """A WebP file of these chunks."""
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def _webp_container(vp8l: bytes, side: int, container: str) -> bytes:
    """A VP8L stream (with its 5-byte header) as a WebP file: plain, as the alpha of a lossy side x side
    image (ALPH, compressed losslessly, then a real VP8 frame), or as an animation's first frame."""
    if container == "VP8L":
        chunks = webp_chunk(b"VP8L", vp8l)
    elif container == "ALPH":
        lossy = encode(Image.new("RGB", (side, side), (90, 120, 150)), "WEBP", quality=50)
        vp8x = webp_chunk(b"VP8X", struct.pack("<I", 0x10) + (side - 1).to_bytes(3, "little") * 2)
        chunks = vp8x + webp_chunk(b"ALPH", b"\x01" + vp8l[5:]) + lossy[12:]
    else:
        vp8x = webp_chunk(b"VP8X", struct.pack("<I", 0x02) + (side - 1).to_bytes(3, "little") * 2)
        frame = bytes(6) + (side - 1).to_bytes(3, "little") * 2 + (100).to_bytes(3, "little") + b"\0"
        chunks = vp8x + webp_chunk(b"ANIM", bytes(6)) + webp_chunk(b"ANMF", frame + webp_chunk(b"VP8L", vp8l))
    return webp_riff(chunks)


def webp_lossless_walk(side: int = 4096, block_bits: int = 2, seed: int = 0) -> bytes:
    """A lossless WebP of ``side`` x ``side`` whose predictor transform has blocks of 2^``block_bits``,
    so a sub-image of (side / 2^block_bits)^2 pixels, all literals of random 8-bit codes: the costliest
    file for _webp_lossless's walk per pixel. The image itself takes no bits (one-symbol codes)."""
    sub = (side + (1 << block_bits) - 1) >> block_bits
    symbols = np.random.default_rng(seed).integers(0, 256, sub * sub * 4, dtype=np.uint8)
    literals = (np.unpackbits(symbols) + 48).tobytes().decode()  # each code's bits, most significant first
    bits = _vp8l_header(side) + "1" + lsb_bits(0, 2) + lsb_bits(block_bits - 2, 3)  # a predictor transform
    # its sub-image: no cache; green, red, blue, alpha, distance; the pixels
    bits += "0" + _vp8l_all8(280) + _vp8l_all8(256) * 3 + _VP8L_SIMPLE + literals
    bits += "0" + "0" + "0" + _VP8L_SIMPLE * 5 + "0" * 64  # no other transform, no cache, one code group
    return _webp_container(pack_lsb_first(bits), side, "VP8L")
