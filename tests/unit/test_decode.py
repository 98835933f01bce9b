import functools
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from bench.crafted import (apng, bmp_rle8, exif_with_odd_tag, gif_extension_bomb, jpeg_arithmetic, jpeg_header_padding_bomb,
                           jpeg_scan_bomb, jpeg_sequential_scans, png, png_chunk, png_chunk_bomb, png_keyed,
                           tiff_associated_alpha, tiff_jpeg_strips, tiff_strip_bomb, zlib_with_empty_blocks)
from classifier import _file_limits
from classifier.decode import DECODE_BYTES_PER_ROW, MAX_BMP_RLE_PIXELS, decode_image, to_rgb
from classifier.errors import CorruptImageError, PayloadTooLargeError, UnsupportedMediaError
from classifier.settings import DECODE_BYTES_PER_PIXEL
from classifier.spec import DRAFT_HEADROOM, Preprocessing, draft_size

MAX = 50_000_000


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def test_photo_formats_decode_to_rgb(photo_bytes):
    image = decode_image(photo_bytes["chelsea.png"], MAX)
    assert image.mode == "RGB" and image.size == (451, 300)
    for fmt in ("JPEG", "WEBP", "BMP", "TIFF", "GIF"):
        assert decode_image(encode(image, fmt), MAX).size == (451, 300)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1", "YCbCr"])
def test_every_mode_becomes_rgb(mode):
    base = Image.linear_gradient("L").resize((32, 16))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(base, np.uint16) * 257)
    elif mode == "F":
        image = base.convert("F")
    else:
        image = base.convert(mode)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (32, 16)
    # The gradient survives: top rows dark, bottom rows bright.
    array = np.asarray(rgb, np.float32)
    assert array[-1].mean() > array[0].mean() + 100 or mode == "1"


def test_sixteen_bit_is_scaled_not_clipped():
    image = Image.fromarray(np.full((4, 4), 32768, np.uint16))
    assert np.asarray(to_rgb(image))[0, 0, 0] == 128


def test_transparency_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(decode_image(encode(image, "PNG"), MAX))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    "image, key, other, other_rgb",
    [
        (Image.new("RGB", (4, 4), (0, 0, 0)), (0, 0, 0), (0, 0, 200), [0, 0, 200]),
        (Image.new("L", (4, 4), 0), 0, 255, [255] * 3),
        (Image.new("1", (4, 4), 0), 0, 1, [255] * 3),
        (Image.fromarray(np.full((4, 4), 1000, np.uint16)), 1000, 40000, [156] * 3),  # 16-bit gray: I;16
    ],
    ids=["RGB", "L", "1", "I;16"],
)
def test_colour_key_transparency_is_composited_on_white(image, key, other, other_rgb):
    # PNG tRNS on a non-palette image: the key colour is transparent, like alpha 0 in RGBA.
    image = image.copy()
    image.putpixel((3, 3), other)
    pixels = np.asarray(decode_image(encode(image, "PNG", transparency=key), MAX))
    assert pixels[0, 0].tolist() == [255, 255, 255] and pixels[3, 3].tolist() == other_rgb
    opaque = np.asarray(decode_image(encode(image, "PNG"), MAX))  # the same image without tRNS keeps its colour
    assert opaque[0, 0].tolist() in ([0, 0, 0], [4, 4, 4])  # I;16: 1000 / 65535 * 255


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((4, 4), 0.5, np.float32), 128),  # unit-range float
        (np.full((4, 4), 200.0, np.float32), 200),  # 0..255 float
        (np.full((4, 4), 200, np.int32), 200),  # I holding 8-bit values
        (np.full((4, 4), 40000, np.int32), 156),  # I holding 16-bit values
        (np.full((4, 4), 2**30, np.int32), 128),  # I using its 31 bits
        (np.full((4, 4), -5, np.int32), 0),
    ],
)
def test_float_and_32_bit_gray_are_scaled_by_the_range_their_values_are_in(array, expected):
    image = Image.fromarray(array)
    assert image.mode in ("F", "I")
    assert np.asarray(to_rgb(image))[0, 0].tolist() == [expected] * 3
    assert np.asarray(decode_image(encode(image, "TIFF"), MAX))[0, 0].tolist() == [expected] * 3


def unsigned_32_bit_tiff(values: np.ndarray) -> bytes:
    """A little-endian gray TIFF of uint32 samples, SampleFormat left at its default (unsigned):
    Pillow writes mode I as signed, and reads this one as I;32N."""
    height, width = values.shape
    pixels = values.astype("<u4").tobytes()
    tags = [(256, 4, width), (257, 4, height), (258, 3, 32), (259, 3, 1), (262, 3, 1), (273, 4, 8),
            (277, 3, 1), (278, 4, height), (279, 4, len(pixels))]
    ifd = 8 + len(pixels)
    entries = b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in tags)
    return b"II*\x00" + struct.pack("<I", ifd) + pixels + struct.pack("<H", len(tags)) + entries + b"\x00" * 4


def test_an_unsigned_32_bit_tiff_is_read_unsigned():
    values = np.array([[0, 2**31 + 2**30, 2**32 - 1, 2**31]], dtype=np.uint32)
    with Image.open(io.BytesIO(unsigned_32_bit_tiff(values))) as opened:
        assert opened.mode == "I"  # Pillow has no unsigned 32-bit mode
    decoded = np.asarray(decode_image(unsigned_32_bit_tiff(values), MAX))
    assert decoded[0, :, 0].tolist() == [0, 191, 255, 128]  # not black: 2**31 and up were negative
    small = np.array([[0, 100, 40000]], dtype=np.uint32)  # 16-bit data stored as 32: the range its values are in
    assert np.asarray(decode_image(unsigned_32_bit_tiff(small), MAX))[0, :, 0].tolist() == [0, 0, 156]


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    assert decode_image(encode(image, "JPEG", exif=exif), MAX).size == (20, 40)


@pytest.mark.parametrize("orientation", range(0, 10))
def test_every_exif_orientation_turns_the_image_as_pillow_does(orientation):
    stored = Image.fromarray(np.arange(6 * 4 * 3, dtype=np.uint8).reshape(4, 6, 3))  # every pixel different
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "PNG", exif=exif)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert np.array_equal(np.asarray(decode_image(data, MAX)), np.asarray(expected))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_rotated_photo_with_an_oddly_typed_exif_tag_is_turned_not_refused(fmt):
    # ImageOps.exif_transpose rewrites the EXIF after turning the image and raised struct.error
    # here (a 500 for a photo whose pixels are fine); nothing needs the EXIF once the pixels are upright.
    data = encode(Image.new("RGB", (40, 20), (200, 0, 0)), fmt, exif=exif_with_odd_tag(6))
    assert decode_image(data, MAX).size == (20, 40)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    red, green, blue = np.asarray(decode_image(data, MAX))[0, 0]
    assert red > 200 and blue < 50


def test_pixel_limit_is_checked_before_decoding(monkeypatch):
    from PIL import ImageFile

    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self.format) or real_load(self))
    data = encode(Image.new("L", (2000, 2000)), "PNG")
    with pytest.raises(PayloadTooLargeError, match="2000x2000"):
        decode_image(data, 1_000_000)
    assert loads == []  # refused from the header: no pixel was decoded
    decode_image(encode(Image.new("L", (20, 20)), "PNG"), 1_000_000)
    assert loads and set(loads) == {"PNG"}  # the spy sees a decode when there is one


def test_not_an_image_and_corrupt_images():
    with pytest.raises(UnsupportedMediaError):
        decode_image(b"<html>not an image</html>", MAX)
    with pytest.raises(UnsupportedMediaError):
        decode_image(b"", MAX)
    jpeg = encode(Image.linear_gradient("L").convert("RGB"), "JPEG")
    with pytest.raises(CorruptImageError):
        decode_image(jpeg[: len(jpeg) // 2], MAX)
    png = encode(Image.linear_gradient("L"), "PNG")
    with pytest.raises(CorruptImageError):
        decode_image(png[:200], MAX)


@pytest.mark.parametrize("name, data", [
    ("png-signature-only", b"\x89PNG\r\n\x1a\n"),
    ("tiff-cut-before-its-directory", None),
    ("gif-header-only", b"GIF89a"),
    ("webp-riff-header-only", b"RIFF\x00\x00\x00\x00WEBP"),
    ("bmp-file-and-dib-header-sizes-only", b"BM" + bytes(12) + (40).to_bytes(4, "little")),
    ("tiff-big-endian-cut", b"MM\x00*\x00\x00\x00\x08"),
])
def test_a_broken_file_of_an_allowed_format_is_corrupt_not_unsupported(name, data):
    if data is None:  # Pillow writes the directory after the pixels: cut there, the file is unidentifiable
        tiff = encode(Image.linear_gradient("L"), "TIFF")
        data = tiff[: len(tiff) // 2]
    with pytest.raises(CorruptImageError):
        decode_image(data, MAX)


@pytest.mark.parametrize("data", [b"<html>", b"II", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x00" * 64, b"%PDF-1.7",
                                  b"BMW\n", b"BMI,weight\n22,70\n"])
def test_other_files_are_still_unsupported(data):
    with pytest.raises(UnsupportedMediaError):
        decode_image(data, MAX)


def test_unlisted_format_is_refused():
    data = encode(Image.new("RGB", (8, 8)), "PPM")
    with pytest.raises(UnsupportedMediaError):
        decode_image(data, MAX)


def test_jpeg_is_decoded_at_reduced_size_when_a_draft_size_is_given():
    big = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    data = encode(big, "JPEG")
    assert decode_image(data, MAX).size == (4000, 3000)
    drafted = decode_image(data, MAX, draft_size=lambda w, h: (683, 512))
    assert drafted.size == (1000, 750) and drafted.mode == "RGB"  # 1/4: the largest reduction covering it
    png = encode(big.resize((800, 600)), "PNG")
    assert decode_image(png, MAX, draft_size=lambda w, h: (100, 75)).size == (800, 600)  # PNG has no draft


@pytest.mark.parametrize("orientation", [1, 6, 8, 5])
def test_the_reduced_decode_keeps_its_headroom_on_the_upright_image(orientation):
    # A non-square model input without a crop: draft_size is not symmetric in width and height,
    # so it must be asked about the upright size, not the stored one (rotated for 5-8).
    spec = Preprocessing(height=100, width=200)
    upright = Image.linear_gradient("L").resize((1200, 1600)).convert("RGB")  # a portrait photo
    stored = upright.transpose(Image.Transpose.TRANSPOSE) if orientation in (5, 6, 7, 8) else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(encode(stored, "JPEG", exif=exif), MAX, draft_size=functools.partial(draft_size, spec))
    assert decoded.size[0] < decoded.size[1]  # upright
    assert decoded.width >= DRAFT_HEADROOM * spec.width and decoded.height >= DRAFT_HEADROOM * spec.height
    assert decoded.size == (600, 800)  # 1/2: 1/4 (300x400) would leave 1.5x the model's width


def test_pillow_user_warnings_stay_out_of_the_logs():
    # A JPEG with garbage EXIF makes Pillow warn "Corrupt EXIF data" on every decode: two stray
    # stderr lines per request in CloudWatch. The decode ignores Pillow's UserWarnings.
    import io
    import warnings

    from PIL import Image

    from classifier.decode import decode_image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", exif=b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert decode_image(buffer.getvalue(), 50_000_000).size == (16, 16)
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]


def png_rgb16(pixels: np.ndarray, key: tuple[int, int, int] | None = None, exif: Image.Exif | None = None) -> bytes:
    """A 16-bit RGB PNG (Pillow writes none) of ``pixels`` (height, width, 3), with a tRNS colour
    key and an eXIf chunk when given; rows alternate filter types None and Sub (6 bytes a pixel)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = []
    for y, row in enumerate(pixels.astype(">u2")):
        raw = np.frombuffer(row.tobytes(), np.uint8)
        if y % 2:  # Sub: each byte minus the byte one pixel to its left
            rows.append(b"\x01" + (raw - np.concatenate([np.zeros(6, np.uint8), raw[:-6]])).tobytes())
        else:
            rows.append(b"\x00" + raw.tobytes())
    height, width, _ = pixels.shape
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
    if key is not None:
        data += chunk(b"tRNS", struct.pack(">HHH", *key))
    if exif is not None:
        data += chunk(b"eXIf", exif.tobytes()[6:])  # without the JPEG "Exif\0\0" prefix
    return data + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "key, others",
    [
        # a key above 8 bits: Pillow keeps each sample's high byte, the 8-bit pixels never equal it
        ((0x1234, 0x5678, 0x9ABC), {(0x12FF, 0x5678, 0x9ABC): [0x12, 0x56, 0x9A], (0, 0, 0): [0, 0, 0]}),
        # a key below 256: every pixel whose samples are all below 256 is 8-bit black, yet not the key
        ((0, 0, 0), {(0x00FF, 0, 0): [0, 0, 0], (0, 0, 0x0100): [0, 0, 1], (0xFFFF, 0, 0x8080): [255, 0, 128]}),
    ],
    ids=["key-above-8-bits", "key-below-256"],
)
def test_a_sixteen_bit_rgb_colour_key_is_keyed_on_all_sixteen_bits(key, others):
    pixels = np.array([[key, *others] * 2] * 3, np.uint16)  # 3 rows (both filter types), 2 of each pixel
    data = png_rgb16(pixels, key)
    assert Image.open(io.BytesIO(data)).mode == "RGB"  # 8 bits a sample, info["transparency"] in 16
    for source in (data, io.BytesIO(data)):  # bytes, or a file (a URL's body) read twice
        decoded = np.asarray(decode_image(source, MAX))
        assert decoded.shape == pixels.shape
        expected = [[255, 255, 255], *others.values()] * 2
        assert all(row.tolist() == expected for row in decoded), decoded.tolist()
    opaque = np.asarray(decode_image(png_rgb16(pixels), MAX))  # without tRNS: the key keeps its colour
    assert opaque[0, 0].tolist() == [k >> 8 for k in key]


def test_a_sixteen_bit_rgb_colour_key_keeps_the_exif_orientation():
    key = (0x1234, 0x5678, 0x9ABC)
    pixels = np.array([[key, (0xFFFF, 0, 0)]], np.uint16)  # 2x1: keyed, red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed: keyed on top, red below
    decoded = np.asarray(decode_image(png_rgb16(pixels, key, exif), MAX))
    assert decoded.tolist() == [[[255, 255, 255]], [[255, 0, 0]]]


def png_gray(pixels: np.ndarray, bits: int, key: int | None = None) -> bytes:
    """A gray PNG of ``bits`` (1, 2 or 4) per pixel (Pillow writes none) with a tRNS key when given."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    per_byte = 8 // bits
    rows = []
    for row in pixels.tolist():
        row += [0] * (-len(row) % per_byte)
        packed = [sum(v << (bits * (per_byte - 1 - j)) for j, v in enumerate(row[i:i + per_byte]))
                  for i in range(0, len(row), per_byte)]
        rows.append(b"\x00" + bytes(packed))
    height, width = pixels.shape
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0))
    if key is not None:
        data += chunk(b"tRNS", struct.pack(">H", key))
    return data + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


@pytest.mark.parametrize("bits", [2, 4])
def test_a_low_bit_gray_colour_key_is_keyed_at_the_files_bit_depth(bits):
    # Pillow scales 2- and 4-bit gray to 8 bits (x 85, x 17) but keeps the key at the file's depth
    levels = 2 ** bits
    pixels = np.array([list(range(levels)) * 2] * 2)
    scaled = [v * 255 // (levels - 1) for v in range(levels)]
    for key in range(levels):
        decoded = np.asarray(decode_image(png_gray(pixels, bits, key), MAX))
        expected = [255 if v == key else scaled[v] for v in range(levels)] * 2
        assert decoded[..., 0].tolist() == [expected] * 2, (key, decoded[0, :, 0].tolist())
        assert (decoded[..., 0] == decoded[..., 2]).all()
    assert np.asarray(decode_image(png_gray(pixels, bits), MAX))[0, :levels, 0].tolist() == scaled  # no key


def png_chunks(data: bytes) -> list:
    """A PNG's chunks as (type, whole chunk bytes), in file order (after the signature)."""
    chunks, at = [], 8
    while at < len(data):
        length = struct.unpack_from(">I", data, at)[0]
        chunks.append((data[at + 4:at + 8], data[at:at + 12 + length]))
        at += 12 + length
    return chunks


def trns_after_idat(data: bytes, keep_first: bool = False) -> bytes:
    """The PNG with its tRNS chunk moved after IDAT (or, with ``keep_first``, copied there)."""
    chunks = png_chunks(data)
    trns = next(chunk for kind, chunk in chunks if kind == b"tRNS")
    out = []
    for kind, chunk in chunks:
        if kind != b"tRNS" or keep_first:
            out.append(chunk)
        if kind == b"IDAT":
            out.append(trns)
    return data[:8] + b"".join(out)


def test_a_trns_after_idat_is_ignored_as_libpng_does():
    # Pillow's load() still reads chunks after IDAT into info; a tRNS there is out of place
    key = (0, 0, 0)
    pixels = np.array([[(0x00FF, 0x0010, 0x0001), (0xFFFF, 0, 0x8080)]], np.uint16)
    decoded = np.asarray(decode_image(trns_after_idat(png_rgb16(pixels, key)), MAX))
    assert decoded.tolist() == [[[0, 0, 0], [255, 0, 128]]]  # not keyed: the key came too late
    gray = np.array([[0, 1, 2, 3]])
    late = np.asarray(decode_image(trns_after_idat(png_gray(gray, 2, key=1)), MAX))
    assert late[0, :, 0].tolist() == [0, 85, 170, 255]
    both = np.asarray(decode_image(trns_after_idat(png_gray(gray, 2, key=1), keep_first=True), MAX))
    assert both[0, :, 0].tolist() == [0, 255, 170, 255]  # the key before IDAT, scaled, wins


def lzw_tiff(edit_entries=None) -> bytes:
    """An LZW TIFF (decoded by libtiff, not by Pillow's own reader) with a private ASCII tag 65000;
    ``edit_entries(entries)`` may rewrite the IFD's 12-byte entries (a list, in file order)."""
    image = Image.linear_gradient("L").convert("RGB").resize((64, 64))
    data = bytearray(encode(image, "TIFF", compression="tiff_lzw", tiffinfo={65000: "private"}))
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, ifd)[0]
    entries = [bytes(data[ifd + 2 + 12 * i: ifd + 14 + 12 * i]) for i in range(count)]
    if edit_entries is not None:
        entries = edit_entries(entries)
    data[ifd + 2: ifd + 2 + 12 * count] = b"".join(entries)
    return bytes(data)


def unsorted(entries):  # libtiff: "TIFFReadDirectoryCheckOrder: Warning, Invalid TIFF directory; ..."
    return [entries[1], entries[0], *entries[2:]]


def unknown_field_type(entries):  # libtiff: "TIFFFetchNormalTag: ... TIFF_SETGET_UNDEFINED ..." (an error)
    return [e[:2] + b"\x63\x00" + e[4:] if e[:2] == (65000).to_bytes(2, "little") else e for e in entries]


def test_libtiff_warnings_stay_out_of_the_logs(capfd):
    # Pillow sets libtiff's warning handlers to NULL before each libtiff decode (TiffDecode.c).
    decoded = decode_image(lzw_tiff(unsorted), MAX)
    assert decoded.size == (64, 64)
    assert capfd.readouterr().err == ""


def corrupt_strip(data: bytes) -> bytes:
    """The LZW TIFF with the first bytes of its strip replaced: libtiff's decoder fails on them."""
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        tag, kind, _, value = struct.unpack_from("<HHII", data, ifd + 2 + 12 * i)
        if tag == 273:  # StripOffsets: one strip, the offset is the value itself
            assert kind == 4
            return data[:value] + b"\xff" * 16 + data[value + 16:]
    raise AssertionError("no StripOffsets")


def test_libtiff_errors_stay_out_of_the_logs(capfd):
    # classifier._libtiff sets the error handlers of Pillow's libtiff to NULL at import: without
    # that, each of these prints a plain-text line to the C stderr (a 200 and a 422 respectively)
    assert decode_image(lzw_tiff(unknown_field_type), MAX).size == (64, 64)
    with pytest.raises(CorruptImageError):
        decode_image(corrupt_strip(lzw_tiff()), MAX)
    assert capfd.readouterr().err == ""


def test_libtiff_is_found_in_the_process_maps(tmp_path):
    from classifier import _libtiff

    assert os.path.basename(_libtiff.loaded_libtiff()).startswith("libtiff")  # Pillow's, loaded by _imaging
    maps = tmp_path / "maps"
    maps.write_text("7f0-7f1 rw-p 00000000 00:00 0 \n7f1-7f2 r-xp 00000000 08:01 2 /opt/a b/libjpeg-1.so.62\n"
                    "7f2-7f3 r-xp 00000000 08:01 3 /opt/a b/pillow.libs/libtiff-20b7e810.so.6.3.0\n")
    assert _libtiff.loaded_libtiff(str(maps)) == "/opt/a b/pillow.libs/libtiff-20b7e810.so.6.3.0"
    maps.write_text("7f1-7f2 rw-p 00000000 00:00 0 [heap]\n")
    assert _libtiff.loaded_libtiff(str(maps)) is None
    assert _libtiff.loaded_libtiff(str(tmp_path / "absent")) is None
    assert _libtiff.silence_errors(str(tmp_path / "absent.so")) is False  # cannot open: unchanged, no crash


def test_gray_with_associated_alpha_is_composited_on_white():
    # A TIFF of gray and associated (premultiplied) alpha, ExtraSamples 1, opens as mode La, which
    # Pillow converts to LA only: it was a 422 ("conversion from La to L not supported")
    image = Image.fromarray(np.array([[[100, 255], [0, 0], [30, 255]]], np.uint8), "LA")
    data = tiff_associated_alpha(image)
    assert Image.open(io.BytesIO(data)).mode == "La"
    assert np.asarray(decode_image(data, MAX))[0].tolist() == [[100] * 3, [255] * 3, [30] * 3]


@pytest.mark.parametrize("prefix", [b"II*\x00", b"MM\x00*", b"II+\x00"], ids=["little-endian", "big-endian", "bigtiff"])
def test_a_tiff_of_too_many_strips_is_refused_before_pillow_reads_them(prefix):
    # Pillow decodes an uncompressed TIFF strip by strip in Python (~10 us each), one per entry
    # however few pixels there are: a 2-pixel TIFF of 15 MB held about a minute of CPU and 2 GB.
    assert np.asarray(decode_image(tiff_strip_bomb(1000, prefix), MAX)).tolist() == [[[128] * 3]] * 2
    data = tiff_strip_bomb(100_000, prefix)
    assert Image.open(io.BytesIO(data)).size == (1, 2)
    with pytest.raises(PayloadTooLargeError, match="strips"):
        decode_image(data, MAX)
    assert decode_image(tiff_strip_bomb(1000, prefix), MAX).size == (1, 2)  # the next request still served


class CountingReader(io.BytesIO):
    """Counts the bytes read, to show how far a check walked into a file."""

    taken = 0

    def read(self, size=-1):
        data = super().read(size)
        self.taken += len(data)
        return data


@pytest.mark.parametrize("segments, fill", [(3_700_000, 0), (_file_limits.MAX_JPEG_SEGMENTS, 0),
                                            (0, 15_000_000), (0, _file_limits.MAX_JPEG_LOOSE_BYTES + 1)])
def test_a_jpeg_header_padded_far_beyond_a_real_one_is_refused_early(segments, fill):
    # Pillow walks a JPEG's header in Python, a step per segment and per byte between them: 15 MB
    # of empty APP segments or of fill bytes held ~5 s of CPU. Refused after a bounded walk.
    source = CountingReader(jpeg_header_padding_bomb(segments, fill))
    with pytest.raises(PayloadTooLargeError, match="JPEG header"):
        decode_image(source, MAX)
    assert source.taken < 4 * _file_limits.MAX_JPEG_SEGMENTS + _file_limits.MAX_JPEG_LOOSE_BYTES + 4096


@pytest.mark.parametrize("segments, fill", [(0, 0), (200, 0), (0, 100), (900, _file_limits.MAX_JPEG_LOOSE_BYTES - 1)])
def test_a_jpeg_header_within_the_limits_decodes(segments, fill):
    assert decode_image(jpeg_header_padding_bomb(segments, fill), MAX).size == (8, 8)


@pytest.mark.parametrize("segments, segment", [(3_700_000, b"\xff\xd9\xff\xe5\x00\x02"), (7_500_000, b"\xff\xf0"),
                                               (7_500_000, b"\xff\xd8"), (7_500_000, b"\xff\xc8")],
                         ids=["APP5-after-EOI", "JPG0", "SOI", "JPG"])
def test_a_jpeg_header_of_markers_pillow_reads_on_past_or_without_a_length_is_refused_early(segments, segment):
    # Pillow's parser reads on past an EOI to the first SOS, and takes SOI, JPG and JPGn as markers
    # without a length: 15 MB of them held ~3.6-5 s of CPU (up to ~0.6 GB) before the 422, while
    # the check stopped at the EOI or skipped the rest as one segment's payload
    source = CountingReader(jpeg_header_padding_bomb(segments, 0, segment))
    with pytest.raises(PayloadTooLargeError, match="JPEG header"):
        decode_image(source, MAX)
    assert source.taken < 6 * _file_limits.MAX_JPEG_SEGMENTS + _file_limits.MAX_JPEG_LOOSE_BYTES + 4096


@pytest.mark.parametrize("extensions, payload", [(3_000_000, b"\x01x"), (5_000_000, b""),
                                                  (_file_limits.MAX_GIF_BLOCKS // 2 + 1, b"\x01x")])
def test_a_gif_with_far_more_extension_blocks_than_a_real_one_is_refused_early(extensions, payload):
    # Pillow walks and keeps every comment sub-block before the first image in Python: 15 MB of
    # one-byte comments held ~1.4 s of CPU and ~0.5 GB, more than a 512 MB function has.
    source = CountingReader(gif_extension_bomb(extensions, payload))
    with pytest.raises(PayloadTooLargeError, match="GIF has more than"):
        decode_image(source, MAX)
    assert source.taken < 4 * _file_limits.MAX_GIF_BLOCKS + 4096


@pytest.mark.parametrize("extensions, stray", [(0, b"\x00" * 15_000_000), (3_000_000, b"\x00"),
                                                (0, b"\x00" * (_file_limits.MAX_GIF_BLOCKS + 1))],
                         ids=["15MB-of-stray-bytes", "a-stray-byte-then-3M-comments", "just-over-the-limit"])
def test_a_gif_with_stray_bytes_before_its_image_is_refused_early(extensions, stray):
    # Pillow skips a stray byte between blocks one at a time and walks on: 15 MB of them held ~1.1 s
    # of CPU; one stray byte before 3 million one-byte comments, ~2.3 s and ~0.65 GB, and decoded
    source = CountingReader(gif_extension_bomb(extensions, b"\x01x", stray))
    with pytest.raises(PayloadTooLargeError, match="GIF has more than"):
        decode_image(source, MAX)
    assert source.taken < 4 * _file_limits.MAX_GIF_BLOCKS + 4096


@pytest.mark.parametrize("kind, where", [(b"abCd", "before"), (b"tEXt", "before"), (b"IDAT", "before"),
                                         (b"tEXt", "after")])
def test_a_png_with_far_more_chunks_than_a_real_one_is_refused_early(kind, where):
    # Pillow reads every chunk in Python, before the image data, between IDATs and after them: 12 MB of
    # empty chunks held 0.9-2.5 s of CPU. Refused after a bounded walk of the chunk headers.
    source = CountingReader(png_chunk_bomb(1_000_000, kind, where))
    with pytest.raises(PayloadTooLargeError, match="PNG has more than"):
        decode_image(source, MAX)
    assert source.taken < 8 * (_file_limits.MAX_PNG_CHUNKS + 2) + 4096  # chunk headers only


@pytest.mark.parametrize("kind", [b"abCd", b"IDAT"])
def test_a_png_at_the_chunk_limit_decodes_and_one_more_is_refused(kind):
    at_limit = _file_limits.MAX_PNG_CHUNKS - 2  # with IHDR and the image's IDAT (IEND ends the walk)
    assert decode_image(png_chunk_bomb(at_limit, kind), MAX).size == (8, 8)
    with pytest.raises(PayloadTooLargeError, match="PNG has more than"):
        decode_image(png_chunk_bomb(at_limit + 1, kind), MAX)


def test_an_animated_png_of_many_frames_decodes_its_first_without_reading_the_rest():
    # Pillow reads an animated PNG's chunks only up to the next frame: 40,000 frames (80,000 chunks) cost
    # it nothing, and the check stops where Pillow does. A 1-frame acTL is no animation: read to IEND.
    source = CountingReader(apng(40_000))
    assert np.asarray(decode_image(source, MAX)).tolist() == [[[128, 128, 128]]]
    assert source.taken < 4096
    still, iend = apng(1)[:-12], apng(1)[-12:]  # one frame: Pillow reads on to IEND
    filler = png_chunk(b"abCd", b"") * _file_limits.MAX_PNG_CHUNKS
    with pytest.raises(PayloadTooLargeError, match="PNG has more than"):
        decode_image(still + filler + iend, MAX)
    assert decode_image(still + iend, MAX).size == (1, 1)


def test_a_gif_with_a_long_comment_or_a_few_extensions_decodes():
    long_comment = gif_extension_bomb(1, (b"\xff" + b"c" * 255) * 58_000)  # 15 MB in 255-byte sub-blocks
    assert decode_image(long_comment, MAX).size == (8, 8)
    frames = [Image.new("P", (8, 8), i) for i in range(5)]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], comment=b"hello", loop=0)
    assert decode_image(animated, MAX).size == (8, 8)
    assert decode_image(gif_extension_bomb(3, b"\x01x", b"\x00" * 100), MAX).size == (8, 8)  # a few stray bytes


@pytest.mark.parametrize("entries, refused", [(_file_limits.MAX_TIFF_ENTRIES, False), (_file_limits.MAX_TIFF_ENTRIES + 1, True),
                                               (700_000, True)])
def test_a_bigtiff_directory_of_far_more_entries_than_a_real_one_is_refused(entries, refused):
    # 700,000 entries (14 MB): Pillow parsed them in Python for ~0.6 s and ~0.2 GB
    tags = [(256, 4, 1, 1), (257, 4, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 16, 1, 0),
            (277, 3, 1, 1), (278, 4, 1, 1), (279, 16, 1, 1)]
    tags = sorted(tags + [(40000 + i % 25000, 1, 1, 0) for i in range(entries - len(tags))])
    pixel = 16 + 8 + 20 * len(tags) + 8
    directory = b"".join(struct.pack("<HHQQ", tag, kind, count, pixel if tag == 273 else value)
                         for tag, kind, count, value in tags)
    data = b"II+\x00" + struct.pack("<HHQQ", 8, 0, 16, len(tags)) + directory + bytes(8) + b"\x80"
    if refused:
        with pytest.raises(PayloadTooLargeError, match="directory has more than"):
            decode_image(data, MAX)
    else:
        assert decode_image(data, MAX).size == (1, 1)


def test_a_pixel_limit_above_pillows_own_is_honoured(monkeypatch):
    # Pillow warns past Image.MAX_IMAGE_PIXELS (89.5 MP; an error in decode_image) and refuses past
    # twice it: a MAX_IMAGE_PIXELS setting above that was capped, and the 413 claimed the image was over it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    warned, refused = encode(Image.new("L", (40, 40), 9), "PNG"), encode(Image.new("L", (50, 50), 9), "PNG")  # 1600, 2500 pixels
    assert decode_image(warned, 2500).size == (40, 40)
    assert decode_image(refused, 2500).size == (50, 50)
    with pytest.raises(PayloadTooLargeError, match="50x50"):
        decode_image(refused, 2499)
    assert decode_image(warned, 2000).size == (40, 40)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_the_decoded_pixels_are_capped_by_what_memory_holds(fmt):
    # settings.decode_pixel_budget: over it, the decode would outgrow MemorySize (Lambda kills the runtime)
    data = encode(Image.new("RGBA" if fmt in ("PNG", "WEBP", "TIFF") else "RGB", (400, 300), (9, 9, 9)), fmt)
    budget = 400 * 300 + -(-400 * DECODE_BYTES_PER_ROW // DECODE_BYTES_PER_PIXEL)  # its pixels, and its rows
    assert decode_image(data, MAX, max_decoded_pixels=budget).size == (400, 300)
    with pytest.raises(PayloadTooLargeError, match="400x300 image needs more memory than the function has"):
        decode_image(data, MAX, max_decoded_pixels=budget - 1)


@pytest.mark.parametrize("size", [(1, 60_000), (60_000, 1)])
def test_a_one_pixel_wide_image_is_charged_for_its_rows(size):
    # Pillow keeps a row pointer per row in each image a decode builds: a 1 x 50M PNG with alpha (146 KB)
    # peaked at 2.3 GB, 45 bytes a pixel, where the budget counted 18 (the runtime was killed at 2048 MB).
    data = encode(Image.new("LA", size, (9, 200)), "PNG")
    with pytest.raises(PayloadTooLargeError, match="needs more memory"):
        decode_image(data, MAX, max_decoded_pixels=150_000)  # 60,000 pixels, but 160,000 more for the rows
    assert decode_image(data, MAX, max_decoded_pixels=220_000).size == size


@pytest.mark.parametrize("bomb", [
    bmp_rle8(3000, 3000),  # 13 KB, ~2.5 s of Python (7071 x 7071: 12 s)
    bmp_rle8(1, 1, b"\x00\x00" * 500_000 + b"\x00\x01"),  # 1 MB of ends of line that add no pixel, ~0.5 s
], ids=["many-pixels", "long-data"])
def test_a_costly_run_length_encoded_bmp_is_refused_before_pillow_walks_it(bomb):
    # Pillow decodes RLE BMPs in Python, a step per pixel and per 2-4 bytes of data.
    with pytest.raises(PayloadTooLargeError, match="run-length encoded"):
        decode_image(bomb, MAX)


def test_an_ordinary_run_length_encoded_bmp_is_decoded():
    assert MAX_BMP_RLE_PIXELS == 1000 * 1000
    assert np.asarray(decode_image(bmp_rle8(1000, 1000), MAX))[0, 0].tolist() == [7, 7, 7]  # one pixel a row, then 0
    runs_of_one = b"".join(b"\x01%c" % (x % 256) for x in range(30)) + b"\x00\x00"  # 2 bytes a pixel, the most
    assert decode_image(bmp_rle8(30, 20, runs_of_one * 20 + b"\x00\x01"), MAX).size == (30, 20)
    with_profile = runs_of_one * 20 + b"\x00\x01" + b"\x00" * 10_000  # e.g. a V5 header's ICC profile after the bitmap
    assert decode_image(bmp_rle8(30, 20, with_profile), MAX).size == (30, 20)


def test_a_sequential_jpeg_in_separate_scans_is_held_to_the_scan_limit():
    # Components in separate scans: libjpeg reads any number of scans of such a frame, not only of a
    # progressive one, each a pass over every block (arithmetic-coded: 13 KB held 30 s of CPU).
    assert decode_image(jpeg_sequential_scans(64, 64), MAX).getextrema() == ((128, 128),) * 3
    with pytest.raises(PayloadTooLargeError, match="more than 100 scans"):
        decode_image(jpeg_sequential_scans(64, 64, repeats=150), MAX)


@pytest.mark.parametrize("progressive", [False, True])
def test_an_arithmetic_coded_jpeg_is_refused_before_it_is_decoded(progressive, monkeypatch):
    data = jpeg_arithmetic(progressive)
    with pytest.raises(UnsupportedMediaError, match="arithmetic-coded") as caught:
        decode_image(data, MAX)
    assert caught.value.status == 415
    monkeypatch.setattr(_file_limits, "ARITHMETIC_SOF", frozenset())  # the file is real: libjpeg would decode it
    assert decode_image(data, MAX).getpixel((10, 10)) == (200, 31, 90)


def test_huffman_coded_jpegs_of_every_kind_still_decode():
    picture = Image.new("RGB", (64, 48), (200, 30, 90))
    for kw in ({}, {"progressive": True}, {"optimize": True}, {"subsampling": 0}):
        assert decode_image(encode(picture, "JPEG", **kw), MAX).size == (64, 48)


def test_jpeg_compressed_tiffs_decode():
    for mode, colour in (("RGB", (200, 30, 90)), ("L", 77)):
        image = decode_image(encode(Image.new(mode, (640, 480), colour), "TIFF", compression="jpeg"), MAX)
        assert image.size == (640, 480) and image.getpixel((5, 5)) == ((colour,) * 3 if mode == "L" else colour)
    strip = encode(Image.new("L", (64, 12), 100), "JPEG")
    assert decode_image(tiff_jpeg_strips(strip, 64, 48, strips=4), MAX).getpixel((3, 40)) == (100, 100, 100)


def _progressive_gray(width: int, height: int, scans: int) -> bytes:
    return jpeg_scan_bomb(width, height, scans - 6)  # libjpeg's progression for gray has 6 scans


def test_a_tiffs_jpeg_strip_is_held_to_the_scan_limit_of_a_jpeg_of_the_images_size():
    # libtiff hands each strip to libjpeg as it is; 60 scans: allowed at 4 MP, not at 25 MP (limit 50)
    assert decode_image(tiff_jpeg_strips(_progressive_gray(2000, 2000, 60), 2000, 2000), MAX).size == (2000, 2000)
    with pytest.raises(PayloadTooLargeError, match="JPEG strips"):
        decode_image(tiff_jpeg_strips(_progressive_gray(5000, 5000, 60), 5000, 5000), MAX)
    with pytest.raises(PayloadTooLargeError, match="JPEG strips"):  # over 100 in one strip, at any size
        decode_image(tiff_jpeg_strips(_progressive_gray(64, 12, 101), 64, 48, strips=4), MAX)


def test_the_scans_of_every_strip_add_up():
    # 100 strips of 50 rows, each a copy of the same 60-scan stream: 6000 scans of 250,000 pixels
    # is 1.5e9 pixel-scans, over the 1.25e9 a 25 MP JPEG may cost, though no strip has more than 60
    with pytest.raises(PayloadTooLargeError, match="JPEG strips"):
        decode_image(tiff_jpeg_strips(_progressive_gray(5000, 50, 60), 5000, 5000, strips=100), MAX)


def test_a_tiled_tiffs_jpeg_tiles_are_held_to_the_same_limit():
    tile = _progressive_gray(256, 256, 60)  # every tile points at it: 60 scans each
    assert decode_image(tiff_jpeg_strips(tile, 512, 512, tile=256), MAX).getpixel((300, 300)) == (128, 128, 128)
    with pytest.raises(PayloadTooLargeError, match="JPEG strips or tiles"):  # 400 tiles x 60 scans x 65,536 px: 1.57e9 > 1.23e9
        decode_image(tiff_jpeg_strips(tile, 5120, 5120, tile=256), MAX)


def _retype(tiff: bytes, tag: int, kind: int) -> bytes:
    """The classic little-endian TIFF with the first directory's ``tag`` entry given type ``kind``."""
    out, ifd = bytearray(tiff), int.from_bytes(tiff[4:8], "little")
    for at in range(ifd + 2, ifd + 2 + 12 * int.from_bytes(tiff[ifd:ifd + 2], "little"), 12):
        if int.from_bytes(out[at:at + 2], "little") == tag:
            out[at + 2:at + 4] = kind.to_bytes(2, "little")
    return bytes(out)


def test_odd_integer_types_do_not_hide_the_tiff_jpeg_checks():
    # libtiff reads a SLONG or IFD StripOffsets, or an SSHORT Compression, as it reads the usual types
    over = tiff_jpeg_strips(_progressive_gray(5000, 5000, 60), 5000, 5000)
    for kind in (9, 13):
        with pytest.raises(PayloadTooLargeError, match="JPEG strips"):
            decode_image(_retype(over, 273, kind), MAX)
    old_style = tiff_jpeg_strips(encode(Image.new("L", (64, 48), 100), "JPEG"), 64, 48, compression=6)
    with pytest.raises(UnsupportedMediaError, match="old-style JPEG"):
        decode_image(_retype(old_style, 259, 8), MAX)


def test_a_tiff_jpeg_strip_larger_than_the_strip_is_refused():
    # libtiff lets the last strip's JPEG be taller than the rows left, and a progressive frame is
    # decoded whole: 402 bytes that say 20000 x 30000 held 1.1 GB
    jpeg = bytearray(encode(Image.new("L", (16, 16), 128), "JPEG", progressive=True))
    struct.pack_into(">HH", jpeg, jpeg.index(b"\xff\xc2") + 5, 30000, 20000)
    with pytest.raises(PayloadTooLargeError, match="larger than its 20000 x 1 pixels"):
        decode_image(tiff_jpeg_strips(bytes(jpeg), 20000, 1), MAX)
    fitting = encode(Image.new("L", (64, 16), 128), "JPEG")  # the last strip a full strip tall: libtiff allows it
    assert decode_image(tiff_jpeg_strips(fitting, 64, 40, strips=3, rows=16), MAX).size == (64, 40)
    assert decode_image(tiff_jpeg_strips(fitting, 64, 10, rows=16), MAX).size == (64, 10)  # one strip, 16 rows coded
    with pytest.raises(PayloadTooLargeError, match="larger than its 64 x 64 pixels"):  # 80 rows: past the rounding
        decode_image(tiff_jpeg_strips(encode(Image.new("L", (64, 80), 128), "JPEG"), 64, 10, rows=2**32 - 1), MAX)


def test_too_many_tiff_jpeg_strips_are_refused():
    strip = encode(Image.new("L", (8, 8), 128), "JPEG")
    strips = _file_limits.MAX_TIFF_JPEG_STRIPS + 1
    with pytest.raises(PayloadTooLargeError, match="JPEG strips or tiles"):
        decode_image(tiff_jpeg_strips(strip, 8, 8 * strips, strips=strips), MAX)


def test_compressed_tiff_strips_may_not_add_up_to_more_bytes_than_the_file():
    # libtiff decodes each strip: shared bytes multiply the work (1 MB of empty Deflate blocks behind
    # 64 one-pixel strips held 10 s of CPU)
    row = zlib.compress(bytes(range(64)))
    assert decode_image(tiff_jpeg_strips(row, 64, 64, strips=64, compression=8), MAX).getpixel((63, 63)) == (63,) * 3
    with pytest.raises(PayloadTooLargeError, match="more bytes than the file"):
        decode_image(tiff_jpeg_strips(row, 64, 64, strips=64, compression=8, shared=True), MAX)
    assert decode_image(encode(Image.new("RGB", (640, 480), (20, 200, 90)), "TIFF", compression="tiff_adobe_deflate"),
                        MAX).getpixel((600, 470)) == (20, 200, 90)


def test_a_png_with_more_image_data_than_its_pixels_need_is_refused():
    # zlib's cost follows its input: 14 MB of empty Deflate blocks behind one pixel held 2.2 s of CPU
    row = b"\x00\x80"  # filter byte, one gray pixel
    assert decode_image(png(1, 1, 8, 0, zlib.compress(row)), MAX).getpixel((0, 0)) == (128, 128, 128)
    assert decode_image(png(1, 1, 8, 0, zlib_with_empty_blocks(60_000, row)), MAX).size == (1, 1)  # within the slack
    with pytest.raises(PayloadTooLargeError, match="more compressed image data"):
        decode_image(png(1, 1, 8, 0, zlib_with_empty_blocks(200_000, row)), MAX)


def test_a_keyed_sixteen_bit_rgb_png_may_carry_half_the_image_data():
    # decoded twice (the colour key's low bytes): 12 MB of empty Deflate blocks within 1.25x its rows held
    # 3.1-4 s of CPU; half the download cap in all costs no more than one file at the cap
    side = 1280
    stored = zlib.compress((b"\x00" + bytes(6 * side)) * side, 0)  # 9.8 MB, all black: within 1.25x its rows
    assert len(stored) > _file_limits.PNG_KEYED_16_BIT_DATA
    black = png(side, side, 16, 2, stored)
    with pytest.raises(PayloadTooLargeError, match="16-bit RGB PNG with a colour key holds more than 7864320 bytes"):
        decode_image(png_keyed(black, bytes(6)), MAX)
    assert decode_image(black, MAX).getpixel((0, 0)) == (0, 0, 0)  # without the key: once, any size
    assert decode_image(trns_after_idat(png_keyed(black, bytes(6))), MAX).getpixel((0, 0)) == (0, 0, 0)  # a late key is ignored
    small = png(side, side, 16, 2, zlib.compress((b"\x00" + bytes(6 * side)) * side))
    assert decode_image(png_keyed(small, bytes(6)), MAX).getpixel((0, 0)) == (255, 255, 255)  # keyed: composited on white
    eight_bit = png(1700, 1700, 8, 2, zlib.compress((b"\x00" + bytes(3 * 1700)) * 1700, 0))  # 8.7 MB: decoded once
    assert len(eight_bit) > _file_limits.PNG_KEYED_16_BIT_DATA
    assert decode_image(png_keyed(eight_bit, bytes(6)), MAX).getpixel((0, 0)) == (255, 255, 255)


def test_real_pngs_are_within_the_image_data_bound():
    noise = Image.fromarray(np.random.default_rng(3).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    for data in (encode(noise, "PNG", compress_level=0), encode(noise, "PNG", compress_level=9),
                 png_rgb16(np.asarray(noise, np.uint16) * 257),
                 encode(noise.convert("RGBA"), "PNG"), encode(noise.convert("P"), "PNG"), encode(noise.convert("1"), "PNG")):
        assert decode_image(data, MAX).size == (400, 300)


@pytest.mark.parametrize("junk", [b"\x00", b"\xff\x01", b"\xff\xe5\x00\x00"])
def test_junk_after_the_start_of_a_tiff_jpeg_strip_does_not_hide_its_frame(junk):
    # libjpeg skips (or only warns about) what a header walk would stop at; the frame is found as bytes
    jpeg = encode(Image.new("L", (600, 600), 128), "JPEG", progressive=True)
    with pytest.raises(PayloadTooLargeError, match="larger than its 600 x 1 pixels"):
        decode_image(tiff_jpeg_strips(jpeg[:2] + junk + jpeg[2:], 600, 1), MAX)


def test_an_arithmetic_coded_tiff_jpeg_strip_is_refused():
    with pytest.raises(UnsupportedMediaError, match="arithmetic-coded"):
        decode_image(tiff_jpeg_strips(jpeg_arithmetic(), 64, 48), MAX)


def _png_chunks(*chunks: tuple[bytes, bytes]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, data) for kind, data in chunks) + png_chunk(b"IEND", b"")


def test_every_way_pillow_reads_image_data_is_counted():
    one_pixel = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    padded = zlib_with_empty_blocks(300_000, b"\x00\x80")
    for chunks in ([(b"IHDR", one_pixel), (b"IDAT", padded[:2]), (b"DDAT", padded[2:])],  # DDAT: Pillow reads it too
                   [(b"tEXt", b"k\x00v"), (b"IHDR", one_pixel), (b"IDAT", padded)],  # IHDR not first
                   [(b"IHDR", struct.pack(">IIBBBBB", 16384, 16384, 16, 6, 0, 0, 0)), (b"IHDR", one_pixel),
                    (b"IDAT", padded)]):  # two IHDRs: Pillow uses the second
        with pytest.raises(PayloadTooLargeError, match="more compressed image data"):
            decode_image(_png_chunks(*chunks), MAX)


def test_compressed_png_metadata_is_capped():
    one_pixel = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    image = (b"IDAT", zlib.compress(b"\x00\x80"))
    with pytest.raises(PayloadTooLargeError, match="compressed text or colour profile"):  # Pillow inflates it whole
        decode_image(_png_chunks((b"IHDR", one_pixel), (b"zTXt", b"k\x00\x00" + zlib_with_empty_blocks(3_000_000, b"v")),
                                 image), MAX)
    with pytest.raises(PayloadTooLargeError, match="compressed text or colour profile"):
        decode_image(_png_chunks((b"IHDR", one_pixel), (b"iTXt", b"k\x00\x01\x00\x00\x00" + zlib_with_empty_blocks(
            3_000_000, b"v")), image), MAX)
    uncompressed_itxt = (b"iTXt", b"k\x00\x00\x00\x00\x00" + b"v" * 3_000_000)  # not inflated: no limit
    assert decode_image(_png_chunks((b"IHDR", one_pixel), uncompressed_itxt, image), MAX).size == (1, 1)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert decode_image(encode(Image.new("RGB", (64, 48)), "PNG", icc_profile=profile), MAX).size == (64, 48)


def test_an_animated_png_with_a_default_image_and_one_frame_decodes():
    noise = Image.fromarray(np.random.default_rng(4).integers(0, 256, (600, 800, 3), dtype=np.uint8))
    data = encode(noise, "PNG", save_all=True, append_images=[noise.rotate(90)], default_image=True)
    assert decode_image(data, MAX).size == (800, 600)


def test_old_style_jpeg_in_tiff_is_refused():
    with pytest.raises(UnsupportedMediaError, match="old-style JPEG") as caught:
        decode_image(tiff_jpeg_strips(encode(Image.new("L", (64, 48), 100), "JPEG"), 64, 48, compression=6), MAX)
    assert caught.value.status == 415


def test_a_jpeg_is_held_to_the_memory_cap_at_the_size_it_is_decoded_at():
    spec = Preprocessing(width=224, height=224, resize="bicubic", crop_fraction=0.875)
    data = encode(Image.new("RGB", (4000, 3000), (90, 120, 30)), "JPEG")
    fit = functools.partial(draft_size, spec)
    reduced = decode_image(data, MAX, draft_size=fit, max_decoded_pixels=1_000_000)  # 12 MP, decoded at 1/4
    assert reduced.size == (1000, 750)
    with pytest.raises(PayloadTooLargeError, match="4000x3000"):
        decode_image(data, MAX, max_decoded_pixels=1_000_000)  # no reduction asked for: all 12 MP


def _first_scan_of_one_component(data: bytes) -> bytes:
    """The baseline JPEG with its first scan's header listing only its first component: libjpeg then
    reads it in several scans (a sequential JPEG may send each component in a scan of its own)."""
    sos = data.index(b"\xff\xda")
    components = data[sos + 4]
    assert components > 1
    spectral = data[sos + 5 + 2 * components:sos + 8 + 2 * components]  # Ss, Se, Ah/Al
    header = b"\xff\xda" + struct.pack(">HB", 8, 1) + data[sos + 5:sos + 7] + spectral
    return data[:sos] + header + data[sos + 8 + 2 * components:]


@pytest.mark.parametrize("kind", ["progressive", "multi-scan"])
def test_a_jpeg_read_in_several_scans_is_held_to_the_memory_cap_with_its_full_size_coefficients(kind):
    # libjpeg keeps every DCT coefficient of the full-size image (2 bytes each) for a JPEG it reads
    # in several scans, whatever the reduction: a 9 MB progressive CMYK JPEG of 50 MP, decoded at
    # 1/8 (0.8 MP, within an 18 MP budget), peaked ~390 MB over the warm runtime: a 512 MB function's
    spec = Preprocessing(width=224, height=224, resize="bicubic", crop_fraction=0.875)
    fit = functools.partial(draft_size, spec)
    picture = Image.new("RGB", (4000, 3000), (90, 120, 30))
    data = (encode(picture, "JPEG", progressive=True) if kind == "progressive"
            else _first_scan_of_one_component(encode(picture, "JPEG")))
    assert _file_limits.check(io.BytesIO(data), 50_000_000) == (3 if kind == "progressive" else 1)
    with pytest.raises(PayloadTooLargeError, match="4000x3000"):  # 0.75 MP decoded + 36 MB of coefficients (2 MP)
        decode_image(data, MAX, draft_size=fit, max_decoded_pixels=1_000_000)
    if kind == "progressive":
        assert decode_image(data, MAX, draft_size=fit, max_decoded_pixels=3_000_000).size == (1000, 750)
    assert decode_image(encode(picture, "JPEG"), MAX, draft_size=fit, max_decoded_pixels=1_000_000).size == (1000, 750)
