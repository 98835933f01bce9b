"""Lossless WebP code groups (classifier._webp_lossless): the walk reads real files bit for bit as
libwebp does, and the files that make libwebp build tens of thousands of code groups are refused."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from bench.crafted import (encode, lsb_bits, pack_lsb_first, webp_chunk, webp_lossless_groups, webp_lossless_walk,
                           webp_riff)
from classifier import _webp_lossless as webp
from classifier.decode import decode_image
from classifier.errors import ClassifierError, CorruptImageError, PayloadTooLargeError

MAX = 50_000_000


def _photo(photo_bytes, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    image = Image.open(io.BytesIO(photo_bytes["chelsea.png"])).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    if mode == "RGBA":  # an alpha that varies, so its stream has something to code
        alpha = Image.linear_gradient("L").resize(size).point(lambda v: v // 16 * 16)
        image.putalpha(alpha)
    return image.convert(mode)


def _bits_left(data: bytes) -> int:
    """Walk the first frame's lossless stream to its end as libwebp decodes it: up to the code groups
    with the module's walk, then every group's codes and every pixel here. Returns the bits left in the
    stream (a byte's padding at most, if the walk read as the encoder wrote)."""
    source = io.BytesIO(data)
    start, length, size = webp._lossless_stream(source)
    bits = webp._Bits(source, start, length)
    image = webp._entropy_image(bits, size, MAX)
    green = 280 + (1 << image.cache_bits if image.cache_bits else 0)
    groups = [[webp._read_code(bits, alphabet) for alphabet in (green, 256, 256, 256, 40)]
              for _ in range(int(image.groups.max()) + 1)]
    tiles_wide = webp._subsample(image.width, image.block_bits)

    def symbol(code) -> int:
        table, mask = code
        entry = table[bits.peek() & mask]
        bits.skip(entry & 31)
        return entry >> 5

    done, count = 0, image.width * image.height
    while done < count:
        y, x = divmod(done, image.width)
        codes = groups[image.groups[(y >> image.block_bits) * tiles_wide + (x >> image.block_bits)]]
        green_symbol = symbol(codes[0])
        if green_symbol < 256:
            symbol(codes[1]), symbol(codes[2]), symbol(codes[3])
            done += 1
        elif green_symbol < 280:
            bits.peek()  # the window holds the whole copy, as _skip_pixels makes sure once a pixel
            copied, _, bits.p = webp._copy(bits.words, bits.p, green_symbol, *codes[4], image.width)
            done += copied
        else:
            done += 1
    assert done == count
    return length * 8 - (bits._base * 8 + bits.p)


def _real_webps(photo_bytes) -> dict[str, bytes]:
    photo = _photo(photo_bytes, (320, 213))
    few_colours = photo.quantize(4).convert("RGB")  # a palette transform packing 4 pixels a byte
    files = {f"lossless method {m} quality {q}": encode(photo, "WEBP", lossless=True, method=m, quality=q)
             for m in (0, 3, 6) for q in (0, 100)}
    files.update({
        "lossless RGBA": encode(_photo(photo_bytes, (320, 213), "RGBA"), "WEBP", lossless=True, method=6),
        "lossless gray": encode(photo.convert("L"), "WEBP", lossless=True),
        "lossless 4 colours": encode(few_colours, "WEBP", lossless=True, method=6),
        "lossless 2 colours": encode(photo.convert("1").convert("RGB"), "WEBP", lossless=True),
        "lossless exact": encode(_photo(photo_bytes, (97, 61), "RGBA"), "WEBP", lossless=True, exact=True),
        "lossless animation": encode(photo, "WEBP", lossless=True, save_all=True, append_images=[few_colours]),
    })
    for method in (0, 6):  # lossy with alpha: the alpha in an ALPH chunk, coded losslessly
        files[f"lossy alpha method {method}"] = encode(_photo(photo_bytes, (320, 213), "RGBA"), "WEBP", quality=80,
                                                       method=method, alpha_quality=100)
    return files


@pytest.mark.parametrize("window", [webp._Bits.WINDOW, 64])
def test_the_walk_reads_real_files_to_their_last_byte(photo_bytes, window, monkeypatch):
    # The walk and libwebp agree on every bit: continuing from where the walk stops, through every
    # code group and pixel, ends within a byte of the stream's end in each real file. With a window
    # of 64 bytes the reader moves on thousands of times in each file.
    monkeypatch.setattr(webp._Bits, "WINDOW", window)
    for name, data in _real_webps(photo_bytes).items():
        assert 0 <= _bits_left(data) < 8, name
        assert decode_image(data, MAX).size == (320, 213) or "exact" in name, name


def test_real_files_name_few_code_groups(photo_bytes):
    counts = {}
    for size in ((320, 213), (900, 600)):
        image = _photo(photo_bytes, size)
        for method in (0, 4, 6):
            data = encode(image, "WEBP", lossless=True, method=method, quality=50)
            source = io.BytesIO(data)
            start, length, _ = webp._lossless_stream(source)
            counts[size, method] = webp._code_groups(webp._Bits(source, start, length), None, MAX)
    assert 1 <= min(counts.values()) and max(counts.values()) < webp.MAX_CODE_GROUPS // 20, counts
    assert max(counts.values()) > 1, counts  # the walk did reach an entropy image


@pytest.mark.parametrize("container", ["VP8L", "ALPH", "ANMF"])
def test_a_file_naming_65536_code_groups_is_refused(container):
    # Without the limit: 2.2-2.5 s of CPU and ~360 MB in libwebp, in all three containers.
    with pytest.raises(PayloadTooLargeError, match="65536 Huffman code groups"):
        decode_image(webp_lossless_groups(container=container), MAX)


@pytest.mark.parametrize("first_frame", ["empty", "unknown chunk only"])
def test_an_animation_whose_first_frame_chunk_has_no_image_is_walked_on(first_frame):
    # libwebp's demuxer skips an ANMF without an image: the next one is frame 1, decoded on load()
    # (found by a red-team: 2.5-5.9 s past a walk that stopped at the first ANMF).
    vp8l = webp_lossless_groups()[12:]  # the VP8L chunk
    vp8x = webp_chunk(b"VP8X", struct.pack("<I", 0x02) + (1023).to_bytes(3, "little") * 2)
    header = bytes(6) + (1023).to_bytes(3, "little") * 2 + (100).to_bytes(3, "little") + b"\0"
    empty = header + (webp_chunk(b"XYZW", b"") if first_frame != "empty" else b"")
    data = webp_riff(vp8x + webp_chunk(b"ANIM", bytes(6)) + webp_chunk(b"ANMF", empty) + webp_chunk(b"ANMF", header + vp8l))
    with pytest.raises(PayloadTooLargeError, match="65536 Huffman code groups"):
        decode_image(data, MAX)


def test_a_lossy_frame_of_no_width_after_a_lossless_alpha_is_a_corrupt_image():
    # Was a ValueError out of decode_image (a 500): the walk sized the alpha by the VP8 frame, 0 x 64.
    vp8 = bytearray(encode(Image.new("RGB", (64, 64), (90, 120, 150)), "WEBP", quality=50)[12:])
    struct.pack_into("<H", vp8, 8 + 6, 0)  # the key frame's width
    alpha = "0" + "0" + "1" + "000" + "0" + "1000" * 10 + "0" * 64  # an entropy image of one-symbol codes
    stream = pack_lsb_first(alpha)
    vp8x = webp_chunk(b"VP8X", struct.pack("<I", 0x10) + (63).to_bytes(3, "little") * 2)
    with pytest.raises(CorruptImageError):
        decode_image(webp_riff(vp8x + webp_chunk(b"ALPH", b"\x01" + stream) + bytes(vp8)), MAX)


def test_an_entropy_image_of_too_many_tiles_is_refused_before_it_is_decoded():
    # 4 x 4 tiles: 1024 x 1024 has 65,536 (the limit), 1028 x 1028 has 66,049.
    with pytest.raises(PayloadTooLargeError, match="entropy image has more than 65536 tiles"):
        webp.check(io.BytesIO(webp_lossless_groups(side=1028, groups=2)), MAX)
    webp.check(io.BytesIO(webp_lossless_groups(side=1024, groups=2)), MAX)


def test_the_code_group_limit_is_exact():
    image = decode_image(webp_lossless_groups(groups=webp.MAX_CODE_GROUPS), MAX)
    assert image.size == (1024, 1024)
    with pytest.raises(PayloadTooLargeError, match=f"{webp.MAX_CODE_GROUPS + 1} Huffman code groups"):
        decode_image(webp_lossless_groups(groups=webp.MAX_CODE_GROUPS + 1), MAX)


def test_sub_images_past_the_walk_limit_are_refused():
    # A predictor transform of 4 x 4 blocks: (2048 / 4)^2 = 2^18 sub-image pixels, the limit at 4 MP.
    assert webp.walk_limit(2048 * 2048) == 2048 * 2048 // 4 // 4 == webp.MIN_WALK_PIXELS
    assert decode_image(webp_lossless_walk(2048, 2), MAX).size == (2048, 2048)
    with pytest.raises(PayloadTooLargeError, match="sub-images"):
        decode_image(webp_lossless_walk(2052, 2), MAX)
    assert webp.walk_limit(50_000_000) == 781_250  # libwebp writes ~209,000 at 50 MP


def test_an_image_over_the_pixel_limit_is_left_to_it():
    with pytest.raises(PayloadTooLargeError, match="pixels"):
        decode_image(webp_lossless_groups(), 1_000_000)  # 1024 x 1024 is over: refused for its size


def _with_chunks_before_image(image: bytes, chunks: int) -> bytes:
    vp8x = webp_chunk(b"VP8X", bytes(4) + (15).to_bytes(3, "little") * 2)
    return webp_riff(vp8x + webp_chunk(b"abcd", b"") * chunks + image[12:])


def test_chunks_before_the_image_are_limited():
    image = encode(Image.new("RGB", (16, 16), (10, 20, 30)), "WEBP", lossless=True)
    at_limit = _with_chunks_before_image(image, webp.MAX_CHUNKS_BEFORE_IMAGE - 2)  # + VP8X and VP8L
    assert decode_image(at_limit, MAX).size == (16, 16)
    with pytest.raises(PayloadTooLargeError, match="chunks before its image"):
        decode_image(_with_chunks_before_image(image, webp.MAX_CHUNKS_BEFORE_IMAGE - 1), MAX)


@pytest.mark.parametrize("cut", [0.02, 0.2, 0.5])
def test_a_cut_bomb_is_libwebps_to_refuse(cut):
    # Cut inside the entropy image or the code groups: the walk stops where libwebp stops, and the
    # caller gets libwebp's error (typed), not the limit's.
    data = webp_lossless_groups()
    cut_data = data[:int(len(data) * cut)]
    with pytest.raises(ClassifierError) as raised:
        decode_image(cut_data, MAX)
    assert raised.value.status in (413, 422), raised.value


def test_the_walk_never_refuses_a_valid_file_it_misreads():
    # Malformed where the walk reads (a transform twice): the walk gives up, libwebp refuses it.
    bits = lsb_bits(0x2F, 8) + "0" * 14 + "0" * 14 + "0000"  # 1 x 1
    bits += "1" + "10" + "1" + "10"  # subtract green, twice
    data = webp_riff(webp_chunk(b"VP8L", pack_lsb_first(bits)))
    webp.check(io.BytesIO(data), MAX)  # not refused here
    with pytest.raises(ClassifierError) as raised:
        decode_image(data, MAX)
    assert raised.value.status == 422
