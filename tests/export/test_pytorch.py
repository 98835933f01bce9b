"""PyTorch -> ONNX: the bundled EfficientNet-Lite0 reproduces the committed model and
predicts sensibly on real photos; TorchScript files and factories both export."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from classifier.spec import METADATA_KEY, ModelCard, activate, preprocess
from model_export import pytorch as torch_source
from model_export.__main__ import main
from model_export.errors import ExportError
from model_export.parity import batch, check_parity
from model_export.zoo import DEFAULT_EXPORT_ARGS, efficientnet_lite_eval_preprocess

from support import DEFAULT_MODEL

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def committed():
    assert DEFAULT_MODEL.is_file(), "predict_function/model/model.onnx is missing"
    session = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
    return session, card


@pytest.fixture(scope="module")
def reexported(tmp_path_factory):
    """Run the documented default export command again, into a temporary directory."""
    out = tmp_path_factory.mktemp("default") / "model.onnx"
    args = list(DEFAULT_EXPORT_ARGS)
    args[args.index("--output") + 1] = str(out)
    assert main(args) == 0
    return out


def scores(session, card, images):
    raw = session.run(None, {"input": batch(images, card)})[0]
    return np.stack([activate(row, card.activation) for row in raw])


def test_committed_model_is_one_self_describing_file(committed):
    session, card = committed
    assert not list(DEFAULT_MODEL.parent.glob("*.data")), "weights must not be split into .onnx.data"
    model = onnx.load(str(DEFAULT_MODEL), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    onnx.checker.check_model(str(DEFAULT_MODEL), full_check=True)
    assert 15e6 < DEFAULT_MODEL.stat().st_size < 25e6
    assert (card.name, card.version, card.activation) == ("efficientnet-lite0", "1", "softmax")
    assert len(card.labels) == 1000 and card.labels[281] == "tabby cat" and card.labels[282] == "tiger cat"
    pre = card.preprocessing
    assert (pre.height, pre.width, pre.resize, pre.crop_fraction, pre.layout, pre.channel_order) == (
        224, 224, "bicubic", 0.875, "NCHW", "RGB")
    assert (pre.scale, pre.mean, pre.std) == (1.0, (127.0,) * 3, (128.0,) * 3)
    assert METADATA_KEY in session.get_modelmeta().custom_metadata_map
    assert session.get_inputs()[0].name == "input" and session.get_inputs()[0].shape[1:] == [3, 224, 224]
    assert session.get_outputs()[0].shape[1:] == [1000]


def test_committed_model_predictions_are_sensible(committed, photos):
    session, card = committed
    by_name = dict(photos)
    probs = scores(session, card, [(n, by_name[n]) for n in ("chelsea.png", "coffee.png", "china.jpg", "flower.jpg")])
    top1 = probs.argmax(axis=1)
    named = [card.labels[i] for i in top1]
    print(dict(zip(("chelsea", "coffee", "china", "flower"), named)))
    assert top1[0] in CAT_CLASSES, named[0]
    assert probs[0][sorted(CAT_CLASSES)].sum() > 0.8  # the photo is, overwhelmingly, a cat
    assert top1[1] in {967, 968, 504}, named[1]  # espresso / cup / coffee mug
    assert top1[2] in {698, 483, 668, 975, 460}, named[2]  # palace / castle / mosque / lakeside / breakwater
    assert top1[3] in {985, 309, 738, 883}, named[3]  # daisy / bee / pot / vase
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_reexport_reproduces_committed_model(reexported, committed, photos):
    # Byte for byte, from any checkout: torch.onnx's stack traces (the exporting machine's
    # site-packages paths) are stripped at export.
    assert reexported.read_bytes() == DEFAULT_MODEL.read_bytes()
    session, card = committed
    again = ort.InferenceSession(str(reexported), providers=["CPUExecutionProvider"])
    assert ModelCard.from_metadata(again.get_modelmeta().custom_metadata_map) == card
    rng = np.random.default_rng(5)
    x = np.concatenate([batch(photos, card), rng.normal(0, 1, (3, 3, 224, 224)).astype(np.float32)])
    np.testing.assert_allclose(again.run(None, {"input": x})[0], session.run(None, {"input": x})[0], atol=1e-4)


def test_default_model_parity_against_pytorch(committed, photos):
    report = check_parity(
        DEFAULT_MODEL, torch_source.predictor(torch_source.load("model_export.zoo:efficientnet_lite0")),
        photos=photos, reference_preprocess=efficientnet_lite_eval_preprocess,
    )
    print(report.table())
    assert report.ok, report.table()
    assert all(row.max_abs_diff < 1e-4 and row.top1_agree == row.count for row in report.rows)


def test_zoo_reference_preprocess_matches_card(committed, photos):
    _, card = committed
    for _, image in photos:
        np.testing.assert_allclose(efficientnet_lite_eval_preprocess(image), preprocess(image, card.preprocessing), atol=1e-6)


def test_torchscript_file_and_nhwc_factory(tmp_path, photos):
    import torch

    from torch_models import tiny_cnn

    scripted = tmp_path / "tiny.pt"
    torch.jit.trace(tiny_cnn(), torch.rand(1, 3, 40, 40)).save(str(scripted))
    labels = tmp_path / "labels.json"
    labels.write_text('["a", "b", "c", "d", "e"]')
    out = tmp_path / "ts.onnx"
    assert main(["pytorch", str(scripted), "--size", "40", "--preset", "imagenet", "--labels", str(labels),
                 "--output", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
    assert (card.name, card.activation, card.labels, card.preprocessing.layout) == ("tiny", "softmax", tuple("abcde"), "NCHW")
    out2 = tmp_path / "nhwc.onnx"
    assert main(["pytorch", "torch_models:tiny_cnn", "--size", "40x40", "--preset", "unit", "--layout", "NHWC",
                 "--output", str(out2)]) == 0
    session = ort.InferenceSession(str(out2), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [40, 40, 3]
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
    x = batch(photos, card)  # (7, 40, 40, 3): dynamic batch works
    with torch.no_grad():
        expected = tiny_cnn()(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, atol=1e-5)


def test_bad_pytorch_sources_fail_clearly(tmp_path, capsys):
    with pytest.raises(ExportError, match="not a torch.nn.Module"):
        torch_source.load("torch_models:not_a_module")
    with pytest.raises(ExportError, match="cannot import"):
        torch_source.load("no_such_package.models:thing")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ExportError, match="TorchScript"):
        torch_source.load(str(junk))
    assert main(["pytorch", "torch_models:tiny_cnn", "--preset", "unit", "--output", str(tmp_path / "x.onnx")]) == 2
    assert "--size" in capsys.readouterr().err


@pytest.fixture(scope="module")
def means_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("means") / "means.onnx"
    assert main(["pytorch", "torch_models:channel_means", "--size", "16", "--preset", "unit",
                 "--output", str(out)]) == 0
    return out


def test_min_top1_lets_top1_flips_through_as_notes(means_model, capsys):
    args = ["check", str(means_model), "pytorch", "torch_models:channel_means_reversed", "--atol", "1e9"]
    assert main(args) == 1  # top-1 must agree everywhere by default
    captured = capsys.readouterr()
    assert "MISMATCH" in captured.out and "photos/output chelsea.png: top-1" in captured.err
    assert "parity check failed:" in captured.err and "nothing written" not in captured.err  # check writes nothing
    assert main(args + ["--min-top1", "0"]) == 0
    out = capsys.readouterr().out
    assert "note: photos/output chelsea.png: top-1" in out and "PASSED" in out and "MISMATCH" not in out


def test_user_code_that_raises_and_bad_fractions_exit_2(means_model, tmp_path, capsys):
    export = ["pytorch", "torch_models:channel_means", "--size", "16", "--preset", "unit",
              "--output", str(tmp_path / "x.onnx")]
    assert main(export + ["--labels", "user_callables:failing_labels"]) == 2
    assert "the labels function user_callables:failing_labels raised FileNotFoundError" in capsys.readouterr().err
    assert main(["check", str(means_model), "pytorch", "torch_models:channel_means",
                 "--reference-preprocess", "user_callables:failing_preprocess"]) == 2
    assert ("the reference preprocessing user_callables:failing_preprocess raised ValueError: bad crop box"
            in capsys.readouterr().err)
    bad_fractions = (export + ["--min-agreement", "1.01"],
                     ["check", str(means_model), "pytorch", "x:y", "--min-top1", "-0.1"])
    for argv in bad_fractions:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "must be a fraction in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_failed_int8_gate_leaves_the_previous_output_alone(tmp_path, monkeypatch, capsys):
    import model_export.quantize

    from model_export.errors import QuantizationError

    def refuse(fp32, output, *args, **kwargs):
        raise QuantizationError(f"refusing to write {output}: INT8 top-1 agrees with fp32 on 6/7 photos")

    monkeypatch.setattr(model_export.quantize, "quantize", refuse)
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous model")
    assert main(["pytorch", "torch_models:channel_means", "--size", "16", "--preset", "unit",
                 "--output", str(out), "--quantize", "dynamic"]) == 1
    assert out.read_bytes() == b"the previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    err = capsys.readouterr().err
    assert "refusing to write" in err and f"not written either: {out} is left as it was" in err


def no_dynamo(monkeypatch) -> None:
    """Make torch.onnx.export fail with dynamo=True, so convert() takes its TorchScript fallback."""
    import torch

    export = torch.onnx.export

    def without_dynamo(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("dynamo exporter off for this test")
        return export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", without_dynamo)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_dict_outputs_pair_by_key_in_the_dicts_own_order(tmp_path, monkeypatch, photos, exporter):
    # Both torch.onnx exporters flatten a returned dict in its own (insertion) order, like
    # predictor(): ONNX output i is the dict's i-th key, "b" before "a" (not sorted, unlike tf2onnx).
    import torch

    from torch_models import dict_heads

    if exporter == "torchscript":  # the fallback path, taken when the dynamo exporter fails
        no_dynamo(monkeypatch)
    out = tmp_path / "heads.onnx"
    assert main(["pytorch", "torch_models:dict_heads", "--size", "16", "--preset", "unit",
                 "--output", str(out)]) == 0  # the parity check inside passed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [(o.name, o.shape[1]) for o in session.get_outputs()] == [("output_0", 6), ("output_1", 2)]
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
    x = batch(photos, card)
    with torch.no_grad():
        expected = dict_heads()(torch.from_numpy(x))
    got = session.run(None, {"input": x})
    np.testing.assert_allclose(got[0], expected["b"].numpy(), atol=1e-6)
    np.testing.assert_allclose(got[1], expected["a"].numpy(), atol=1e-6)
    predicted = torch_source.predictor(dict_heads())(x)
    assert [p.shape[1] for p in predicted] == [6, 2]

    # the parity check does compare by position: the dict's values in sorted-key order would fail it
    def sorted_keys(batch_):
        with torch.no_grad():
            heads = dict_heads()(torch.from_numpy(batch_))
        return [heads[key].numpy() for key in sorted(heads)]

    report = check_parity(out, sorted_keys, photos=photos)
    assert not report.ok and "photos/output_0: shape (7, 6) from ONNX, (7, 2) from source" in report.mismatches


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_nested_outputs_and_none_are_flattened_as_the_exporters_do(tmp_path, photos, monkeypatch, exporter):
    import torch

    from torch_models import nested_heads

    if exporter == "torchscript":
        no_dynamo(monkeypatch)
    out = tmp_path / "nested.onnx"
    assert main(["pytorch", "torch_models:nested_heads", "--size", "16", "--preset", "unit",
                 "--output", str(out)]) == 0  # the parity check inside passed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.shape[1] for o in session.get_outputs()] == [6, 2, 6]
    assert [p.shape[1] for p in torch_source.predictor(nested_heads())(batch(photos, ModelCard.from_metadata(
        session.get_modelmeta().custom_metadata_map)))] == [6, 2, 6]


def test_a_non_tensor_output_is_a_clear_export_error():
    import torch

    class Counted(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3)), 3

    with pytest.raises(ExportError, match="forward\\(\\) returned a int among its outputs"):
        torch_source.predictor(Counted())(np.zeros((1, 3, 4, 4), np.float32))


def test_committed_models_carry_no_build_paths():
    for path in (DEFAULT_MODEL, DEFAULT_MODEL.with_name("model-int8.onnx")):
        data = path.read_bytes()
        assert b"site-packages" not in data and b"pkg.torch.onnx.stack_trace" not in data, path


def test_strip_build_paths_keeps_other_node_metadata():
    import onnx.helper as oh

    from model_export.graph import strip_build_paths

    node = oh.make_node("Relu", ["x"], ["y"])
    for key, value in (("pkg.torch.onnx.stack_trace", 'File "/home/me/venv/lib/site-packages/m.py"'),
                       ("namespace", "model/relu")):
        entry = node.metadata_props.add()
        entry.key, entry.value = key, value
    model = oh.make_model(oh.make_graph([node], "g", [], []))
    assert strip_build_paths(model) == 1
    assert [(e.key, e.value) for e in model.graph.node[0].metadata_props] == [("namespace", "model/relu")]


def test_a_model_that_drops_the_batch_axis_of_one_image_is_refused(tmp_path, capsys):
    """``.squeeze()`` turns (N, 1) into (N,) for the batched parity inputs but into a scalar for the
    batch of one the function runs, which fails every request there: the check runs a batch of one."""
    labels = tmp_path / "labels.txt"
    labels.write_text("negative\npositive\n")
    out = tmp_path / "squeezed.onnx"
    assert main(["pytorch", "torch_models:squeezed_logit", "--size", "16", "--preset", "unit",
                 "--labels", str(labels), "--output", str(out)]) == 1
    captured = capsys.readouterr()
    assert not out.exists()
    assert "single/output: shape () from ONNX for a batch of one, expected (1,)" in captured.err
    assert "squeeze(-1)" in captured.err


def test_a_model_with_a_second_required_input_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "meta.onnx"
    assert main(["pytorch", "torch_models:image_and_meta", "--size", "16", "--preset", "unit",
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "forward() must take exactly one input (the image), this one needs 2: ['x', 'meta']" in err
    assert "Traceback" not in err and not out.exists()
    scripted = tmp_path / "meta.pt"
    import torch
    from torch_models import image_and_meta

    torch.jit.script(image_and_meta()).save(str(scripted))
    with pytest.raises(ExportError, match=r"needs 2: \['x', 'meta'\]"):
        torch_source.load(str(scripted))
    assert main(["pytorch", "torch_models:image_and_optional_meta", "--size", "16", "--preset", "unit",
                 "--output", str(out)]) == 0


def test_check_against_a_source_that_cannot_take_the_cards_input_fails_clearly(tmp_path, capsys):
    out = tmp_path / "flat16.onnx"
    assert main(["pytorch", "torch_models:flat_linear_16", "--size", "16", "--preset", "unit",
                 "--output", str(out)]) == 0
    capsys.readouterr()
    assert main(["check", str(out), "pytorch", "torch_models:flat_linear_32"]) == 2
    err = capsys.readouterr().err
    assert "error: the PyTorch model raised RuntimeError on a batch of shape (7, 3, 16, 16)" in err
    assert "mat1 and mat2 shapes cannot be multiplied" in err


def test_an_output_that_cannot_be_written_is_refused_before_converting(tmp_path, monkeypatch, capsys):
    def no_conversion(*args, **kwargs):
        pytest.fail("converted a model whose --output cannot be written")

    export = ["pytorch", "torch_models:channel_means", "--size", "16", "--preset", "unit"]
    (tmp_path / "models.onnx").mkdir()
    (tmp_path / "notes").write_text("a file, not a directory")
    with monkeypatch.context() as patch:
        patch.setattr(torch_source, "convert", no_conversion)
        for option, path, message in (
            ("--output", tmp_path / "models.onnx", "is a directory"),
            ("--output", tmp_path / "notes" / "model.onnx", "is not a directory"),
            ("--quantized-output", tmp_path / "models.onnx", "is a directory"),
        ):
            output = path if option == "--output" else tmp_path / "model.onnx"
            argv = export + ["--output", str(output), "--quantize", "dynamic"]
            if option != "--output":
                argv += [option, str(path)]
            assert main(argv) == 2, (option, path)
            err = capsys.readouterr().err
            assert f"error: {option} {path}" in err and message in err, err
    # a write that fails after the check (a full disk) is one error line too, and leaves nothing behind
    import model_export.graph

    def disk_full(model, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(model_export.graph, "save_single_file", disk_full)
    assert main(export + ["--output", str(tmp_path / "model.onnx")]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.onnx", "notes"]


def _exported_card(tmp_path, factory: str, size: str, labels: list[str]) -> ModelCard:
    label_file = tmp_path / "labels.txt"
    label_file.write_text("\n".join(labels) + "\n")
    out = tmp_path / "model.onnx"
    assert main(["pytorch", f"torch_models:{factory}", "--size", size, "--preset", "unit", "--labels", str(label_file),
                 "--output", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)


def test_a_raw_score_that_lies_in_0_1_on_a_few_photos_is_not_taken_for_a_probability(tmp_path):
    # auto used to decide on 3 photos and 2 random images: this logit is in [0, 1] there, -0.19 on a blue
    # photo, and was served as a probability (china.jpg "cat 0.92", where the model says 0.52).
    assert _exported_card(tmp_path, "small_logit", "32", ["cat", "dog"]).activation == "sigmoid"


def test_an_n_c_1_1_output_counts_c_classes(tmp_path):
    # The function flattens [N, 4, 1, 1] to 4 classes; the export read only the last axis (1) and refused
    # 4 labels as "a single score", then suggested a sigmoid over what is a softmax head.
    card = _exported_card(tmp_path, "conv_head", "16", ["a", "b", "c", "d"])
    assert (card.labels, card.activation) == (("a", "b", "c", "d"), "softmax")


def test_the_int8_gate_says_when_every_check_photo_gets_the_same_class(tmp_path, caplog):
    # Then top-1 agreement cannot see damage to the other classes (a review's "blue" detector passed 7/7).
    labels = tmp_path / "labels.txt"
    labels.write_text("other\nblue\n")
    with caplog.at_level("WARNING", logger="model_export"):
        assert main(["pytorch", "torch_models:always_second", "--size", "16", "--preset", "unit", "--labels",
                     str(labels), "--output", str(tmp_path / "same.onnx"), "--quantize", "static"]) == 0
    assert "fp32 gives every check photo the same top-1 (blue)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="model_export"):
        assert main(["pytorch", "torch_models:conv_head", "--size", "16", "--preset", "unit", "--output",
                     str(tmp_path / "varied.onnx"), "--quantize", "static", "--min-agreement", "0"]) == 0
    assert "same top-1" not in caplog.text
