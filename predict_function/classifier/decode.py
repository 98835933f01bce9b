"""Image bytes, or a body still downloading -> an upright RGB image, within format and pixel limits."""

from __future__ import annotations

import io
import warnings
from typing import BinaryIO, Callable

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

# The decoders of ALLOWED_FORMATS, registered at import (cold start). Left to Image.open, the first
# request would import them (~9 ms), and the first WebP/GIF/BMP/TIFF one every plugin Pillow has.
from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin  # noqa: F401

from . import _file_limits, _libtiff
from ._jpeg_scans import ScanLimitedReader, scan_limit
from .errors import ClassifierError, CorruptImageError, PayloadTooLargeError, UnsupportedMediaError
from .settings import DECODE_BYTES_PER_PIXEL
from .spec import SOURCE_GRID_KEY, SourceGrid

_libtiff.silence_errors()  # libtiff's error messages would be plain-text lines among the JSON logs

# Formats Pillow may try; anything else is refused before a decoder runs.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Their leading bytes, as Pillow's plugins check them (WebP: RIFF....WEBP, and BMP: "BM" then a
# known DIB header size at byte 14, checked apart; TIFF: Pillow's PREFIXES).
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a") + _file_limits.TIFF_PREFIXES
_DIB_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)
Image.preinit()  # the other decoders Image.open would import first (PPM)
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
# PNG gray rawmodes Pillow scales to 8 bits -> the factor (0-3 -> 0-255, 0-15 -> 0-255).
_LOW_BIT_GRAY_SCALE = {"L;2": 0x55, "L;4": 0x11}
# EXIF orientation -> the transpose that makes the image upright (ImageOps.exif_transpose's), and what
# it does to the axes: (swaps them, reverses the upright x axis, reverses the upright y axis). Other
# values: the image is left as stored.
_ORIENTATIONS = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT, (False, True, False)),
    3: (Image.Transpose.ROTATE_180, (False, True, True)),
    4: (Image.Transpose.FLIP_TOP_BOTTOM, (False, False, True)),
    5: (Image.Transpose.TRANSPOSE, (True, False, False)),
    6: (Image.Transpose.ROTATE_270, (True, True, False)),  # 90 degrees clockwise
    7: (Image.Transpose.TRANSVERSE, (True, True, True)),
    8: (Image.Transpose.ROTATE_90, (True, False, True)),
}
_STORED_UPRIGHT = (None, (False, False, False))
# Bytes a decoded image costs per row, besides its pixels (DECODE_BYTES_PER_PIXEL): Pillow keeps a row
# pointer (8 bytes) in each of the up to 5 images a decode builds (the frame, a transposed copy, RGBA,
# its alpha band, the white background). A 1 x 50M-pixel PNG with alpha (146 KB) peaked at 2.3 GB, 45
# bytes a pixel, against the 18 a pixel budget alone allows; a row is charged for each pixel of the
# longer side (a transpose swaps them).
DECODE_BYTES_PER_ROW = 48
# Pillow decodes a run-length-encoded BMP (RLE8, RLE4) in Python, a step per pixel and per 2-4 bytes of
# data: a 29 KB file of 7071 x 7071 held 11-13 s of CPU, a 14 MB one of 1 x 1 (rows of no-op codes) 6-8 s.
# Such files are icons and old Windows graphics; their data never needs more than 2 bytes a pixel (a run
# of one), 2 a row (end of line) and 2 (end of bitmap).
MAX_BMP_RLE_PIXELS = 1_000_000
_BMP_TRAILER_BYTES = 65536  # what may follow the bitmap (a V5 header's ICC profile): ~30 ms of Python at most


def decode_image(
    data: bytes | BinaryIO, max_pixels: int, draft_size: Callable[[int, int], tuple[int, int]] | None = None,
    max_decoded_pixels: int | None = None,
) -> Image.Image:
    """Decode the first frame, apply EXIF orientation, return an RGB image.

    ``data`` is the image's bytes or a readable, seekable binary file such as a URL's body
    still downloading (``fetch.Fetched``): Pillow reads a file in blocks (64 KiB) as it
    decodes, so the decode overlaps the download and stops reading once the first frame is
    decoded (not a PNG, whose chunks ``_file_limits`` counts to the end first, nor a TIFF or
    WebP, which Pillow reads whole). Errors the file itself raises (``ClassifierError``: 413, 502, 504 from the
    download) pass through unchanged; the caller closes the file.

    The pixel count is checked from the header before any pixel is decoded, so a
    decompression bomb is refused cheaply; Pillow's own bomb guard stays on too.
    ``draft_size(width, height)`` gives the smallest size the caller needs, both sizes upright
    (EXIF orientation applied, as returned): a JPEG is then decoded at the largest DCT reduction
    (1/2, 1/4, 1/8) that still covers it, several times faster than a full decode of a phone photo, and ``image.info`` carries a
    ``spec.SourceGrid`` saying where the full-size image lies on the reduced pixels (so the
    center crop is taken where a full decode would take it). ``max_decoded_pixels`` caps the
    pixels actually decoded (after that reduction), the most the function's memory holds.
    """
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if not source.read(1):
        raise UnsupportedMediaError("the image is empty")
    _defer_pillow_pixel_limit(max_pixels)
    try:
        first_scan = _file_limits.check(source, max_pixels)  # TIFF, JPEG header, GIF, PNG, WebP: before Pillow or libwebp walks them
        source.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": stray stderr lines per request
            image = Image.open(source, formats=ALLOWED_FORMATS)
            _check_pixels(image, max_pixels)
            image.info.pop(SOURCE_GRID_KEY, None)  # only this function may set it
            full_size = image.size
            reduced = None
            if isinstance(image, JpegImagePlugin.JpegImageFile):  # (MPO too)
                if _several_scans(image, first_scan):  # load() reads through it: no scan bomb
                    image.fp = ScanLimitedReader(image.fp, scan_limit(full_size[0] * full_size[1]))
                if draft_size is not None:
                    reduced = image.draft(image.mode, _stored_draft_size(image, draft_size))
            _check_decoded_pixels(image, full_size, first_scan, max_decoded_pixels)
            _check_bmp_compression(image, source)
            png = image.format == "PNG"
            if png and "transparency" in image.info:
                _scale_low_bit_gray_key(image)
            png_key = image.info.get("transparency") if png else None  # what the chunks before IDAT said
            sixteen_bit_key = png_key is not None and _is_sixteen_bit_rgb_png(image)
            image.load()  # first frame only; reads the whole frame so truncation shows here
            if png:  # a tRNS after IDAT (load() still reads it into info) is out of place: ignored, as libpng does
                if png_key is None:
                    image.info.pop("transparency", None)
                else:
                    image.info["transparency"] = png_key
            if sixteen_bit_key:
                _apply_sixteen_bit_key(image, source)
            grid = _source_grid(image, full_size, reduced)  # before the orientation is consumed
            image = to_rgb(_upright(image))
            if grid is not None:
                image.info[SOURCE_GRID_KEY] = grid
            return image
    except ClassifierError:  # ours (pixel limit), or the download's: never a corrupt image
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLargeError(f"image has more than the {max_pixels} pixel limit") from exc
    except UnidentifiedImageError as exc:
        if _starts_like_an_allowed_format(source):  # e.g. a TIFF cut before its directory
            raise CorruptImageError("the image is truncated or corrupt") from exc
        raise UnsupportedMediaError(
            f"not an image in a supported format ({', '.join(ALLOWED_FORMATS)})"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise CorruptImageError("the image is truncated or corrupt") from exc


def _is_sixteen_bit_rgb_png(image: Image.Image) -> bool:
    """A 16-bit RGB PNG not loaded yet (its tile is what load() will decode)."""
    return image.format == "PNG" and image.mode == "RGB" and [tile.args for tile in image.tile] == ["RGB;16B"]


def _scale_low_bit_gray_key(image: Image.Image) -> None:
    """A 2- or 4-bit gray PNG's tRNS key on the 8-bit scale of its pixels, before load().

    Pillow scales such pixels to 8 bits (rawmodes L;2 and L;4: x 0x55 and x 0x11,
    libImaging/Unpack.c) but leaves ``info["transparency"]`` at the file's bit depth, so to_rgb's
    keying would miss the key (or hit the pixels whose scaled value happens to equal it).
    """
    scale = _LOW_BIT_GRAY_SCALE.get(image.tile[0].args) if image.mode == "L" and len(image.tile) == 1 else None
    if scale is not None and isinstance(image.info["transparency"], int):
        image.info["transparency"] *= scale


def _apply_sixteen_bit_key(image: Image.Image, source: BinaryIO) -> None:
    """The tRNS colour key of a loaded 16-bit RGB PNG as alpha, in place (RGB -> RGBA).

    Pillow decodes 16-bit RGB to 8 bits by keeping each sample's high byte (rawmode RGB;16B,
    libImaging/Unpack.c unpackRGB16B) but leaves ``info["transparency"]`` in 16-bit values:
    to_rgb's 8-bit keying would then miss the key (a value above 255) or key every pixel whose
    samples are all below 256 (a key below 256, e.g. black). A pixel is transparent when its high
    bytes are the key's and so are its low bytes, which a second decode of the file with rawmode
    RGB;16L (each sample's low byte) gives; it runs only when some pixel matches the high bytes.
    """
    key = image.info.pop("transparency")
    keyed = _pixels_equal(image, [sample >> 8 for sample in key])
    if not keyed.any():
        return
    source.seek(0)
    with Image.open(source, formats=("PNG",)) as low:
        low.tile = [tile._replace(args="RGB;16L") for tile in low.tile]
        low.load()
        keyed &= _pixels_equal(low, [sample & 0xFF for sample in key])
    if keyed.any():
        image.putalpha(Image.fromarray(~keyed))  # mode 1: 0 (transparent) where keyed


def _pixels_equal(image: Image.Image, colour: list[int]) -> np.ndarray:
    """Where the RGB ``image`` is ``colour``, one band at a time (1 byte a pixel per temporary)."""
    equal = np.asarray(image.getchannel(0)) == colour[0]
    for band in (1, 2):
        equal &= np.asarray(image.getchannel(band)) == colour[band]
    return equal


def _starts_like_an_allowed_format(source: BinaryIO) -> bool:
    """The file starts with the signature of an allowed format (what Pillow's plugins check
    first), so Pillow could not open it because it is broken further on, not another format."""
    source.seek(0)
    head = source.read(18)
    return (head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
            or (head[:2] == b"BM" and len(head) == 18 and int.from_bytes(head[14:], "little") in _DIB_HEADER_SIZES))


def _held_coefficients(image: Image.Image, full_size: tuple[int, int], first_scan: int | None) -> int:
    """Bytes libjpeg holds that a DCT reduction does not shrink: a JPEG read in several scans
    (progressive, or a first scan listing fewer components than the frame) keeps every DCT
    coefficient of the full-size image (2 bytes each, jdcoefct.c) whatever the reduction. A 9 MB
    progressive CMYK JPEG of 50 MP decoded at 1/8 (0.8 MP) peaked ~390 MB over the warm runtime.
    0 for a full-size decode, which DECODE_BYTES_PER_PIXEL covers (~10-12 bytes a pixel measured)."""
    if not isinstance(image, JpegImagePlugin.JpegImageFile) or image.size == full_size or not image.layer:
        return 0
    if not image.info.get("progressive") and (first_scan is None or first_scan >= image.layers):
        return 0
    h_max = max(max(h, 1) for _, h, _, _ in image.layer)
    v_max = max(max(v, 1) for _, _, v, _ in image.layer)
    held = 0
    for _, h, v, _ in image.layer:  # per component: its blocks, rounded up to whole MCUs, 64 coefficients each
        h, v = max(h, 1), max(v, 1)
        across, down = _ceil(_ceil(full_size[0] * h, h_max), 8), _ceil(_ceil(full_size[1] * v, v_max), 8)
        held += _ceil(across, h) * h * _ceil(down, v) * v * 64 * 2
    return held


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _check_decoded_pixels(image: Image.Image, full_size: tuple[int, int], first_scan: int | None,
                          max_decoded_pixels: int | None) -> None:
    """The pixels about to be decoded (a JPEG's after its DCT reduction), plus their rows
    (DECODE_BYTES_PER_ROW) and the full-size coefficients a JPEG read in several scans holds
    (both as pixels of DECODE_BYTES_PER_PIXEL), against what memory holds (no check where that
    is unknown)."""
    if max_decoded_pixels is None:
        return
    held = _ceil(_held_coefficients(image, full_size, first_scan), DECODE_BYTES_PER_PIXEL)
    rows = _ceil(max(image.size) * DECODE_BYTES_PER_ROW, DECODE_BYTES_PER_PIXEL)
    if image.width * image.height + held + rows > max_decoded_pixels:
        width, height = full_size if held else image.size
        raise PayloadTooLargeError(
            f"decoding a {width}x{height} image needs more memory than the function has (at most "
            f"{max_decoded_pixels} pixels at its MemorySize): send a smaller image, or raise MemorySize"
        )


def _defer_pillow_pixel_limit(max_pixels: int) -> None:
    """Pillow's bomb guard (a warning past ``Image.MAX_IMAGE_PIXELS``, an error in decode_image, and
    its own error past twice it) never refuses what ``max_pixels`` allows: raised to it if lower."""
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImageError("the image has no pixels")
    if width * height > max_pixels:
        raise PayloadTooLargeError(
            f"image is {width}x{height} pixels, over the {max_pixels} pixel limit"
        )


def _orientation(image: Image.Image) -> object:
    return image.getexif().get(ExifTags.Base.Orientation, 1)  # what ImageOps.exif_transpose reads


def _orientation_axes(image: Image.Image) -> tuple[bool, bool, bool]:
    """(swaps the axes, reverses x, reverses y): what _upright will do to ``image``."""
    return _ORIENTATIONS.get(_orientation(image), _STORED_UPRIGHT)[1]


def _upright(image: Image.Image) -> Image.Image:
    """``image`` as its EXIF orientation says it is seen (no copy when it is stored upright).

    Not ImageOps.exif_transpose: it also rewrites the EXIF block, which fails on tags of a type
    Pillow does not expect (struct.error, KeyError, OverflowError: real phone photos, Pillow
    issues #4037, #6882, #8965), and nothing here reads the EXIF once the pixels are upright."""
    method = _ORIENTATIONS.get(_orientation(image), _STORED_UPRIGHT)[0]
    return image if method is None else image.transpose(method)


def _several_scans(image: JpegImagePlugin.JpegImageFile, first_scan: int | None) -> bool:
    """libjpeg reads any number of scans of a progressive JPEG, or of a sequential one whose first
    scan lists fewer components than the frame (each repeat walks all the blocks again: an
    arithmetic-coded 13 KB file of 7000 x 7000 held 30 s of CPU); a sequential JPEG with every
    component in its first scan ends there (libjpeg: "Didn't expect more than one scan")."""
    return bool(image.info.get("progressive")) or first_scan is None or first_scan < image.layers


def _check_bmp_compression(image: Image.Image, source: BinaryIO) -> None:
    """A run-length-encoded BMP over MAX_BMP_RLE_PIXELS, or with more data than its pixels need."""
    if not isinstance(image, BmpImagePlugin.BmpImageFile) or image.info.get("compression") not in (1, 2):
        return
    pixels = image.width * image.height
    data = source.seek(0, io.SEEK_END) - image.tile[0].offset
    if pixels > MAX_BMP_RLE_PIXELS or data > 2 * pixels + 2 * image.height + 2 + _BMP_TRAILER_BYTES:
        raise PayloadTooLargeError(
            f"the BMP is run-length encoded and over {MAX_BMP_RLE_PIXELS} pixels or its data is longer than "
            "its pixels need: refused, decoding it would take too long (send it as PNG or JPEG)"
        )


def _stored_draft_size(image: Image.Image, draft_size: Callable[[int, int], tuple[int, int]]) -> tuple[int, int]:
    """``draft_size`` asked about the upright image, answered for the stored one that draft() reduces.

    (Without the swap, a non-square model input without a crop sizes the wrong axis for EXIF
    orientations 5-8 and the reduced decode loses its headroom.)
    """
    width, height = image.size
    if not _orientation_axes(image)[0]:
        return draft_size(width, height)
    upright_width, upright_height = draft_size(height, width)
    return upright_height, upright_width


def _source_grid(image: Image.Image, full_size: tuple[int, int], reduced: object) -> SourceGrid | None:
    """Where the full-size upright image lies on a reduced decode, once EXIF-transposed."""
    if not reduced or image.size == full_size:
        return None
    _, (_, _, reduced_width, _) = reduced  # draft() -> (mode, (0, 0, width / scale, height / scale))
    scale = full_size[0] / reduced_width
    # The decoded size is rounded up: the last column/row may cover less than ``scale`` pixels.
    pad_x = image.width - full_size[0] / scale
    pad_y = image.height - full_size[1] / scale
    swap, reverse_x, reverse_y = _orientation_axes(image)
    width, height = full_size[::-1] if swap else full_size
    pad_x, pad_y = (pad_y, pad_x) if swap else (pad_x, pad_y)
    return SourceGrid(
        width=width,
        height=height,
        scale=scale,
        decoded_size=(image.height, image.width) if swap else image.size,
        offset_x=pad_x if reverse_x else 0.0,
        offset_y=pad_y if reverse_y else 0.0,
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: transparency composited on white, 16-bit and float scaled, palettes
    expanded. Transparency is an alpha channel, or a colour key (``info["transparency"]``: a
    palette entry, or a PNG tRNS colour on RGB, L, 1 and 16-bit gray; on a 16-bit RGB PNG,
    decode_image has already turned it into alpha, since it needs the file)."""
    mode = image.mode
    keyed = "transparency" in image.info  # a dict lookup: the common RGB JPEG returns at once
    if mode == "RGB" and not keyed:
        return image
    if mode in _SIXTEEN_BIT_MODES or mode == "F":
        return _gray_to_rgb(image)
    if keyed and mode in ("P", "RGB", "L", "1"):
        image = image.convert("RGBA")  # the key colour becomes alpha 0
    if image.mode == "La":  # (premultiplied gray) Pillow converts it to LA only
        image = image.convert("LA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        # Pasting through the alpha channel onto white gives alpha_composite's exact bytes with
        # one full-size copy instead of four (~9 instead of ~20 bytes per pixel at the peak).
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _is_unsigned_32_bit_tiff(image: Image.Image) -> bool:
    """A TIFF of 32-bit unsigned gray (SampleFormat 1, the default): Pillow reads it as I;32N."""
    tags = getattr(image, "tag_v2", None)
    if image.format != "TIFF" or tags is None:
        return False
    sample_format = tags.get(TiffImagePlugin.SAMPLEFORMAT, (1,))
    bits = tags.get(TiffImagePlugin.BITSPERSAMPLE, (1,))
    return _first(sample_format) == 1 and _first(bits) == 32


def _first(value: object) -> object:  # a TIFF tag's value: one per sample, or one value
    return value[0] if isinstance(value, tuple) and value else value


def _gray_to_rgb(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float gray -> 8-bit RGB, scaled by the range the values are in:

    * ``I;16*``: 0..65535;
    * ``I`` (32-bit signed; 16-bit gray some decoders give as I): the smallest of 0..255,
      0..65535 and 0..2**31-1 that holds the image's maximum, so 8- and 16-bit data stored as I
      keep their brightness (a 16-bit image darker than 256 everywhere is read as 8-bit); an
      unsigned 32-bit TIFF, which Pillow also gives as signed I, is read unsigned (0..2**32-1);
    * ``F``: 0..1 when every value is in it (unit-range float), otherwise 0..255;

    negative values become black. A colour key (PNG tRNS on 16-bit gray) becomes white.
    """
    # One float32 copy scaled in place (exact for 16-bit values; 4 bytes per pixel): a 50 MP
    # image must not cost several float64 temporaries (~1.3 GB measured before).
    unsigned = image.mode == "I" and _is_unsigned_32_bit_tiff(image)
    if unsigned:  # values from 2**31 up would be negative, hence black
        array = np.asarray(image).view(np.uint32).astype(np.float32)
    else:
        array = np.array(image, dtype=np.float32)  # always a copy (F would be a read-only view)
    key = image.info.get("transparency")
    keyed = array == key if isinstance(key, int) and image.mode != "F" else None
    if image.mode == "F":
        np.nan_to_num(array, copy=False, nan=0.0)
        peak = 1.0 if array.min(initial=0.0) >= 0.0 and array.max(initial=0.0) <= 1.0 else 255.0
    elif image.mode != "I":
        peak = 65535.0
    else:
        top = array.max(initial=0)
        peak = 255.0 if top <= 255 else 65535.0 if top <= 65535 else float(2**32 - 1 if unsigned else 2**31 - 1)
    array *= np.float32(255.0 / peak)
    np.clip(array, 0, 255, out=array)
    gray = np.rint(array, out=array).astype(np.uint8)
    if keyed is not None:
        gray[keyed] = 255
    return Image.fromarray(gray).convert("RGB")
