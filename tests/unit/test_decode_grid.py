"""A reduced-size JPEG decode says where the full-size image lies on its pixels, for every
EXIF orientation, and preprocess takes the center crop there (not rounded on the reduced grid)."""

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from classifier.decode import decode_image
from classifier.spec import SOURCE_GRID_KEY, Preprocessing, crop_box, preprocess, source_box

MAX = 50_000_000
# The stored pixels for each EXIF orientation: the inverse of what exif_transpose applies.
STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
UPRIGHT = (1203, 901)  # not multiples of 4 or 8: the reduced decode has a partial last column and row
CENTER = (300.0, 700.0)  # of a smooth blob, in full-size upright pixel coordinates


def quarter(width: int, height: int) -> tuple[int, int]:
    return width // 4, height // 4


def blob_jpeg(orientation: int) -> bytes:
    width, height = UPRIGHT
    yy, xx = np.mgrid[0:height, 0:width]
    blob = 255 * np.exp(-((xx + 0.5 - CENTER[0]) ** 2 + (yy + 0.5 - CENTER[1]) ** 2) / (2 * 40.0**2))
    upright = Image.fromarray(np.stack([blob.astype(np.uint8)] * 3, -1))
    stored = upright if STORED[orientation] is None else upright.transpose(STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def centroid(image: Image.Image) -> tuple[float, float]:
    red = np.asarray(image, np.float64)[..., 0]
    red = np.where(red > 10, red, 0.0)
    yy, xx = np.mgrid[0 : red.shape[0], 0 : red.shape[1]]
    return (red * (xx + 0.5)).sum() / red.sum(), (red * (yy + 0.5)).sum() / red.sum()


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_grid_maps_full_size_coordinates_onto_the_reduced_pixels(orientation):
    image = decode_image(blob_jpeg(orientation), MAX, draft_size=quarter)
    assert image.size == (301, 226)  # upright and reduced 4x, rounded up
    grid = image.info[SOURCE_GRID_KEY]
    assert (grid.width, grid.height, grid.scale, grid.decoded_size) == (*UPRIGHT, 4.0, image.size)
    expected = (CENTER[0] / grid.scale + grid.offset_x, CENTER[1] / grid.scale + grid.offset_y)
    np.testing.assert_allclose(centroid(image), expected, atol=0.02)  # a hundredth of a reduced pixel


def test_no_grid_without_a_reduction(photo_bytes):
    assert SOURCE_GRID_KEY not in decode_image(blob_jpeg(6), MAX).info  # no draft asked
    small = decode_image(blob_jpeg(1), MAX, draft_size=lambda w, h: (w, h))  # draft cannot reduce
    assert SOURCE_GRID_KEY not in small.info
    assert SOURCE_GRID_KEY not in decode_image(photo_bytes["chelsea.png"], MAX, draft_size=quarter).info


def test_a_file_cannot_supply_the_grid():
    # PNG text chunks land in Image.info under their own keyword: it must not reach preprocess.
    info = PngImagePlugin.PngInfo()
    info.add_text(SOURCE_GRID_KEY, "SourceGrid(width=1, height=1, scale=100.0)")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buffer, "PNG", pnginfo=info)
    image = decode_image(buffer.getvalue(), MAX)
    assert SOURCE_GRID_KEY not in image.info
    image.info[SOURCE_GRID_KEY] = "(1, 1, 100.0)"  # and anything not a SourceGrid is ignored
    spec = Preprocessing(height=8, width=8, crop_fraction=0.5)
    assert source_box(image, spec) == crop_box(64, 48, 0.5)


def test_preprocess_takes_the_full_size_crop_on_the_reduced_image():
    spec = Preprocessing(height=16, width=16, resize="bicubic", crop_fraction=0.875)
    image = decode_image(blob_jpeg(3), MAX, draft_size=quarter)
    left, top, right, bottom = crop_box(*UPRIGHT, 0.875)  # (73, 57, 1061, 845) at full size
    assert source_box(image, spec) == pytest.approx((left / 4 + 0.25, top / 4 + 0.75, right / 4 + 0.25, bottom / 4 + 0.75))
    expected = image.resize((16, 16), Image.Resampling.BICUBIC, box=source_box(image, spec))
    np.testing.assert_array_equal(preprocess(image, spec)[0], np.asarray(expected, np.float32))  # NHWC, raw
    # Once the image is cropped or resized the grid no longer describes it and is not used.
    cropped = image.crop((0, 0, 200, 200))
    assert cropped.info.get(SOURCE_GRID_KEY) is not None  # Pillow copies info ...
    assert source_box(cropped, spec) == crop_box(200, 200, 0.875)  # ... but the size tells

