"""A model's graph optimised once at image build, for the CPU layout it was optimised on.

onnxruntime's own graph optimisation is most of a session's creation (~30 of ~35-40 ms for the
bundled model, almost all of it the NCHWc layout transformer), and it runs at every cold start.
A graph saved after it loads in ~8 ms, but that graph is tied to the NCHWc block size of the CPU
that optimised it: 16 floats with AVX-512F, 8 on any other x86-64. A 16-block graph on an
8-block CPU gives silently wrong scores; an 8-block graph on a 16-block CPU fails its first run
(both seen under ``qemu-x86_64 -cpu Haswell-noTSX``, session 11). So the build names a variant by
the block size onnxruntime actually used (read from the optimised probe's weights), the function
tries only the variant its CPU flags name, and only once a small probe optimised with it (four
convolutions, ``image_build/layout_probe.py``, ~1 ms) reproduces here the output it gave at
build: on the other block size onnxruntime refuses the probe's blocked shapes, whatever
/proc/cpuinfo says. Otherwise: the portable model, as before. The variant itself was checked
against the portable model at build.

Layout, next to the portable ``model/NAME.onnx``::

    model/optimized/<cpu>/NAME.onnx        graph after onnxruntime's full optimisation
    model/optimized/<cpu>/NAME.onnx.data   its weights (reordered for the layout)
    model/optimized/<cpu>/NAME.onnx.json   what it was made from, and the probe's expected output
    model/optimized/<cpu>/NAME.onnx.probe  the layout probe, optimised on the same machine

``image_build.preoptimize`` writes them (Dockerfile, ``model`` stage); :func:`open_session` reads
them. This module imports only numpy and onnxruntime: the build stage copies it alone.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

FORMAT = 2  # of the .json description (1, in a162bf0 only: the graph file's SHA-256)
FOLDER = "optimized"
X86_64_MACHINES = ("x86_64", "amd64")  # os.uname().machine, lower case, where NCHWc layouts exist
PROBE_SUFFIX = ".probe"  # NAME.onnx.probe: the layout probe, optimised with the variant
# Outputs that only float rounding separates (x86 kernels of one layout: SSE, AVX2, AVX-512 differ
# by ~1e-5) pass; scaled by the largest expected value.
CHECK_TOLERANCE = 1e-3
_DIGEST_BYTES = 1 << 20  # how much of each end of a model file the source digest reads


def cpu_layout(flags: set[str] | None = None, machine: str | None = None) -> str | None:
    """This CPU's layout as onnxruntime's MLAS will choose it, read from the CPU flags, or None
    where they cannot tell (not x86-64, or no ``flags`` line in /proc/cpuinfo).

    MLAS (platform.cpp) uses 16-float NCHWc blocks when the CPU has AVX, FMA, AVX2 and AVX512F
    and the OS saves their state, else 8. Linux lists a flag in /proc/cpuinfo only when the
    kernel enabled its state, so the listed flags are that test. They pick which variant to try;
    the probe, not the flags, decides whether it runs right here.
    """
    machine = (machine or os.uname().machine).lower()
    if machine not in X86_64_MACHINES:
        return None
    flags = _cpu_flags() if flags is None else flags
    if flags is None:
        return None
    return layout_name(16 if {"avx", "fma", "avx2", "avx512f"} <= flags else 8)


def _cpu_flags(path: str = "/proc/cpuinfo") -> set[str] | None:
    try:
        with open(path, encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return None


def layout_name(block: int) -> str:
    """The name of an x86-64 layout (the only kind made): its NCHWc block size, 8 or 16 floats."""
    return f"x86_64-nchwc{block}"


def variant_path(model_path: str, layout: str) -> str:
    directory, name = os.path.split(model_path)
    return os.path.join(directory, FOLDER, layout, name)


def _candidates(model_path: str) -> list[str]:
    """The layouts to try: the one the flags name, or, where they cannot tell, every layout
    a variant of this model was made for (each then has to pass its probe)."""
    layout = cpu_layout()
    if layout is not None:
        return [layout]
    directory, name = os.path.split(model_path)
    try:
        folders = sorted(os.listdir(os.path.join(directory, FOLDER)))
    except OSError:
        return []
    return [f for f in folders if os.path.exists(os.path.join(directory, FOLDER, f, name + ".json"))]


def source_digest(model_path: str) -> dict:
    """What identifies the portable model a variant was made from: the size and CRC-32 of the
    first and last MiB of its file and of its external weights file, if any (the whole of a
    split graph file). It catches a model replaced after the build, retrained weights included;
    it is not a defence against tampering (whoever builds the image writes both). Reading all
    18.5 MB of weights would cost ~7 ms of every cold start; hashlib's import alone ~2.5 ms."""
    def digest(path: str) -> list[int]:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(_DIGEST_BYTES)
            file.seek(max(len(head), size - _DIGEST_BYTES))
            return [size, zlib.crc32(file.read(), zlib.crc32(head))]

    data = model_path + ".data"
    return {"model": digest(model_path), "data": digest(data) if os.path.exists(data) else None}


def check_input(shape: list) -> np.ndarray:
    """A fixed input of ``shape`` (symbolic batch -> 1): values in [-1, 1) from an integer hash,
    the same on every machine (no RNG or transcendental function whose last bits vary)."""
    dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
    index = np.arange(int(np.prod(dims)), dtype=np.uint64)
    mixed = (index * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)) >> np.uint64(40)
    return ((mixed & np.uint64(0xFFFF)).astype(np.float32) / np.float32(32768) - np.float32(1)).reshape(dims)


def run(session: ort.InferenceSession) -> list[np.ndarray]:
    """``session``'s outputs for :func:`check_input` of its input's shape."""
    feed = session.get_inputs()[0]
    return session.run(None, {feed.name: check_input(feed.shape)})


def prebuilt_options(options: ort.SessionOptions) -> ort.SessionOptions:
    """``options`` for a graph optimised at build: no optimisation again at load."""
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


@dataclass(frozen=True)
class Variant:
    session: ort.InferenceSession
    layout: str


def open_session(model_path: str, make_options: Callable[[], ort.SessionOptions],
                 layout: str | None = None) -> Variant | None:
    """A session on ``model_path``'s optimised variant for this CPU, or None (then load the
    portable model): no variant for this layout, one made from another model or by another
    onnxruntime, or a layout probe that does not reproduce its build-time output here."""
    for candidate in [layout] if layout is not None else _candidates(model_path):
        variant = _open(model_path, make_options, candidate)
        if variant is not None:
            return variant
    return None


def _open(model_path: str, make_options: Callable[[], ort.SessionOptions], layout: str) -> Variant | None:
    path = variant_path(model_path, layout)
    if not os.path.exists(path + ".json"):
        return None  # no variant for this layout: quietly the portable model
    session = None
    try:
        reason = _refusal(path, model_path, layout)
        if reason is None:
            session = ort.InferenceSession(path, sess_options=prebuilt_options(make_options()),
                                           providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any failure means: use the portable model
        reason = f"{type(exc).__name__}: {exc}"
    if session is None:
        log.warning("optimised model %s ignored, loading the portable one: %s", path, reason)
        return None
    return Variant(session, layout)


def _refusal(path: str, model_path: str, layout: str) -> str | None:
    """Why the variant at ``path`` must not serve here, or None."""
    try:
        with open(path + ".json", encoding="utf-8") as meta_file:
            meta = json.load(meta_file)
    except (OSError, ValueError) as exc:
        return f"unreadable description ({exc})"
    if not isinstance(meta, dict):
        return "unreadable description (not a JSON object)"
    return _stale(meta, model_path, layout) or mismatch(run(_probe_session(path + PROBE_SUFFIX)),
                                                        meta["probe"]["outputs"])


def _probe_session(path: str) -> ort.InferenceSession:
    options = prebuilt_options(ort.SessionOptions())
    options.intra_op_num_threads = 1  # no thread pool for a 4x4 image
    options.log_severity_level = 4  # a wrong layout's kernel error: the warning below says it once
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def _stale(meta: dict, model_path: str, layout: str) -> str | None:
    if meta.get("format") != FORMAT:
        return f"format {meta.get('format')!r}, this code reads {FORMAT}"
    if meta.get("onnxruntime") != ort.__version__:
        return f"made by onnxruntime {meta.get('onnxruntime')}, this is {ort.__version__}"
    if meta.get("layout") != layout:
        return f"made for {meta.get('layout')}, this CPU is {layout}"
    if meta.get("source") != source_digest(model_path):
        return f"made from another {os.path.basename(model_path)}"
    return None


def mismatch(got: list[np.ndarray], expected: list) -> str | None:
    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for index, (value, want) in enumerate(zip(got, expected)):
        want = np.asarray(want, dtype=np.float64)
        value = np.asarray(value, dtype=np.float64)
        if value.shape != want.shape:
            return f"output {index} has shape {value.shape}, expected {want.shape}"
        diff = float(np.max(np.abs(value - want))) if want.size else 0.0
        allowed = CHECK_TOLERANCE * max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
        if not diff <= allowed:  # also NaN
            return f"output {index} differs from the portable model's by {diff:.3g} (allowed {allowed:.3g})"
    return None
