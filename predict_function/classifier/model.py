"""One onnxruntime session per cold start: tensor -> scores -> labelled top-k."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnxruntime as ort

from .spec import ModelCard, activate


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable, or disagrees with its own card."""


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # An explicit thread count keeps onnxruntime from pinning threads to cores
    # (pthread_setaffinity_np fails inside Lambda's sandbox).
    options.intra_op_num_threads = intra_op_threads or max(1, len(os.sched_getaffinity(0)))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    # Idle worker threads would otherwise spin after each run, stealing the CPU that the
    # next request's image decode needs (Lambda gives ~1 vCPU per 1769 MB).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class Classifier:
    """An ONNX image classifier together with the card that says how to feed it."""

    def __init__(self, session: ort.InferenceSession, card: ModelCard) -> None:
        self.session = session
        self.card = card
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
        # A single sigmoid output: the seed's contract also returns ``prediction``.
        self.is_binary = card.activation == "sigmoid" and session.get_outputs()[0].shape[-1] == 1
        self._check_card()

    @classmethod
    def load(cls, path: str, intra_op_threads: int = 0, warm_up: bool = False) -> "Classifier":
        if not os.path.isfile(path):
            raise ModelLoadError(f"model file not found: {path} (set MODEL_PATH or copy the model into the image)")
        session = ort.InferenceSession(
            path, sess_options=session_options(intra_op_threads), providers=["CPUExecutionProvider"]
        )
        card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
        classifier = cls(session, card)
        if warm_up:
            classifier.warm_up()
        return classifier

    @classmethod
    def load_in_background(cls, path: str, intra_op_threads: int = 0) -> "Loading":
        """Start :meth:`load` (with a warm-up run) on a thread; ``.result()`` waits for it.

        onnxruntime builds the session and runs inference mostly outside the GIL, so the
        caller can import the rest of the function meanwhile instead of after it.
        """
        return Loading(lambda: cls.load(path, intra_op_threads, warm_up=True))

    def warm_up(self) -> None:
        """One inference on a blank image, so the first request does not pay for first-run
        allocations; a model that cannot run on its own declared input fails here, at cold start."""
        pre = self.card.preprocessing
        shape = (1, 3, pre.height, pre.width) if pre.layout == "NCHW" else (1, pre.height, pre.width, 3)
        try:
            self.session.run([self.output_name], {self.input_name: np.zeros(shape, dtype=np.float32)})
        except Exception as exc:  # onnxruntime raises its own types; fail the cold start with ours
            raise ModelLoadError(f"the model failed a warm-up inference on a {shape} float32 input: {exc}") from exc

    def _check_card(self) -> None:
        """Fail the cold start, not a request, when the card cannot fit the graph."""
        pre = self.card.preprocessing
        expected = (3, pre.height, pre.width) if pre.layout == "NCHW" else (pre.height, pre.width, 3)
        shape = self.session.get_inputs()[0].shape
        static = [(got, want) for got, want in zip(shape[1:], expected) if isinstance(got, int)]
        if len(shape) != 4 or any(got != want for got, want in static):
            raise ModelLoadError(f"model input shape {shape} does not match the card's {pre.layout} {expected}")
        outputs = self.session.get_outputs()[0].shape
        classes = outputs[-1] if outputs and isinstance(outputs[-1], int) else None
        if self.card.labels and classes is not None and classes not in (len(self.card.labels), 1):
            raise ModelLoadError(f"model has {classes} outputs but the card has {len(self.card.labels)} labels")

    def scores(self, tensor: np.ndarray) -> np.ndarray:
        """Scores for one preprocessed image (a batch of one).

        A single sigmoid output with two labels is read as P(labels[1]), so both
        classes get a score; otherwise scores line up with the model's outputs.
        """
        raw = self.session.run([self.output_name], {self.input_name: tensor})[0]
        scores = activate(raw[0], self.card.activation)
        if self.is_binary and len(self.card.labels) == 2:
            return np.array([1.0 - scores[0], scores[0]])
        return scores

    def top_k(self, scores: np.ndarray, k: int) -> list[Prediction]:
        labels = self.card.labels if len(self.card.labels) == len(scores) else [f"class_{i}" for i in range(len(scores))]
        order = np.argsort(-scores, kind="stable")[: max(1, k)]
        return [Prediction(labels[i], float(scores[i])) for i in order]


class Loading:
    """A model loading on a background thread; :meth:`result` returns it or re-raises its error."""

    def __init__(self, load: Callable[[], Classifier]) -> None:
        self._load = load
        self._classifier: Classifier | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="model-load", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._classifier = self._load()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._error = exc

    def result(self) -> Classifier:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._classifier is not None
        return self._classifier
