"""A limit on the Huffman code groups a lossless WebP makes libwebp build, counted before it decodes.

A lossless WebP (a ``VP8L`` chunk, or the ``ALPH`` chunk that holds a lossy WebP's alpha) may cut its
image into tiles and give each tile its own group of five Huffman codes: a small sub-image, the
entropy image, names a group per tile, up to 65,536 groups. libwebp reads and builds every group
named before the first pixel, ~34 us of CPU and up to ~20 KB of tables each, which the pixel limit
cannot see: a 1 MP file naming 65,536 groups held 2.2-2.7 s of CPU and ~360 MB (288 KB of one-symbol
codes; as a lossy WebP's alpha or an animation's first frame the same), 5.3-5.9 s and ~1 GB with long
codes (11.5 MB). libwebp's encoder (since 0.2, 2012) keeps the entropy image to at most 2,600 tiles
and clusters them into far fewer groups: 4-170 in real photos at 1-50 MP, at every effort level. So
:func:`check` finds the entropy image of the first frame's lossless stream (the frame the function
decodes), decodes it here and refuses (413) a stream naming more than ``MAX_CODE_GROUPS``: at that
limit the groups cost ~0.2-0.35 s and ~30-80 MB.

The entropy image follows the transforms' own sub-images (predictor, colour transform, palette),
which carry no length: finding it means decoding them (only their bits, not their pixels). That is
done in Python, up to ~1.3 us a pixel at most, so the sub-image pixels the walk decodes are limited too
(``walk_limit``, at twice what libwebp writes at most: ~1-1.3 s at 50 MP), and the entropy image,
decoded with its pixels, to ``MAX_ENTROPY_TILES``. Real files take a few ms to ~50 ms (50 MP).
A stream that is not valid VP8L where the walk reads is left to libwebp, which stops at the same
place. The bitstream is RFC 9649's; the walk follows libwebp's decoder (src/dec/vp8l_dec.c) and its
demuxer (which takes a frame's first ALPH chunk).
"""

from __future__ import annotations

import io
from array import array
from typing import BinaryIO, NamedTuple

import numpy as np

from .errors import PayloadTooLargeError

# 24x the most seen in a real photo; libwebp's encoder can name ~2,600 at most.
MAX_CODE_GROUPS = 4096
# Sub-image pixels this walk may decode: a 64th of the image's pixels, at least MIN_WALK_PIXELS
# (walk_limit). libwebp writes at most ~1/128 (two transforms of 16 x 16 blocks; 209,000 pixels at
# 50 MP, 47,000 at 12 MP); the walk costs ~1.3 us a pixel at worst, ~1 s at 50 MP.
MIN_WALK_PIXELS = 1 << 18
WALK_FRACTION = 64
# Tiles of the entropy image (decoded here with its pixels, ~2.5 us a tile): libwebp's encoder writes at
# most 2,600.
MAX_ENTROPY_TILES = 1 << 16
# Chunks a WebP may have before its first frame's image: a real one has a few (VP8X, ICCP, ANIM, EXIF, XMP).
MAX_CHUNKS_BEFORE_IMAGE = 1024

_NOT_LITERAL, _CACHE_SYMBOLS = 256, 280  # green symbols from 256 are copy lengths, from 280 cache indexes
_ALPHABETS = (280, 256, 256, 256, 40)  # green (+ the colour cache), red, blue, alpha, distance
_CODE_LENGTH_ORDER = (17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
_REPEATS = ((2, 3), (3, 3), (7, 11))  # code length codes 16, 17, 18: (extra bits, offset)
# Distance codes 1-120 -> (y << 4) | (8 - x) of a nearby pixel (libwebp's kCodeToPlane).
_CODE_TO_PLANE = bytes((
    0x18, 0x07, 0x17, 0x19, 0x28, 0x06, 0x27, 0x29, 0x16, 0x1A, 0x26, 0x2A, 0x38, 0x05, 0x37, 0x39, 0x15, 0x1B, 0x36, 0x3A,
    0x25, 0x2B, 0x48, 0x04, 0x47, 0x49, 0x14, 0x1C, 0x35, 0x3B, 0x46, 0x4A, 0x24, 0x2C, 0x58, 0x45, 0x4B, 0x34, 0x3C, 0x03,
    0x57, 0x59, 0x13, 0x1D, 0x56, 0x5A, 0x23, 0x2D, 0x44, 0x4C, 0x55, 0x5B, 0x33, 0x3D, 0x68, 0x02, 0x67, 0x69, 0x12, 0x1E,
    0x66, 0x6A, 0x22, 0x2E, 0x54, 0x5C, 0x43, 0x4D, 0x65, 0x6B, 0x32, 0x3E, 0x78, 0x01, 0x77, 0x79, 0x53, 0x5D, 0x11, 0x1F,
    0x64, 0x6C, 0x42, 0x4E, 0x76, 0x7A, 0x21, 0x2F, 0x75, 0x7B, 0x31, 0x3F, 0x63, 0x6D, 0x52, 0x5E, 0x00, 0x74, 0x7C, 0x41,
    0x4F, 0x10, 0x20, 0x62, 0x6E, 0x30, 0x73, 0x7D, 0x51, 0x5F, 0x40, 0x72, 0x7E, 0x61, 0x6F, 0x50, 0x71, 0x7F, 0x60, 0x70,
))
_PREDICTOR, _CROSS_COLOR, _SUBTRACT_GREEN, _PALETTE = range(4)


class _Malformed(Exception):
    """Not valid VP8L where the walk reads: libwebp refuses the stream there too."""


def walk_limit(pixels: int) -> int:
    """The most sub-image pixels the walk decodes for an image of ``pixels``."""
    return max(MIN_WALK_PIXELS, pixels // WALK_FRACTION)


def check(source: BinaryIO, max_pixels: int) -> None:
    """Refuse (413) a WebP whose first frame's lossless stream names more than MAX_CODE_GROUPS code groups,
    or has more than ``walk_limit`` sub-image pixels before them; or with more than
    MAX_CHUNKS_BEFORE_IMAGE chunks before that frame. A stream of more than ``max_pixels`` is left to the
    pixel limit. Leaves ``source``'s position anywhere."""
    stream = _lossless_stream(source)
    if stream is None:
        return
    start, length, size = stream
    try:
        groups = _code_groups(_Bits(source, start, length), size, max_pixels)
    except _Malformed:
        return  # libwebp's to refuse
    if groups > MAX_CODE_GROUPS:
        raise PayloadTooLargeError(
            f"the lossless WebP names {groups} Huffman code groups (libwebp's encoder writes tens, at most "
            f"~2,600; the limit is {MAX_CODE_GROUPS}): refused, decoding it would take too long"
        )


def _lossless_stream(source: BinaryIO) -> tuple[int, int, tuple[int, int] | None] | None:
    """(offset, length, size) of the first frame's lossless stream, as libwebp's demuxer finds the frame
    (the first image chunk in chunk order, ANMF headers stepped over): a VP8L chunk (size None: its
    header has it), or the first ALPH chunk before a VP8 one, if coded losslessly (sized by the VP8
    frame). None: the frame has none. (An ALPH is checked even where the demuxer would drop it, as in a
    still image whose VP8X says it has no alpha: stricter, and real files set the flag.)"""
    source.seek(4)
    end = min(8 + int.from_bytes(source.read(4), "little"), source.seek(0, io.SEEK_END))
    position, alpha = 12, None
    for _ in range(MAX_CHUNKS_BEFORE_IMAGE):
        if position + 8 > end:
            return None
        source.seek(position)
        header = source.read(8)
        kind, length = header[:4], int.from_bytes(header[4:8], "little")
        data = position + 8
        position = data + length + (length & 1)
        if kind == b"ANMF":  # a frame: its chunks follow a 16-byte header. The demuxer reads on past an
            position, alpha = data + 16, None  # ANMF without an image, so frame 1 is the first with one
        elif kind == b"VP8L":
            return data, min(length, end - data), None
        elif kind == b"ALPH" and alpha is None:  # the demuxer takes the first
            alpha = data, min(length, end - data)
        elif kind == b"VP8 ":
            size = _vp8_size(source.read(10))
            if alpha is None or size is None or alpha[1] < 2:
                return None
            source.seek(alpha[0])
            if source.read(1)[0] & 3 != 1:  # not compressed losslessly
                return None
            return alpha[0] + 1, alpha[1] - 1, size
    raise PayloadTooLargeError(f"the WebP has more than {MAX_CHUNKS_BEFORE_IMAGE} chunks before its image (a real "
                               "one has a few): refused, parsing it would take too long")


def _vp8_size(frame: bytes) -> tuple[int, int] | None:
    """A lossy key frame's width and height (None: not one, or empty; libwebp refuses it)."""
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    size = int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF
    return size if size[0] and size[1] else None


def _code_groups(bits: _Bits, size: tuple[int, int] | None, max_pixels: int) -> int:
    """The number of code groups a lossless stream makes libwebp build: its entropy image's largest
    group + 1 (0: not counted, the image is over ``max_pixels``)."""
    image = _entropy_image(bits, size, max_pixels)
    return 0 if image is None else int(image.groups.max()) + 1


class _EntropyImage(NamedTuple):
    """What the walk found: the image's size as coded (a palette packs pixels), its colour cache, and the
    code group of each tile of 2^``block_bits`` pixels (one tile of the whole image if none)."""

    width: int
    height: int
    cache_bits: int
    block_bits: int
    groups: np.ndarray


def _entropy_image(bits: _Bits, size: tuple[int, int] | None, max_pixels: int) -> _EntropyImage | None:
    """Walk a lossless stream up to its code groups (``size`` None: it starts with a VP8L header, which
    has it). None: the image is over ``max_pixels``."""
    if size is None:
        if bits.read(8) != 0x2F:
            raise _Malformed
        width, height = bits.read(14) + 1, bits.read(14) + 1
        bits.read(4)  # alpha hint and version
    else:
        width, height = size
    if width * height > max_pixels:
        return None
    budget, seen = [walk_limit(width * height)], set()
    while bits.read(1):  # transforms, each at most once
        kind = bits.read(2)
        if kind in seen:
            raise _Malformed
        seen.add(kind)
        if kind in (_PREDICTOR, _CROSS_COLOR):
            block = bits.read(3) + 2
            _sub_image(bits, _subsample(width, block), _subsample(height, block), budget)
        elif kind == _PALETTE:
            colours = bits.read(8) + 1
            _sub_image(bits, colours, 1, budget)
            width = _subsample(width, 0 if colours > 16 else 1 if colours > 4 else 2 if colours > 2 else 3)
    cache = _cache_bits(bits)
    if not bits.read(1):
        return _EntropyImage(width, height, cache, 14, np.zeros(1, np.uint32))  # one group for the whole image
    block = bits.read(3) + 2
    tiles_wide, tiles_high = _subsample(width, block), _subsample(height, block)
    if tiles_wide * tiles_high > MAX_ENTROPY_TILES:
        raise PayloadTooLargeError(f"the lossless WebP's entropy image has more than {MAX_ENTROPY_TILES} tiles (libwebp's "
                                   "encoder writes at most 2,600): refused, checking it would take too long")
    tiles = _sub_image(bits, tiles_wide, tiles_high, budget, keep=True)
    return _EntropyImage(width, height, cache, block, np.frombuffer(tiles, np.uint32) >> 8 & 0xFFFF)  # green, red


def _subsample(size: int, block_bits: int) -> int:
    return (size + (1 << block_bits) - 1) >> block_bits


def _cache_bits(bits: _Bits) -> int:
    if not bits.read(1):
        return 0
    cache = bits.read(4)
    if not 1 <= cache <= 11:
        raise _Malformed
    return cache


def _sub_image(bits: _Bits, width: int, height: int, budget: list, keep: bool = False) -> array | None:
    """Read a sub-image (one code group, no transforms); return its ARGB pixels if ``keep``."""
    budget[0] -= width * height
    if budget[0] < 0:
        raise PayloadTooLargeError(
            "the lossless WebP's sub-images before its code groups exceed a 64th of its pixels (libwebp's encoder "
            "writes at most half that): refused, checking it would take too long"
        )
    cache = _cache_bits(bits)
    codes = [_read_code(bits, size + (1 << cache if cache and i == 0 else 0)) for i, size in enumerate(_ALPHABETS)]
    if keep:
        return _decode_pixels(bits, width * height, width, codes, cache)
    _skip_pixels(bits, width * height, width, codes)
    return None


def _skip_pixels(bits: _Bits, count: int, width: int, codes: list) -> None:
    """Read past ``count`` pixels as libwebp's DecodeImageData decodes them, keeping nothing (a transform's
    sub-image: only where it ends matters). Inlined for speed: ~1.3 us a literal pixel at most."""
    (green, green_mask), (red, red_mask), (blue, blue_mask), (alpha, alpha_mask), (dist, dist_mask) = codes
    words, p, limit = bits.words, bits.p, bits.limit
    done, literal_end, copy_end = 0, _NOT_LITERAL << 5, _CACHE_SYMBOLS << 5  # table entries are symbol << 5
    while done < count:
        if p >> 3 >= limit:
            words, p, limit = bits.advance(p)
        e = green[words[p >> 3] >> (p & 7) & green_mask]
        p += e & 31
        if e < literal_end:
            p += red[words[p >> 3] >> (p & 7) & red_mask] & 31
            p += blue[words[p >> 3] >> (p & 7) & blue_mask] & 31
            p += alpha[words[p >> 3] >> (p & 7) & alpha_mask] & 31
            done += 1
        elif e < copy_end:
            length, distance, p = _copy(words, p, e >> 5, dist, dist_mask, width)
            if distance > done or length > count - done:
                raise _Malformed
            done += length
        else:  # a colour cache index
            done += 1
    bits.p = p
    bits.check_end()


def _decode_pixels(bits: _Bits, count: int, width: int, codes: list, cache_bits: int) -> array:
    """Decode ``count`` pixels (ARGB) as libwebp's DecodeImageData does: literals, copies of earlier
    pixels, and colour cache entries (the cache holds every pixel decoded, by a hash of its value)."""
    (green, green_mask), (red, red_mask), (blue, blue_mask), (alpha, alpha_mask), (dist, dist_mask) = codes
    out = array("I")
    cache = [0] * (1 << cache_bits)
    shift, cached = 32 - cache_bits, 0
    words, p, limit = bits.words, bits.p, bits.limit
    while len(out) < count:
        if p >> 3 >= limit:
            words, p, limit = bits.advance(p)
        e = green[words[p >> 3] >> (p & 7) & green_mask]
        p += e & 31
        g = e >> 5
        if g < _NOT_LITERAL:
            e = red[words[p >> 3] >> (p & 7) & red_mask]
            p += e & 31
            r = e >> 5
            e = blue[words[p >> 3] >> (p & 7) & blue_mask]
            p += e & 31
            b = e >> 5
            e = alpha[words[p >> 3] >> (p & 7) & alpha_mask]
            p += e & 31
            out.append((e >> 5) << 24 | r << 16 | g << 8 | b)
        elif g < _CACHE_SYMBOLS:
            length, distance, p = _copy(words, p, g, dist, dist_mask, width)
            if distance > len(out) or length > count - len(out):
                raise _Malformed
            for _ in range(length):
                out.append(out[-distance])
        else:
            out.append(cache[g - _CACHE_SYMBOLS])
        if cache_bits:
            for value in out[cached:]:
                cache[(value * 0x1E35A7BD & 0xFFFFFFFF) >> shift] = value
            cached = len(out)
    bits.p = p
    bits.check_end()
    return out


def _copy(words: list, p: int, green: int, dist: list, dist_mask: int, width: int) -> tuple[int, int, int]:
    """A backward reference after its green symbol: (length, distance in pixels, bit position after it)."""
    length, p = _prefix_value(words, p, green - _NOT_LITERAL)
    e = dist[words[p >> 3] >> (p & 7) & dist_mask]
    code, p = _prefix_value(words, p + (e & 31), e >> 5)
    return length, _plane_distance(width, code), p


def _prefix_value(words: list, p: int, symbol: int) -> tuple[int, int]:
    """A copy length or distance code from its prefix symbol and extra bits (at most 18 + 7 < 32)."""
    if symbol < 4:
        return symbol + 1, p
    extra = (symbol - 2) >> 1
    value = ((2 + (symbol & 1)) << extra) + (words[p >> 3] >> (p & 7) & ((1 << extra) - 1)) + 1
    return value, p + extra


def _plane_distance(width: int, code: int) -> int:
    if code > 120:
        return code - 120
    plane = _CODE_TO_PLANE[code - 1]
    return max(1, (plane >> 4) * width + 8 - (plane & 15))


def _read_code(bits: _Bits, size: int) -> tuple[list, int]:
    """A Huffman code of ``size`` symbols (ReadHuffmanCode) -> its lookup table and mask."""
    lengths = [0] * size
    if bits.read(1):  # simple: one or two symbols given outright
        two = bits.read(1)
        for symbol in (bits.read(8 if bits.read(1) else 1), bits.read(8) if two else None):
            if symbol is not None and symbol < size:
                lengths[symbol] = 1
    else:
        count = bits.read(4) + 4
        if count > 19:
            raise _Malformed
        code_length_lengths = [0] * 19
        for i in range(count):
            code_length_lengths[_CODE_LENGTH_ORDER[i]] = bits.read(3)
        _read_code_lengths(bits, _table(code_length_lengths), lengths)
    bits.check_end()
    return _table(lengths)


def _read_code_lengths(bits: _Bits, code: tuple[list, int], lengths: list) -> None:
    """ReadHuffmanCodeLengths: the code lengths, coded with ``code`` (16: repeat the last non-zero, 17
    and 18: runs of zeros), optionally only the first few symbols."""
    size = len(lengths)
    limit = size
    if bits.read(1):
        limit = 2 + bits.read(2 + 2 * bits.read(3))
        if limit > size:
            raise _Malformed
    table, mask = code
    symbol, previous = 0, 8
    while symbol < size and limit:
        limit -= 1
        e = table[bits.peek() & mask]
        bits.skip(e & 31)
        value = e >> 5
        if value < 16:
            lengths[symbol] = value
            symbol += 1
            previous = value or previous
        else:
            extra, offset = _REPEATS[value - 16]
            repeat = bits.read(extra) + offset
            if symbol + repeat > size:
                raise _Malformed
            lengths[symbol:symbol + repeat] = [previous if value == 16 else 0] * repeat
            symbol += repeat


def _table(lengths: list) -> tuple[list, int]:
    """A canonical Huffman code's lookup table, indexed by the next bits (read least significant first):
    entries are symbol << 5 | length. As libwebp's VP8LBuildHuffmanTable: one symbol takes no bits; any
    other code must be complete."""
    used = sorted((length, symbol) for symbol, length in enumerate(lengths) if length)
    if len(used) <= 1:
        if not used:
            raise _Malformed
        return [used[0][1] << 5], 0
    longest = used[-1][0]
    if sum(1 << (longest - length) for length, _ in used) != 1 << longest:
        raise _Malformed
    table, code, previous = [0] * (1 << longest), 0, used[0][0]
    for length, symbol in used:
        code <<= length - previous
        previous = length
        table[int(f"{code:0{length}b}"[::-1], 2)::1 << length] = [symbol << 5 | length] * (1 << (longest - length))
        code += 1
    return table, (1 << longest) - 1


class _Bits:
    """The stream's bits, least significant first, from ``source``: ``words[i]`` holds the 32 bits from
    byte i of a window of 64 KB (so ``words[p >> 3] >> (p & 7)`` has the next 25 bits at bit p of the
    window, more than a read takes). A reader moves the window on (``advance``) once at ``limit``, 64
    bytes before the bytes loaded end: a pixel reads 8 at most."""

    WINDOW = 1 << 16

    def __init__(self, source: BinaryIO, start: int, length: int) -> None:
        self._source, self._start, self._length = source, start, length
        self._base = 0  # the window's first byte, from the stream's start
        self.p = 0  # bit position in the window
        self._load()

    def _load(self) -> None:
        self._source.seek(self._start + self._base)
        raw = self._source.read(max(0, min(self.WINDOW + 64, self._length - self._base)))
        padded = np.frombuffer(raw + bytes(67), np.uint8).astype(np.uint32)
        n = len(raw) + 64  # zeros past the stream's end, as libwebp reads them; check_end tells
        self.words = (padded[:n] | padded[1:n + 1] << 8 | padded[2:n + 2] << 16 | padded[3:n + 3] << 24).tolist()
        self.limit = min(self.WINDOW, len(raw) + 32)

    def advance(self, p: int) -> tuple[list, int, int]:
        """Move the window to bit ``p``'s byte; returns the new words, position and limit."""
        if self._base + (p >> 3) > self._length + 8:
            raise _Malformed  # past the end
        self._base += p >> 3
        self.p = p & 7
        self._load()
        return self.words, self.p, self.limit

    def peek(self) -> int:
        if self.p >> 3 >= self.limit:
            self.advance(self.p)
        return self.words[self.p >> 3] >> (self.p & 7)

    def skip(self, count: int) -> None:
        self.p += count

    def read(self, count: int) -> int:
        value = self.peek() & ((1 << count) - 1)
        self.p += count
        return value

    def check_end(self) -> None:
        if self._base * 8 + self.p > self._length * 8:
            raise _Malformed  # libwebp's reader is at its end of stream
