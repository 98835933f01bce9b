"""Prove an ONNX model answers like its source model; separate from the export itself.

Inputs: real photos shipped in PyPI packages (scikit-image, scikit-learn) sent
through :func:`classifier.spec.preprocess` with the card read back *from the ONNX
file*, plus random-pixel images, and the first photo alone (the batch of one the function
runs: its output must keep the batch axis and equal that image's row in a batch). The
source framework and onnxruntime run on the same tensors; when the user gives their training-time preprocessing
(``reference_preprocess``), the source model gets that instead on the photos, which
is what catches a wrong card (size, scale, layout, filter...).

Every mismatch is collected before failing (like optimum's ``validate_model_outputs``);
tolerances are data (:class:`Tolerance`). A NaN/inf on either side is a mismatch. An
example whose top-1 differs is a mismatch only when top-1 agreement over its inputs
falls below ``min_top1``; otherwise it is listed as a note and the check passes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from classifier.spec import ModelCard, activate, preprocess

from model_export.errors import ExportError, ParityError
from model_export.metadata import activation_problem, label_count_problem, read_card

log = logging.getLogger("model_export")

Predict = Callable[[np.ndarray], list]
# (python module whose directory holds the file, relative path)
PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage.data", "chelsea.png"),
    ("skimage.data", "coffee.png"),
    ("skimage.data", "astronaut.png"),
    ("skimage.data", "rocket.jpg"),
    ("skimage.data", "motorcycle_left.png"),
    ("sklearn.datasets", "images/china.jpg"),
    ("sklearn.datasets", "images/flower.jpg"),
)


def photo_path(module: str, relative: str) -> Path:
    import importlib

    return Path(importlib.import_module(module).__file__).parent / relative


def sample_photos(
    extra: Sequence[str | Path] = (), shipped: Sequence[tuple[str, str]] = PHOTOS
) -> list[tuple[str, Image.Image]]:
    """Real RGB photos: ``shipped`` (default :data:`PHOTOS`, from scikit-image / scikit-learn when
    installed) plus ``extra`` files."""
    paths: list[Path] = []
    for module, relative in shipped:
        try:
            path = photo_path(module, relative)
        except ImportError:
            continue
        if path.is_file():
            paths.append(path)
    paths.extend(Path(p) for p in extra)
    photos = []
    for path in paths:
        try:
            with Image.open(path) as image:
                photos.append((path.name, image.convert("RGB")))
        except OSError as exc:
            raise ExportError(f"cannot read check image {path}: {exc}") from exc
    if not photos:
        raise ExportError("no check photos: install scikit-image/scikit-learn or pass --images")
    return photos


def random_images(card: ModelCard, count: int, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """Random-pixel RGB images, a bit larger than the input so crop/resize run too."""
    rng = np.random.default_rng(seed)
    pre = card.preprocessing
    images = []
    for i in range(count):
        h, w = pre.height + 7 * (i % 3), pre.width + 5 * (i % 2)
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        images.append((f"random-{i}", Image.fromarray(pixels, "RGB")))
    return images


def batch(images: Sequence[tuple[str, Image.Image]], card: ModelCard) -> np.ndarray:
    return np.concatenate([preprocess(image, card.preprocessing) for _, image in images], axis=0)


def decisions(output: np.ndarray, activation: str) -> np.ndarray:
    """Top-1 per example: argmax over classes, or score > 0.5 for a single-score output."""
    flat = np.asarray(output).reshape(len(output), -1)
    if flat.shape[1] > 1:
        return flat.argmax(axis=1)
    scores = np.array([activate(row, activation)[0] for row in flat])
    return (scores > 0.5).astype(np.int64)


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-4  # fp32 default
    rtol: float = 0.0
    min_top1: float = 1.0  # fraction of examples whose top-1 must agree
    # atol for photos the source model got through the user's own (reference) preprocessing
    # code: two implementations of the same recipe may differ a little; None = atol.
    reference_atol: float | None = None


@dataclass
class Row:
    inputs: str
    output: str
    shape: tuple
    max_abs_diff: float
    top1_agree: int
    count: int
    spread: float  # std of the source outputs across inputs; ~0 means the check proves little
    ok: bool


@dataclass
class ParityReport:
    model: str
    source: str
    tolerance: Tolerance
    rows: list[Row] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # tolerated differences (top-1 flips within min_top1)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def table(self) -> str:
        t = self.tolerance
        lines = [
            f"parity: {self.model} vs {self.source} (atol {t.atol:g}, rtol {t.rtol:g}, "
            f"top-1 must agree on >= {t.min_top1:.0%})",
            f"  {'inputs':<8} {'output':<10} {'shape':<14} {'max|diff|':>10} {'top-1':>7} {'spread':>9}  status",
        ]
        for r in self.rows:
            lines.append(
                f"  {r.inputs:<8} {r.output:<10} {str(r.shape):<14} {r.max_abs_diff:>10.3g} "
                f"{f'{r.top1_agree}/{r.count}':>7} {r.spread:>9.3g}  {'ok' if r.ok else 'MISMATCH'}"
            )
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        if self.mismatches:
            lines.append(f"  FAILED with {len(self.mismatches)} mismatch(es):")
            lines.extend(f"    - {m}" for m in self.mismatches)
        else:
            lines.append("  PASSED")
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        if self.mismatches:
            raise ParityError(
                f"{self.model} does not match {self.source}:\n" + "\n".join(f"  - {m}" for m in self.mismatches),
                self.mismatches,
            )


def onnx_predictor(model_path: str | Path) -> tuple[Predict, list[str]]:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's Fail/InvalidGraph/...: one boundary
        raise ExportError(f"onnxruntime cannot load {model_path}: {exc}") from exc
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]

    def predict(x: np.ndarray) -> list[np.ndarray]:
        try:
            return session.run(None, {input_name: x})
        except Exception as exc:  # onnxruntime's InvalidArgument/Fail/...: one boundary
            raise ExportError(f"onnxruntime cannot run {model_path} on a batch of shape {x.shape}: {exc}") from exc

    return predict, names


def decision_label(card: ModelCard, index: int, single: bool) -> str:
    """A :func:`decisions` value for people: ``3 'tabby cat'``, or for a single score
    ``'dog'`` (labels [negative, positive]) / ``positive=True``."""
    if single:
        return repr(card.labels[index]) if len(card.labels) == 2 else f"positive={bool(index)}"
    if card.labels and 0 <= index < len(card.labels):
        return f"{index} {card.labels[index]!r}"
    return str(index)


def compare(
    report: ParityReport,
    card: ModelCard,
    inputs: str,
    names: Sequence[str],
    example_names: Sequence[str],
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    atol: float | None = None,
) -> None:
    """Compare two output lists; append rows and every mismatch to ``report``."""
    t = report.tolerance
    atol = t.atol if atol is None else atol
    if len(reference) != len(candidate):
        report.mismatches.append(f"{inputs}: source gives {len(reference)} outputs, ONNX gives {len(candidate)}")
    for name, ref, got in zip(names, reference, candidate):
        ref = np.asarray(ref, dtype=np.float32)
        got = np.asarray(got, dtype=np.float32)
        if ref.shape != got.shape:
            report.mismatches.append(f"{inputs}/{name}: shape {got.shape} from ONNX, {ref.shape} from source")
            report.rows.append(Row(inputs, name, got.shape, math.inf, 0, len(got), 0.0, False))
            continue
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite values are reported below
            diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
            allowed = atol + t.rtol * np.abs(ref)
            spread = float(ref.reshape(len(ref), -1).std(axis=0).max()) if len(ref) > 1 else 0.0
        finite_ref, finite_got = np.isfinite(ref), np.isfinite(got)
        bad = (diff > allowed) | ~finite_ref | ~finite_got
        single = ref.reshape(len(ref), -1).shape[1] == 1
        top_ref, top_got = decisions(ref, card.activation), decisions(got, card.activation)
        agree = int((top_ref == top_got).sum())
        top1_ok = agree >= t.min_top1 * len(ref) - 1e-9
        per_example_bad = bad.reshape(len(ref), -1).any(axis=1)
        row_ok = not per_example_bad.any() and top1_ok
        max_diff = math.inf if not (finite_ref.all() and finite_got.all()) else float(diff.max(initial=0.0))
        report.rows.append(Row(inputs, name, ref.shape, max_diff, agree, len(ref), spread, row_ok))
        for i, example in enumerate(example_names):
            problems = _value_problems(ref[i], got[i], diff[i], atol) if per_example_bad[i] else []
            flipped = top_ref[i] != top_got[i]
            if flipped:
                problems.append(f"top-1 {decision_label(card, int(top_got[i]), single)} from ONNX vs "
                                f"{decision_label(card, int(top_ref[i]), single)} from source")
            if per_example_bad[i] or (flipped and not top1_ok):
                report.mismatches.append(f"{inputs}/{name} {example}: " + "; ".join(problems))
            elif flipped:  # a lone top-1 flip that the required agreement allows
                report.notes.append(f"{inputs}/{name} {example}: {problems[0]} (allowed: top-1 agrees on "
                                    f"{agree}/{len(ref)}, >= {t.min_top1:.0%})")
        if not top1_ok:
            report.mismatches.append(
                f"{inputs}/{name}: top-1 agrees on {agree}/{len(ref)}, below the required {t.min_top1:.0%}"
            )
        if len(ref) > 1 and spread < 1e-6:
            report.warnings.append(
                f"{inputs}/{name}: the source's outputs hardly vary across inputs (spread {spread:.2g}); "
                "this comparison proves little"
            )


def _value_problems(ref: np.ndarray, got: np.ndarray, diff: np.ndarray, atol: float) -> list[str]:
    """What is wrong with the values of one example that has a bad value."""
    problems = [f"non-finite output from {side}" for side, values in (("source", ref), ("ONNX", got))
                if not np.isfinite(values).all()]
    finite = diff[np.isfinite(diff)]
    if not problems or float(finite.max(initial=0.0)) > atol:
        problems.append(f"max abs diff {float(finite.max(initial=0.0)):.3g} > atol {atol:g}")
    return problems


def _reference_tensor(reference_preprocess: Callable[[Image.Image], np.ndarray], image: Image.Image) -> np.ndarray:
    """The user's preprocessing of one photo, refused (bad option, not a parity failure) when
    it is not an array of numbers (None, for one, would become a NaN scalar)."""
    result = reference_preprocess(image)
    try:
        tensor = np.asarray(result, np.float32)
    except (TypeError, ValueError):
        tensor = None
    if tensor is None or tensor.ndim == 0:
        raise ExportError(f"the reference preprocessing returned {type(result).__name__}, not a tensor")
    return tensor


def _compare_batch_of_one(
    report: ParityReport, names: Sequence[str], example: str, x: np.ndarray,
    batched: Sequence[np.ndarray], run_onnx: Predict,
) -> None:
    """The function runs one image at a time: the ONNX model must give, for a batch of one, the
    batched outputs' row for that image (whose parity with the source the batched rows prove)
    with its batch axis kept (a ``squeeze()`` drops it for one image only, so batched checks
    pass and every request fails)."""
    atol = report.tolerance.atol
    for name, one, many in zip(names, run_onnx(x), batched):
        one, many = np.asarray(one), np.asarray(many)
        expected = (1,) + many.shape[1:]
        if one.shape != expected:
            report.mismatches.append(
                f"single/{name}: shape {one.shape} from ONNX for a batch of one, expected {expected} (the function "
                "runs one image at a time: keep the batch axis, e.g. squeeze(-1) or flatten(1) instead of squeeze())"
            )
            continue
        with np.errstate(invalid="ignore"):
            diff = float(np.abs(one[0].astype(np.float64) - many[0].astype(np.float64)).max(initial=0.0))
        if not diff <= atol:  # NaN too
            report.mismatches.append(f"single/{name} {example}: a batch of one gives max abs diff {diff:.3g} "
                                     f"> atol {atol:g} from the same image in a batch")


def check_parity(
    model_path: str | Path,
    predict: Predict,
    *,
    source: str = "source model",
    tolerance: Tolerance = Tolerance(),
    photos: Sequence[tuple[str, Image.Image]] | None = None,
    n_random: int = 4,
    reference_preprocess: Callable[[Image.Image], np.ndarray] | None = None,
    seed: int = 0,
    display_name: str | None = None,
) -> ParityReport:
    """Run ``predict`` (the source framework, taking a batch in the card's layout) and
    onnxruntime on the same inputs; return the report (call ``raise_for_failure``)."""
    import onnx

    model_path = Path(model_path)
    report = ParityReport(display_name or str(model_path), source, tolerance)
    try:
        onnx.checker.check_model(str(model_path), full_check=True)
    except Exception as exc:  # onnx raises ValidationError / InferenceError
        report.mismatches.append(f"onnx.checker: {type(exc).__name__}: {exc}")
    card = read_card(model_path)  # the card as stored, not the one we meant to write
    problem = activation_problem(onnx.load(str(model_path), load_external_data=False), card.activation)
    if problem:
        report.mismatches.append(f"card: {problem}")
    run_onnx, names = onnx_predictor(model_path)
    photos = list(sample_photos() if photos is None else photos)
    randoms = random_images(card, n_random, seed)

    if photos:
        x = batch(photos, card)
        if reference_preprocess is None:
            x_ref = x
        else:
            refs = [_reference_tensor(reference_preprocess, image) for _, image in photos]
            shapes = {r.shape[-3:] for r in refs}
            if shapes != {x.shape[1:]}:
                report.mismatches.append(
                    f"photos: the reference preprocessing gives tensors of shape {sorted(shapes)}, "
                    f"the card's preprocessing gives {x.shape[1:]} (size or layout in the card is wrong)"
                )
                x_ref = None
            else:
                x_ref = np.concatenate([r.reshape((1,) + x.shape[1:]) for r in refs])
        got = run_onnx(x)
        if x_ref is not None:
            compare(report, card, "photos", names, [n for n, _ in photos], predict(x_ref), got,
                    atol=tolerance.reference_atol if reference_preprocess is not None else None)
        _compare_batch_of_one(report, names, photos[0][0], x[:1], got, run_onnx)
        n_out = np.asarray(got[0]).reshape(len(x), -1).shape[1]
        problem = label_count_problem(len(card.labels), n_out)
        if problem:
            report.mismatches.append(f"card: {problem}")
    if randoms:
        x = batch(randoms, card)
        compare(report, card, "random", names, [n for n, _ in randoms], predict(x), run_onnx(x))
    return report
