"""classifier.resize: Pillow's two passes, cut into bands on threads, give Pillow's bytes."""

from __future__ import annotations

import random
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import onnx
import pytest
from PIL import Image

from classifier.resize import MIN_BAND, SUPPORT, Workers, _horizontal_first, resize
from classifier.spec import ModelCard, preprocess, source_box
from support import DEFAULT_MODEL, PHOTOS

F = Image.Resampling
SPEC = ModelCard.from_metadata(
    {p.key: p.value for p in onnx.load(str(DEFAULT_MODEL), load_external_data=False).metadata_props}
).preprocessing  # the bundled model's: center crop 0.875, bicubic to 224x224


def pillow(image: Image.Image, size, resample, box=None) -> np.ndarray:
    return np.asarray(image.resize(size, resample, box=box))


class CountingPool(ThreadPoolExecutor):
    """A real pool that counts what it is given and on which threads it ran."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers, thread_name_prefix="counting")
        self.submitted = 0
        self.threads: set[str] = set()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        self.submitted += 1

        def run():
            self.threads.add(threading.current_thread().name)
            return fn(*args, **kwargs)

        return super().submit(run)


@pytest.fixture(scope="module")
def workers():
    pool = CountingPool(3)
    yield pool
    pool.shutdown()


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


@pytest.mark.parametrize("bands", [2, 3, 4])
def test_bands_give_pillows_bytes_on_random_shapes(bands, workers):
    rng = random.Random(bands)
    orders = set()
    for trial in range(60):
        width, height = rng.randint(20, 900), rng.randint(20, 900)
        image = noise(width, height, rng.choice(["RGB", "L"]), seed=trial)  # the modes cut into bands
        size = (rng.choice([97, 224, 256, 299, 384]), rng.choice([224, rng.randint(16, 400)]))
        box = rng.choice([
            None,
            (rng.uniform(0, width / 4), rng.uniform(0, height / 4), rng.uniform(3 * width / 4, width),
             rng.uniform(3 * height / 4, height)),
            source_box(image, SPEC) if image.mode == "RGB" else None,
        ])
        resample = rng.choice(sorted(SUPPORT))
        orders.add(_horizontal_first(image.size, size))
        expected = pillow(image, size, resample, box)
        assert np.array_equal(resize(image, size, resample, box), expected), (width, height, size, box, resample)
        assert np.array_equal(resize(image, size, resample, box, Workers(workers, bands)), expected), \
            (width, height, size, box, resample, bands)
    assert orders == {True, False}  # both of Pillow's pass orders were exercised


@pytest.mark.parametrize("source, size, horizontal_first", [
    ((1224, 816), (224, 224), True),  # landscape: Pillow resamples rows first
    ((816, 1224), (224, 224), True),  # 2:3 portrait: 1000 rows against 592 columns, not more than twice
    ((500, 1224), (224, 224), False),  # tall: 1000 rows against 276 columns, so Pillow resamples columns first
    ((224, 900), (224, 300), False),
])
def test_pass_order_follows_pillow(source, size, horizontal_first, workers):
    assert _horizontal_first(source, size) is horizontal_first
    image = noise(*source)
    box = source_box(image, SPEC)
    assert np.array_equal(resize(image, size, F.BICUBIC, box, Workers(workers, 2)), pillow(image, size, F.BICUBIC, box))


def test_a_photo_is_cut_into_bands_on_the_pool(workers):
    photo = Image.open(PHOTOS["china.jpg"]).convert("RGB")  # 640x427
    box = (100.0, 10.0, 520.0, 420.0)
    before = workers.submitted
    out = resize(photo, (224, 224), F.BICUBIC, box, Workers(workers, 2))
    assert workers.submitted - before == 2  # one band of each pass went to the pool
    assert all(name.startswith("counting") for name in workers.threads)
    assert np.array_equal(out, np.asarray(photo.resize((224, 224), F.BICUBIC, box=box)))


def test_small_passes_stay_on_the_callers_thread(workers):
    image = noise(2 * MIN_BAND - 1, 40)
    before = workers.submitted
    out = resize(image, (2 * MIN_BAND - 1, 20), F.BILINEAR, None, Workers(workers, 2))
    assert workers.submitted == before  # one band: the vertical pass is only 63 columns wide
    assert np.array_equal(out, pillow(image, (2 * MIN_BAND - 1, 20), F.BILINEAR))


def test_photos_center_cropped_as_the_bundled_model_wants(workers):
    for name in ("china.jpg", "flower.jpg", "chelsea.png", "coffee.png"):
        photo = Image.open(PHOTOS[name]).convert("RGB")
        box = source_box(photo, SPEC)
        one_call = np.asarray(photo.resize((224, 224), F.BICUBIC, box=box))
        assert np.array_equal(resize(photo, (224, 224), F.BICUBIC, box, Workers(workers, 2)), one_call), name


def test_alpha_goes_to_pillow_in_one_call(workers):
    """Pillow premultiplies alpha around the whole resize: bands would round it differently."""
    rgba = noise(400, 300).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((400, 300)))
    before = workers.submitted
    out = resize(rgba, (224, 224), F.BICUBIC, (20, 10, 380, 290), Workers(workers, 2))
    assert workers.submitted == before
    assert np.array_equal(out, pillow(rgba, (224, 224), F.BICUBIC, (20, 10, 380, 290)))


def test_nearest_goes_to_pillow_in_one_call(workers):
    image = noise(300, 200)
    before = workers.submitted
    out = resize(image, (50, 40), F.NEAREST, (10, 10, 290, 190), Workers(workers, 2))
    assert workers.submitted == before
    assert np.array_equal(out, np.asarray(image.resize((50, 40), F.NEAREST, box=(10, 10, 290, 190))))


def test_an_axis_that_does_not_change_is_not_resampled(workers):
    image = noise(224, 500)
    for size in ((224, 100), (100, 500), (224, 500)):  # one pass, the other, none: as Pillow
        assert np.array_equal(resize(image, size, F.BICUBIC, None, Workers(workers, 2)), pillow(image, size, F.BICUBIC))


def test_workers_for_cpus():
    assert Workers.for_cpus(1) is None
    two = Workers.for_cpus(2)
    try:
        assert two.bands == 2 and two.pool._max_workers == 1
    finally:
        two.pool.shutdown()


def test_preprocess_gives_the_same_tensor_with_and_without_workers(workers):
    photo = Image.open(PHOTOS["chelsea.png"]).convert("RGB")
    alone = preprocess(photo, SPEC)
    assert alone.shape == (1, 3, 224, 224)
    assert np.array_equal(preprocess(photo, SPEC, Workers(workers, 2)), alone)
