"""The whole request pipeline in-process, on the bundled model, with an injected fetch."""

from __future__ import annotations

import base64
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from classifier.app import make_handler
from classifier.errors import UpstreamError
from classifier.model import Classifier, ModelLoadError
from classifier.settings import Settings
from classifier.spec import METADATA_KEY, ModelCard, Preprocessing
from support import DEFAULT_MODEL, EVENTS
from expectations import CAT_EVENTS, EXPECTED, check_event_response

PUBLIC_CAT_URL = "https://upload.wikimedia.org/wikipedia/commons/3/3a/Cat03.jpg"


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 20_000


@pytest.fixture(scope="module")
def classifier():
    return Classifier.load(str(DEFAULT_MODEL), intra_op_threads=1)


@pytest.fixture(scope="module")
def fake_fetch(cat_jpeg):
    def fetch(url: str, deadline: float) -> bytes:
        if url == PUBLIC_CAT_URL:
            return cat_jpeg
        raise UpstreamError("no such test URL")

    return fetch


def body_of(response, kind_is_api: bool):
    if kind_is_api:
        assert response["headers"]["Content-Type"] == "application/json"
        return response["statusCode"], json.loads(response["body"])
    status = response["error"]["status"] if "error" in response else 200
    return status, response


def test_every_event_fixture_has_an_expectation():
    names = {p.name for p in EVENTS.glob("*.json")}
    assert names == set(EXPECTED), "add new events to tests/expectations.py"


# URL-validation fixtures need the real fetcher: see test_url_events.py.
@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if not n.startswith("bad-url")))
def test_event_fixture(name, classifier, fake_fetch):
    handle = make_handler(Settings.from_env({}), classifier, fake_fetch)
    event = json.loads((EVENTS / name).read_text())
    status, body = body_of(handle(event, Context()), "requestContext" in event)
    check_event_response(name, status, body, classifier.card.labels)
    if name in CAT_EVENTS:
        scores = [p["score"] for p in body["predictions"]]
        assert scores == sorted(scores, reverse=True)
        assert body["model"] == {"name": classifier.card.name, "version": classifier.card.version}


def test_top_k(classifier, fake_fetch, cat_jpeg):
    handle = make_handler(Settings.from_env({"DEFAULT_TOP_K": "2"}), classifier, fake_fetch)
    image = base64.b64encode(cat_jpeg).decode()
    assert len(handle({"image": image}, Context())["predictions"]) == 2
    assert len(handle({"image": image, "top_k": 7}, Context())["predictions"]) == 7
    assert len(handle({"image": image, "top_k": 5000}, Context())["predictions"]) == 1000


def test_model_info(classifier, fake_fetch):
    handle = make_handler(Settings.from_env({}), classifier, fake_fetch)
    response = handle(json.loads((EVENTS / "rest-model.json").read_text()), Context())
    body = json.loads(response["body"])
    assert response["statusCode"] == 200
    assert body["labels"] == 1000 and body["input"]["shape"][1:] == [3, 224, 224]
    assert body["preprocessing"]["layout"] == "NCHW"


def test_unexpected_error_is_a_generic_500_and_the_next_request_works(classifier, cat_jpeg):
    calls = []

    def exploding_fetch(url, deadline):
        calls.append(url)
        raise RuntimeError("secret internal detail at 10.0.0.7 /var/task/x.py")

    handle = make_handler(Settings.from_env({}), classifier, exploding_fetch)
    response = handle({"url": "https://example.test/a.jpg"}, Context())
    assert response["error"]["status"] == 500 and response["error"]["code"] == "internal_error"
    assert "10.0.0.7" not in json.dumps(response) and "secret" not in json.dumps(response)
    ok = handle({"image": base64.b64encode(cat_jpeg).decode()}, Context())
    assert "predictions" in ok and calls == ["https://example.test/a.jpg"]


def tiny_model(path, card: ModelCard, output_dim: int = 1, input_shape=("batch", 8, 8, 3)):
    """mean(input) - 0.5, repeated output_dim times: a real ONNX graph with known outputs."""
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["mean"], keepdims=0),
        helper.make_node("Sub", ["mean", "half"], ["centered"]),
        helper.make_node("Unsqueeze", ["centered", "one"], ["column"]),
        helper.make_node("Tile", ["column", "reps"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", output_dim])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
            helper.make_tensor("reps", TensorProto.INT64, [2], [1, output_dim]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, {METADATA_KEY: card.to_json()})
    onnx.save(model, str(path))
    return str(path)


def binary_card(labels=("cat", "dog")) -> ModelCard:
    pre = Preprocessing(height=8, width=8, scale=1 / 255, layout="NHWC")
    return ModelCard(name="tiny", version="0", preprocessing=pre, labels=labels, activation="sigmoid")


def test_single_sigmoid_output_keeps_the_seed_prediction_field(tmp_path):
    from PIL import Image
    import io

    classifier = Classifier.load(tiny_model(tmp_path / "m.onnx", binary_card()))
    handle = make_handler(Settings.from_env({}), classifier, lambda u, d: b"")
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (255, 255, 255)).save(buffer, format="PNG")
    body = handle({"image": base64.b64encode(buffer.getvalue()).decode()}, Context())
    expected = 1 / (1 + np.exp(-0.5))  # white image: mean 1.0 - 0.5
    assert body["prediction"] == pytest.approx(expected, abs=1e-6)
    assert body["predictions"] == [
        {"label": "dog", "score": pytest.approx(expected, abs=1e-6)},
        {"label": "cat", "score": pytest.approx(1 - expected, abs=1e-6)},
    ]


def test_a_card_that_does_not_fit_the_graph_fails_the_cold_start(tmp_path):
    wrong_size = ModelCard(name="t", version="0", preprocessing=Preprocessing(height=16, width=16), labels=("a",))
    with pytest.raises(ModelLoadError, match="input shape"):
        Classifier.load(tiny_model(tmp_path / "a.onnx", wrong_size))
    wrong_labels = binary_card(labels=("a", "b", "c"))
    with pytest.raises(ModelLoadError, match="labels"):
        Classifier.load(tiny_model(tmp_path / "b.onnx", wrong_labels, output_dim=4))
    with pytest.raises(ModelLoadError, match="not found"):
        Classifier.load(str(tmp_path / "missing.onnx"))
