"""Keras -> ONNX: real architectures with random weights, the seed's Sequential CNN, both
file formats, parity proven and shown to be non-vacuous; wrong cards and tampered
models are caught."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from classifier.spec import ModelCard
from model_export import keras as keras_source
from model_export.__main__ import main
from model_export.errors import ParityError
from model_export.metadata import read_card
from model_export.parity import Tolerance, check_parity

import keras_models

# Keras 3 on NumPy 2 warns on every tensor -> array conversion; harmless, and it drowns the report.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

# name -> (builder, preset the model was "trained" with, labels)
MODELS = {
    "mobilenet_v2": (keras_models.mobilenet_v2, "tf", [f"class {i}" for i in range(10)]),
    "xception": (keras_models.xception, "tf", [f"kind-{i}" for i in range(7)]),
    "small_cnn": (keras_models.small_cnn, "raw", ["cat"]),
}
CASES = [
    ("mobilenet_v2", ".keras"), ("mobilenet_v2", ".h5"),
    ("xception", ".h5"),
    ("small_cnn", ".h5"), ("small_cnn", ".keras"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("keras")


@pytest.fixture(scope="module")
def keras_models_built():
    return {name: builder() for name, (builder, _, _) in MODELS.items()}


@pytest.fixture(scope="module")
def exported(keras_models_built, workdir):
    """Each case saved to disk, then converted by the CLI; -> {case: (source, onnx, rc, log)}."""
    results = {}
    for name, suffix in CASES:
        source = workdir / f"{name}{suffix}"
        keras_models_built[name].save(source)
        _, preset, labels = MODELS[name]
        labels_file = workdir / f"{name}.labels.txt"
        labels_file.write_text("\n".join(labels) + "\n")
        output = workdir / f"{name}-{suffix[1:]}.onnx"
        handler = _Capture()
        logging.getLogger("model_export").addHandler(handler)
        try:
            rc = main(["keras", str(source), "--preset", preset, "--labels", str(labels_file),
                       "--name", name, "--version", "2", "--output", str(output)])
        finally:
            logging.getLogger("model_export").removeHandler(handler)
        results[(name, suffix)] = (source, output, rc, handler.messages)
    return results


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("case", CASES, ids=[f"{n}{s}" for n, s in CASES])
def test_converted_model_matches_keras(case, exported, photos):
    source, output, rc, _ = exported[case]
    assert rc == 0 and output.is_file()
    model = keras_source.load(source)
    report = check_parity(output, keras_source.predictor(model), source=str(source), photos=photos)
    print(report.table())
    assert report.ok, report.table()
    onnx.checker.check_model(str(output), full_check=True)
    by_inputs = {row.inputs: row for row in report.rows}
    assert by_inputs["photos"].max_abs_diff < 1e-4 and by_inputs["random"].max_abs_diff < 1e-4
    assert by_inputs["photos"].top1_agree == len(photos)
    # Non-vacuous: the outputs differ from photo to photo, and not all photos get one answer.
    assert by_inputs["photos"].spread > 1e-3
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
    from model_export.parity import batch, decisions

    answers = decisions(session.run(None, {"input": batch(photos, card)})[0], card.activation)
    assert len(set(answers.tolist())) > 1, "every photo gets the same class: parity would prove little"


@pytest.mark.parametrize("case", CASES, ids=[f"{n}{s}" for n, s in CASES])
def test_card_records_the_options(case, exported, keras_models_built):
    name, _ = case
    _, output, rc, _ = exported[case]
    assert rc == 0
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
    _, preset, labels = MODELS[name]
    size = keras_models_built[name].input_shape[1]
    assert (card.name, card.version, card.labels) == (name, "2", tuple(labels))
    assert (card.preprocessing.height, card.preprocessing.width, card.preprocessing.layout) == (size, size, "NHWC")
    assert card.preprocessing.scale == pytest.approx({"tf": 1 / 127.5, "raw": 1.0}[preset])
    # The Keras models end in softmax / sigmoid already: auto activation must not apply it twice.
    assert card.activation == "none"
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert session.get_inputs()[0].shape[1:] == [size, size, 3]
    assert [o.name for o in session.get_outputs()] == ["output"]


def test_sequential_falls_back_from_from_keras(exported):
    for suffix in (".h5", ".keras"):
        messages = exported[("small_cnn", suffix)][3]
        assert any("functional wrapper" in m for m in messages), messages
    assert any("converted with tf2onnx.from_keras (opset 17)" in m for m in exported[("mobilenet_v2", ".h5")][3])


def test_every_conversion_path_works_for_sequential(keras_models_built):
    """from_keras on the Functional wrapper and from_function both give the same model."""
    model = keras_models_built["small_cnn"]
    x = keras_models.photo_batch(96, 1.0, 0.0)
    expected = np.asarray(model(x, training=False))
    proto, path = keras_source.convert(model, 96, 96)
    assert path == "tf2onnx.from_keras(functional wrapper)"
    import tf2onnx
    import tensorflow as tf

    spec = (tf.TensorSpec((None, 96, 96, 3), tf.float32, name="input"),)
    with pytest.raises(KeyError):  # the Keras 3 breakage the fallback exists for
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    fn_proto = tf2onnx.convert.from_function(
        tf.function(lambda t: model(t, training=False), input_signature=spec), input_signature=spec, opset=17
    )[0]
    for candidate in (proto, fn_proto):
        session = ort.InferenceSession(candidate.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_wrong_preprocessing_is_caught(keras_models_built, workdir, capsys):
    """The user trained MobileNetV2 on [-1, 1] inputs but exports with --preset unit."""
    source = workdir / "mnv2-wrong.keras"
    keras_models_built["mobilenet_v2"].save(source)
    output = workdir / "wrong.onnx"
    rc = main(["keras", str(source), "--preset", "unit", "--output", str(output),
               "--reference-preprocess", "keras_models:mobilenet_training_preprocess"])
    err = capsys.readouterr().err
    assert rc == 1
    assert not output.exists() and not list(workdir.glob(".wrong*")), "a failed model must not be left behind"
    assert "parity check failed" in err
    # every photo is listed, not just the first failure
    assert sum(f"photos/output {name}" in err for name in ("chelsea.png", "coffee.png", "china.jpg", "flower.jpg")) == 4
    # ...and with the right preset the same reference preprocessing passes
    rc = main(["keras", str(source), "--preset", "tf", "--output", str(output),
               "--reference-preprocess", "keras_models:mobilenet_training_preprocess"])
    assert rc == 0 and output.is_file()


def test_wrong_spec_in_card_is_caught_by_api(exported, photos):
    source, output, _, _ = exported[("mobilenet_v2", ".keras")]
    import dataclasses

    from model_export.metadata import write_card

    model = onnx.load(str(output))
    card = read_card(model)
    bad = dataclasses.replace(card, preprocessing=dataclasses.replace(card.preprocessing, resize="nearest", scale=1 / 255, mean=(0.0,) * 3))
    write_card(model, bad)
    tampered = output.with_name("bad-card.onnx")
    onnx.save(model, str(tampered))
    report = check_parity(tampered, keras_source.predictor(keras_source.load(source)), photos=photos,
                          reference_preprocess=keras_models.mobilenet_training_preprocess)
    assert not report.ok
    assert len([m for m in report.mismatches if m.startswith("photos/output ")]) >= 5
    assert "MISMATCH" in report.table()
    with pytest.raises(ParityError) as info:
        report.raise_for_failure()
    assert info.value.mismatches == report.mismatches


def test_tampered_onnx_is_caught(exported, workdir, capsys):
    source, output, _, _ = exported[("xception", ".h5")]
    model = onnx.load(str(output))
    biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    weights = onnx.numpy_helper.to_array(biggest).copy()
    weights *= 1.05
    biggest.CopyFrom(onnx.numpy_helper.from_array(weights, biggest.name))
    tampered = workdir / "tampered.onnx"
    onnx.save(model, str(tampered))
    rc = main(["check", str(tampered), "keras", str(source)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "MISMATCH" in captured.out and "random/output random-0" in captured.err
    # the untouched model passes the same check
    assert main(["check", str(output), "keras", str(source)]) == 0


def test_label_count_mismatch_fails_clearly(exported, workdir, capsys):
    source = exported[("small_cnn", ".h5")][0]
    labels = workdir / "three.txt"
    labels.write_text("cat\ndog\nbird\n")
    output = workdir / "labels-mismatch.onnx"
    rc = main(["keras", str(source), "--preset", "raw", "--labels", str(labels), "--output", str(output)])
    assert rc == 2 and not output.exists()
    assert "3 labels given but the model outputs a single score" in capsys.readouterr().err


def test_single_sigmoid_model_is_a_binary_classifier(exported, workdir, capsys):
    """The seed's model (one sigmoid output): labels [negative, positive], activation none; the
    server reads that as P(labels[1]). A second sigmoid would squeeze every score into
    [0.5, 0.73] while parity still passes, so it is refused."""
    source = exported[("small_cnn", ".h5")][0]
    labels = workdir / "cat-dog.txt"
    labels.write_text("cat\ndog\n")
    output = workdir / "binary.onnx"
    assert main(["keras", str(source), "--preset", "raw", "--labels", str(labels), "--output", str(output)]) == 0
    card = read_card(output)
    assert (card.labels, card.activation) == (("cat", "dog"), "none")
    twice = workdir / "sigmoid-twice.onnx"
    rc = main(["keras", str(source), "--preset", "raw", "--labels", str(labels), "--activation", "sigmoid",
               "--output", str(twice)])
    err = capsys.readouterr().err
    assert rc == 2 and not twice.exists()
    assert "already computed by a Sigmoid node" in err and "--activation none" in err


def test_dict_outputs_are_matched_by_name(workdir, photos):
    model = keras_models.two_heads()
    source = workdir / "two-heads.keras"
    model.save(source)
    labels = workdir / "zeta.txt"
    labels.write_text("a\nb\nc\n")  # the first head, "zeta"
    output = workdir / "two-heads.onnx"
    assert main(["keras", str(source), "--preset", "raw", "--labels", str(labels), "--output", str(output)]) == 0
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["output_0", "output_1"]
    x = keras_models.photo_batch(32, 1.0, 0.0)
    expected = model(x, training=False)
    got = session.run(None, {"input": x})
    np.testing.assert_allclose(got[0], np.asarray(expected["zeta"]), atol=1e-5)
    np.testing.assert_allclose(got[1], np.asarray(expected["alpha"]), atol=1e-5)


def test_dict_outputs_that_cannot_be_matched_are_refused():
    from types import SimpleNamespace

    from model_export.errors import ExportError

    from onnx_models import tiny_model

    proto = tiny_model()  # one output named "output"
    with pytest.raises(ExportError, match="return a list"):
        keras_source._order_dict_outputs(proto, SimpleNamespace(output={"b": None, "a": None}), "some path")


def test_normalization_must_be_given(exported, workdir, capsys):
    source = exported[("small_cnn", ".keras")][0]
    rc = main(["keras", str(source), "--output", str(workdir / "x.onnx")])
    assert rc == 2 and "--preset" in capsys.readouterr().err


def test_a_model_with_several_inputs_is_refused_clearly(workdir, capsys):
    """An image plus a metadata vector: one clear line, not three repeats of tf2onnx's failures."""
    import keras

    image, extra = keras.Input((32, 32, 3)), keras.Input((5,))
    features = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(image), extra])
    model = keras.Model([image, extra], keras.layers.Dense(3)(features))
    source = workdir / "two-inputs.keras"
    model.save(source)
    for size in ([], ["--size", "32"]):
        rc = main(["keras", str(source), "--preset", "raw", *size, "--output", str(workdir / "two-inputs.onnx")])
        err = capsys.readouterr().err
        assert rc == 2 and "must have exactly one input (the image), this one has 2" in err, err
        assert "tf2onnx" not in err


def test_a_model_that_normalises_its_own_input_warns_unless_the_preset_is_raw(workdir, caplog):
    """keras.applications' EfficientNet / MobileNetV3 rescale and normalise inside the model: with a card
    that normalises too, the parity check passes (both sides get the card's tensors) and the server answers
    wrong, so the export warns, naming the layers and the range the first weighted layer will see."""
    source = workdir / "normalising.keras"
    keras_models.normalising_cnn().save(source)
    with caplog.at_level("WARNING", logger="model_export"):
        assert main(["keras", str(source), "--preset", "imagenet", "--output",
                     str(workdir / "norm-imagenet.onnx")]) == 0
    warning = next(r.getMessage() for r in caplog.records if "normalises its input itself" in r.getMessage())
    assert "Rescaling 'to_pm1' (x * 0.007843 + -1)" in warning
    assert "Normalization 'norm' (mean [0.1, 0, -0.1], variance [0.25, 0.25, 0.25])" in warning
    assert "inner_scale" not in warning  # after the Conv: part of the network, not input preprocessing
    assert "0..255 becomes [-2.118, 2.64]" in warning and "where raw pixels would give it [-2.2, 2.2]" in warning
    assert "--preset raw" in warning and "--reference-preprocess" in warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="model_export"):
        assert main(["keras", str(source), "--preset", "raw", "--output", str(workdir / "norm-raw.onnx")]) == 0
        assert main(["check", str(workdir / "norm-raw.onnx"), "keras", str(source)]) == 0
    assert "normalises its input itself" not in caplog.text
    with caplog.at_level("WARNING", logger="model_export"):  # `check` reads the card from the file
        assert main(["check", str(workdir / "norm-imagenet.onnx"), "keras", str(source)]) == 0
    assert "normalises its input itself" in caplog.text


def test_normalising_layers_are_found_only_before_the_first_weighted_layer(keras_models_built):
    import keras

    small_cnn = keras_models_built["small_cnn"]
    # the object, not its name: Keras numbers default names per process (rescaling, rescaling_1...)
    assert keras_source.input_normalisation(small_cnn) == [small_cnn.layers[0]]
    assert isinstance(small_cnn.layers[0], keras.layers.Rescaling)
    assert keras_source.input_normalisation(keras_models_built["mobilenet_v2"]) == []
    inp = keras.Input((8, 8, 3))
    late = keras.Model(inp, keras.layers.Rescaling(2.0)(keras.layers.Dense(2)(inp)))  # after Dense: the network's
    assert keras_source.input_normalisation(late) == []
