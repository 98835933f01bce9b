import functools
import io

import numpy as np
import pytest
from PIL import Image

from classifier.decode import decode_image, to_rgb
from classifier.errors import CorruptImageError, PayloadTooLargeError, UnsupportedMediaError
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


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    assert decode_image(encode(image, "JPEG", exif=exif), MAX).size == (20, 40)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    red, green, blue = np.asarray(decode_image(data, MAX))[0, 0]
    assert red > 200 and blue < 50


def test_pixel_limit_is_checked_before_decoding():
    data = encode(Image.new("L", (2000, 2000)), "PNG")
    with pytest.raises(PayloadTooLargeError, match="2000x2000"):
        decode_image(data, 1_000_000)


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
