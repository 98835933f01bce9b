"""Stage a Lambda task root from the function's Dockerfile, without Docker.

Layout under the build directory (``.build/local_lambda`` by default, git-ignored)::

    cache/runtime-py3.12-<hash>/   venv with the image's Python minor + awslambdaric only (/var/runtime)
    cache/deps-<hash>/             ``pip install --target`` of the pinned requirements, keyed by the
                                   requirements files, pip options, Python version and machine
    <Function>/task/               the staged task root (/var/task): deps hard-linked from the cache,
                                   then the files the Dockerfile COPYs, then its compileall
    <Function>/stage.json          what was staged (handler, Python, image ENV) for invoke/start-api

Re-staging after a code change rebuilds ``task/`` from scratch (so removed files disappear) but only
re-links the cached dependencies and re-copies the code.
"""

from __future__ import annotations

import contextlib
import glob
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, Iterator, List, Optional, Union

from . import dockerfile_plan as dp
from .dockerignore import DockerIgnore
from .interpreters import Interpreter, find_python
from .lint import LintError, lint_dockerfile

RUNTIME_REQUIREMENTS = Path(__file__).with_name("runtime-requirements.txt")
DEFAULT_BUILD_DIR = Path(".build") / "local_lambda"


class StageError(RuntimeError):
    pass


@dataclass
class StageResult:
    function_name: str
    task_root: str
    handler: Optional[str]
    python_version: str
    runtime_python: str  # the runtime venv's python (awslambdaric lives there)
    base_image: str
    image_env: Dict[str, str] = field(default_factory=dict)
    deps_cache_hit: Optional[bool] = None
    deps_dir: Optional[str] = None
    seconds: float = 0.0
    warnings: List[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "StageResult":
        return cls(**json.loads(Path(path).read_text()))


def _log(message: str) -> None:
    print(f"[local_lambda] {message}", file=sys.stderr, flush=True)


def _hash(*parts: Union[str, bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def _link_tree(src: Path, dst: Path) -> None:
    """Recreate ``src`` under ``dst`` with hard links (copies across filesystems)."""
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            s, d = Path(root, name), dst / rel / name
            if d.exists() or d.is_symlink():
                d.unlink()
            if s.is_symlink():
                d.symlink_to(os.readlink(s))
                continue
            try:
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d)


def _run(args: List[str], what: str, **kwargs) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise StageError(f"{what} failed (exit {proc.returncode}): {' '.join(args)}\n{proc.stdout}{proc.stderr}")


def ensure_runtime(interpreter: Interpreter, cache_dir: Path) -> Path:
    """A venv with the image's Python and only the runtime interface client; returns its python."""
    key = _hash(RUNTIME_REQUIREMENTS.read_bytes(), interpreter.version, platform.machine(), interpreter.executable)
    venv = cache_dir / f"runtime-py{interpreter.version}-{key}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    with _locked(cache_dir / ".lock"):
        if not (venv / ".complete").exists():
            _create_runtime(interpreter, venv)
    return python


def _create_runtime(interpreter: Interpreter, venv: Path) -> None:
    python = venv / "bin" / "python"
    _log(f"creating runtime venv (Python {interpreter.version} from {interpreter.found_by}) with awslambdaric")
    # A venv's scripts hard-code its path, so it is built in place; `.complete` marks it usable.
    shutil.rmtree(venv, ignore_errors=True)
    _run([interpreter.executable, "-m", "venv", str(venv)], "creating the runtime venv")
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes",
         "-r", str(RUNTIME_REQUIREMENTS)],
        "installing awslambdaric into the runtime venv",
    )
    (venv / ".complete").write_text("")


def _local(task_root: Path, image_path: str, line: int) -> Path:
    """Where an absolute image path under /var/task lives in a staged ``task_root``."""
    rel = PurePosixPath(image_path).relative_to("/") if image_path.startswith("/") else None
    root = PurePosixPath(dp.IMAGE_TASK_ROOT)
    path = PurePosixPath(os_normpath(image_path))
    if rel is None or not (path == root or root in path.parents):
        raise StageError(
            f"line {line}: {image_path} is outside {dp.IMAGE_TASK_ROOT} (LAMBDA_TASK_ROOT); "
            "only the task root can be staged without Docker"
        )
    return task_root.joinpath(*path.relative_to(root).parts)


def _copy_file(src: Path, target: Path) -> None:
    """Copy without writing through ``target``: files from pip's cache or an earlier stage are hard links."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    shutil.copy2(src, target)


class _Stager:
    """Stages one build stage into ``task_root``; ``roots`` holds the earlier stages' task roots."""

    def __init__(self, plan: dp.BuildPlan, stage: dp.Stage, context: Path, dockerfile: Path, task_root: Path,
                 cache_dir: Path, python: Path, roots: Dict[int, Path]):
        self.plan = plan
        self.stage = stage
        self.context = context
        self.ignore = DockerIgnore.for_context(context, dockerfile)
        self.task_root = task_root
        self.cache_dir = cache_dir
        self.python = python
        self.roots = roots
        self.deps_cache_hit: Optional[bool] = None
        self.deps_dir: Optional[Path] = None

    def local(self, image_path: str, line: int) -> Path:
        return _local(self.task_root, image_path, line)

    # COPY / ADD -----------------------------------------------------------------------------
    def _context_files(self, directory: Path) -> List[Path]:
        return self.ignore.files_under(self.context, directory)

    def copy_from_stage(self, step: dp.CopyStep) -> None:
        assert step.from_stage is not None
        source_root = self.roots[step.from_stage]
        label = self.plan.stages[step.from_stage].label
        matches = [_local(source_root, src, step.line) for src in step.sources]
        for src, path in zip(step.sources, matches):
            if not path.exists():
                raise StageError(f"line {step.line}: COPY --from={label} {src}: not in that stage")
        dest = self.local(step.dest, step.line)
        dest_is_dir = step.dest.endswith("/") or len(matches) > 1 or dest.is_dir()
        for src in matches:
            if src.is_dir():
                for file in sorted(f for f in src.rglob("*") if f.is_file()):
                    _copy_file(file, dest / file.relative_to(src))
            else:
                _copy_file(src, dest / src.name if dest_is_dir else dest)

    def copy(self, step: dp.CopyStep) -> None:
        if step.from_stage is not None:
            return self.copy_from_stage(step)
        matches: List[Path] = []
        for src in step.sources:
            clean = os_normpath(src).lstrip("/")
            if clean.startswith(".."):
                raise StageError(f"line {step.line}: COPY {src} is outside the build context")
            if any(c in clean for c in "*?["):
                found = sorted(self.context.glob(clean))
            else:
                found = [self.context / clean] if clean != "." else [self.context]
            found = [p for p in found if p.exists()
                     and (p == self.context or not self.ignore.ignored(p.relative_to(self.context).as_posix())
                          or (p.is_dir() and self._context_files(p)))]
            if not found:
                raise StageError(
                    f"line {step.line}: COPY {src}: not found in the build context {self.context} "
                    "(or excluded by .dockerignore)"
                )
            matches.extend(found)
        dest = self.local(step.dest, step.line)
        dest_is_dir = step.dest.endswith("/") or len(matches) > 1 or dest.is_dir()
        for src in matches:
            if src.is_dir():
                for file in self._context_files(src):
                    _copy_file(file, dest / file.relative_to(src))
            else:
                _copy_file(src, dest / src.name if dest_is_dir else dest)

    # RUN pip install ------------------------------------------------------------------------
    def pip_install(self, step: dp.PipInstallStep) -> None:
        target = self.local(step.target, step.line)
        requirement_files = [self.local(r, step.line) for r in step.requirements]
        constraint_files = [self.local(c, step.line) for c in step.constraints]
        for f in requirement_files + constraint_files:
            if not f.is_file():
                raise StageError(f"line {step.line}: {f.name} is not in the task root at this point (COPY it first)")
        key = _hash(
            *(f.read_bytes() for f in requirement_files),
            "constraints", *(f.read_bytes() for f in constraint_files),
            "options", *step.options, str(step.compile_bytecode),
            self.plan.python_version, platform.machine(),
        )
        deps = self.cache_dir / f"deps-py{self.plan.python_version}-{key}"
        self.deps_dir = deps
        self.deps_cache_hit = (deps / ".complete").exists()
        if not self.deps_cache_hit:
            _log(f"line {step.line}: pip install --require-hashes --target (Python {self.plan.python_version}); "
                 "cached for the next stage")
            tmp = deps.with_name(deps.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            args = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check",
                    "--no-warn-script-location", "--quiet", "--require-hashes", "--target", str(tmp)]
            args += [o for o in step.options if o not in ("--quiet", "-q", "-qq")]
            if not step.compile_bytecode:
                args.append("--no-compile")
            for f in requirement_files:
                args += ["-r", str(f)]
            for f in constraint_files:
                args += ["-c", str(f)]
            _run(args, f"line {step.line}: pip install")
            shutil.rmtree(deps, ignore_errors=True)
            tmp.rename(deps)
            (deps / ".complete").write_text(" ".join(args) + "\n")
        else:
            _log(f"line {step.line}: pip install: requirements unchanged, using cached {deps.name}")
        _link_tree(deps, target)
        (target / ".complete").unlink(missing_ok=True)

    # RUN python -m compileall ---------------------------------------------------------------
    def compileall(self, step: dp.CompileallStep) -> None:
        args = [a if a.startswith("-") else str(self.local(a, step.line)) for a in step.args]
        _run([str(self.python), "-m", "compileall", *args], f"line {step.line}: python -m compileall")

    # RUN rm ---------------------------------------------------------------------------------
    def _expand(self, image_path: str, line: int) -> List[Path]:
        """The shell's glob expansion of an ``rm`` argument (unmatched patterns stay literal)."""
        path = self.local(image_path, line)
        if not glob.has_magic(image_path):
            return [path]
        return [Path(match) for match in sorted(glob.glob(str(path)))] or [path]

    def remove(self, step: dp.RemoveStep) -> None:
        for path in (p for image_path in step.paths for p in self._expand(image_path, step.line)):
            image_path = str(path)
            if path == self.task_root:
                raise StageError(f"line {step.line}: refusing to remove the task root")
            if path.is_dir() and not path.is_symlink():
                if not step.recursive:
                    raise StageError(f"line {step.line}: rm {image_path}: is a directory")
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            elif not step.force:
                raise StageError(f"line {step.line}: rm {image_path}: no such file")

    # RUN python -m <module> -----------------------------------------------------------------
    def python_module(self, step: dp.PythonModuleStep) -> None:
        """The image runs it in /var/task, where ``-m`` finds the module and the dependencies pip put there."""
        args = [str(self.local(a, step.line)) if a.startswith(dp.IMAGE_TASK_ROOT + "/") or a == dp.IMAGE_TASK_ROOT
                else a for a in step.args]
        # A build step sees the image's environment, not the caller's shell (no credentials, no PYTHON* knobs).
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(self.task_root.parent)}
        env.update(self.stage.env)
        env.update(LAMBDA_TASK_ROOT=str(self.task_root), LAMBDA_RUNTIME_DIR=str(self.python.parent.parent),
                   PYTHONDONTWRITEBYTECODE="1")
        _run([str(self.python), "-m", step.module, *args],
             f"line {step.line}: python -m {step.module} ({self.stage.label})",
             cwd=str(self.local(self.stage.workdir, step.line)), env=env)

    def run(self) -> None:
        for step in self.stage.steps:
            if isinstance(step, dp.CopyStep):
                self.copy(step)
            elif isinstance(step, dp.PipInstallStep):
                self.pip_install(step)
            elif isinstance(step, dp.CompileallStep):
                self.compileall(step)
            elif isinstance(step, dp.RemoveStep):
                self.remove(step)
            elif isinstance(step, dp.PythonModuleStep):
                self.python_module(step)
            else:  # pragma: no cover
                raise StageError(f"unknown step {step!r}")


def _stage_all(plan: dp.BuildPlan, context: Path, dockerfile: Path, task_root: Path, cache_dir: Path,
               python: Path) -> List["_Stager"]:
    """Stage every stage in order: the function's into ``task_root``, earlier ones beside it under
    ``stages/`` (kept for inspection). A stage FROM an earlier one starts as hard links to its files."""
    roots: Dict[int, Path] = {}
    stagers: List[_Stager] = []
    for stage in plan.stages:
        is_final = stage is plan.final
        root = task_root if is_final else task_root.parent / "stages" / f"{stage.index}-{stage.name or 'stage'}" / "task"
        root.mkdir(parents=True)
        if stage.parent is not None:
            _link_tree(roots[stage.parent], root)
        stager = _Stager(plan, stage, context, dockerfile, root, cache_dir, python, roots)
        try:
            stager.run()
        except dp.DockerfileError as exc:
            raise StageError(f"{dockerfile}: {exc}") from exc
        roots[stage.index] = root
        stagers.append(stager)
    return stagers


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so concurrent stages (two terminals, test workers) do not interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def os_normpath(path: str) -> str:
    import posixpath

    return posixpath.normpath(path)


def stage(
    dockerfile: Union[str, Path],
    context: Optional[Union[str, Path]] = None,
    build_dir: Union[str, Path] = DEFAULT_BUILD_DIR,
    function_name: str = "function",
    lint: bool = True,
    env: Optional[Dict[str, str]] = None,
    cache_dir: Optional[Union[str, Path]] = None,
) -> StageResult:
    """Stage ``<build_dir>/<function_name>/task`` from ``dockerfile`` and its build ``context``.

    ``cache_dir`` (default ``$LOCAL_LAMBDA_CACHE_DIR`` or ``<build_dir>/cache``) holds the runtime venv
    and the installed dependencies, reusable across build directories.
    """
    started = time.perf_counter()
    dockerfile = Path(dockerfile).resolve()
    context = Path(context).resolve() if context else dockerfile.parent
    build_dir = Path(build_dir).resolve()
    if not dockerfile.is_file():
        raise StageError(f"Dockerfile {dockerfile} not found (or not a file)")
    warnings: List[str] = []
    if lint:
        try:
            warnings += [str(f) for f in lint_dockerfile(dockerfile, fail_on="error")]
        except LintError as exc:
            raise StageError(str(exc)) from exc
    try:
        plan = dp.parse(dockerfile)
    except dp.DockerfileError as exc:
        raise StageError(f"{dockerfile}: {exc}") from exc
    warnings += plan.warnings
    for warning in warnings:
        _log(f"warning: {warning}")
    interpreter = find_python(plan.python_version, env=env, why=f"by FROM {plan.base_image} in {dockerfile}")
    cache_dir = Path(cache_dir or os.environ.get("LOCAL_LAMBDA_CACHE_DIR") or build_dir / "cache").resolve()
    python = ensure_runtime(interpreter, cache_dir)

    function_dir = build_dir / function_name
    task_root = function_dir / "task"
    function_dir.mkdir(parents=True, exist_ok=True)
    with _locked(function_dir / ".lock"), _locked(cache_dir / ".lock"):
        shutil.rmtree(task_root, ignore_errors=True)
        shutil.rmtree(function_dir / "stages", ignore_errors=True)
        stagers = _stage_all(plan, context, dockerfile, task_root, cache_dir, python)
    deps = next((s for s in stagers if s.deps_dir is not None), None)
    result = StageResult(
        function_name=function_name,
        task_root=str(task_root),
        handler=plan.handler,
        python_version=plan.python_version,
        runtime_python=str(python),
        base_image=plan.base_image,
        image_env=dict(plan.env),
        deps_cache_hit=deps.deps_cache_hit if deps else None,
        deps_dir=str(deps.deps_dir) if deps else None,
        seconds=round(time.perf_counter() - started, 3),
        warnings=warnings,
    )
    result.save(function_dir / "stage.json")
    return result
