"""Graphs optimised at image build (classifier/preoptimized.py, image_build/preoptimize.py): the
bundled model's variant gives the portable model's scores bit for bit, is used only for the CPU
layout it was made for and only when its layout probe passes, and anything stale or foreign falls
back to the portable model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier import preoptimized
from classifier.model import Classifier
from classifier.spec import preprocess
from image_build import external_weights, preoptimize
from support import PHOTOS, REPO

MODELS = REPO / "predict_function" / "model"
PROBES = Path(__file__).with_name("layout_probes")
LAYOUT = preoptimized.cpu_layout()
OTHER_LAYOUT = {"x86_64-nchwc8": "x86_64-nchwc16", "x86_64-nchwc16": "x86_64-nchwc8"}.get(LAYOUT or "")

needs_x86 = pytest.mark.skipif(LAYOUT is None, reason="variants are made for x86-64 CPUs only")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The model stage's output, as the Dockerfile makes it: split models, then their variants."""
    model_dir = tmp_path_factory.mktemp("model")
    for name in ("model.onnx", "model-int8.onnx"):
        external_weights.externalize(MODELS / name, model_dir)
    assert preoptimize.main([str(model_dir)]) == 0
    return model_dir


@pytest.fixture
def model_dir(built, tmp_path) -> Path:
    """A private copy that a test may damage."""
    return Path(shutil.copytree(built, tmp_path / "model"))


def _scores(classifier: Classifier) -> np.ndarray:
    photo = Image.open(PHOTOS["chelsea.png"]).convert("RGB")
    return classifier.scores(preprocess(photo, classifier.card.preprocessing))


def _variant(model_dir: Path, layout: str | None = LAYOUT) -> Path:
    return Path(preoptimized.variant_path(str(model_dir / "model.onnx"), layout or ""))


@needs_x86
def test_the_float_model_gets_a_variant_for_this_cpu_and_the_int8_one_does_not(built, capsys):
    files = sorted(str(p.relative_to(built)) for p in (built / "optimized").rglob("*") if p.is_file())
    assert files == [f"optimized/{LAYOUT}/model.onnx{suffix}" for suffix in ("", ".data", ".json", ".probe")]
    meta = json.loads((built / "optimized" / LAYOUT / "model.onnx.json").read_text())
    assert meta["layout"] == LAYOUT and meta["source"] == preoptimized.source_digest(str(built / "model.onnx"))


@needs_x86
def test_the_variant_answers_as_the_portable_model_bit_for_bit(model_dir):
    fast = Classifier.load(str(model_dir / "model.onnx"), 1)
    shutil.rmtree(model_dir / "optimized")
    portable = Classifier.load(str(model_dir / "model.onnx"), 1)
    assert (fast.optimized_for, portable.optimized_for) == (LAYOUT, None)
    assert fast.card == portable.card
    np.testing.assert_array_equal(_scores(fast), _scores(portable))
    assert fast.top_k(_scores(fast), 1)[0].label in ("tabby", "tiger cat", "Egyptian cat")


def _assert_portable(model_dir: Path, caplog, why: str | tuple[str, ...], layout: str | None = LAYOUT) -> None:
    with caplog.at_level(logging.WARNING, logger="classifier.preoptimized"):
        variant = preoptimized.open_session(str(model_dir / "model.onnx"), preoptimize._options, layout)
    assert variant is None
    whys = (why,) if isinstance(why, str) else why
    assert any(w in caplog.text for w in whys) and "loading the portable one" in caplog.text
    assert Classifier.load(str(model_dir / "model.onnx"), 1).optimized_for is None


@needs_x86
def test_a_graph_for_the_other_layout_fails_the_probe(model_dir, caplog):
    """What a 16-block graph does on an 8-block CPU (wrong scores) or the reverse (a kernel
    error), caught by the probe. ``layout_probes/`` holds the probe as onnxruntime optimised it on
    each layout: x86_64-nchwc8 under ``qemu-x86_64 -cpu Haswell-noTSX``, x86_64-nchwc16 on an
    AVX-512 CPU (``preoptimize._save_probe(path)``).
    Here the other layout's probe stands in the variant's place, as if /proc/cpuinfo had lied."""
    shutil.copyfile(PROBES / f"{OTHER_LAYOUT}.onnx", _variant(model_dir).with_name("model.onnx.probe"))
    # onnxruntime refuses the other block size's shapes (Conv on a 16-block CPU, ReorderOutput on
    # an 8-block one); a wrong output would be refused too ("differs from")
    _assert_portable(model_dir, caplog, ("Fail", "differs from"))


@needs_x86
def test_the_probe_fixtures_are_the_two_layouts_of_the_committed_probe():
    reference = preoptimized.run(preoptimize._prebuilt(preoptimize.LAYOUT_PROBE))
    own = PROBES / f"{LAYOUT}.onnx"
    assert preoptimized.mismatch(preoptimized.run(preoptimize._prebuilt(own)), reference) is None
    assert own.read_bytes() != (PROBES / f"{OTHER_LAYOUT}.onnx").read_bytes()


@needs_x86
@pytest.mark.parametrize("change, why", [
    (lambda meta: meta.update(onnxruntime="1.0.0"), "made by onnxruntime 1.0.0"),
    (lambda meta: meta.update(format=0), "format 0"),
    (lambda meta: meta["source"]["model"].__setitem__(1, meta["source"]["model"][1] ^ 1), "made from another model.onnx"),
    (lambda meta: meta.update(layout=OTHER_LAYOUT), f"made for {OTHER_LAYOUT}"),
    (lambda meta: meta["probe"]["outputs"][0][0][0][0].__setitem__(0, 1e6), "differs from"),
    (lambda meta: meta.pop("probe"), "KeyError"),
])
def test_a_stale_or_damaged_variant_is_ignored(model_dir, caplog, change, why):
    meta_path = _variant(model_dir).with_name("model.onnx.json")
    meta = json.loads(meta_path.read_text())
    change(meta)
    meta_path.write_text(json.dumps(meta))
    _assert_portable(model_dir, caplog, why)


@needs_x86
def test_a_model_replaced_after_the_build_does_not_use_the_old_variant(model_dir, caplog):
    external_weights.externalize(MODELS / "model-int8.onnx", model_dir / "other")
    for suffix in ("", ".data"):  # another model under the same name
        shutil.copyfile(model_dir / "other" / f"model-int8.onnx{suffix}", model_dir / f"model.onnx{suffix}")
    _assert_portable(model_dir, caplog, "made from another model.onnx")


@needs_x86
def test_retrained_weights_copied_over_the_old_ones_do_not_use_the_old_variant(model_dir, caplog):
    """Same graph file, same weights size: the classifier head's weights (the file's end) differ."""
    data = model_dir / "model.onnx.data"
    weights = bytearray(data.read_bytes())
    weights[-4096:] = bytes(reversed(weights[-4096:]))
    data.write_bytes(bytes(weights))
    _assert_portable(model_dir, caplog, "made from another model.onnx")


@needs_x86
@pytest.mark.parametrize("text", ["{not json", "[]", "null"])
def test_unreadable_or_missing_files_fall_back(model_dir, caplog, text):
    _variant(model_dir).with_name("model.onnx.json").write_text(text)
    _assert_portable(model_dir, caplog, "unreadable description")
    shutil.rmtree(model_dir / "optimized")
    assert preoptimized.open_session(str(model_dir / "model.onnx"), preoptimize._options) is None  # quietly


@needs_x86
def test_a_missing_probe_or_variant_graph_falls_back(model_dir, caplog):
    _variant(model_dir).with_name("model.onnx.probe").unlink()
    _assert_portable(model_dir, caplog, "probe")


def test_no_variant_is_made_where_onnxruntime_makes_no_nchwc_layout(tmp_path, monkeypatch):
    external_weights.externalize(MODELS / "model.onnx", tmp_path)
    monkeypatch.setattr(preoptimize, "_build_layout", lambda: None)  # e.g. an arm64 build
    assert preoptimize.preoptimize(tmp_path / "model.onnx") == (
        None, "no optimised variant on this CPU (onnxruntime made no x86-64 NCHWc layout here)")
    assert not (tmp_path / "optimized").exists()
    assert preoptimized.cpu_layout(machine="aarch64") is None


@needs_x86
def test_a_variant_that_cannot_be_made_is_skipped_and_cleaned_up(tmp_path, monkeypatch, capsys):
    external_weights.externalize(MODELS / "model.onnx", tmp_path)
    real = preoptimize._save_probe

    def half_written(target):
        real(target)
        if target.suffix == ".probe":
            raise RuntimeError("disk full")

    monkeypatch.setattr(preoptimize, "_save_probe", half_written)
    assert preoptimize.main([str(tmp_path)]) == 0  # the image still builds, with the portable graph
    assert "model.onnx: not optimised (RuntimeError: disk full)" in capsys.readouterr().out
    assert not [p for p in (tmp_path / "optimized").rglob("*") if p.is_file()]


@needs_x86
def test_the_build_names_the_layout_onnxruntime_used_not_the_cpu_flags():
    """Under Docker's x86-64 emulation on an arm64 host, /proc/cpuinfo describes the host."""
    assert preoptimize._build_layout() == LAYOUT  # this machine: flags and onnxruntime agree
    assert preoptimize.nchwc_block((PROBES / "x86_64-nchwc8.onnx").read_bytes()) == 8
    assert preoptimize.nchwc_block((PROBES / "x86_64-nchwc16.onnx").read_bytes()) == 16
    assert preoptimize.nchwc_block(preoptimize.LAYOUT_PROBE.read_bytes()) is None  # not optimised


@needs_x86
def test_without_cpu_flags_the_function_tries_each_variant_behind_its_probe(model_dir, monkeypatch):
    monkeypatch.setattr(preoptimized, "_cpu_flags", lambda: None)
    assert preoptimized.cpu_layout() is None
    assert Classifier.load(str(model_dir / "model.onnx"), 1).optimized_for == LAYOUT
    (model_dir / "optimized" / LAYOUT).rename(model_dir / "optimized" / OTHER_LAYOUT)  # a wrong label
    meta_path = _variant(model_dir, OTHER_LAYOUT).with_name("model.onnx.json")
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "layout": OTHER_LAYOUT}))
    shutil.copyfile(PROBES / f"{OTHER_LAYOUT}.onnx", _variant(model_dir, OTHER_LAYOUT).with_name("model.onnx.probe"))
    assert Classifier.load(str(model_dir / "model.onnx"), 1).optimized_for is None


@pytest.mark.parametrize("flags, layout", [
    ({"sse2", "avx", "fma", "avx2", "avx512f", "avx512bw"}, "x86_64-nchwc16"),
    ({"sse2", "avx", "fma", "avx2"}, "x86_64-nchwc8"),  # Lambda's x86_64 CPUs so far: no AVX-512
    ({"sse2", "avx", "avx512f"}, "x86_64-nchwc8"),  # MLAS takes AVX-512 only on top of AVX2 + FMA
    ({"sse2"}, "x86_64-nchwc8"),  # 8 is MLAS's x86-64 default, even without AVX
    (None, None),  # /proc/cpuinfo unreadable: no variant
])
def test_cpu_layout_follows_mlas(flags, layout, monkeypatch):
    monkeypatch.setattr(preoptimized, "_cpu_flags", lambda: flags)
    assert preoptimized.cpu_layout(machine="x86_64") == layout


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\n")
    assert preoptimized._cpu_flags(str(cpuinfo)) == {"fpu", "sse2", "avx", "avx2", "fma"}
    assert preoptimized._cpu_flags(str(tmp_path / "missing")) is None


def test_op_types_come_from_the_onnx_protobuf():
    float_ops = preoptimize.op_types((MODELS / "model.onnx").read_bytes())
    assert {"Conv", "Gemm"} <= float_ops and not any(preoptimize.is_quantized(op) for op in float_ops)
    assert {"QuantizeLinear", "DequantizeLinear"} <= preoptimize.op_types((MODELS / "model-int8.onnx").read_bytes())
    with pytest.raises(ValueError, match="not an ONNX protobuf"):
        preoptimize.op_types(b"\x0f\xff\xff")


def test_op_types_include_subgraphs_and_functions():
    import onnx
    from onnx import TensorProto, helper

    branch = helper.make_graph([helper.make_node("DequantizeLinear", ["q", "s"], ["y"])], "then", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "else", [],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    function = helper.make_function("local", "Fq", ["a"], ["b"], [helper.make_node("MatMulInteger", ["a", "a"], ["b"])],
                                    [helper.make_opsetid("", 18)])
    graph = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other),
                               helper.make_node("Fq", ["x"], ["w"], domain="local")], "g",
                              [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, functions=[function],
                              opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("local", 1)])
    assert preoptimize.op_types(model.SerializeToString()) == {"If", "Fq", "DequantizeLinear", "Identity", "MatMulInteger"}


@pytest.mark.parametrize("op, quantized", [
    ("QuantizeLinear", True), ("DequantizeLinear", True), ("DynamicQuantizeLinear", True), ("QLinearConv", True),
    ("QLinearAdd", True), ("QGemm", True), ("QAttention", True), ("MatMulInteger", True), ("ConvInteger", True),
    ("MatMulIntegerToFloat", True), ("MatMulNBits", True), ("DynamicQuantizeLSTM", True),
    ("Conv", False), ("Gemm", False), ("QuickGelu", False), ("Relu", False), ("Clip", False),
])
def test_quantized_ops(op, quantized):
    assert preoptimize.is_quantized(op) is quantized


def _inputs(*specs):
    from types import SimpleNamespace

    return [SimpleNamespace(name=f"x{i}", type=kind, shape=shape) for i, (kind, shape) in enumerate(specs)]


def test_models_a_layout_cannot_describe_are_skipped():
    image = ("tensor(float)", ["N", 3, 224, 224])
    assert "quantized (QLinearConv)" in preoptimize.skip_reason(_inputs(image), {"QLinearConv", "Relu"})
    assert "symbolic dimension" in preoptimize.skip_reason(_inputs(("tensor(float)", ["N", 3, "H", "W"])), {"Conv"})
    assert "one tensor(float)" in preoptimize.skip_reason(_inputs(("tensor(float16)", [1, 3, 224, 224])), {"Conv"})
    assert "one tensor(float)" in preoptimize.skip_reason(_inputs(image, image), {"Conv"})
    assert preoptimize.skip_reason(_inputs(image), {"Conv"}) is None


def test_the_check_input_is_fixed_and_spread():
    first, again = preoptimized.check_input(["batch", 3, 8, 8]), preoptimized.check_input([1, 3, 8, 8])
    assert first.shape == (1, 3, 8, 8) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert -1 <= first.min() < -0.5 and 0.5 < first.max() < 1 and len(np.unique(first)) > 150


def test_the_committed_probe_is_the_one_its_script_makes():
    from image_build import layout_probe

    assert layout_probe.PROBE.read_bytes() == layout_probe.build()
