"""The data scientist's journey, end to end: train your own model, ``python -m model_export`` it,
make it the function's model, and the function (staged from ``predict_function/Dockerfile``, run
under the real Lambda RIE + awslambdaric) answers with the scores the ORIGINAL framework gives.

For a Keras model of the seed's shape (small CNN ending in ``Dense(1, activation="sigmoid")``,
NHWC, binary ``[negative, positive]``) and a PyTorch multi-class model (NCHW, 4 labels, with the
user's own factory module, trained weights and training preprocessing): each is trained for a few
seconds on crops of real photos, exported by the CLI into a temporary copy of the project (the
repository's own ``predict_function/model/`` is never touched), staged, and invoked with real
photos inline (base64) and by URL from a loopback server. The reference scores come from Keras /
PyTorch on the tensor the function builds: ``decode_image`` with the handler's ``draft_size``
(JPEGs bigger than twice the model's input are decoded at reduced size, as the function does),
then ``preprocess`` with the card read back from the exported file.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from classifier.decode import decode_image
from classifier.preoptimized import cpu_layout
from classifier.settings import Settings
from classifier.spec import ModelCard, draft_size, preprocess
from local_lambda import Emulator, stage
from local_lambda.template import function_emulator, read_function
from model_export.__main__ import main as model_export
from support import REPO, copy_project, logs_once_they_hold
from tests.export.keras_models import small_cnn

# Keras 3 on NumPy 2 warns on every tensor -> array conversion; harmless (as in tests/export).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

CACHE_DIR = REPO / ".build" / "local_lambda" / "cache"  # the shared dependency cache: staging takes seconds
ATOL = 1e-4
MAX_IMAGE_PIXELS = Settings.__dataclass_fields__["max_image_pixels"].default  # the limit only refuses, never resizes
SIZE = 64  # both models' input side

# (name as served, how it reaches the function, photo); the JPEGs are decoded with Image.draft.
DELIVERIES = [
    ("cat.jpg", "base64"),  # chelsea.png as a JPEG (the cat_jpeg fixture): 451x300, drafted to 1/2
    ("coffee.png", "url"),  # a real PNG by URL from loopback: no draft
    ("china.jpg", "base64"),  # a real JPEG shipped by scikit-learn, in no training set: 640x427, drafted
    ("china.jpg", "url"),
]


# -- photos and the loopback image server --------------------------------------------------------

@pytest.fixture(scope="module")
def test_photos(cat_jpeg, photo_bytes) -> Dict[str, bytes]:
    return {"cat.jpg": cat_jpeg, "coffee.png": photo_bytes["coffee.png"], "china.jpg": photo_bytes["china.jpg"]}


@pytest.fixture(scope="module")
def photo_server(image_server, test_photos):
    """The session's loopback image server (conftest), serving the test photos too."""
    image_server.files.update({"/" + name: body for name, body in test_photos.items()})
    return image_server


# -- training data: random crops of real photos -------------------------------------------------

def _training_photos() -> Dict[str, Image.Image]:
    from model_export.parity import sample_photos

    return dict(sample_photos())  # file name -> PIL RGB image (scikit-image / scikit-learn)


def _random_crops(image: Image.Image, count: int, rng: np.random.Generator) -> List[Image.Image]:
    """Random square crops (half to all of the short side), about half of them mirrored."""
    crops = []
    for _ in range(count):
        side = int(rng.uniform(0.5, 1.0) * min(image.size))
        left = int(rng.integers(0, image.width - side + 1))
        top = int(rng.integers(0, image.height - side + 1))
        crop = image.crop((left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crops.append(crop)
    return crops


# -- the project, copied, staged and run under the RIE ----------------------------------------------

def _copy_project(dest: Path, model: Path) -> Path:
    """The project with ``model`` as its only model, ``predict_function/model/model.onnx``; -> the template."""
    copy_project(dest, files=("template.yaml", "samconfig.toml"))
    models = dest / "predict_function" / "model"
    shutil.rmtree(models)  # unlinks the repository's models (hard links), never writes through them
    models.mkdir()
    shutil.copy2(model, models / "model.onnx")
    return dest / "template.yaml"


@contextlib.contextmanager
def _served(model: Path, workdir: Path, server) -> Iterator[Emulator]:
    """``model`` as the function's model: project copied, staged from its Dockerfile, RIE started."""
    template = _copy_project(workdir / "project", model)
    fn = read_function(template, "PredictFunction")
    staged = stage(fn.dockerfile, fn.context, build_dir=workdir / "build", function_name=fn.logical_id,
                   cache_dir=CACHE_DIR)
    task_model = Path(staged.task_root) / "model"
    # The Dockerfile's model stage split the exported file into graph + card and mapped weights, and
    # saved its graph optimised for this CPU (test_the_function_serves_the_graph_optimised_at_build).
    optimized = ["optimized"] if cpu_layout() else []
    assert sorted(p.name for p in task_model.iterdir()) == ["model.onnx", "model.onnx.data", *optimized]
    overrides = {fn.logical_id: {"ALLOW_PRIVATE_URLS": "true", "ALLOWED_PORTS": f"80,443,{server.port}"}}
    emulator, _ = function_emulator(fn, staged, overrides, shell_env={})
    with emulator:
        yield emulator


@dataclass
class Journey:
    framework: str
    name: str
    version: str
    labels: List[str]
    card: ModelCard  # read back from the exported .onnx
    reference: Callable[[np.ndarray], np.ndarray]  # the original framework: tensor -> scores, one per label
    function: Emulator
    binary: bool

    def reference_scores(self, photo: bytes) -> np.ndarray:
        """What the original framework says about ``photo``, decoded and preprocessed as the handler does."""
        fit = functools.partial(draft_size, self.card.preprocessing)  # classifier.app.make_handler
        image = decode_image(photo, MAX_IMAGE_PIXELS, draft_size=fit)
        return np.asarray(self.reference(preprocess(image, self.card.preprocessing)), dtype=np.float64)


def _exported_card(path: Path) -> ModelCard:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)


# -- 1. Keras, the seed's shape ---------------------------------------------------------------------

def _train_keras_cat_detector():
    """The seed's model: Sequential, Rescaling(1/255) inside (raw 0..255 input), one sigmoid output,
    trained on random crops of the cat photo (positive) and of four other photos (negative), each
    resized to 64x64 with bilinear like the card will say."""
    import keras

    keras.utils.set_random_seed(11)
    photos = _training_photos()
    rng = np.random.default_rng(11)
    x, y = [], []
    for name, positive in (("chelsea.png", 1), ("coffee.png", 0), ("astronaut.png", 0), ("rocket.jpg", 0),
                           ("motorcycle_left.png", 0)):
        count = 64 if positive else 16
        for crop in _random_crops(photos[name], count, rng):
            x.append(np.asarray(crop.resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32))
            y.append(positive)
    model = small_cnn(SIZE)  # the seed's layers (tests/export/keras_models.py), then trained here
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(np.stack(x), np.array(y, np.float32), epochs=3, batch_size=32, shuffle=True, verbose=0)
    return model


@pytest.fixture(scope="module")
def keras_journey(photo_server):
    with tempfile.TemporaryDirectory(prefix="own-model-keras-") as tmp:
        work = Path(tmp)
        model = _train_keras_cat_detector()
        source = work / "cat_detector.h5"
        model.save(source)  # what the data scientist hands over (optimizer state and all)
        labels = ["negative", "positive"]
        (work / "labels.txt").write_text("\n".join(labels) + "\n")
        output = work / "export" / "model.onnx"
        rc = model_export(["keras", str(source), "--preset", "raw", "--labels", str(work / "labels.txt"),
                           "--name", "cat-detector", "--version", "3", "--output", str(output)])
        assert rc == 0 and output.is_file()
        card = _exported_card(output)

        def reference(tensor: np.ndarray) -> np.ndarray:
            p = float(np.asarray(model(tensor, training=False))[0, 0])
            return np.array([1.0 - p, p])

        with _served(output, work, photo_server) as function:
            yield Journey("keras", "cat-detector", "3", labels, card, reference, function, binary=True)


# -- 2. PyTorch, multi-class NCHW, the user's own module ---------------------------------------------

# The data scientist's own code, as they would keep it in their package: the network, a factory
# that loads the trained weights saved beside the module, and the evaluation preprocessing used in
# training (center crop 0.875 of the short side, bicubic to 64x64, torchvision's ImageNet mean/std).
USER_TORCH_MODULE = '''
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIZE = 64
WEIGHTS = Path(__file__).with_name("weights.pt")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class Net(torch.nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        )
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(32, classes))

    def forward(self, x):
        return self.head(self.features(x))  # logits


def eval_preprocess(image):
    side = int(0.875 * min(image.size))
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.resize((SIZE, SIZE), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    x = (np.asarray(image, np.float32) / 255.0 - MEAN) / STD
    return x.transpose(2, 0, 1)[None]


def build():
    net = Net()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu"))
    return net.eval()
'''


@contextlib.contextmanager
def _user_module(directory: Path) -> Iterator["object"]:
    """USER_TORCH_MODULE written to ``directory`` under a unique name, importable while inside."""
    import importlib

    name = f"own_photo_net_{uuid.uuid4().hex[:12]}"
    (directory / f"{name}.py").write_text(USER_TORCH_MODULE)
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop(name, None)


def _train_torch_photo_kind(user, labels_to_photos: Sequence[str]):
    """Which photo a random crop comes from: 4 epochs over 48 crops per label (about a second)."""
    import torch

    torch.manual_seed(5)
    photos = _training_photos()
    rng = np.random.default_rng(5)
    x, y = [], []
    for index, name in enumerate(labels_to_photos):
        for crop in _random_crops(photos[name], 48, rng):
            x.append(user.eval_preprocess(crop)[0])
            y.append(index)
    x_all, y_all = torch.from_numpy(np.stack(x)), torch.tensor(y)
    net = user.Net(len(labels_to_photos))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(4):  # epochs
        order = torch.randperm(len(y_all))
        for start in range(0, len(order), 32):
            batch = order[start:start + 32]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x_all[batch]), y_all[batch])
            loss.backward()
            optimizer.step()
    torch.save(net.state_dict(), user.WEIGHTS)
    return net.eval()


@pytest.fixture(scope="module")
def pytorch_journey(photo_server):
    import torch

    with tempfile.TemporaryDirectory(prefix="own-model-torch-") as tmp:
        work = Path(tmp)
        (work / "user").mkdir()
        with _user_module(work / "user") as user:
            labels = ["cat", "coffee", "rocket", "astronaut"]
            net = _train_torch_photo_kind(user, ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"])
            (work / "labels.json").write_text(json.dumps(labels))
            output = work / "export" / "model.onnx"
            rc = model_export(["pytorch", f"{user.__name__}:build", "--size", f"{SIZE}x{SIZE}", "--preset", "imagenet",
                               "--crop-fraction", "0.875", "--resize", "bicubic",
                               "--reference-preprocess", f"{user.__name__}:eval_preprocess",
                               "--labels", str(work / "labels.json"),
                               "--name", "photo-kind", "--version", "2026.11-b", "--output", str(output)])
        assert rc == 0 and output.is_file()
        card = _exported_card(output)

        def reference(tensor: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return torch.softmax(net(torch.from_numpy(tensor)), dim=1)[0].double().numpy()

        with _served(output, work, photo_server) as function:
            yield Journey("pytorch", "photo-kind", "2026.11-b", labels, card, reference, function, binary=False)


@pytest.fixture(scope="module", params=["keras", "pytorch"])
def journey(request) -> Journey:
    return request.getfixturevalue(f"{request.param}_journey")


# -- the tests ---------------------------------------------------------------------------------------

def _event(delivery: str, name: str, photo: bytes, server, top_k: int) -> dict:
    if delivery == "url":
        return {"url": server.url("/" + name), "top_k": top_k}
    return {"image": base64.b64encode(photo).decode("ascii")}  # default top_k (5) covers every label


def test_the_card_is_what_the_exporter_was_told(journey):
    card = journey.card
    assert (card.name, card.version, list(card.labels)) == (journey.name, journey.version, journey.labels)
    pre = card.preprocessing
    assert (pre.height, pre.width) == (SIZE, SIZE)
    if journey.framework == "keras":
        assert (pre.layout, pre.resize, pre.crop_fraction, pre.scale) == ("NHWC", "bilinear", None, 1.0)
        assert card.activation == "none"  # the graph ends in the sigmoid: not applied twice
    else:
        assert (pre.layout, pre.resize, pre.crop_fraction) == ("NCHW", "bicubic", 0.875)
        assert card.activation == "softmax"  # logits out: the function applies the softmax


@pytest.mark.parametrize("name, delivery", DELIVERIES, ids=[f"{n}-{d}" for n, d in DELIVERIES])
def test_the_function_answers_like_the_original_framework(journey, test_photos, photo_server, name, delivery):
    photo = test_photos[name]
    response = journey.function.invoke(_event(delivery, name, photo, photo_server, len(journey.labels)))
    assert "error" not in response and "errorType" not in response, (response, journey.function.logs[-3000:])
    assert response["model"] == {"name": journey.name, "version": journey.version}

    expected = journey.reference_scores(photo)
    predictions = response["predictions"]
    served = {p["label"]: p["score"] for p in predictions}
    assert sorted(served) == sorted(journey.labels), predictions  # every label, once
    assert [p["score"] for p in predictions] == sorted(served.values(), reverse=True)
    got = np.array([served[label] for label in journey.labels])
    print(f"{journey.framework} {name} by {delivery}: served {np.round(got, 5).tolist()}, "
          f"{journey.framework} {np.round(expected, 5).tolist()}")
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert predictions[0]["label"] == journey.labels[int(np.argmax(expected))]
    if journey.binary:  # the seed's contract: P(positive)
        assert response["prediction"] == pytest.approx(expected[1], abs=ATOL)
        assert response["prediction"] == served["positive"]
    else:
        assert "prediction" not in response


def test_the_function_serves_the_graph_optimised_at_build(journey, test_photos):
    """So the comparisons with the original framework above check that graph's answers."""
    photo = next(iter(test_photos.values()))
    reply = journey.function.invoke({"image": base64.b64encode(photo).decode()})
    assert reply["predictions"], reply
    graph = f'"model_graph":"{cpu_layout() or "portable"}"'
    assert graph in logs_once_they_hold(journey.function, graph)  # the request's log line, once the reader has it
    assert "loading the portable one" not in journey.function.logs


def test_the_comparison_is_not_vacuous(journey, test_photos):
    """Scores that saturate at 0/1, or that every photo shares, would agree whatever the function did."""
    scores = np.stack([journey.reference_scores(photo) for photo in test_photos.values()])
    print(journey.framework, np.round(scores, 4).tolist())
    assert len(set(scores.argmax(axis=1).tolist())) > 1 and np.ptp(scores, axis=0).max() > 0.2, scores
    assert ((scores > 0.01) & (scores < 0.99)).any(), scores  # at least one score away from the rails
