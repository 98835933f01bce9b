"""Random-weight Keras models for the export tests, with batch-norm statistics taken
from real photos so their outputs actually vary (a weights=None model with moving
mean 0 / variance 1 gives a near-constant softmax and makes parity vacuous)."""

from __future__ import annotations

import numpy as np


def calibrate_batch_norm(model, x: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics to the batch statistics of ``x``."""
    import keras

    bns = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(x, training=True)
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum


def photo_batch(size: int, scale: float, offset: float) -> np.ndarray:
    from PIL import Image

    from model_export.parity import sample_photos

    arrays = [np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), np.float32) for _, img in sample_photos()]
    return np.stack(arrays) * scale - offset


def mobilenet_v2(size: int = 128, classes: int = 10):
    import keras

    keras.utils.set_random_seed(1)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3), classes=classes)
    calibrate_batch_norm(model, photo_batch(size, 1 / 127.5, 1.0))  # "tf" preset range
    return model


def xception(size: int = 96, classes: int = 7):
    import keras

    keras.utils.set_random_seed(2)
    model = keras.applications.Xception(weights=None, input_shape=(size, size, 3), classes=classes)
    calibrate_batch_norm(model, photo_batch(size, 1 / 127.5, 1.0))
    return model


def small_cnn(size: int = 96):
    """The seed's model: Sequential, Rescaling(1/255) inside, one sigmoid output."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    # Center the single logit on the photos so sigmoid decisions go both ways.
    x = photo_batch(size, 1.0, 0.0)
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    features = keras.Model(model.inputs, model.layers[-2].output)(x)
    logits = np.asarray(features) @ kernel
    scale = 2.0 / (float(logits.std()) + 1e-6)
    head.set_weights([kernel * scale, bias - float(np.median(logits)) * scale])
    return model


MOBILENET_SIZE = 128


def mobilenet_training_preprocess(image) -> np.ndarray:
    """How the MobileNetV2 user trained: bilinear resize, keras' mobilenet_v2.preprocess_input."""
    import keras
    from PIL import Image

    resized = image.resize((MOBILENET_SIZE, MOBILENET_SIZE), Image.Resampling.BILINEAR)
    return keras.applications.mobilenet_v2.preprocess_input(np.asarray(resized, dtype=np.float32))


def two_heads(size: int = 32):
    """A Functional model returning a dict {"zeta": 3 classes, "alpha": 5 classes}: Keras and
    tf2onnx flatten dicts in sorted-key order, so "alpha" comes first unless matched by name."""
    import keras

    keras.utils.set_random_seed(4)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inp)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    zeta = keras.layers.Dense(3, activation="softmax", name="zeta")(x)
    alpha = keras.layers.Dense(5, activation="softmax", name="alpha")(x)
    return keras.Model(inp, {"zeta": zeta, "alpha": alpha})


def normalising_cnn(size: int = 32):
    """Like keras.applications' EfficientNet / MobileNetV3 (include_preprocessing): the model normalises
    its own raw 0..255 input, here inside a nested Sequential: Rescaling(1/127.5, offset=-1) then
    Normalization with per-channel mean/variance, then the first weighted layer. The Rescaling after the
    Conv is part of the network, not of the input preprocessing."""
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input((size, size, 3))
    preprocessing = keras.Sequential(
        [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_pm1"),
         keras.layers.Normalization(mean=[0.1, 0.0, -0.1], variance=[0.25, 0.25, 0.25], name="norm")],
        name="preprocessing",
    )
    x = preprocessing(inp)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.Rescaling(0.5, name="inner_scale")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
