"""Stage the two functions under comparison and start them under the real Lambda RIE.

* ``ours``: ``PredictFunction`` from template.yaml, staged from predict_function/Dockerfile (as
  ``python -m local_lambda stage`` does), with the template's environment plus
  ``ALLOW_PRIVATE_URLS=true`` and the image server's port in ``ALLOWED_PORTS``;
* ``baseline``: bench/baseline/Dockerfile staged from a temporary build context under the build
  directory (hard links to predict_function/requirements.txt and predict_function/model/model.onnx, next to
  bench/baseline/app.py and Dockerfile), with the same memory size and timeout.

Both stage into ``<build_dir>/stage/<Function>/task`` (not .build/local_lambda, which the test suite
uses) and share local_lambda's dependency cache, so the locked requirements install once.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

from local_lambda import Emulator, stage
from local_lambda.cpu_quota import CpuQuota
from local_lambda.memory_limit import MemoryLimit
from local_lambda.template import function_environment, read_function

REPO = Path(__file__).resolve().parents[1]
OURS, BASELINE = "ours", "baseline"
DEFAULT_CACHE = REPO / ".build" / "local_lambda" / "cache"


@dataclass
class StagedFunction:
    name: str  # OURS or BASELINE
    logical_id: str
    task_root: Path
    handler: str
    runtime_python: Path
    image_env: Dict[str, str]
    env: Dict[str, str]
    memory_mb: int
    timeout_s: int
    code_paths: tuple  # task-root entries that are the function's code (for the size breakdown)
    stage_seconds: float = 0.0
    extra: Dict[str, str] = field(default_factory=dict)

    def emulator(self, log_sink: Optional[Callable[[str], None]] = None, cpu_quota: Optional[CpuQuota] = None,
                 memory_limit: Optional[MemoryLimit] = None) -> Emulator:
        # --log-level info: the RIE then logs "INIT REPORT(durationMs: ...)" for the init phase.
        return Emulator(
            self.task_root,
            handler=self.handler,
            env=self.env,
            memory_mb=self.memory_mb,
            timeout_s=self.timeout_s,
            runtime_python=self.runtime_python,
            function_name=self.logical_id,
            image_env=self.image_env,
            rie_log_level="info",
            log_sink=log_sink,
            cpu_quota=cpu_quota,
            memory_limit=memory_limit,
        )

    def environment(self) -> Dict[str, str]:
        """The exact environment the runtime process gets (for the floor/import subprocesses)."""
        return self.emulator().environment()

    def model_path(self) -> Path:
        """The model the function serves (its MODEL_PATH, else the default one)."""
        return Path(self.environment().get("MODEL_PATH") or self.task_root / "model" / "model.onnx")


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def baseline_context(build_dir: Path) -> Path:
    """A Docker build context for bench/baseline: its Dockerfile + app.py + the function's requirements/model."""
    context = build_dir / "baseline-context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for name in ("Dockerfile", "app.py"):
        _link_or_copy(REPO / "bench" / "baseline" / name, context / name)
    _link_or_copy(REPO / "predict_function" / "requirements.txt", context / "requirements.txt")
    # The tutorial ships one model: the default fp32 one (not the INT8 variant beside it).
    _link_or_copy(REPO / "predict_function" / "model" / "model.onnx", context / "model" / "model.onnx")
    return context


def stage_functions(build_dir: Path, image_port: int, cache_dir: Optional[Path] = None,
                    parameters: Optional[Dict[str, str]] = None,
                    baseline_env: Optional[Dict[str, str]] = None) -> Dict[str, StagedFunction]:
    """``parameters``: template parameter overrides for ours (e.g. ``{"ModelVariant": "int8"}``);
    ``baseline_env``: variables added to the baseline image's ENV (e.g. ours' OPENBLAS_NUM_THREADS=1)."""
    build_dir = Path(build_dir).resolve()
    cache = Path(cache_dir or os.environ.get("LOCAL_LAMBDA_CACHE_DIR") or DEFAULT_CACHE).resolve()
    stage_dir = build_dir / "stage"

    fn = read_function(REPO / "template.yaml", "PredictFunction", parameter_overrides=parameters or None)
    staged = stage(fn.dockerfile, fn.context, build_dir=stage_dir, function_name=fn.logical_id, cache_dir=cache)
    handler = fn.handler_override or staged.handler
    overrides = {fn.logical_id: {"ALLOW_PRIVATE_URLS": "true", "ALLOWED_PORTS": f"80,443,{image_port}"}}
    env, _ = function_environment(fn, handler, overrides, shell_env={})
    ours = StagedFunction(
        OURS, fn.logical_id, Path(staged.task_root), handler, Path(staged.runtime_python), dict(staged.image_env),
        dict(env), fn.memory_mb, fn.timeout_s, ("classifier",), staged.seconds,
    )

    context = baseline_context(build_dir)
    base = stage(context / "Dockerfile", context, build_dir=stage_dir, function_name="BaselineFunction",
                 cache_dir=cache, lint=False)
    baseline = StagedFunction(
        BASELINE, "BaselineFunction", Path(base.task_root), base.handler, Path(base.runtime_python),
        {**base.image_env, **(baseline_env or {})}, {}, fn.memory_mb, fn.timeout_s, ("app.py",), base.seconds,
    )
    return {OURS: ours, BASELINE: baseline}
