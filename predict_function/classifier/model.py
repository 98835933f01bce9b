"""One onnxruntime session per cold start: tensor -> scores -> labelled top-k."""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnxruntime as ort

from . import preoptimized
from .spec import ModelCard, activate

log = logging.getLogger(__name__)

# Output types onnxruntime returns to numpy as floats (not bfloat16 or float8).
SCORE_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")
# Activations under which one output is a probability (or becomes one): the seed's binary contract.
BINARY_ACTIVATIONS = ("sigmoid", "none")


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable, or disagrees with its own card."""


class ModelOutputError(RuntimeError):
    """The model's scores cannot be served: not finite, or not as many as the card has labels.

    Not a ``ClassifierError``: the handler answers it as a generic 500 and logs it in full.
    """


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


@dataclass(frozen=True)
class Scores:
    """One run's scores. ``binary``: they are one probability (the seed's single-sigmoid
    contract, whose responses also carry ``prediction``)."""

    values: np.ndarray
    binary: bool


def session_options(intra_op_threads: int, allow_spinning: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # An explicit thread count keeps onnxruntime from pinning threads to cores
    # (pthread_setaffinity_np fails inside Lambda's sandbox).
    options.intra_op_num_threads = intra_op_threads or max(1, len(os.sched_getaffinity(0)))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    # Idle worker threads would otherwise spin after each run, stealing the CPU that the
    # next request's image decode needs (Lambda gives ~1 vCPU per 1769 MB). Spinning pays only
    # when requests come with idle time between them (ORT_ALLOW_SPINNING; bench.idle_threads).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class Classifier:
    """An ONNX image classifier together with the card that says how to feed it."""

    def __init__(self, session: ort.InferenceSession, card: ModelCard, optimized_for: str | None = None) -> None:
        self.session = session
        self.card = card
        self.optimized_for = optimized_for  # the CPU layout of a graph optimised at build (preoptimized.py)
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
        self.classes = _class_count(session.get_outputs()[0].shape)  # None: symbolic, known per run
        self._check_card()
        if not card.labels:
            log.warning("the model card has no labels: predictions are named class_<index>")

    @classmethod
    def load(cls, path: str, intra_op_threads: int = 0, allow_spinning: bool = False) -> "Classifier":
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path} (set MODEL_PATH or copy the model into the image)")

        def options() -> ort.SessionOptions:
            return session_options(intra_op_threads, allow_spinning)

        variant = preoptimized.open_session(path, options)  # the graph optimised at build, for this CPU
        if variant is not None:
            session = variant.session
        else:
            session = ort.InferenceSession(path, sess_options=options(), providers=["CPUExecutionProvider"])
        card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
        return cls(session, card, variant.layout if variant is not None else None)

    @classmethod
    def start_loading(cls, path: str, intra_op_threads: int = 0, background: bool = True,
                      allow_spinning: bool = False) -> "Loading":
        """:meth:`load`, on a thread when ``background``; ``.result()`` gives the classifier.

        onnxruntime builds the session mostly outside the GIL, so with a second CPU the caller
        can import the rest of the function meanwhile. With one CPU the thread only adds
        contention (measured: ~3 % slower cold start), so the load then runs right here.
        """
        return Loading(lambda: cls.load(path, intra_op_threads, allow_spinning), background)

    def _check_card(self) -> None:
        """Fail the cold start, not a request, when the card cannot fit the graph."""
        pre = self.card.preprocessing
        expected = (3, pre.height, pre.width) if pre.layout == "NCHW" else (pre.height, pre.width, 3)
        model_input, scores = self.session.get_inputs()[0], self.session.get_outputs()[0]
        shape = model_input.shape
        static = [(got, want) for got, want in zip(shape[1:], expected) if isinstance(got, int)]
        if len(shape) != 4 or any(got != want for got, want in static):
            raise ModelLoadError(f"model input shape {shape} does not match the card's {pre.layout} {expected}")
        if model_input.type != "tensor(float)":  # preprocess() makes float32
            raise ModelLoadError(f"model input type {model_input.type}: the function feeds tensor(float)")
        if scores.type not in SCORE_TYPES:
            raise ModelLoadError(f"model output type {scores.type}: the function reads {', '.join(SCORE_TYPES)}")
        self._check_outputs()

    def _check_outputs(self) -> None:
        """The label count and activation against a static class count. A symbolic one is
        checked on each run's scores instead (:meth:`classify`): finding it here would take an
        inference at init."""
        labels, activation = len(self.card.labels), self.card.activation
        if self.classes == 1:
            if activation not in BINARY_ACTIVATIONS:
                raise ModelLoadError(f"model has 1 output: activation {activation} would always score 1.0; "
                                     f"use one of {BINARY_ACTIVATIONS}")
            if labels > 2:
                raise ModelLoadError(f"model has 1 output (one probability) but the card has {labels} labels; "
                                     "give 0, 1 (the positive class) or 2 (negative, positive)")
        elif labels and self.classes is not None and self.classes != labels:
            raise ModelLoadError(f"model has {self.classes} outputs but the card has {labels} labels")

    def classify(self, tensor: np.ndarray) -> Scores:
        """Scores for one preprocessed image (a batch of one).

        One score under a sigmoid or ``none`` card is one probability (``Scores.binary``),
        whether the class count is static or only known per run; with two labels it is read
        as P(labels[1]), so both classes get a score. Otherwise scores line up with the
        model's outputs. Raises :class:`ModelOutputError` for scores that cannot be served.
        """
        raw = self.session.run([self.output_name], {self.input_name: tensor})[0]
        scores = activate(raw[0], self.card.activation)
        binary = len(scores) == 1 and self.card.activation in BINARY_ACTIVATIONS
        if binary and len(self.card.labels) == 2:
            scores = np.array([1.0 - scores[0], scores[0]])
        self._check_scores(scores)
        return Scores(scores, binary)

    def scores(self, tensor: np.ndarray) -> np.ndarray:
        """:meth:`classify`'s scores alone."""
        return self.classify(tensor).values

    def _check_scores(self, scores: np.ndarray) -> None:
        labels = len(self.card.labels)
        if len(scores) == 1 and self.card.activation == "softmax":  # static: refused at load
            raise ModelOutputError("model returned 1 score: softmax over it would always be 1.0")
        if labels and len(scores) != labels:  # only a symbolic class count gets this far
            raise ModelOutputError(f"model returned {len(scores)} scores but the card has {labels} labels")
        if not np.isfinite(scores).all():  # NaN is not JSON: a 500, not a 200 no client can parse
            raise ModelOutputError(f"model returned non-finite scores ({np.count_nonzero(~np.isfinite(scores))} "
                                   f"of {len(scores)})")

    def top_k(self, scores: np.ndarray, k: int) -> list[Prediction]:
        labels = self.card.labels or [f"class_{i}" for i in range(len(scores))]
        order = np.argsort(-scores, kind="stable")[: max(1, k)]
        return [Prediction(labels[i], float(scores[i])) for i in order]


def _class_count(shape: list) -> int | None:
    """Scores per example: the product of the output's dimensions after the batch (``activate``
    flattens them: [N, 1000, 1, 1] is 1000 classes), or None when one of them is symbolic."""
    dims = shape[1:]
    return math.prod(dims) if all(isinstance(d, int) for d in dims) else None


class Loading:
    """A model being loaded; :meth:`result` returns it or re-raises the error the load raised."""

    def __init__(self, load: Callable[[], Classifier], background: bool = True) -> None:
        self._load = load
        self._classifier: Classifier | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="model-load", daemon=True)
            self._thread.start()
        else:
            self._run()

    def _run(self) -> None:
        try:
            self._classifier = self._load()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._error = exc

    def wait(self) -> None:
        """Until the load has finished, whatever its outcome."""
        if self._thread is not None:
            self._thread.join()

    def result(self) -> Classifier:
        self.wait()
        if self._error is not None:
            raise self._error
        assert self._classifier is not None
        return self._classifier
