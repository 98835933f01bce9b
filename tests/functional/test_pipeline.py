"""The whole request pipeline in-process, on the bundled model, with an injected fetch."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from classifier.app import make_handler
from classifier.errors import UpstreamError
from classifier.events import HTTP
from classifier.model import Classifier, ModelLoadError, ModelOutputError, _class_count
from classifier.responses import respond
from classifier.settings import Settings
from classifier.spec import ModelCard, Preprocessing
from support import DEFAULT_MODEL, EVENTS, tiny_model
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
    assert len(handle({"image": image, "top_k": 3.0}, Context())["predictions"]) == 3  # JSON has one number type
    assert len(handle({"image": image, "top_k": 5000}, Context())["predictions"]) == 1000


@pytest.mark.parametrize("path", ["/model", "/model/"])  # API Gateway routes GET /model/ to /model too
def test_model_info(classifier, fake_fetch, path):
    handle = make_handler(Settings.from_env({}), classifier, fake_fetch)
    response = handle(json.loads((EVENTS / "rest-model.json").read_text()) | {"path": path}, Context())
    body = json.loads(response["body"])
    assert response["statusCode"] == 200
    assert body["labels"] == 1000 and body["input"]["shape"][1:] == [3, 224, 224]
    assert body["preprocessing"]["layout"] == "NCHW"


@pytest.mark.parametrize("path, method, allow", [("/predict", "GET", "POST"), ("/predict", "DELETE", "POST"),
                                                  ("/model", "DELETE", "GET"), ("/model/", "PUT", "GET"),
                                                  ("/model", "POST", "GET"), ("/Prod/predict/", "HEAD", "POST")])
def test_a_405_says_which_methods_the_path_accepts(classifier, fake_fetch, path, method, allow):
    handle = make_handler(Settings.from_env({}), classifier, fake_fetch)
    event = json.loads((EVENTS / "rest-model.json").read_text()) | {"path": path, "httpMethod": method}
    response = handle(event, Context())
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == allow  # RFC 9110: a 405 MUST list the allowed methods
    assert json.loads(response["body"])["error"]["code"] == "method_not_allowed"


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


def binary_card(labels=("cat", "dog"), activation="sigmoid") -> ModelCard:
    pre = Preprocessing(height=8, width=8, scale=1 / 255, layout="NHWC")
    return ModelCard(name="tiny", version="0", preprocessing=pre, labels=labels, activation=activation)


def image_event(colour) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buffer, format="PNG")
    return {"image": base64.b64encode(buffer.getvalue()).decode()}


WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def test_single_sigmoid_output_keeps_the_seed_prediction_field(tmp_path):
    classifier = Classifier.load(tiny_model(tmp_path / "m.onnx", binary_card()))
    handle = make_handler(Settings.from_env({}), classifier, lambda u, d: b"")
    body = handle(image_event(WHITE), Context())
    expected = 1 / (1 + np.exp(-0.5))  # white image: mean 1.0 - 0.5
    assert body["prediction"] == pytest.approx(expected, abs=1e-6)
    assert body["predictions"] == [
        {"label": "dog", "score": pytest.approx(expected, abs=1e-6)},
        {"label": "cat", "score": pytest.approx(1 - expected, abs=1e-6)},
    ]


@pytest.mark.parametrize("activation, final_op", [("sigmoid", None), ("none", "Sigmoid")])
@pytest.mark.parametrize("labels", [(), ("dog",), ("cat", "dog")])
def test_every_single_probability_model_keeps_the_seed_prediction_field(tmp_path, activation, final_op, labels):
    # activation none: the graph ends in a sigmoid (what model_export writes for the seed's model).
    path = tiny_model(tmp_path / "m.onnx", binary_card(labels, activation), final_op=final_op)
    handle = make_handler(Settings.from_env({}), Classifier.load(path), lambda u, d: b"")
    body = handle(image_event(WHITE), Context())
    p = 1 / (1 + np.exp(-0.5))
    assert body["prediction"] == pytest.approx(p, abs=1e-6)
    expected = {(): [("class_0", p)], ("dog",): [("dog", p)], ("cat", "dog"): [("dog", p), ("cat", 1 - p)]}[labels]
    assert [(x["label"], x["score"]) for x in body["predictions"]] == [(n, pytest.approx(v, abs=1e-6)) for n, v in expected]


def test_a_card_that_does_not_fit_the_graph_fails_the_cold_start(tmp_path):
    wrong_size = ModelCard(name="t", version="0", preprocessing=Preprocessing(height=16, width=16), labels=("a",))
    with pytest.raises(ModelLoadError, match="input shape"):
        Classifier.load(tiny_model(tmp_path / "a.onnx", wrong_size))
    wrong_labels = binary_card(labels=("a", "b", "c"))
    with pytest.raises(ModelLoadError, match="labels"):
        Classifier.load(tiny_model(tmp_path / "b.onnx", wrong_labels, output_dim=4))
    with pytest.raises(ModelLoadError, match="not found"):
        Classifier.load(str(tmp_path / "missing.onnx"))


@pytest.mark.parametrize(
    "activation, labels, message",
    [
        ("sigmoid", ("a", "b", "c"), "1 output .* 3 labels"),
        ("none", tuple(f"l{i}" for i in range(1000)), "1 output .* 1000 labels"),
        ("softmax", ("cat",), "always score 1.0"),
        ("softmax", (), "always score 1.0"),
    ],
)
def test_a_single_output_card_that_cannot_fit_fails_the_cold_start(tmp_path, activation, labels, message):
    with pytest.raises(ModelLoadError, match=message):
        Classifier.load(tiny_model(tmp_path / "m.onnx", binary_card(labels, activation)))


def test_the_class_count_is_what_the_scores_are_flattened_to():
    assert _class_count(["batch", 1000]) == 1000
    assert _class_count(["batch", 1000, 1, 1]) == 1000  # a conv head: not one sigmoid output
    assert _class_count(["batch", 1]) == 1 and _class_count(["batch", 1, 1]) == 1
    assert _class_count(["batch", "classes"]) is None and _class_count(["batch", 1000, "h"]) is None


def test_a_symbolic_class_count_is_checked_on_every_run(tmp_path):
    card = binary_card(labels=("a", "b"), activation="softmax")
    classifier = Classifier.load(tiny_model(tmp_path / "m.onnx", card, output_dim=3, class_dim="classes"))
    tensor = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ModelOutputError, match="3 scores but the card has 2 labels"):
        classifier.scores(tensor)
    response = make_handler(Settings.from_env({}), classifier, lambda u, d: b"")(image_event(WHITE), Context())
    assert response["error"]["code"] == "internal_error"  # not three predictions named class_<i>
    fits = binary_card(labels=("a", "b", "c"), activation="softmax")
    classifier = Classifier.load(tiny_model(tmp_path / "n.onnx", fits, output_dim=3, class_dim="classes"))
    assert [p.label for p in classifier.top_k(classifier.scores(tensor), 5)] == ["a", "b", "c"]


def test_non_finite_scores_are_a_500_never_an_invalid_json_200(tmp_path):
    card = binary_card(labels=("a", "b", "c"), activation="none")
    path = tiny_model(tmp_path / "m.onnx", card, output_dim=3, final_op="Sqrt")  # sqrt(0 - 0.5) on black
    handle = make_handler(Settings.from_env({}), Classifier.load(path), lambda u, d: b"")
    event = json.loads((EVENTS / "rest-binary.json").read_text())
    black = base64.b64decode(image_event(BLACK)["image"])
    response = handle(dict(event, body=base64.b64encode(black).decode()), Context())
    body = json.loads(response["body"], parse_constant=lambda name: pytest.fail(f"{name} in the body"))
    assert response["statusCode"] == 500 and body["error"]["code"] == "internal_error"
    assert handle(image_event(BLACK), Context())["error"]["status"] == 500  # direct invocation
    assert "predictions" in handle(image_event(WHITE), Context())  # sqrt(0.5): fine


def test_responses_refuse_nan_rather_than_write_invalid_json():
    with pytest.raises(ValueError):
        respond(HTTP, 200, {"score": float("nan")})


@pytest.mark.parametrize("kind", ["rest", "http"])
@pytest.mark.parametrize("path", ["/", "", "/nope", "/predictions", "/model/x", "/Predict"])
def test_an_unknown_path_is_a_404_not_a_prediction(classifier, fake_fetch, kind, path):
    # An HTTP API catch-all route or a function URL sends every path to the function.
    handle = make_handler(Settings.from_env({}), classifier, fake_fetch)
    event = json.loads((EVENTS / ("rest-url.json" if kind == "rest" else "httpapi-base64.json")).read_text())
    event = event | ({"path": path, "resource": path} if kind == "rest" else {"rawPath": path})
    if kind == "http":
        event["requestContext"] = event["requestContext"] | {"http": event["requestContext"]["http"] | {"path": path}}
    response = handle(event, Context())
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"] == {
        "code": "not_found", "message": "no such route: the API serves POST /predict and GET /model", "status": 404}
    assert handle(json.loads((EVENTS / "rest-url.json").read_text()), Context())["statusCode"] == 200
