"""The benchmark's test images, made at bench time from real photos that PyPI packages ship.

* ``png_0.3mp``:  skimage.data.astronaut(), 512x512 (0.26 MP), saved as PNG (not resampled);
* ``jpeg_1mp``:   sklearn's china.jpg (640x427) upscaled with LANCZOS to 1224x816 (1.0 MP), JPEG q90;
* ``jpeg_12mp``:  sklearn's flower.jpg center-cropped to 4:3 and upscaled with LANCZOS to 4000x3000
                  (12 MP, phone-photo size), plus seeded luminance grain (sigma 4, like sensor noise: an
                  upscaled photo alone is unrealistically smooth, 0.8 MB; with grain 2.5 MB like a phone
                  JPEG), JPEG q90 with an EXIF Orientation=1 tag as phones write.

Nothing is downloaded; the files are written under the build directory, never committed.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict


@dataclass(frozen=True)
class TestImage:
    key: str
    path: str
    format: str
    width: int
    height: int
    bytes: int
    sha256: str
    source: str

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def to_dict(self) -> dict:
        return {**asdict(self), "megapixels": round(self.megapixels, 3)}


IMAGE_KEYS = ("png_0.3mp", "jpeg_1mp", "jpeg_12mp")
_VERSION = "3"  # bump when the recipe changes, so cached files are remade


def _center_crop(image, aspect: float):
    w, h = image.size
    if w / h > aspect:
        new_w = round(h * aspect)
        left = (w - new_w) // 2
        return image.crop((left, 0, left + new_w, h))
    new_h = round(w / aspect)
    top = (h - new_h) // 2
    return image.crop((0, top, w, top + new_h))


def _encode(key: str):
    """(bytes, format, size, source) for one test image."""
    from PIL import Image

    buffer = io.BytesIO()
    if key == "png_0.3mp":
        import skimage.data

        image = Image.fromarray(skimage.data.astronaut()).convert("RGB")
        image.save(buffer, format="PNG")
        return buffer.getvalue(), "PNG", image.size, "skimage.data.astronaut() 512x512, PNG"
    from sklearn.datasets import load_sample_image

    if key == "jpeg_1mp":
        image = Image.fromarray(load_sample_image("china.jpg")).resize((1224, 816), Image.Resampling.LANCZOS)
        image.save(buffer, format="JPEG", quality=90)
        return buffer.getvalue(), "JPEG", image.size, "sklearn china.jpg -> LANCZOS 1224x816, JPEG q90"
    if key == "jpeg_12mp":
        image = _center_crop(Image.fromarray(load_sample_image("flower.jpg")), 4 / 3)
        image = image.resize((4000, 3000), Image.Resampling.LANCZOS)
        import numpy as np

        pixels = np.asarray(image, dtype=np.int16)
        grain = np.random.default_rng(0).normal(0.0, 4.0, size=pixels.shape[:2] + (1,)).round().astype(np.int16)
        image = Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))
        exif = Image.Exif()
        exif[0x0112] = 1  # Orientation: top-left, as phones write it
        image.save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
        return buffer.getvalue(), "JPEG", image.size, "sklearn flower.jpg -> 4:3 crop -> LANCZOS 4000x3000, grain sigma 4, JPEG q90, EXIF"
    raise KeyError(key)


def make_images(directory: Path) -> Dict[str, TestImage]:
    """Write (or reuse) the three test images under ``directory``."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    index_path = directory / f"images-v{_VERSION}.json"
    if index_path.is_file():
        index = {k: TestImage(**v) for k, v in json.loads(index_path.read_text()).items()}
        if set(index) == set(IMAGE_KEYS) and all(
            Path(i.path).is_file() and hashlib.sha256(Path(i.path).read_bytes()).hexdigest() == i.sha256
            for i in index.values()
        ):
            return index
    images: Dict[str, TestImage] = {}
    for key in IMAGE_KEYS:
        data, fmt, (width, height), source = _encode(key)
        path = directory / f"{key}.{fmt.lower().replace('jpeg', 'jpg')}"
        path.write_bytes(data)
        images[key] = TestImage(key, str(path), fmt, width, height, len(data), hashlib.sha256(data).hexdigest(), source)
    index_path.write_text(json.dumps({k: asdict(v) for k, v in images.items()}, indent=1))
    return images
