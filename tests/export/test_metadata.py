"""Model card options, labels and the ONNX metadata round trip (no TF/torch needed)."""

from __future__ import annotations

import json

import onnx
import onnx.helper as oh
import onnxruntime as ort
import pytest
from onnx import TensorProto

from classifier.spec import METADATA_KEY, ModelCard
from model_export.__main__ import _size
from model_export.errors import ExportError
from model_export.graph import output_producer, standardize_io
from model_export.metadata import (
    activation_problem,
    build_preprocessing,
    load_labels,
    output_size,
    read_card,
    user_callable,
    validate_labels,
    write_card,
    write_labels,
)

from onnx_models import tiny_model


def test_presets_and_explicit_values():
    pre = build_preprocessing(224, 224, preset="imagenet", layout="NCHW")
    assert pre.scale == pytest.approx(1 / 255) and pre.mean == (0.485, 0.456, 0.406)
    pre = build_preprocessing(150, 100, preset="imagenet", mean=[0.5], std=[0.25, 0.5, 1.0])
    assert (pre.height, pre.width, pre.mean, pre.std) == (150, 100, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert build_preprocessing(8, 8, scale=1 / 255).mean == (0.0, 0.0, 0.0)


def test_normalization_must_be_stated():
    with pytest.raises(ExportError, match="--preset"):
        build_preprocessing(224, 224)
    with pytest.raises(ExportError, match="invalid preprocessing"):
        build_preprocessing(224, 224, preset="unit", crop_fraction=1.5)
    with pytest.raises(ExportError, match="one value or three"):
        build_preprocessing(224, 224, mean=[1, 2])


@pytest.mark.parametrize("text,expected", [("224x160", (224, 160)), ("96", (96, 96)), ("150 120", (150, 120))])
def test_size_parsing(text, expected):
    assert _size(text.split()) == expected


def test_size_parsing_rejects_garbage():
    with pytest.raises(ExportError):
        _size(["1x2x3"])


def test_labels_from_lines_json_and_callable(tmp_path):
    lines = tmp_path / "labels.txt"
    lines.write_text("cat\ndog\n\n", encoding="utf-8")
    assert load_labels(lines) == ("cat", "dog")
    js = tmp_path / "labels.json"
    js.write_text(json.dumps(["a", "b", "c"]))
    assert load_labels(js) == ("a", "b", "c")
    labels = load_labels("model_export.zoo:imagenet_labels")
    assert len(labels) == 1000 and len(set(labels)) == 1000 and labels[281] == "tabby cat"
    assert labels[282] == "tiger cat" and labels[638] == "maillot"
    assert load_labels(write_labels(tmp_path / "imagenet.txt", labels)) == labels


@pytest.mark.parametrize("first", ["[background]", "[unused0]", "[", "[1, 2] pair"])
def test_a_lines_file_whose_first_label_starts_with_a_bracket_is_lines(tmp_path, first):
    path = tmp_path / "labels.txt"
    path.write_text(f"{first}\ncat\ndog\n", encoding="utf-8")
    assert load_labels(path) == (first, "cat", "dog")
    path.write_text('["a", "b"]\n', encoding="utf-8")  # a JSON list under another name is still one
    assert load_labels(path) == ("a", "b")


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("labels.txt", "cat\n\ndog\n", "empty line"),
        ("labels.txt", "cat\ncat\n", "duplicate"),
        ("labels.json", '{"a": 1}', "JSON list"),
        ("labels.txt", '["a", 1]', "not a non-empty string"),
        ("labels.txt", "", "no labels"),
    ],
)
def test_bad_labels_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ExportError, match=match):
        load_labels(path)


def test_label_count_must_match_outputs():
    validate_labels(("a", "b", "c"), output_size(tiny_model(3)))
    with pytest.raises(ExportError, match="2 labels given but the model outputs 3"):
        validate_labels(("a", "b"), output_size(tiny_model(3)))


def test_card_round_trip_through_onnxruntime(tmp_path):
    card = ModelCard("tiny", "7", build_preprocessing(4, 4, preset="unit"), ("a", "b", "c"), "softmax")
    model = write_card(tiny_model(), card)
    write_card(model, card)  # writing twice keeps one entry
    assert [p.key for p in model.metadata_props] == [METADATA_KEY]
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map) == card
    assert read_card(path) == card


def test_unreadable_or_cardless_models_fail_clearly(tmp_path, capsys):
    from model_export.__main__ import main

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    assert main(["show", str(garbage)]) == 2
    assert "cannot read ONNX model" in capsys.readouterr().err
    bare = tmp_path / "bare.onnx"
    onnx.save(tiny_model(), str(bare))
    assert main(["show", str(bare)]) == 2
    assert METADATA_KEY in capsys.readouterr().err


def test_a_single_score_takes_no_label_one_or_negative_and_positive():
    single = output_size(tiny_model(1))
    for labels in ((), ("dog",), ("cat", "dog")):
        validate_labels(labels, single)
    with pytest.raises(ExportError, match=r"single score \(binary\): give 1 label, or 2 labels \[negative, positive\]"):
        validate_labels(("a", "b", "c"), single)


@pytest.mark.parametrize("tail,producer", [
    ((), "MatMul"), (("Sigmoid",), "Sigmoid"), (("Softmax", "Identity", "Flatten"), "Softmax"),
    (("Sigmoid", "Relu"), "Relu"),
])
def test_output_producer_looks_through_ops_that_only_move_values(tail, producer):
    assert output_producer(tiny_model(1, tail)) == producer


def test_activation_is_refused_when_the_graph_already_applies_one():
    for tail in (("Sigmoid", "Identity"), ("Softmax", "Flatten")):
        for activation in ("sigmoid", "softmax"):
            problem = activation_problem(tiny_model(1, tail), activation)
            assert "applied twice" in problem and "--activation none" in problem
        assert activation_problem(tiny_model(1, tail), "none") is None
    assert activation_problem(tiny_model(1), "sigmoid") is None
    assert activation_problem(tiny_model(3), "softmax") is None
    assert "always 1.0" in activation_problem(tiny_model(1), "softmax")


def test_user_callables_that_fail_name_themselves():
    with pytest.raises(ExportError, match="the labels function user_callables:failing_labels raised "
                       "FileNotFoundError: labels.csv"):
        load_labels("user_callables:failing_labels")
    with pytest.raises(ExportError, match="labels from user_callables:no_labels must be a list of strings, "
                       "got NoneType"):
        load_labels("user_callables:no_labels")
    preprocess = user_callable("user_callables:failing_preprocess", "the reference preprocessing")
    with pytest.raises(ExportError, match="user_callables:failing_preprocess raised ValueError: bad crop box"):
        preprocess(None)
    with pytest.raises(ExportError, match="not a function"):
        user_callable("model_export.parity:PHOTOS", "the labels function")


def _graph(input_type: int, output_types: list[int]):
    """Input -> one Cast per output (a graph with the given onnx element types on its edges)."""
    nodes = [oh.make_node("Cast", ["x"], [f"y{i}"], to=t) for i, t in enumerate(output_types)]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", input_type, [1, 3, 4, 4])],
                          [oh.make_tensor_value_info(f"y{i}", t, [1, 3, 4, 4]) for i, t in enumerate(output_types)])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])


@pytest.mark.parametrize("input_type, output_types, message", [
    (TensorProto.UINT8, [TensorProto.FLOAT], "the model's input is uint8; the function feeds float32"),
    (TensorProto.FLOAT16, [TensorProto.FLOAT], "the model's input is float16"),
    (TensorProto.FLOAT, [TensorProto.BFLOAT16], r"first output \(its scores\) is bfloat16"),
    (TensorProto.FLOAT, [TensorProto.INT64], r"first output \(its scores\) is int64"),
    (TensorProto.FLOAT, [TensorProto.FLOAT, TensorProto.BFLOAT16], "output 'y1' is bfloat16, which onnxruntime cannot"),
])
def test_types_the_function_cannot_feed_or_read_are_refused_at_export(input_type, output_types, message):
    with pytest.raises(ExportError, match=message):
        standardize_io(_graph(input_type, output_types))


def test_float_scores_with_other_numpy_outputs_are_kept():
    model = standardize_io(_graph(TensorProto.FLOAT, [TensorProto.FLOAT16, TensorProto.INT64, TensorProto.BOOL]))
    assert [o.name for o in model.graph.output] == ["output_0", "output_1", "output_2"]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_labels_file_that_is_not_utf8_is_a_clear_error(tmp_path, encoding):
    """A labels file saved by a Windows editor (cp1252 'café', or Notepad's UTF-16) is an
    ExportError naming the file and the fix (exit 2), not a UnicodeDecodeError traceback."""
    path = tmp_path / "labels.txt"
    path.write_bytes("café\nthé\n".encode(encoding))
    with pytest.raises(ExportError, match=r"labels file .*labels.txt is not UTF-8 text .*save it as UTF-8"):
        load_labels(path)


@pytest.mark.parametrize("options,warned", [
    ({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, "--mean 0.485 0.456 0.406 and --std 0.229"),
    ({"preset": "raw", "std": [0.5]}, "--std 0.5:"),
    ({"preset": "efficientnet-lite", "mean": [0.5]}, "--mean 0.5:"),
])
def test_mean_std_for_unit_pixels_without_a_scale_warn(caplog, options, warned):
    # the pixels are 0..255: torchvision's mean 0.485 / std 0.229 is meant after /255
    with caplog.at_level("WARNING", logger="model_export"):
        build_preprocessing(8, 8, **options)
    assert warned in caplog.text and "--scale 0.00392156862745098 (1/255)" in caplog.text


@pytest.mark.parametrize("options", [
    {"preset": "imagenet", "mean": [0.5], "std": [0.25]},  # the preset divides by 255
    {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406]},
    {"scale": 1.0, "mean": [0.5]},  # an explicit scale of 1: the user says the pixels stay 0..255
    {"mean": [127.5], "std": [127.5]},
    {"preset": "raw", "mean": [0], "std": [1]},  # identity
])
def test_mean_std_that_fit_the_pixel_scale_do_not_warn(caplog, options):
    with caplog.at_level("WARNING", logger="model_export"):
        build_preprocessing(8, 8, **options)
    assert "--scale" not in caplog.text
