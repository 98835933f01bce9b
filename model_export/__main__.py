"""``python -m model_export``: convert a Keras or PyTorch classifier to ONNX, store its
model card inside, prove parity, optionally quantize. Exit codes: 0 ok, 1 the parity
check or quantization gate failed (nothing written: with ``--quantize`` neither the fp32
nor the INT8 file), 2 bad options / conversion failed (user callables that raise included).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from classifier.spec import ACTIVATIONS, CHANNEL_ORDERS, LAYOUTS, NORMALIZATION_PRESETS, RESAMPLE, ModelCard

from model_export.errors import ExportError, ParityError, QuantizationError

log = logging.getLogger("model_export")


def _size(values: list[str]) -> tuple[int, int]:
    text = "x".join(values).lower().replace("×", "x")
    parts = [p for p in text.replace(",", "x").split("x") if p]
    try:
        numbers = [int(p) for p in parts]
    except ValueError as exc:
        raise ExportError(f"--size takes HxW or H W, got {' '.join(values)!r}") from exc
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) != 2:
        raise ExportError(f"--size takes HxW or H W, got {' '.join(values)!r}")
    return numbers[0], numbers[1]


def _check_output(path: Path, option: str = "--output") -> None:
    """Refuse an output that cannot be written before any work (not with a traceback after the
    conversion and the check)."""
    if path.suffix != ".onnx":
        raise ExportError(f"{option} must end in .onnx, got {path}")
    if path.is_dir():
        raise ExportError(f"{option} {path} is a directory: give the .onnx file to write")
    existing = next(parent for parent in path.absolute().parents if parent.exists())
    if not existing.is_dir():
        raise ExportError(f"{option} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(f"{option} {path}: no permission to write in {existing}")


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


def _non_negative(text: str) -> float:
    """argparse type: a number >= 0 (inf allowed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0.0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model_export",
        description=(
            "Convert a Keras (.h5/.keras) or PyTorch image classifier to ONE .onnx file that carries "
            "its preprocessing, labels and activation (the model card), then prove the ONNX model "
            "gives the source model's answers. Nothing is written when the proof fails."
        ),
        epilog="Default model: python -m model_export.zoo command",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{keras,pytorch,check,show,quantize}")

    common = argparse.ArgumentParser(add_help=False)
    pre = common.add_argument_group("preprocessing used in training (recorded in the model card)")
    pre.add_argument("--size", nargs="+", metavar="HxW", help="input size, e.g. 224x224 or 224 224 "
                     "(default: the Keras model's input shape; required for PyTorch)")
    pre.add_argument("--resize", choices=sorted(RESAMPLE), default="bilinear", help="resize filter (default bilinear)")
    pre.add_argument("--crop-fraction", type=float, default=None,
                     help="center crop a square of side fraction*min(w,h) before resizing (e.g. 0.875)")
    pre.add_argument("--preset", choices=list(NORMALIZATION_PRESETS),
                     help="normalization preset: raw=0..255, unit=x/255, tf=x/127.5-1, "
                     "imagenet=torchvision mean/std, efficientnet-lite=(x-127)/128")
    pre.add_argument("--scale", type=float, help="multiply pixels (0..255) by this first (overrides preset)")
    pre.add_argument("--mean", type=float, nargs="+", metavar="M", help="subtract per channel after scaling")
    pre.add_argument("--std", type=float, nargs="+", metavar="S", help="divide per channel after the mean")
    pre.add_argument("--layout", choices=LAYOUTS, help="input layout (default: NHWC for Keras, NCHW for PyTorch)")
    pre.add_argument("--channel-order", choices=CHANNEL_ORDERS, default="RGB")
    card = common.add_argument_group("model card")
    card.add_argument("--labels", help="labels file (one per line, or a JSON list) or package.module:function; "
                      "one per output score, or for a single score 1 label or 2 (negative, positive)")
    card.add_argument("--activation", choices=("auto",) + ACTIVATIONS, default="auto",
                      help="how raw outputs become scores; auto: none if a Sigmoid/Softmax node computes the "
                      "output or the outputs already are probabilities, else softmax (several outputs) / "
                      "sigmoid (one output)")
    card.add_argument("--name", help="model name (default: the source's name)")
    card.add_argument("--version", default="1", help="model version (default 1)")
    out = common.add_argument_group("output and checks")
    out.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    out.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; torch's dynamo exporter writes >= 18)")
    _check_options(out)
    out.add_argument("--quantize", choices=("static", "dynamic"), help="also write an INT8 model")
    out.add_argument("--quantized-output", help="where the INT8 model goes (default: OUTPUT with -int8 suffix)")
    _quant_options(common)
    common.add_argument("-v", "--verbose", action="store_true")

    keras = sub.add_parser("keras", parents=[common], help="convert a Keras .h5/.keras model (tf2onnx)")
    keras.add_argument("source", help="path to the .h5 or .keras file")
    torch = sub.add_parser("pytorch", parents=[common], help="convert a PyTorch model (torch.onnx.export)")
    torch.add_argument("source", help="a TorchScript file, or package.module:function returning an nn.Module")

    check = sub.add_parser("check", help="parity-check an existing .onnx (with its card) against its source")
    check.add_argument("model", help="the .onnx file")
    check.add_argument("source_kind", choices=("keras", "pytorch"))
    check.add_argument("source", help="the Keras file / TorchScript file / package.module:function")
    _check_options(check)
    check.add_argument("-v", "--verbose", action="store_true")

    show = sub.add_parser("show", help="print the model card stored in an .onnx file")
    show.add_argument("model")

    quant = sub.add_parser("quantize", help="write an INT8 copy of an exported .onnx (with its card), "
                           "gated on top-1 agreement with it on the check photos")
    quant.add_argument("model", help="the fp32 .onnx file written by this tool")
    quant.add_argument("-o", "--output", required=True, help="the INT8 .onnx file to write")
    quant.add_argument("--mode", choices=("static", "dynamic"), default="static", help="default static")
    quant.add_argument("--images", nargs="*", default=[], help="extra check photos (besides the packaged ones)")
    _quant_options(quant)
    quant.add_argument("-v", "--verbose", action="store_true")
    return parser


def _quant_options(parser) -> None:
    from model_export.quantize import CALIBRATION_METHODS, DEFAULT_MAX_MEAN_SCORE_DIFF, FORMATS, QuantConfig

    d = QuantConfig()
    q = parser.add_argument_group("INT8 quantization (defaults: the best measured, model_export/README.md)")
    q.add_argument("--min-agreement", type=_fraction, default=1.0,
                   help="minimum INT8 vs fp32 top-1 agreement on the check photos (default 1.0 = all)")
    q.add_argument("--max-mean-score-diff", type=_non_negative, default=DEFAULT_MAX_MEAN_SCORE_DIFF,
                   help="maximum mean over the check photos of each photo's largest INT8 vs fp32 score difference "
                   f"(default {DEFAULT_MAX_MEAN_SCORE_DIFF}: 2x the bundled model's 0.020; inf = no score gate)")
    q.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default=d.method,
                   help=f"static calibration (default {d.method})")
    q.add_argument("--calibration-views", type=int, default=d.views,
                   help=f"inputs per calibration photo: itself + random crops/flips (default {d.views})")
    q.add_argument("--calibration-images", nargs="*", default=[],
                   help="extra calibration photos (besides the packaged ones; keep them apart from --images)")
    q.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default per channel)")
    q.add_argument("--reduce-range", action="store_true", help="7-bit weights (default off)")
    q.add_argument("--quant-format", choices=FORMATS, default=d.quant_format, help=f"default {d.quant_format}")
    q.add_argument("--quant-exclude", nargs="*", default=[], metavar="NODE",
                   help="node names to keep in fp32 (default none)")
    q.add_argument("--quantized-version-suffix", default="-int8",
                   help="appended to the card's version in the INT8 model (default -int8)")


def _quant_config(args):
    from model_export.quantize import QuantConfig

    return QuantConfig(
        method=args.calibration_method, views=args.calibration_views, per_channel=not args.per_tensor,
        reduce_range=args.reduce_range, quant_format=args.quant_format, exclude=tuple(args.quant_exclude),
    )


def _write_quantized(args, fp32: Path, output: Path, mode: str) -> None:
    from model_export.parity import sample_photos
    from model_export.quantize import calibration_photos, quantize

    report = quantize(fp32, output, sample_photos(args.images), mode=mode, min_agreement=args.min_agreement,
                      max_mean_score_diff=args.max_mean_score_diff,
                      calibration=calibration_photos(args.calibration_images),
                      config=_quant_config(args), version_suffix=args.quantized_version_suffix)
    print(report.table())


def _check_options(group) -> None:
    group.add_argument("--atol", type=float, default=1e-4, help="parity tolerance, max abs diff (default 1e-4, fp32)")
    group.add_argument("--reference-atol", type=float, default=None,
                       help="atol for photos compared through --reference-preprocess (default: --atol)")
    group.add_argument("--rtol", type=float, default=0.0, help="relative tolerance added to atol (default 0)")
    group.add_argument("--min-top1", type=_fraction, default=1.0,
                       help="required top-1 agreement fraction (default 1.0); examples whose top-1 differs "
                       "are listed as notes while the agreement meets it")
    group.add_argument("--random-inputs", type=int, default=4, help="random-pixel images in the check (default 4)")
    group.add_argument("--images", nargs="*", default=[], help="extra check photos (besides the packaged ones)")
    group.add_argument("--reference-preprocess", metavar="MODULE:FUNCTION",
                       help="your training preprocessing (PIL RGB image -> tensor in the card's layout); "
                       "the source model gets it on the photos, so a wrong card is caught")


def _source_module(kind: str):
    if kind == "keras":
        from model_export import keras as module
    else:
        from model_export import pytorch as module
    return module


def _choose_activation(requested: str, model, card: ModelCard) -> str:
    """The card's activation: ``requested``, checked against the graph, or decided (auto)."""
    from model_export.graph import PROBABILITY_OPS, output_producer
    from model_export.metadata import activation_problem

    if requested != "auto":
        problem = activation_problem(model, requested)
        if problem:
            raise ExportError(problem)
        return requested
    producer = output_producer(model)
    if producer in PROBABILITY_OPS:
        log.info("activation auto -> none (the output is computed by a %s node)", producer)
        return "none"
    return _auto_activation(model, card)


def _auto_activation(model, card: ModelCard) -> str:
    """Decide the activation from what the converted model outputs on a few photos."""
    import numpy as np
    import onnxruntime as ort

    from model_export.parity import batch, random_images, sample_photos

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    # Every check photo and a few random images, one at a time (a model may take a batch of one only): a
    # raw score that happens to lie in [0, 1] on a few inputs must not pass for a probability.
    outputs = [session.run(None, {name: batch([image], card)})[0] for image in sample_photos() + random_images(card, 4)]
    out = np.stack([np.asarray(o, dtype=np.float64).reshape(-1) for o in outputs])  # one row per image
    in_unit = bool(((out >= -1e-6) & (out <= 1 + 1e-6)).all())
    if out.shape[1] > 1:
        sums_to_one = bool(np.allclose(out.sum(axis=1), 1.0, atol=1e-3))
        choice = "none" if in_unit and sums_to_one else "softmax"
    else:
        choice = "none" if in_unit else "sigmoid"
    log.info("activation auto -> %s (outputs %s)", choice, "are probabilities" if choice == "none" else "are raw")
    return choice


def _run_check(args, model_path: Path, kind: str, model, display_name: str | None = None) -> "object":
    from model_export.metadata import read_card, user_callable
    from model_export.parity import Tolerance, check_parity, sample_photos

    module = _source_module(kind)
    card = read_card(model_path)
    reference = (user_callable(args.reference_preprocess, "the reference preprocessing")
                 if args.reference_preprocess else None)
    report = check_parity(
        model_path,
        module.predictor(model, card.preprocessing.layout),
        source=f"{kind} {args.source}",
        tolerance=Tolerance(atol=args.atol, rtol=args.rtol, min_top1=args.min_top1,
                            reference_atol=args.reference_atol),
        photos=sample_photos(args.images),
        n_random=args.random_inputs,
        reference_preprocess=reference,
        display_name=display_name,
    )
    print(report.table())
    return report


def export(args) -> int:
    import onnx

    from model_export.graph import opset_of, save_single_file, strip_build_paths, written_beside
    from model_export.metadata import build_preprocessing, load_labels, output_size, validate_labels, write_card

    kind = args.command
    module = _source_module(kind)
    output = Path(args.output)
    _check_output(output)
    q_out = _quantized_output(args, output)
    labels = load_labels(args.labels) if args.labels else ()
    started = time.perf_counter()
    model = module.load(args.source)
    if args.size:
        height, width = _size(args.size)
    elif kind == "keras":
        height, width = module.input_size(model)
        if height is None or width is None:
            raise ExportError("the Keras model accepts any image size: give --size HxW")
    else:
        raise ExportError("give the input size with --size HxW for a PyTorch model")
    layout = args.layout or ("NHWC" if kind == "keras" else "NCHW")
    preprocessing = build_preprocessing(
        height, width, preset=args.preset, scale=args.scale, mean=args.mean, std=args.std,
        resize=args.resize, crop_fraction=args.crop_fraction, layout=layout, channel_order=args.channel_order,
    )
    if kind == "keras" and layout != "NHWC":
        raise ExportError("Keras models take NHWC input; --layout NCHW is only supported for PyTorch")
    if kind == "keras":
        module.warn_double_normalisation(model, preprocessing)
        proto, path_used = module.convert(model, height, width, opset=args.opset)
    else:
        proto, path_used = module.convert(model, height, width, opset=args.opset, layout=layout)
    log.info("conversion took %.1f s via %s", time.perf_counter() - started, path_used)
    strip_build_paths(proto)  # the same model from any checkout or venv is the same file
    validate_labels(labels, output_size(proto))
    if not labels:
        log.warning("no --labels given: the card has no class names, the server can only report indices")
    card = ModelCard(
        name=args.name or module.default_name(args.source), version=str(args.version),
        preprocessing=preprocessing, labels=labels, activation="none",
    )
    card = ModelCard(name=card.name, version=card.version, preprocessing=preprocessing,
                     labels=labels, activation=_choose_activation(args.activation, proto, card))
    write_card(proto, card)
    proto.producer_name = "model_export"
    with written_beside(output, f".{output.stem}.pending.onnx") as pending:  # renamed over --output at the end
        try:
            save_single_file(proto, pending)
        except OSError as exc:
            raise ExportError(f"cannot write {output}: {exc}") from exc
        report = _run_check(args, pending, kind, model, display_name=str(output))
        report.raise_for_failure()
        if q_out is not None:  # before --output is replaced: a failed gate leaves nothing half-done
            _quantize_pending(args, pending, output, q_out)
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, opset {opset_of(onnx.load(str(output)))}, "
          f"via {path_used}, {time.perf_counter() - started:.1f} s): {card.name} v{card.version}, "
          f"{len(card.labels)} labels, activation {card.activation}")
    _warn_stale_int8(output, q_out)
    return 0


def _int8_sibling(output: Path) -> Path:
    """Where --quantize writes the INT8 copy by default, and what ModelVariant=int8 serves beside model.onnx."""
    return output.with_name(f"{output.stem}-int8.onnx")


def _warn_stale_int8(output: Path, written: Path | None) -> None:
    """The INT8 copy beside the output (what ModelVariant=int8 serves) was made from the model just replaced."""
    sibling = _int8_sibling(output)
    if sibling.exists() and (written is None or written.resolve() != sibling.resolve()):
        log.warning("%s is the INT8 copy of the model %s replaced, and ModelVariant=int8 still serves it: "
                    "re-export with --quantize static, or run 'python -m model_export quantize %s -o %s', "
                    "or delete it", sibling, output, output, sibling)


def _quantized_output(args, output: Path) -> Path | None:
    if not args.quantize:
        return None
    q_out = Path(args.quantized_output) if args.quantized_output else _int8_sibling(output)
    if q_out.resolve() == output.resolve():
        raise ExportError(f"--quantized-output must differ from --output ({output})")
    _check_output(q_out, "--quantized-output")
    return q_out


def _quantize_pending(args, pending: Path, output: Path, q_out: Path) -> None:
    """INT8 copy of the checked fp32 model, written before the fp32 model is moved to ``output``."""
    try:
        _write_quantized(args, pending, q_out, args.quantize)
    except QuantizationError as exc:
        raise QuantizationError(
            f"{exc}\nthe fp32 model passed the parity check but is not written either: {output} is left as it "
            "was (export without --quantize, or relax --min-agreement / --max-mean-score-diff, to write it)"
        ) from exc


def quantize_command(args) -> int:
    output = Path(args.output)
    if output.resolve() == Path(args.model).resolve():
        raise ExportError(f"-o/--output must differ from the model it quantizes ({args.model})")
    _check_output(output)
    _write_quantized(args, Path(args.model), output, args.mode)
    return 0


def check(args) -> int:
    from model_export.metadata import read_card

    module = _source_module(args.source_kind)
    model = module.load(args.source)
    if args.source_kind == "keras":
        module.warn_double_normalisation(model, read_card(args.model).preprocessing)
    report = _run_check(args, Path(args.model), args.source_kind, model)
    report.raise_for_failure()
    return 0


def show(args) -> int:
    from model_export.metadata import read_card

    card = read_card(args.model)
    print(card.to_json())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="model_export: %(levelname)s: %(message)s",
    )
    if not getattr(args, "verbose", False):
        log.setLevel(logging.INFO)  # our own progress lines stay visible
    try:
        if args.command in ("keras", "pytorch"):
            return export(args)
        if args.command == "check":
            return check(args)
        if args.command == "quantize":
            return quantize_command(args)
        return show(args)
    except ParityError as exc:
        written = ", nothing written" if args.command in ("keras", "pytorch") else ""
        print(f"error: parity check failed{written}: {exc}", file=sys.stderr)
        return 1
    except QuantizationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # SpecError and friends from the card
        from classifier.spec import SpecError

        if isinstance(exc, SpecError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
