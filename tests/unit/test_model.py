"""Classifier on tiny hand-built ONNX models: the seed's binary contract (``prediction``) when the
output's class count is symbolic, decided per run from the scores the model actually returns."""

from __future__ import annotations

import base64
import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from classifier.app import make_handler
from classifier.model import Classifier, ModelLoadError, ModelOutputError
from classifier.settings import Settings
from classifier.spec import METADATA_KEY, ModelCard, Preprocessing

WHITE, BLACK = (255, 255, 255), (0, 0, 0)
P = 1 / (1 + np.exp(-0.5))  # sigmoid(mean - 0.5) of a white image; 1 - P for a black one


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 20_000


def card(labels=(), activation="sigmoid") -> ModelCard:
    pre = Preprocessing(height=8, width=8, scale=1 / 255, layout="NHWC")
    return ModelCard(name="tiny", version="0", preprocessing=pre, labels=labels, activation=activation)


def model(path, model_card: ModelCard, scores: int | None = 1, output_shape=("N", "C"),
          final_op: str | None = None) -> str:
    """An ONNX model carrying ``model_card``: ``scores`` copies of mean(input) - 0.5, then the unary
    ``final_op`` if given. ``scores=None``: one copy for an image darker than mid-grey, two
    otherwise. The output is declared ``output_shape`` (strings are symbolic; the input's batch is
    the output's): a symbolic width is computed at run time, so onnxruntime cannot infer it either."""
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["mean"], keepdims=0),
        helper.make_node("Sub", ["mean", "half"], ["centered"]),
        helper.make_node("Unsqueeze", ["centered", "one"], ["column"]),
    ]
    initializers = [
        helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
    ]
    if isinstance(output_shape[1], int):  # a static width: constant reps
        initializers.append(helper.make_tensor("reps", TensorProto.INT64, [2], [1, output_shape[1]]))
    elif scores is None:  # reps = [1, 1 + (centered > 0)]
        nodes += [
            helper.make_node("Greater", ["centered", "zero"], ["bright"]),
            helper.make_node("Cast", ["bright"], ["extra"], to=TensorProto.INT64),
            helper.make_node("Add", ["extra", "one"], ["width"]),
            helper.make_node("Concat", ["one", "width"], ["reps"], axis=0),
        ]
    else:  # reps = [1, (centered is not NaN) * scores]
        initializers.append(helper.make_tensor("scores", TensorProto.INT64, [1], [scores]))
        nodes += [
            helper.make_node("IsNaN", ["centered"], ["nan"]),
            helper.make_node("Not", ["nan"], ["number"]),
            helper.make_node("Cast", ["number"], ["ones"], to=TensorProto.INT64),
            helper.make_node("Mul", ["ones", "scores"], ["width"]),
            helper.make_node("Concat", ["one", "width"], ["reps"], axis=0),
        ]
    nodes.append(helper.make_node("Tile", ["column", "reps"], ["tiled" if final_op else "output"]))
    if final_op:
        nodes.append(helper.make_node(final_op, ["tiled"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [output_shape[0], 8, 8, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(output_shape))],
        initializer=initializers,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(onnx_model, {METADATA_KEY: model_card.to_json()})
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx.save(onnx_model, str(path))
    return str(path)


def image_event(colour) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buffer, format="PNG")
    return {"image": base64.b64encode(buffer.getvalue()).decode()}


def answer(classifier: Classifier, colour=WHITE) -> dict:
    return make_handler(Settings.from_env({}), classifier, lambda u, d: b"")(image_event(colour), Context())


def tensor(colour) -> np.ndarray:
    return np.full((1, 8, 8, 3), colour[0] / 255, np.float32)


SINGLE_PROBABILITY = [("sigmoid", None), ("none", "Sigmoid")]  # none: the graph ends in the sigmoid
SYMBOLIC_WIDTHS = [("N", "C"), (1, "classes"), ("batch", "classes")]


@pytest.mark.parametrize("activation, final_op", SINGLE_PROBABILITY)
@pytest.mark.parametrize("output_shape", SYMBOLIC_WIDTHS)
@pytest.mark.parametrize("labels", [(), ("dog",), ("cat", "dog")])
def test_one_score_from_a_symbolic_width_is_answered_as_a_static_single_probability(
        tmp_path, activation, final_op, output_shape, labels):
    static = Classifier.load(model(tmp_path / "static.onnx", card(labels, activation), output_shape=("N", 1),
                                   final_op=final_op))
    symbolic = Classifier.load(model(tmp_path / "symbolic.onnx", card(labels, activation), output_shape=output_shape,
                                     final_op=final_op))
    assert static.classes == 1 and symbolic.classes is None
    for colour, p in ((WHITE, P), (BLACK, 1 - P)):
        body = answer(symbolic, colour)
        assert body == answer(static, colour)
        assert body["prediction"] == pytest.approx(p, abs=1e-6)
        expected = {(): [("class_0", p)], ("dog",): [("dog", p)],
                    ("cat", "dog"): sorted([("dog", p), ("cat", 1 - p)], key=lambda x: -x[1])}[labels]
        assert [(x["label"], x["score"]) for x in body["predictions"]] == [
            (n, pytest.approx(v, abs=1e-6)) for n, v in expected]


@pytest.mark.parametrize("activation, final_op", SINGLE_PROBABILITY)
@pytest.mark.parametrize("output_shape", SYMBOLIC_WIDTHS)
def test_several_scores_from_a_symbolic_width_stay_multi_class(tmp_path, activation, final_op, output_shape):
    classifier = Classifier.load(model(tmp_path / "m.onnx", card(("a", "b", "c"), activation), scores=3,
                                       output_shape=output_shape, final_op=final_op))
    body = answer(classifier)
    assert "prediction" not in body and not classifier.classify(tensor(WHITE)).binary
    assert [(x["label"], x["score"]) for x in body["predictions"]] == [
        (n, pytest.approx(P, abs=1e-6)) for n in ("a", "b", "c")]


@pytest.mark.parametrize("activation, final_op", SINGLE_PROBABILITY)
def test_each_run_decides_from_its_own_score_count(tmp_path, activation, final_op):
    # one score for a black image, two for a white one: same classifier, alternating runs
    classifier = Classifier.load(model(tmp_path / "m.onnx", card(("cat", "dog"), activation), scores=None,
                                       final_op=final_op))
    assert classifier.classes is None
    for _ in range(2):
        black = answer(classifier, BLACK)  # one probability: P(dog) = 1 - P, so cat scores P
        assert black["prediction"] == pytest.approx(1 - P, abs=1e-6)
        assert [(x["label"], x["score"]) for x in black["predictions"]] == [
            ("cat", pytest.approx(P, abs=1e-6)), ("dog", pytest.approx(1 - P, abs=1e-6))]
        white = answer(classifier, WHITE)  # two independent scores, one per label
        assert "prediction" not in white
        assert [(x["label"], x["score"]) for x in white["predictions"]] == [
            ("cat", pytest.approx(P, abs=1e-6)), ("dog", pytest.approx(P, abs=1e-6))]


def test_each_run_returns_its_own_decision(tmp_path):
    classifier = Classifier.load(model(tmp_path / "m.onnx", card(), scores=None))
    white, black = classifier.classify(tensor(WHITE)), classifier.classify(tensor(BLACK))
    assert (len(white.values), white.binary) == (2, False)  # a later run does not change an earlier answer
    assert (len(black.values), black.binary) == (1, True)


def test_one_score_under_softmax_from_a_symbolic_width_is_refused_per_run(tmp_path):
    classifier = Classifier.load(model(tmp_path / "m.onnx", card(activation="softmax"), output_shape=("N", "C")))
    with pytest.raises(ModelOutputError, match="softmax over it would always be 1.0"):
        classifier.classify(tensor(WHITE))
    assert answer(classifier)["error"]["code"] == "internal_error"


@pytest.mark.parametrize("labels", [("a", "b", "c"), ("a", "b", "c", "d")])
def test_one_score_for_more_than_two_labels_is_still_refused_per_run(tmp_path, labels):
    classifier = Classifier.load(model(tmp_path / "m.onnx", card(labels), output_shape=("N", "C")))
    with pytest.raises(ModelOutputError, match=f"1 scores but the card has {len(labels)} labels"):
        classifier.scores(tensor(WHITE))
    assert answer(classifier)["error"]["code"] == "internal_error"


def test_a_static_single_probability_is_binary(tmp_path):
    classifier = Classifier.load(model(tmp_path / "m.onnx", card(("cat", "dog")), output_shape=("N", 1)))
    assert classifier.classify(tensor(WHITE)).binary
    several = Classifier.load(model(tmp_path / "n.onnx", card(("a", "b")), output_shape=("N", 2)))
    assert not several.classify(tensor(WHITE)).binary


def typed_model(path, input_type: int, output_type: int) -> str:
    """mean(input) as one score, with the given onnx element types on the input and the output."""
    nodes = [
        helper.make_node("Cast", ["input"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["as_float", "axes"], ["mean"], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "one"], ["column"]),
        helper.make_node("Cast", ["column"], ["output"], to=output_type),
    ]
    graph = helper.make_graph(
        nodes, "typed",
        [helper.make_tensor_value_info("input", input_type, ["N", 8, 8, 3])],
        [helper.make_tensor_value_info("output", output_type, ["N", 1])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
                     helper.make_tensor("one", TensorProto.INT64, [1], [1])],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(onnx_model, {METADATA_KEY: card(("dog",)).to_json()})
    onnx.save(onnx_model, str(path))
    return str(path)


@pytest.mark.parametrize("input_type, output_type, message", [
    (TensorProto.FLOAT16, TensorProto.FLOAT, r"input type tensor\(float16\): the function feeds tensor\(float\)"),
    (TensorProto.UINT8, TensorProto.FLOAT, r"input type tensor\(uint8\)"),
    (TensorProto.FLOAT, TensorProto.BFLOAT16, r"output type tensor\(bfloat16\): the function reads"),
    (TensorProto.FLOAT, TensorProto.INT64, r"output type tensor\(int64\)"),
])
def test_types_the_function_cannot_feed_or_read_fail_the_cold_start(tmp_path, input_type, output_type, message):
    with pytest.raises(ModelLoadError, match=message):
        Classifier.load(typed_model(tmp_path / "m.onnx", input_type, output_type))


@pytest.mark.parametrize("output_type", [TensorProto.FLOAT16, TensorProto.DOUBLE])
def test_float16_and_double_scores_are_served(tmp_path, output_type):
    classifier = Classifier.load(typed_model(tmp_path / "m.onnx", TensorProto.FLOAT, output_type))
    body = answer(classifier)  # white: mean 1.0 -> sigmoid(1.0)
    assert body["prediction"] == pytest.approx(1 / (1 + np.exp(-1.0)), abs=1e-3)
