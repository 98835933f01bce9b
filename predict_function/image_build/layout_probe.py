"""The NCHWc layout probe: a four-convolution ONNX model (``layout_probe.onnx``, 43 KB) whose
optimised graph only runs right on a CPU with the NCHWc block size it was optimised for.

``image_build.preoptimize`` optimises it next to each model's variant, and the function runs it
at cold start before trusting the variant (``classifier/preoptimized.py``): it costs ~1 ms where
checking the whole model would cost an inference. Its channel counts (32, 24, 40) are not all
multiples of 16, so onnxruntime refuses a 16-block graph on an 8-block CPU (ReorderOutput) and an
8-block graph on a 16-block CPU (Conv), both seen under ``qemu-x86_64 -cpu Haswell-noTSX``; the
comparison with the build-time output would catch wrong values too. The same padding tells the
build which block size onnxruntime used (``preoptimize.nchwc_block``).

Regenerate with the dev venv (needs onnx): ``python -m image_build.layout_probe`` from
``predict_function/``; the weights are seeded, so the file comes out the same.
"""

from __future__ import annotations

from pathlib import Path

PROBE = Path(__file__).with_name("layout_probe.onnx")


def build() -> bytes:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    initializers = [weight("w1", (32, 3, 3, 3)), weight("b1", (32,)), weight("w2", (32, 1, 3, 3)), weight("b2", (32,)),
                    weight("w3", (24, 32, 1, 1)), weight("b3", (24,)), weight("w4", (40, 24, 3, 3)), weight("b4", (40,))]
    nodes = [  # a full, a depthwise and a pointwise convolution: each kind of NCHWc kernel
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=32),
        helper.make_node("Conv", ["c2", "w3", "b3"], ["c3"]),
        helper.make_node("Conv", ["c3", "w4", "b4"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "nchwc_layout_probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 40, 4, 4])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="image_build.layout_probe")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


if __name__ == "__main__":
    PROBE.write_bytes(build())
    print(f"{PROBE}: {PROBE.stat().st_size} B")
