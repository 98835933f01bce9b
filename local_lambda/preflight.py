"""Pre-flight checks: the classic ways a Lambda container-image deploy fails, caught before ``sam deploy``.

``python -m local_lambda preflight`` reads the same inputs as ``sam build`` (the template with SAM's
own providers, the Dockerfile with BuildKit's parser, ``.dockerignore`` with Docker's semantics) and
runs five checks, each failing with a message that says what to change:

1. ``python``   the image's Python (FROM tag) vs the lock file's header (``uv pip compile
                --python-version X.Y`` / pip-compile's "with Python X.Y"), ``requires-python`` and the
                lock's environment markers.
2. ``wheels``   every pin of the lock has a wheel pip would install on the image's platform (Amazon
                Linux 2023: glibc 2.34, so manylinux up to 2_34; not musllinux, not plain linux_*)
                for the image's CPython ABI, for EACH architecture the template allows, and that
                wheel's sha256 is one of the pin's hashes. Resolved with pip's own finder
                (``pip install --dry-run --report --only-binary=:all: --no-deps --platform ...``):
                the same selection as ``pip download`` without fetching ~50 MB of wheels per
                architecture (PyPI serves the metadata separately). Results are cached by content.
3. ``files``    the handler module, the files under ``/var/task`` named by the function's environment
                (``MODEL_PATH``) or by literal ``/var/task/...`` strings in the code, the modules the
                handler package imports, and the pip requirement files are all put in the image by a
                COPY (and not dropped by ``.dockerignore`` or a later ``RUN rm``).
4. ``context``  the build context's size after ``.dockerignore`` (apparent sizes, as Docker's tar
                sends them), with the biggest entries and whether any COPY uses them.
5. ``paths``    no code in the image depends on the current directory: relative paths given to
                ``open``/``Path``/..., ``os.getcwd()``/``Path.cwd()``/``os.chdir``, relative
                ``sys.path`` entries, and ``__file__``-anchored paths that climb out of the task root
                (they point into the repo checkout, which is not in the image). Static, with ``ast``.

Library use: ``report = run_preflight("template.yaml")``; ``report.ok``; ``print(report.format())``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import os
import posixpath
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from . import dockerfile_plan as dp
from .dockerignore import DockerIgnore
from .template import FunctionConfig, read_function

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"

#: Amazon Linux 2023 (the python3.12+ Lambda base images) has glibc 2.34.
IMAGE_GLIBC = (2, 34)
#: Template architecture -> wheel platform machine.
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
DEFAULT_CONTEXT_FAIL_MB = 500.0
DEFAULT_CONTEXT_WARN_MB = 100.0
MB = 1_000_000

CHECKS = ("python", "wheels", "files", "context", "paths")
TITLES = {
    "python": "Python version (FROM vs lock)",
    "wheels": "wheels for the image's platform",
    "files": "files the function needs are COPYed",
    "context": "build context size",
    "paths": "no dependence on the current directory",
}

#: Directory names that should never be in a build context.
JUNK_NAMES = {
    ".git", ".hg", ".svn", ".venv", "venv", "env", ".env", "__pycache__", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", ".tox", ".nox", "node_modules", ".aws-sam", ".build", ".ipynb_checkpoints", "data",
    "datasets", "dataset", "wandb", "mlruns", "lightning_logs", "checkpoints", ".hypothesis", ".idea", ".vscode",
}


def platform_tags(machine: str, glibc: Tuple[int, int] = IMAGE_GLIBC) -> List[str]:
    """pip ``--platform`` values for a glibc-``glibc`` Linux on ``machine``, newest first.

    pip does not expand ``--platform manylinux_2_34_aarch64`` to the older manylinux tags, so every
    accepted tag is listed: ``manylinux_2_{glibc}`` down to the first glibc the architecture had a
    manylinux policy for, plus the legacy aliases (manylinux2014 = 2_17, manylinux2010 = 2_12,
    manylinux1 = 2_5). Never ``musllinux_*`` (Amazon Linux is glibc-based) nor ``linux_<machine>``
    (unportable local builds).
    """
    first = 5 if machine in ("x86_64", "i686") else 17
    tags = [f"manylinux_{glibc[0]}_{minor}_{machine}" for minor in range(glibc[1], first - 1, -1)]
    aliases = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{alias}_{machine}" for minor, alias in aliases.items() if first <= minor <= glibc[1]]
    return tags


# --------------------------------------------------------------------------------------------------
# results


@dataclass
class CheckResult:
    key: str
    status: str
    summary: str
    problems: List[str] = field(default_factory=list)  # each says what to change (FAIL)
    warnings: List[str] = field(default_factory=list)
    details: List[str] = field(default_factory=list)  # informational

    @property
    def title(self) -> str:
        return TITLES.get(self.key, self.key)

    @property
    def text(self) -> str:
        return "\n".join([self.summary] + self.problems + self.warnings + self.details)


@dataclass
class Report:
    function: str
    template: Path
    base_image: str
    architectures: List[str]
    results: List[CheckResult]

    @property
    def ok(self) -> bool:
        return all(r.status != FAIL for r in self.results)

    def result(self, key: str) -> CheckResult:
        for r in self.results:
            if r.key == key:
                return r
        raise KeyError(key)

    def format(self, verbose: bool = False) -> str:
        lines = [
            f"pre-flight: {self.function} in {self.template} (FROM {self.base_image or '?'}; "
            f"architectures {', '.join(self.architectures) or '?'})",
            "",
        ]
        width = max(len(r.title) for r in self.results) if self.results else 10
        lines.append(f"  #  {'check'.ljust(width)}  result  summary")
        for i, r in enumerate(self.results, 1):
            lines.append(f"  {CHECKS.index(r.key) + 1 if r.key in CHECKS else i}  {r.title.ljust(width)}  {r.status:<6}  {r.summary}")
        for r in self.results:
            if not (r.problems or r.warnings):
                continue
            lines += ["", f"[{r.status}] {r.title}:"]
            lines += [f"  - FAIL: {_indent(p)}" for p in r.problems]
            lines += [f"  - warning: {_indent(w)}" for w in r.warnings]
        if verbose:
            for r in self.results:
                if r.details:
                    lines += ["", f"{r.title}:"] + [f"  {_indent(d)}" for d in r.details]
        failed = [r.title for r in self.results if r.status == FAIL]
        lines += ["", f"pre-flight FAILED: {', '.join(failed)}" if failed else "pre-flight passed: nothing found that breaks the deploy"]
        return "\n".join(lines)


def _indent(text: str) -> str:
    return text.replace("\n", "\n    ")


def _status(problems: List[str], warnings: List[str]) -> str:
    return FAIL if problems else WARN if warnings else PASS


# --------------------------------------------------------------------------------------------------
# the project as the image build sees it


@dataclass(frozen=True)
class Provided:
    """An image file and where it comes from."""

    source: Path  # in the build context
    line: int  # the COPY instruction


@dataclass
class ImageView:
    """What the Dockerfile's COPY/RUN rm steps put under /var/task (pip's installs aside)."""

    files: Dict[str, Provided] = field(default_factory=dict)
    removed: Dict[str, int] = field(default_factory=dict)  # image path -> RUN rm line
    copy_errors: List[str] = field(default_factory=list)
    requirement_files: List[Tuple[str, int]] = field(default_factory=list)  # (image path, RUN line)
    used_sources: Set[Path] = field(default_factory=set)
    requirement_sources: Dict[str, Provided] = field(default_factory=dict)  # as present at the RUN
    missing_requirements: List[Tuple[str, int]] = field(default_factory=list)
    # image paths (files or directories) that a build stage's RUN python -m makes: (RUN line, stage)
    generated: Dict[str, Tuple[int, str]] = field(default_factory=dict)
    runs: List[Tuple[int, str]] = field(default_factory=list)  # this stage's lineage's RUN python -m
    # RUN python -m line -> the files under its path arguments when it runs (what it makes its output from)
    run_inputs: Dict[int, Dict[str, Provided]] = field(default_factory=dict)

    def has_dir(self, image_path: str) -> bool:
        prefix = image_path.rstrip("/") + "/"
        return any(p.startswith(prefix) for p in self.files)

    def made_by(self, image_path: str) -> Optional[Tuple[int, str]]:
        """The RUN (line, stage) that makes ``image_path`` at build time, if a generated path holds it."""
        for path, origin in self.generated.items():
            if image_path == path or image_path.startswith(path.rstrip("/") + "/"):
                return origin
        return None

    def stage_copy(self) -> "ImageView":
        """The view a stage FROM this one starts with (the diagnostics lists stay shared)."""
        return dataclasses.replace(self, files=dict(self.files), removed=dict(self.removed),
                                   generated=dict(self.generated), runs=list(self.runs))


class Project:
    def __init__(self, template: Union[str, Path], function: Optional[str] = None,
                 parameter_overrides: Optional[Mapping[str, str]] = None):
        self.template = Path(template)
        self.overrides = dict(parameter_overrides or {})
        self.fn: FunctionConfig = read_function(self.template, function, self.overrides)
        self.context = self.fn.context.resolve()
        self.dockerfile = self.fn.dockerfile
        self.ignore = DockerIgnore.for_context(self.context, self.dockerfile)
        self.ignore_file = next((p for p in (Path(str(self.dockerfile) + ".dockerignore"), self.context / ".dockerignore")
                                 if p.is_file()), None)
        self.plan: Optional[dp.BuildPlan] = None
        self.plan_error: Optional[str] = None
        try:
            self.plan = dp.parse(self.dockerfile)
        except dp.DockerfileError as exc:
            self.plan_error = str(exc)
        self.base_image, self.from_line = self._from()
        self.architectures = configured_architectures(self.template, self.fn, self.overrides)
        self._walk_cache: Dict[Path, List[Path]] = {}
        self.image = self._image_view() if self.plan else ImageView()

    # Dockerfile ---------------------------------------------------------------------------------
    def _from(self) -> Tuple[str, int]:
        if not self.dockerfile.is_file():
            return "", 0  # check 3 reports it (plan_error)
        if self.plan is not None:
            for command in dp.dockerfile.parse_file(str(self.dockerfile)):
                if command.cmd.upper() == "FROM":
                    return self.plan.base_image, command.start_line
        for command in dp.dockerfile.parse_file(str(self.dockerfile)):
            if command.cmd.upper() == "FROM" and command.value:
                return command.value[0], command.start_line
        return "", 0

    @property
    def handler(self) -> Optional[str]:
        return self.fn.handler_override or (self.plan.handler if self.plan else None)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.context).as_posix()

    def display(self, path: Path) -> str:
        """A context path as the user knows it (relative to the template's folder)."""
        base = self.template.resolve().parent
        try:
            return path.resolve().relative_to(base).as_posix()
        except ValueError:
            return str(path)

    def ignored(self, path: Path) -> bool:
        return path != self.context and self.ignore.ignored(self.rel(path))

    def context_files(self, directory: Path) -> List[Path]:
        """Files under ``directory`` that the build context holds (as local_lambda.stage copies them)."""
        if directory not in self._walk_cache:
            self._walk_cache[directory] = self.ignore.files_under(self.context, directory)
        return self._walk_cache[directory]

    def _image_view(self) -> ImageView:
        """Replay COPY / RUN rm of every stage without copying anything (same rules as
        local_lambda.stage); the function stage's view. Diagnostics cover all stages."""
        assert self.plan is not None
        shared = ImageView()
        views: Dict[int, ImageView] = {}
        for stage in self.plan.stages:
            base = views[stage.parent].stage_copy() if stage.parent is not None else dataclasses.replace(
                shared, files={}, removed={}, generated={}, runs=[])
            views[stage.index] = self._replay(stage, base, views)
        return views[self.plan.final.index]

    def _copy_from_stage(self, step: dp.CopyStep, view: ImageView, source: ImageView) -> None:
        label = self.plan.stages[step.from_stage].label if self.plan else "?"
        for src in step.sources:
            src_path = posixpath.normpath(src)
            found = {p: prov for p, prov in source.files.items() if p == src_path or p.startswith(src_path + "/")}
            target_dir = step.dest.endswith("/") or len(step.sources) > 1
            for path, provided in found.items():
                rel = posixpath.relpath(path, src_path)
                if rel == ".":
                    rel = posixpath.basename(path) if target_dir else ""
                view.files[posixpath.normpath(posixpath.join(step.dest, rel))] = provided
            made = source.made_by(src_path) or (source.runs[-1] if source.runs else None)
            if made is not None:  # a RUN in that stage may (re)make it: known only once built
                view.generated[posixpath.normpath(step.dest)] = made
            elif not found:
                view.copy_errors.append(f"Dockerfile line {step.line}: COPY --from={label} {src}: no earlier "
                                        f"step of stage {label} puts anything there; docker build fails")

    def _replay(self, stage: dp.Stage, view: ImageView, views: Dict[int, ImageView]) -> ImageView:
        for step in stage.steps:
            if isinstance(step, dp.PythonModuleStep):
                if (step.line, stage.label) not in view.runs:  # commands chained in one RUN share its line
                    view.runs.append((step.line, stage.label))
                args = [posixpath.normpath(posixpath.join(stage.workdir, a)) for a in step.args if not a.startswith("-")]
                view.run_inputs.setdefault(step.line, {}).update(
                    {p: prov for p, prov in view.files.items() if any(p == a or p.startswith(a + "/") for a in args)})
            elif isinstance(step, dp.CopyStep) and step.from_stage is not None:
                self._copy_from_stage(step, view, views[step.from_stage])
            elif isinstance(step, dp.CopyStep):
                matches: List[Path] = []
                for src in step.sources:
                    clean = posixpath.normpath(src).lstrip("/")
                    if clean.startswith(".."):
                        view.copy_errors.append(f"Dockerfile line {step.line}: COPY {src} is outside the build context")
                        continue
                    found = sorted(self.context.glob(clean)) if any(c in clean for c in "*?[") else (
                        [self.context / clean] if clean != "." else [self.context])
                    found = [p for p in found if p.exists() and (not self.ignored(p) or (p.is_dir() and self.context_files(p)))]
                    if not found:
                        missing = self.context / clean
                        inside = sorted(f for f in missing.rglob("*") if f.is_file()) if missing.is_dir() else []
                        why = self._why_absent(inside[0] if inside else missing)  # a directory: why its files are out
                        view.copy_errors.append(
                            f"Dockerfile line {step.line}: COPY {src}: {why}; docker build fails with "
                            f"\"{src}: not found\"")
                    matches += found
                dest = step.dest
                dest_is_dir = dest.endswith("/") or len(matches) > 1 or view.has_dir(dest)
                for src in matches:
                    if src.is_dir():
                        for file in self.context_files(src):
                            view.files[posixpath.join(dest, file.relative_to(src).as_posix())] = Provided(file, step.line)
                            view.used_sources.add(file)
                    else:
                        target = posixpath.join(dest, src.name) if dest_is_dir else dest.rstrip("/")
                        view.files[target] = Provided(src, step.line)
                        view.used_sources.add(src)
                        view.removed.pop(target, None)
            elif isinstance(step, dp.RemoveStep):
                for path in step.paths:
                    for key in [k for k in view.files if k == path or k.startswith(path.rstrip("/") + "/")]:
                        del view.files[key]
                        view.removed[key] = step.line
            elif isinstance(step, dp.PipInstallStep):
                for r in step.requirements + step.constraints:
                    view.requirement_files.append((r, step.line))
                    provided = view.files.get(r)
                    if provided is not None:
                        view.requirement_sources[r] = provided
                    else:
                        view.missing_requirements.append((r, step.line))
        return view

    def _why_absent(self, path: Path) -> str:
        if not path.exists():
            return f"{self.display(path)} does not exist in the build context {self.display(self.context)}"
        pattern = self.culprit_pattern(path)
        where = self.display(self.ignore_file) if self.ignore_file else ".dockerignore"
        return (f"{self.display(path)} is excluded by {where}" + (f" (pattern {pattern!r})" if pattern else "")
                + f": add '!{self.rel(path)}' after it")

    def culprit_pattern(self, path: Path) -> Optional[str]:
        """The last .dockerignore line that excludes ``path`` (for the message)."""
        if self.ignore_file is None:
            return None
        rel = self.rel(path)
        culprit = None
        for raw in self.ignore_file.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("!"):
                if DockerIgnore([line[1:]]).ignored(rel):
                    culprit = None
            elif DockerIgnore([line]).ignored(rel):
                culprit = line
        return culprit

    # the lock -----------------------------------------------------------------------------------
    def lock_path(self) -> Optional[Path]:
        for provided in self.image.requirement_sources.values():
            return provided.source
        for image_path, _ in self.image.requirement_files:
            candidate = self.context / PurePosixPath(image_path).name
            if candidate.is_file():
                return candidate
        candidate = self.context / "requirements.txt"
        return candidate if candidate.is_file() else None

    def python_version(self) -> Optional[str]:
        if self.plan is not None:
            return self.plan.python_version
        return _python_from_image(self.base_image)


def _python_from_image(image: str) -> Optional[str]:
    """``python:3.11-slim`` / ``.../lambda/python:3.12`` -> ``"3.11"`` (None when the tag doesn't say)."""
    tag = image.partition("@")[0].rpartition(":")[2] if ":" in image.partition("@")[0].rsplit("/", 1)[-1] else ""
    parts = tag.split("-")[0].split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return f"{parts[0]}.{parts[1]}"
    return None


def configured_architectures(template: Path, fn: FunctionConfig, overrides: Mapping[str, str]) -> List[str]:
    """Every architecture the template can deploy the function as: a ``!Ref`` to a parameter counts
    all its ``AllowedValues`` (or its Default), unless ``--parameter-overrides`` fixes it."""
    from samcli.yamlhelper import yaml_parse

    try:
        doc = yaml_parse(Path(template).read_text())
    except Exception:  # noqa: BLE001 - fall back to what SAM resolved
        return list(fn.architectures)
    resource = (doc.get("Resources") or {}).get(fn.logical_id) or {}
    value = (resource.get("Properties") or {}).get("Architectures")
    if value is None:
        value = ((doc.get("Globals") or {}).get("Function") or {}).get("Architectures")
    if value is None:
        return list(fn.architectures or ["x86_64"])
    params = doc.get("Parameters") or {}
    out: List[str] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict) and "Ref" in item and item["Ref"] in params:
            name = item["Ref"]
            if name in overrides:
                out.append(str(overrides[name]))
            else:
                spec = params[name] or {}
                out += [str(v) for v in spec.get("AllowedValues") or [spec.get("Default", "x86_64")]]
        elif isinstance(item, str):
            out.append(item)
        else:
            out += list(fn.architectures)
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------------
# lock file


@dataclass
class Pin:
    name: str
    version: Optional[str]  # None unless pinned with ==
    requirement: str  # "numpy==2.5.5 ; python_version >= '3.12'"
    marker: object  # packaging.markers.Marker or None
    hashes: List[str]
    line: int

    @property
    def text(self) -> str:
        return " ".join([self.requirement] + [f"--hash={h}" for h in self.hashes])


@dataclass
class Lock:
    path: Path
    pins: List[Pin]
    header_command: Optional[str]
    header_python: Optional[str]
    options: List[str]


def read_lock(path: Path) -> Lock:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    raw_lines = path.read_text().splitlines()
    header_command = header_python = None
    for i, raw in enumerate(raw_lines[:12]):
        text = raw.lstrip("#").strip()
        if "pip compile" in text or text.startswith("pip-compile") or text.startswith("uv "):
            header_command = text
            words = shlex.split(text)
            for j, word in enumerate(words):
                name, eq, inline = word.partition("=")
                if name in ("--python-version", "-p", "--python"):
                    value = inline if eq else (words[j + 1] if j + 1 < len(words) else "")
                    header_python = ".".join(value.split(".")[:2]) or None
        elif "autogenerated by pip-compile with Python" in text:
            words = text.replace(",", " ").split()
            header_python = ".".join(words[words.index("Python") + 1].split(".")[:2])
    pins: List[Pin] = []
    options: List[str] = []
    logical, start = "", 0
    for number, raw in enumerate(raw_lines + [""], 1):
        stripped = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not logical:
            start = number
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical = (logical + stripped).strip()
        if logical:
            words = logical.split()  # a --hash never holds spaces; markers keep their quotes
            hashes: List[str] = []
            kept: List[str] = []
            for j, word in enumerate(words):
                if word.startswith("--hash="):
                    hashes.append(word.split("=", 1)[1])
                elif word == "--hash" and j + 1 < len(words):
                    hashes.append(words[j + 1])
                elif not (j and words[j - 1] == "--hash"):
                    kept.append(word)
            rest = " ".join(kept)
            if rest.startswith("-"):
                options.append(rest)
            else:
                req = Requirement(rest)
                version = None
                specs = list(req.specifier)
                if len(specs) == 1 and specs[0].operator in ("==", "==="):
                    version = specs[0].version
                pins.append(Pin(canonicalize_name(req.name), version, rest, req.marker, hashes, start))
        logical = ""
    return Lock(path, pins, header_command, header_python, options)


def marker_env(python: str, machine: str) -> Dict[str, str]:
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": machine,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_version": "",
        "implementation_version": f"{python}.0",
        "extra": "",
    }


def applies(pin: Pin, python: str, machine: str) -> bool:
    return pin.marker is None or pin.marker.evaluate(marker_env(python, machine))  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------------
# check 1: Python


def check_python(project: Project, lock: Optional[Lock]) -> CheckResult:
    problems: List[str] = []
    warnings: List[str] = []
    details: List[str] = []
    image = project.base_image
    python = project.python_version()
    dockerfile = project.display(project.dockerfile)
    where = f"{dockerfile} line {project.from_line}: FROM {image}"
    ref = image.partition("@")[0]
    name = ref.rpartition(":")[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    if python is None:
        problems.append(f"{where}: the tag does not say which Python the image runs; use "
                        "public.ecr.aws/lambda/python:3.12 (a version tag)")
    if name and name not in dp.LAMBDA_PYTHON_IMAGES:
        problems.append(
            f"{where} is not an AWS Lambda base image (no runtime interface client, no /var/task "
            f"conventions): use FROM public.ecr.aws/lambda/python:{python or '3.12'}")
    summary_parts = [f"image {python or '?'}"]
    if lock is None:
        problems.append(f"no lock file: the Dockerfile's pip install has no requirements file in {project.display(project.context)}")
    else:
        lock_name = project.display(lock.path)
        if lock.header_python is None:
            warnings.append(f"{lock_name} does not say which Python it was locked for (no 'uv pip compile "
                            "--python-version X.Y' / pip-compile header); regenerate it with --python-version "
                            f"{python or '3.12'} so the pins are chosen for the image's Python")
        else:
            summary_parts.append(f"lock {lock.header_python}")
            if python and lock.header_python != python:
                fix = ""
                if lock.header_command:
                    words = shlex.split(lock.header_command)
                    for j, word in enumerate(words):
                        if word == "--python-version" and j + 1 < len(words):
                            words[j + 1] = python
                        elif word.startswith("--python-version="):
                            words[j] = f"--python-version={python}"
                    fix = f" or re-lock for the image: {' '.join(words)}"
                problems.append(
                    f"{where} runs Python {python}, but {lock_name} was locked for Python "
                    f"{lock.header_python} ({lock.header_command or 'pip-compile header'}): binary wheels "
                    f"(numpy, onnxruntime, ...) are built per CPython ABI (cp{lock.header_python.replace('.', '')} "
                    f"!= cp{python.replace('.', '')}). Change FROM to "
                    f"public.ecr.aws/lambda/python:{lock.header_python}{fix}")
        if python:
            by_name: Dict[str, List[Pin]] = {}
            for pin in lock.pins:
                by_name.setdefault(pin.name, []).append(pin)
            for pkg, pins in by_name.items():
                if any(applies(p, python, m) for p in pins for m in MACHINES.values()):
                    continue
                markers = [str(p.marker) for p in pins if p.marker is not None]
                if any("python" in m for m in markers):
                    problems.append(
                        f"{lock_name} line {pins[0].line}: {pkg} is locked only for {' / '.join(markers)}, "
                        f"never for the image's Python {python} on Linux: pip installs no {pkg} and the "
                        f"import fails; re-lock with --python-version {python}")
    pyproject = project.template.resolve().parent / "pyproject.toml"
    if pyproject.is_file() and python:
        try:
            import tomllib  # type: ignore[import-not-found]
        except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
            tomllib = None
        if tomllib is not None:
            data = tomllib.loads(pyproject.read_text())
            requires = (data.get("project") or {}).get("requires-python")
            if requires:
                from packaging.specifiers import SpecifierSet

                summary_parts.append(f"requires-python {requires}")
                if not SpecifierSet(requires).contains(f"{python}.0", prereleases=True):
                    problems.append(
                        f"{project.display(pyproject)}: requires-python {requires!r} excludes the image's "
                        f"Python {python} ({where}): widen requires-python or change the FROM tag")
    details.append("the wheels check resolves every pin for this Python's ABI "
                   f"(cp{(python or '3.12').replace('.', '')}), so a pin without such a wheel fails there")
    return CheckResult("python", _status(problems, warnings), ", ".join(summary_parts), problems, warnings, details)


# --------------------------------------------------------------------------------------------------
# check 2: wheels for every architecture


@dataclass
class Resolution:
    ok: bool
    wheel: Optional[str] = None
    sha256: Optional[str] = None
    error: Optional[str] = None  # pip's message when not ok
    definitive: bool = True  # False: network trouble, not cached


def _pip_resolve(pins: Sequence[Pin], python: str, machine: str, workdir: Path,
                 pip: Sequence[str]) -> Tuple[int, str, Dict[str, Tuple[str, Optional[str]]]]:
    req = workdir / "requirements.txt"
    req.write_text("".join(p.text + "\n" for p in pins))
    report = workdir / "report.json"
    abi = "cp" + python.replace(".", "")
    args = [*pip, "install", "--dry-run", "--ignore-installed", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--python-version", python, "--implementation", "cp",
            "--abi", abi, "--target", str(workdir / "target"), "--report", str(report), "-r", str(req)]
    for tag in platform_tags(machine):
        args += ["--platform", tag]
    proc = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    chosen: Dict[str, Tuple[str, Optional[str]]] = {}
    if proc.returncode == 0 and report.is_file():
        from packaging.utils import canonicalize_name

        for item in json.loads(report.read_text()).get("install", []):
            info = item.get("download_info", {})
            url = info.get("url", "")
            digest = (info.get("archive_info", {}).get("hashes") or {}).get("sha256")
            chosen[canonicalize_name(item["metadata"]["name"])] = (url.rsplit("/", 1)[-1], digest)
    return proc.returncode, proc.stderr, chosen


def _resolve_all(pins: Sequence[Pin], python: str, machine: str, pip: Sequence[str]) -> Dict[str, Resolution]:
    """One pip call for all pins; when it fails, one per pin (pip stops at the first failure)."""
    out: Dict[str, Resolution] = {}
    with tempfile.TemporaryDirectory(prefix="preflight-") as tmp:
        code, stderr, chosen = _pip_resolve(pins, python, machine, Path(tmp), pip)
    if code == 0:
        for pin in pins:
            wheel, digest = chosen.get(pin.name, (None, None))
            out[pin.requirement] = Resolution(ok=wheel is not None, wheel=wheel, sha256=digest,
                                              error=None if wheel else "pip chose nothing for it")
        return out
    if len(pins) == 1:
        pin = pins[0]
        if "DO NOT MATCH THE HASHES" in stderr:
            # pip found the wheel and checked it against the pin's hashes: report which file it was.
            wheel = digest = None
            for line in stderr.splitlines():
                words = line.split()
                if " from " in line and "://" in line:
                    url = next((w for w in words if "://" in w), "")
                    wheel = url.rstrip(":").rsplit("/", 1)[-1]
                elif words[:1] == ["Got"] and len(words) > 1:
                    digest = words[-1]
            out[pin.requirement] = Resolution(ok=True, wheel=wheel, sha256=digest)
            return out
        messages = [line.strip() for line in stderr.splitlines() if line.startswith("ERROR")]
        definitive = any("No matching distribution" in m or "Could not find a version" in m for m in messages)
        out[pin.requirement] = Resolution(ok=False, error="; ".join(messages) or stderr.strip()[-500:],
                                          definitive=definitive)
        return out

    def one(pin: Pin) -> Dict[str, Resolution]:
        return _resolve_all([pin], python, machine, pip)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for result in pool.map(one, pins):
            out.update(result)
    return out


def _cache_key(pin: Pin, python: str, machine: str) -> str:
    return hashlib.sha256("\0".join([pin.text, python, machine, *platform_tags(machine)]).encode()).hexdigest()[:24]


def resolve_pins(pins: Sequence[Pin], python: str, machine: str, cache_dir: Optional[Path],
                 pip: Optional[Sequence[str]] = None) -> Dict[str, Resolution]:
    """Which wheel pip picks for each pin on (python, manylinux <= 2.34, machine); cached by content."""
    pip = list(pip or [sys.executable, "-m", "pip"])
    cache_file = cache_dir / "wheels.json" if cache_dir else None
    cache: Dict[str, dict] = {}
    if cache_file and cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except ValueError:
            cache = {}
    out: Dict[str, Resolution] = {}
    todo = []
    for pin in pins:
        hit = cache.get(_cache_key(pin, python, machine))
        if hit is not None:
            out[pin.requirement] = Resolution(**hit)
        else:
            todo.append(pin)
    if todo:
        fresh = _resolve_all(todo, python, machine, pip)
        out.update(fresh)
        if cache_file:
            for pin in todo:
                res = fresh[pin.requirement]
                if res.definitive:
                    cache[_cache_key(pin, python, machine)] = res.__dict__
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
            tmp.replace(cache_file)
    return out


# Releases that install on Lambda arm64 but abort at import there: Lambda's arm64 sandbox has no
# /sys/devices/system/cpu/possible or present, and onnxruntime's cpuinfo aborted without them
# (onnxruntime#10038). bench/arm64/check_cpuinfo.sh: 1.25.1 aborts, 1.26.0 and later only warn.
ARM64_IMPORT_CRASHES = {"onnxruntime": ((1, 26), "onnxruntime#10038: /sys/devices/system/cpu/possible is missing")}


def known_arm64_crashes(lock: Lock, architectures: Sequence[str], lock_name: str) -> List[str]:
    if "arm64" not in architectures:
        return []
    problems = []
    for pin in lock.pins:
        known = ARM64_IMPORT_CRASHES.get(pin.name.lower())
        if known is None or pin.version is None:
            continue
        fixed_in, why = known
        try:
            version = tuple(int(part) for part in pin.version.split(".")[:2])
        except ValueError:
            continue
        if version < fixed_in:
            fixed = ".".join(map(str, fixed_in))
            problems.append(
                f"{lock_name} line {pin.line}: {pin.name}=={pin.version} aborts at import on Lambda arm64 ({why}); "
                f"use {pin.name}>={fixed} or remove arm64 from the template's Architecture(s)")
    return problems


def check_wheels(project: Project, lock: Optional[Lock], cache_dir: Optional[Path], offline: bool = False) -> CheckResult:
    problems: List[str] = []
    warnings: List[str] = []
    details: List[str] = []
    python = project.python_version()
    if lock is None or python is None:
        return CheckResult("wheels", FAIL, "no lock file or no Python version to check against",
                           ["fix the Python check first (FROM tag / lock file)"])
    lock_name = project.display(lock.path)
    require_hashes = any(
        isinstance(s, dp.PipInstallStep) and "--require-hashes" in _run_words(project, s.line)
        for s in project.plan.all_steps()
    ) if project.plan else True
    unknown = [a for a in project.architectures if a not in MACHINES]
    for arch in unknown:
        problems.append(f"template Architectures has {arch!r}; Lambda supports x86_64 and arm64")
    for pin in lock.pins:
        if pin.version is None:
            problems.append(f"{lock_name} line {pin.line}: {pin.requirement} is not pinned with ==; "
                            "lock it (uv pip compile ... --generate-hashes) so every build installs the same files")
        if not pin.hashes:
            problems.append(
                f"{lock_name} line {pin.line}: {pin.requirement} has no --hash"
                + (": pip install --require-hashes (Dockerfile) refuses the whole file" if require_hashes else "")
                + "; regenerate the lock with --generate-hashes")
    problems.extend(known_arm64_crashes(lock, project.architectures, lock_name))
    if offline:
        warnings.append("--offline: wheels not resolved against the index")
        return CheckResult("wheels", _status(problems, warnings), "not checked (offline)", problems, warnings)
    checked = 0
    per_arch: List[str] = []
    for arch in project.architectures:
        machine = MACHINES.get(arch)
        if machine is None:
            continue
        pins = [p for p in lock.pins if p.version is not None and applies(p, python, machine)]
        results = resolve_pins(pins, python, machine, cache_dir)
        bad = 0
        for pin in pins:
            res = results[pin.requirement]
            checked += 1
            if not res.ok:
                bad += 1
                if res.definitive:
                    problems.append(
                        f"{lock_name} line {pin.line}: {pin.requirement} has no wheel for {arch} (Linux {machine}, "
                        f"glibc <= {IMAGE_GLIBC[0]}.{IMAGE_GLIBC[1]} manylinux, CPython {python}): the image "
                        "build fails or compiles it from source with no compiler in the base image. Pick a "
                        f"version that ships a manylinux {machine} wheel for cp{python.replace('.', '')}, drop the "
                        f"dependency, or remove {arch} from the template's Architecture(s)")
                else:
                    problems.append(f"{lock_name} line {pin.line}: {pin.requirement} ({arch}): could not ask the "
                                    f"index: {res.error}")
            elif pin.hashes and res.sha256 and f"sha256:{res.sha256}" not in pin.hashes:
                bad += 1
                problems.append(
                    f"{lock_name} line {pin.line}: pip would install {res.wheel} on {arch}, but its sha256 "
                    f"{res.sha256[:12]}... is not among the pin's hashes: --require-hashes fails. Regenerate the "
                    "lock for every platform (uv pip compile --universal --generate-hashes)")
            elif res.wheel and any(t in res.wheel for t in ("musllinux", "-linux_")):
                bad += 1  # pragma: no cover - excluded by platform_tags
                problems.append(f"{pin.requirement}: {res.wheel} is not a manylinux wheel")
        binaries = sorted({r.wheel for r in results.values() if r.ok and r.wheel and not r.wheel.endswith("-none-any.whl")})
        details.append(f"{arch}: " + (", ".join(binaries) if binaries else "pure-Python wheels only"))
        per_arch.append(f"{arch} {len(pins) - bad}/{len(pins)}")
    summary = f"{len(lock.pins)} pins, cp{python.replace('.', '')} manylinux<=2_34: " + ", ".join(per_arch)
    return CheckResult("wheels", _status(problems, warnings), summary, problems, warnings, details)


def _run_words(project: Project, line: int) -> List[str]:
    for command in dp.dockerfile.parse_file(str(project.dockerfile)):
        if command.start_line == line:
            return " ".join(command.value).split()
    return []


# --------------------------------------------------------------------------------------------------
# check 3: files


def _handler_module_paths(handler: str) -> List[str]:
    module = handler.rsplit(".", 1)[0]
    base = posixpath.join(dp.IMAGE_TASK_ROOT, *module.split("."))
    return [base + ".py", posixpath.join(base, "__init__.py")]


def explain_missing(project: Project, image_path: str) -> str:
    """Why ``image_path`` is not in the image, and what to change."""
    view = project.image
    if image_path in view.removed:
        return f"Dockerfile line {view.removed[image_path]} removes it (RUN rm): keep it or point at another file"
    assert project.plan is not None
    for step in project.plan.all_steps():
        if not isinstance(step, dp.CopyStep) or step.from_stage is not None:
            continue
        dest = step.dest.rstrip("/")
        if image_path != dest and not image_path.startswith(dest + "/"):
            continue
        rest = image_path[len(dest):].lstrip("/")
        for src in step.sources:
            base = project.context / posixpath.normpath(src).lstrip("/")
            candidate = base / rest if rest else base
            if rest and not (base.is_dir() or not base.exists()):
                candidate = base if base.name == PurePosixPath(image_path).name else candidate
            if candidate.exists() and project.ignored(candidate):
                return (f"COPY {src} (Dockerfile line {step.line}) would provide it from "
                        f"{project.display(candidate)}, but " + project._why_absent(candidate).split(" is ", 1)[1])
    name = PurePosixPath(image_path).name
    found = sorted(p for p in project.context.rglob(name) if p.is_file() and ".git" not in p.parts)[:3]
    if found:
        src = found[0]
        rel_dir = src.parent.relative_to(project.context).as_posix()
        image_dir = posixpath.dirname(image_path)
        copy = (f"COPY {rel_dir}/ ${{LAMBDA_TASK_ROOT}}/{posixpath.relpath(image_dir, dp.IMAGE_TASK_ROOT)}/"
                if rel_dir != "." else f"COPY {src.name} {image_path}")
        extra = ""
        if project.ignored(src):
            extra = " and un-ignore it in .dockerignore: " + project._why_absent(src).split(": ", 1)[-1]
        return (f"no COPY in {project.display(project.dockerfile)} puts anything there, though "
                f"{project.display(src)} is in the build context: add '{copy}'{extra}")
    same_kind = sorted(p for p in view.files if PurePosixPath(p).suffix == PurePosixPath(image_path).suffix)[:5]
    same_kind += [f"{path}/ (made at build time by RUN line {line}, stage {stage})"
                  for path, (line, stage) in sorted(view.generated.items())]
    hint = f"; the image has {', '.join(same_kind)}" if same_kind else ""
    return (f"there is no {name} in the build context {project.display(project.context)} and no COPY "
            f"provides it{hint}")


def _is_lfs_pointer(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(40).startswith(b"version https://git-lfs")
    except OSError:
        return False


def _is_onnx_model(path: Path) -> bool:
    """Whether ``path`` parses as an ONNX ``ModelProto`` with a graph (onnx, a pinned dev dependency;
    external weights are not read)."""
    return _onnx_facts(path)[0]


def _onnx_facts(path: Path) -> Tuple[bool, Dict[str, str]]:
    """(has a graph, metadata_props) of an ONNX file, parsed once while it is unchanged."""
    try:
        stat = path.stat()
    except OSError:
        return False, {}
    return _parse_onnx(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)  # keeps two small facts per file, not the 18 MB model
def _parse_onnx(path: str, mtime_ns: int, size: int) -> Tuple[bool, Dict[str, str]]:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model(path, load_external_data=False)
    except (DecodeError, OSError, ValueError):
        return False, {}
    return model.HasField("graph"), {p.key: p.value for p in model.metadata_props}


def _source_file_problems(project: Project, label: str, source: Path, reported: Set[Path]) -> List[str]:
    """An empty file, a Git LFS pointer, or a ``.onnx`` that is no ONNX model, where a named file comes from
    (each source reported once: it is added to ``reported``)."""
    shown = project.display(source)
    if source in reported:
        return []
    if source.stat().st_size == 0:
        problem = f"{label}: {shown} is empty: put the real file there (e.g. re-export or 'git checkout' it)"
    elif _is_lfs_pointer(source):
        problem = f"{label}: {shown} is a Git LFS pointer, not the file: run 'git lfs pull' before building"
    elif source.suffix == ".onnx" and not _is_onnx_model(source):
        problem = (f"{label}: {shown} is not an ONNX model (no graph in the protobuf): put the real model there "
                   "(e.g. re-export it)")
    else:
        return []
    reported.add(source)
    return [problem]


def _stale_int8_copies(project: Project, sources: Iterable[Path], reported: Set[Path]) -> List[str]:
    """NAME-int8.onnx (ModelVariant=int8) beside NAME.onnx, whose model card names another model: left over
    from the model NAME.onnx replaced."""
    found = []
    for int8 in sorted(s for s in sources if s.name.endswith("-int8.onnx")):
        base = int8.with_name(int8.name[: -len("-int8.onnx")] + ".onnx")
        if base not in sources or {base, int8} & reported:
            continue
        cards = [_card(path) for path in (base, int8)]
        differ = sorted(key for key in cards[0].keys() | cards[1].keys()
                        if key != "version" and cards[0].get(key) != cards[1].get(key))
        version, int8_version = (str(card.get("version", "")) for card in cards)
        if int8_version != version and not int8_version.startswith(version + "-"):  # 1 -> 1-int8, not 2 -> 1-int8
            differ.append("version")
        if differ:
            found.append(f"{project.display(int8)} is not an INT8 copy of {project.display(base)} (its model card "
                         f"differs in {', '.join(differ)}): ModelVariant=int8 would serve another model; run "
                         f"'python -m model_export quantize {project.display(base)} -o {project.display(int8)}' "
                         "or delete it")
    return found


def _card(path: Path) -> Dict[str, object]:
    """The model card in an ONNX file's metadata ({} if none). An INT8 copy keeps all of it but the
    version, which gets a suffix (``1`` -> ``1-int8``)."""
    props = _onnx_facts(path)[1]
    try:
        card = json.loads(props.get("image_classifier.card", "{}"))  # classifier.spec.METADATA_KEY (numpy, Pillow: not here)
    except ValueError:
        card = {}
    return card if isinstance(card, dict) else {}


def _generated_from(project: Project, label: str, path: str, made: Tuple[int, str], problems: List[str],
                    reported: Set[Path]) -> str:
    """Check the source of ``path``, which a build stage's ``RUN python -m`` makes from the files under its
    arguments: the input of the same name must be COPYed and be a real file. Returns a note for the details."""
    inputs = project.image.run_inputs.get(made[0]) or {}
    if not inputs:
        return ""  # the RUN makes it from nothing the Dockerfile copies: trusted, as before
    name = PurePosixPath(path).name
    same = [prov for p, prov in sorted(inputs.items()) if PurePosixPath(p).name == name]
    if not same:
        siblings = sorted({prov.source for prov in inputs.values() if prov.source.suffix == PurePosixPath(path).suffix}
                          or {prov.source for prov in inputs.values()})
        expected = siblings[0].parent / name
        problems.append(
            f"{label} is made at build time by RUN line {made[0]} (stage {made[1]}) from the files it is given, "
            f"but {project.display(expected)} does not exist in the build context (it has "
            f"{', '.join(project.display(s) for s in siblings[:5])}): the image would have no {name} and every "
            f"invoke fails; put the file at {project.display(expected)} or point the variable at one that "
            "exists")
        return ""
    source = same[0].source
    problems += _source_file_problems(project, label, source, reported)
    return f" from {project.display(source)} (COPY line {same[0].line})"


def _python_files(project: Project) -> Dict[str, Provided]:
    return {p: prov for p, prov in sorted(project.image.files.items()) if p.endswith(".py")}


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterable[Tuple[str, int]]:
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = ".".join(parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # from pkg import submodule
                yield f"{target}.{alias.name}", -node.lineno  # negative: optional (may be a name)


def check_files(project: Project) -> CheckResult:
    problems: List[str] = []
    warnings: List[str] = []
    details: List[str] = []
    if project.plan is None:
        return CheckResult("files", FAIL, "Dockerfile not readable",
                           [f"{project.display(project.dockerfile)}: {project.plan_error}"])
    view = project.image
    problems += view.copy_errors
    for image_path, line in view.missing_requirements:
        problems.append(f"Dockerfile line {line}: pip install -r {image_path}, but no earlier COPY puts it "
                            f"there: {explain_missing(project, image_path)}")
    checked: List[str] = []
    # the handler module
    handler = project.handler
    if not handler or "." not in handler:
        problems.append(f"no handler: set CMD [\"package.module.function\"] in {project.display(project.dockerfile)}")
    else:
        candidates = _handler_module_paths(handler)
        if not any(c in view.files for c in candidates):
            problems.append(f"handler {handler}: the image has no {candidates[0]} (nor {candidates[1]}): "
                            f"{explain_missing(project, candidates[0])}")
        else:
            checked.append(f"handler {handler}")
    # paths named by the environment (template Variables + Dockerfile ENV)
    variables = {**project.plan.env, **{k: str(v) for k, v in project.fn.variables.items() if v is not None}}
    reported: Set[Path] = set()  # bad source files, reported once, by the variable naming them when there is one
    for name, value in sorted(variables.items()):
        for item in str(value).replace(",", ":").split(":"):
            if not item.startswith(dp.IMAGE_TASK_ROOT + "/"):
                continue
            path = posixpath.normpath(item)
            if path in view.files:
                source = view.files[path].source
                checked.append(f"{name}={path} <- {project.display(source)} (COPY line {view.files[path].line})")
                problems += _source_file_problems(project, f"{name}={path}", source, reported)
            elif view.has_dir(path):
                checked.append(f"{name}={path}/ (directory)")
            elif (made := view.made_by(path)) is not None:
                made_from = _generated_from(project, f"{name}={path}", path, made, problems, reported)
                checked.append(f"{name}={path} <- made at build time by RUN line {made[0]} (stage {made[1]}){made_from}")
            else:
                problems.append(f"{name}={path} (template/ENV) is not in the image: {explain_missing(project, path)}")
    for source in sorted(view.used_sources):  # every model COPYed (a build stage converts them all), other data
        if source.suffix == ".onnx" or (source.suffix not in (".py", ".txt") and _is_lfs_pointer(source)):
            problems += _source_file_problems(project, "COPYed into the image", source, reported)
    warnings += _stale_int8_copies(project, view.used_sources, reported)
    # the code: imports of its own modules, literal /var/task paths
    py_files = _python_files(project)
    top_level = {PurePosixPath(p).relative_to(dp.IMAGE_TASK_ROOT).parts[0].removesuffix(".py") for p in py_files}
    for image_path, provided in py_files.items():
        rel = PurePosixPath(image_path).relative_to(dp.IMAGE_TASK_ROOT)
        is_package = rel.name == "__init__.py"
        module = ".".join(rel.parent.parts if is_package else rel.with_suffix("").parts)
        try:
            tree = ast.parse(provided.source.read_bytes(), filename=str(provided.source))
        except SyntaxError as exc:
            problems.append(f"{project.display(provided.source)}:{exc.lineno}: syntax error: {exc.msg}")
            continue
        for target, line in _imported_modules(tree, module, is_package):
            if not target or target.split(".")[0] not in top_level:
                continue
            paths = _handler_module_paths(target + ".x")
            if any(p in view.files for p in paths) or view.has_dir(paths[0][:-3]):
                continue
            if line < 0:
                continue  # "from pkg import name": a name, not a module
            problems.append(f"{project.display(provided.source)}:{line} imports {target}, which is not in the "
                            f"image: {explain_missing(project, paths[0])}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(dp.IMAGE_TASK_ROOT + "/"):
                path = posixpath.normpath(node.value)
                if path not in view.files and not view.has_dir(path):
                    problems.append(f"{project.display(provided.source)}:{node.lineno} uses {node.value!r}, which is "
                                    f"not in the image: {explain_missing(project, path)}")
    summary = f"{len(view.files)} files COPYed; " + ("; ".join(checked[:3]) if checked else "nothing checked")
    details += checked
    return CheckResult("files", _status(problems, warnings), summary, problems, warnings, details)


# --------------------------------------------------------------------------------------------------
# check 4: build context size


def context_size(project: Project) -> Tuple[int, Dict[str, int], List[Tuple[int, str]], Dict[str, bool]]:
    """Apparent bytes Docker sends, by top-level entry; biggest files; whether each entry is used."""
    has_exceptions = any(exclusion for exclusion, _ in project.ignore.patterns)
    total = 0
    by_top: Dict[str, int] = {}
    used: Dict[str, bool] = {}
    biggest: List[Tuple[int, str]] = []
    always = {project.dockerfile.resolve(), (project.context / ".dockerignore").resolve()}
    for root, dirs, names in os.walk(project.context):
        root_path = Path(root)
        kept = []
        for d in sorted(dirs):
            path = root_path / d
            if project.ignored(path) and not has_exceptions:
                continue
            if path.is_symlink():
                names.append(d)  # sent as a link, not followed
                continue
            kept.append(d)
        dirs[:] = kept
        for name in names:
            path = root_path / name
            rel = path.relative_to(project.context).as_posix()
            if project.ignore.ignored(rel) and path.resolve() not in always:
                continue
            size = os.lstat(path).st_size  # apparent size: a sparse file is sent (tar) at full length
            total += size
            top = rel.split("/", 1)[0]
            by_top[top] = by_top.get(top, 0) + size
            used[top] = used.get(top, False) or path in project.image.used_sources or path.resolve() in always
            biggest.append((size, rel))
    biggest.sort(reverse=True)
    return total, by_top, biggest[:5], used


def check_context(project: Project, fail_mb: float = DEFAULT_CONTEXT_FAIL_MB,
                  warn_mb: float = DEFAULT_CONTEXT_WARN_MB) -> CheckResult:
    problems: List[str] = []
    warnings: List[str] = []
    total, by_top, biggest, used = context_size(project)
    ignore_name = project.display(project.ignore_file) if project.ignore_file else f"{project.display(project.context)}/.dockerignore"
    offenders = []
    for top, size in sorted(by_top.items(), key=lambda kv: -kv[1])[:5]:
        is_dir = (project.context / top).is_dir()
        note = ""
        if not used.get(top):
            note = f" (no COPY uses it: add '{top}{'/' if is_dir else ''}' to {ignore_name})"
        elif top in JUNK_NAMES:
            note = f" (a {top} folder does not belong in an image)"
        offenders.append(f"{top}{'/' if is_dir else ''} {size / MB:.1f} MB{note}")
    junk = sorted(t for t in by_top if (t in JUNK_NAMES or t.endswith(".egg-info")) and not used.get(t))
    summary = f"{total / MB:.1f} MB after .dockerignore (fail > {fail_mb:g} MB, warn > {warn_mb:g} MB)"
    listing = "biggest: " + "; ".join(offenders) if offenders else ""
    if total > fail_mb * MB:
        problems.append(f"the build context {project.display(project.context)} is {total / MB:.1f} MB after "
                        f".dockerignore (limit {fail_mb:g} MB): every sam build sends all of it to Docker. "
                        f"{listing}. Exclude what the Dockerfile does not COPY in {ignore_name}")
    elif total > warn_mb * MB:
        warnings.append(f"build context {total / MB:.1f} MB (> {warn_mb:g} MB). {listing}")
    for top in junk:
        (problems if total > fail_mb * MB else warnings).append(
            f"{top}/ is in the build context ({by_top[top] / MB:.1f} MB): add '{top}/' to {ignore_name}")
    details = [listing] + [f"{size / MB:.1f} MB {rel}" for size, rel in biggest]
    return CheckResult("context", _status(problems, warnings), summary, problems, warnings, details)


# --------------------------------------------------------------------------------------------------
# check 5: paths that depend on the current directory


#: Callables whose first argument is a file system path.
PATH_CALLS = {
    "open", "Path", "PurePath", "PosixPath", "PurePosixPath", "InferenceSession", "load", "loadtxt", "genfromtxt",
    "fromfile", "listdir", "scandir", "walk", "exists", "isfile", "isdir", "getsize", "glob", "iglob", "read_csv",
    "read_parquet", "ZipFile", "TarFile", "copy", "copyfile", "copytree", "rmtree", "mkdir", "makedirs",
    "abspath", "realpath", "stat", "remove", "unlink", "rename", "File", "imread", "load_model",
}
_UNWRAP = {"abspath", "realpath", "normpath", "Path", "PurePath", "PosixPath", "PurePosixPath", "fspath", "str"}


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _levels_up(node: ast.AST) -> Optional[int]:
    """``__file__`` -> 0, ``dirname(__file__)`` / ``Path(__file__).parent`` -> 1 (the file's folder), ..."""
    if isinstance(node, ast.Name) and node.id == "__file__":
        return 0
    if isinstance(node, ast.Call):
        name = _callee(node)
        if name in _UNWRAP and len(node.args) == 1:
            return _levels_up(node.args[0])
        if name == "dirname" and len(node.args) == 1:
            up = _levels_up(node.args[0])
            return None if up is None else up + 1
        if name in ("resolve", "absolute", "expanduser") and isinstance(node.func, ast.Attribute):
            return _levels_up(node.func.value)
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        up = _levels_up(node.value)
        return None if up is None else up + 1
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)):
        up = _levels_up(node.value.value)
        return None if up is None else up + 2 + node.slice.value - 1
    return None


def _relative_literal(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        value = node.value
        if value and not value.startswith(("/", "~")) and "://" not in value and value not in ("-",):
            return value
    return None


def scan_source(source: str, filename: str, depth: int) -> List[Tuple[int, str]]:
    """Cwd-dependent paths in one module; ``depth`` = folders between the task root and the file."""
    tree = ast.parse(source, filename=filename)
    parents: Dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    findings: Dict[int, str] = {}
    anchor = ("anchor it to the task root: os.path.join(os.environ['LAMBDA_TASK_ROOT'], ...) or "
              "Path(__file__).resolve().parent / ...")
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Call):
            name = _callee(node)
            dotted = _dotted(node.func)
            if dotted in ("os.getcwd", "os.getcwdb", "getcwd", "Path.cwd", "pathlib.Path.cwd"):
                findings.setdefault(line, f"{dotted}() is the process's working directory (/var/task on Lambda, "
                                          f"anything in tests and scripts): {anchor}")
            elif dotted in ("os.chdir", "chdir"):
                findings.setdefault(line, "os.chdir changes what every relative path means for the whole warm "
                                          "process: use absolute paths instead")
            elif dotted in ("sys.path.append", "sys.path.insert") and node.args:
                literal = _relative_literal(node.args[-1])
                if literal is not None:
                    findings.setdefault(line, f"{dotted}({literal!r}) adds a cwd-relative import path: {anchor}")
            elif name in PATH_CALLS:
                if name in ("Path", "PurePath", "PosixPath", "PurePosixPath") and not node.args and not node.keywords:
                    findings.setdefault(line, f"{name}() is the current directory: {anchor}")
                    continue
                literal = _relative_literal(node.args[0]) if node.args else None
                if literal is None:
                    continue
                parent = parents.get(id(node))
                if name in ("Path", "PurePath", "PosixPath", "PurePosixPath") and isinstance(parent, ast.BinOp) \
                        and isinstance(parent.op, ast.Div) and parent.right is node:
                    continue  # anchor / Path("part"): fine
                findings.setdefault(line, f"{dotted or name}({literal!r}) is resolved against the current "
                                          f"directory: {anchor}")
        up = _levels_up(node) if isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)) else None
        if up is not None and up - 1 > depth:
            outside = up - 1 - depth
            findings.setdefault(line, f"this __file__-relative path climbs {outside} folder(s) above the task root "
                                      "(/var/task): it reaches into the repo checkout, which is not in the image; "
                                      "COPY what it needs into the image and anchor it inside the task root")
    return sorted(findings.items())


def check_paths(project: Project) -> CheckResult:
    problems: List[str] = []
    if project.plan is None:
        return CheckResult("paths", FAIL, "Dockerfile not readable", [f"{project.plan_error}"])
    files = _python_files(project)
    for image_path, provided in files.items():
        rel = PurePosixPath(image_path).relative_to(dp.IMAGE_TASK_ROOT)
        try:
            findings = scan_source(provided.source.read_text(), str(provided.source), len(rel.parts) - 1)
        except SyntaxError:
            continue  # reported by the files check
        problems += [f"{project.display(provided.source)}:{line}: {message}" for line, message in findings]
    summary = f"{len(files)} Python files in the image scanned (ast)"
    return CheckResult("paths", _status(problems, []), summary, problems)


# --------------------------------------------------------------------------------------------------


def run_preflight(
    template: Union[str, Path] = "template.yaml",
    function: Optional[str] = None,
    parameter_overrides: Optional[Mapping[str, str]] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    checks: Optional[Iterable[str]] = None,
    context_fail_mb: float = DEFAULT_CONTEXT_FAIL_MB,
    context_warn_mb: float = DEFAULT_CONTEXT_WARN_MB,
    offline: bool = False,
) -> Report:
    """Run the checks (all by default) for ``function`` of ``template``.

    ``cache_dir`` (default ``<template dir>/.build/preflight``) keeps the wheel resolutions.
    """
    template = Path(template)
    selected = list(checks or CHECKS)
    for key in selected:
        if key not in CHECKS:
            raise ValueError(f"unknown check {key!r} (known: {', '.join(CHECKS)})")
    project = Project(template, function, parameter_overrides)
    cache = Path(cache_dir) if cache_dir else template.resolve().parent / ".build" / "preflight"
    lock_path = project.lock_path()
    lock = read_lock(lock_path) if lock_path else None
    results = []
    for key in CHECKS:
        if key not in selected:
            continue
        if key == "python":
            results.append(check_python(project, lock))
        elif key == "wheels":
            results.append(check_wheels(project, lock, cache, offline=offline))
        elif key == "files":
            results.append(check_files(project))
        elif key == "context":
            results.append(check_context(project, context_fail_mb, context_warn_mb))
        elif key == "paths":
            results.append(check_paths(project))
    return Report(project.fn.logical_id, template, project.base_image, project.architectures, results)
