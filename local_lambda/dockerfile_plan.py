"""Read a Lambda function's Dockerfile into a build plan that can run without Docker.

The Dockerfile is parsed with the ``dockerfile`` package (BuildKit's own parser compiled
for Python), never with regexes, and each instruction is interpreted the way the
``public.ecr.aws/lambda/python`` base image gives it meaning:

* ``FROM public.ecr.aws/lambda/python:<X.Y>[...] [AS name]``: the Python minor version.
  Multi-stage builds: ``FROM <earlier stage>`` starts from that stage's task root, and
  ``COPY --from=<earlier stage> /var/task/... /var/task/...`` copies out of it; every stage
  uses the same Python (one runtime interpreter), the last stage is the function.
* ``COPY``/``ADD`` of local files: the same files (filtered by ``.dockerignore``) into the
  staged task root; ``${LAMBDA_TASK_ROOT}`` (and ``ENV``/``ARG`` values) are expanded.
* ``RUN``: only commands with a faithful local equivalent are accepted, chained with ``&&``:
  ``pip install ... -r <file> --target <dir>``, ``python -m compileall ...``, ``rm`` inside
  the task root, and ``python -m <module> [args]`` (run by the image's Python in the task root,
  which is where ``python -m`` finds the module and the installed dependencies, as in the image).
  Anything else fails loudly instead of being silently skipped.
* ``ENV``: becomes part of the function's environment (as in the image).
* ``CMD``: the handler (the base image's entrypoint takes it as its argument).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple, Union

import dockerfile

#: The base images the plan understands, and where they put the task root.
LAMBDA_PYTHON_IMAGES = ("public.ecr.aws/lambda/python", "amazon/aws-lambda-python")
IMAGE_TASK_ROOT = "/var/task"
IMAGE_RUNTIME_DIR = "/var/runtime"

#: ``pip install`` options accepted in a RUN line: option -> takes a value.
_PIP_OPTIONS = {
    "--no-cache-dir": False,
    "--require-hashes": False,
    "--disable-pip-version-check": False,
    "--no-warn-script-location": False,
    "--root-user-action": True,
    "--progress-bar": True,
    "--only-binary": True,
    "--no-binary": True,
    "--prefer-binary": False,
    "--no-deps": False,
    "--no-compile": False,
    "--compile": False,
    "--upgrade": False,
    "-U": False,
    "--quiet": False,
    "-q": False,
    "-qq": False,
    "--verbose": False,
    "-v": False,
    "--target": True,
    "-t": True,
    "--requirement": True,
    "-r": True,
    "--constraint": True,
    "-c": True,
}


class DockerfileError(ValueError):
    """The Dockerfile uses something that cannot be reproduced faithfully without Docker."""


@dataclass(frozen=True)
class CopyStep:
    sources: Tuple[str, ...]  # paths relative to the build context (may hold wildcards)
    dest: str  # absolute path inside the image, after expansion
    line: int
    from_stage: Optional[int] = None  # COPY --from: the index of an earlier stage; sources are its absolute paths


@dataclass(frozen=True)
class PipInstallStep:
    requirements: Tuple[str, ...]  # absolute image paths of -r files
    constraints: Tuple[str, ...]
    target: str  # absolute image path
    options: Tuple[str, ...]  # the other pip options, passed through unchanged
    compile_bytecode: bool
    line: int


@dataclass(frozen=True)
class CompileallStep:
    args: Tuple[str, ...]  # compileall options and absolute image paths
    line: int


@dataclass(frozen=True)
class RemoveStep:
    paths: Tuple[str, ...]  # absolute image paths
    recursive: bool
    force: bool
    line: int


@dataclass(frozen=True)
class PythonModuleStep:
    module: str  # python -m <module>, found in the task root (the working directory)
    args: Tuple[str, ...]  # passed unchanged, except absolute task-root paths (mapped when staged)
    line: int


Step = Union[CopyStep, PipInstallStep, CompileallStep, RemoveStep, PythonModuleStep]


@dataclass
class Stage:
    """One ``FROM`` section. ``parent`` is the index of the stage it starts from (None: the base image)."""

    index: int
    name: Optional[str]
    parent: Optional[int]
    line: int
    steps: List[Step] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)  # ENV instructions, inherited from the parent stage
    cmd: Optional[List[str]] = None
    workdir: str = IMAGE_TASK_ROOT

    @property
    def label(self) -> str:
        return self.name or f"stage {self.index}"


@dataclass
class BuildPlan:
    base_image: str
    python_version: str  # "3.12"
    stages: List[Stage] = field(default_factory=list)  # in Dockerfile order; the last one is the function
    warnings: List[str] = field(default_factory=list)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    @property
    def steps(self) -> List[Step]:
        """The function stage's own steps (what it adds on top of its parent stages)."""
        return self.final.steps

    @property
    def env(self) -> Dict[str, str]:
        return self.final.env

    @property
    def cmd(self) -> Optional[List[str]]:
        return self.final.cmd

    @property
    def workdir(self) -> str:
        return self.final.workdir

    @property
    def handler(self) -> Optional[str]:
        return self.cmd[0] if self.cmd else None

    def lineage(self, stage: Optional[Stage] = None) -> List[Stage]:
        """``stage`` (default: the function) and the stages it starts from, base first."""
        chain = [stage or self.final]
        while chain[0].parent is not None:
            chain.insert(0, self.stages[chain[0].parent])
        return chain

    def all_steps(self) -> List[Step]:
        """Every step of every stage, in Dockerfile order."""
        return [step for stage in self.stages for step in stage.steps]


def python_version_from_image(image: str) -> str:
    """``public.ecr.aws/lambda/python:3.12`` -> ``"3.12"`` (also ``3.12-arm64``, ``3.12.2024...``)."""
    name, _, tag = image.partition("@")[0].rpartition(":") if ":" in image else (image, "", "")
    if name not in LAMBDA_PYTHON_IMAGES:
        raise DockerfileError(
            f"FROM {image}: only the AWS Lambda Python base images ({', '.join(LAMBDA_PYTHON_IMAGES)}) "
            "can be staged without Docker"
        )
    match = re.match(r"^(\d+)\.(\d+)(?:$|[.-])", tag)
    if not match:
        raise DockerfileError(f"FROM {image}: the tag must start with the Python version, e.g. python:3.12")
    return f"{match.group(1)}.{match.group(2)}"


_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, variables: Dict[str, str], line: int) -> str:
    """Docker-style ``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` / ``${VAR:+alt}`` expansion."""

    def repl(match: "re.Match[str]") -> str:
        name = match.group("braced") or match.group("bare")
        value = variables.get(name)
        op = match.group("op")
        if op == "-":
            return value if value else match.group("word")
        if op == "+":
            return match.group("word") if value else ""
        if value is None:
            raise DockerfileError(f"line {line}: ${name} is not defined (no ENV/ARG sets it)")
        return value

    return _VAR.sub(repl, text)


def _split_and_chain(command: str, line: int) -> List[List[str]]:
    """Split a shell-form RUN command into its ``&&``-chained simple commands."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: List[List[str]] = [[]]
    for token in lexer:
        if token == "&&":
            commands.append([])
        elif token and set(token) <= set("|;&<>()"):
            raise DockerfileError(
                f"line {line}: RUN uses the shell operator {token!r}; only commands chained with && "
                "can be reproduced without Docker"
            )
        else:
            commands[-1].append(token)
    if any(not c for c in commands):
        raise DockerfileError(f"line {line}: empty command in RUN")
    return commands


def _parse_pip(args: List[str], line: int) -> PipInstallStep:
    requirements: List[str] = []
    constraints: List[str] = []
    target: Optional[str] = None
    options: List[str] = []
    compile_bytecode = True
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in _PIP_OPTIONS:
            if arg.startswith("-"):
                raise DockerfileError(f"line {line}: pip option {arg} is not supported by local staging")
            raise DockerfileError(
                f"line {line}: pip installs {arg!r} directly; install only from a locked requirements "
                "file (-r requirements.txt) so the image and local runs get the same pins"
            )
        if _PIP_OPTIONS[name]:
            if eq:
                value = inline
            else:
                i += 1
                if i >= len(args):
                    raise DockerfileError(f"line {line}: pip option {name} needs a value")
                value = args[i]
            if name in ("--target", "-t"):
                target = value
            elif name in ("--requirement", "-r"):
                requirements.append(value)
            elif name in ("--constraint", "-c"):
                constraints.append(value)
            else:
                options.append(f"{name}={value}")
        elif name == "--no-compile":
            compile_bytecode = False
        elif name in ("--require-hashes", "--compile"):
            pass  # always applied locally
        else:
            options.append(name)
        i += 1
    if not requirements:
        raise DockerfileError(f"line {line}: pip install without -r <requirements file>")
    if target is None:
        raise DockerfileError(
            f"line {line}: pip install without --target; the Lambda base image needs "
            '--target "${LAMBDA_TASK_ROOT}" for the function to import its dependencies'
        )
    return PipInstallStep(tuple(requirements), tuple(constraints), target, tuple(options), compile_bytecode, line)


def _interpret_run(words: List[str], line: int, workdir: str) -> Step:
    def absolute(path: str) -> str:
        return str(PurePosixPath(workdir, path))

    prog = PurePosixPath(words[0]).name
    rest = words[1:]
    if prog in ("python", "python3") or re.fullmatch(r"python3\.\d+", prog):
        if rest[:2] == ["-m", "pip"]:
            prog, rest = "pip", rest[2:]
        elif rest[:2] == ["-m", "compileall"]:
            args = []
            for arg in rest[2:]:
                if arg.startswith("-"):
                    if arg in ("-d", "-s", "-p", "-x", "-i", "-e", "-r", "-j", "--invalidation-mode"):
                        raise DockerfileError(f"line {line}: compileall option {arg} is not supported")
                    args.append(arg)
                else:
                    args.append(absolute(arg))
            return CompileallStep(tuple(args), line)
        elif rest[:1] == ["-m"] and len(rest) > 1 and re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", rest[1]):
            return PythonModuleStep(rest[1], tuple(rest[2:]), line)
        else:
            raise DockerfileError(
                f"line {line}: RUN {' '.join(words)!r}: local staging runs Python only as 'python -m <module> "
                "[args]' (the module in the task root), like the image's 'python -m' in /var/task"
            )
    if prog in ("pip", "pip3") or re.fullmatch(r"pip3\.\d+", prog):
        if not rest or rest[0] != "install":
            raise DockerfileError(f"line {line}: only 'pip install' is supported, not {' '.join(words)!r}")
        step = _parse_pip(rest[1:], line)
        return PipInstallStep(
            tuple(absolute(r) for r in step.requirements),
            tuple(absolute(c) for c in step.constraints),
            absolute(step.target),
            step.options,
            step.compile_bytecode,
            line,
        )
    if prog == "rm":
        flags = "".join(w[1:] for w in rest if w.startswith("-") and not w.startswith("--"))
        long_flags = [w for w in rest if w.startswith("--")]
        if set(flags) - set("rRf") or set(long_flags) - {"--recursive", "--force"}:
            raise DockerfileError(f"line {line}: unsupported rm options in {' '.join(words)!r}")
        paths = [absolute(w) for w in rest if not w.startswith("-")]
        return RemoveStep(
            tuple(paths),
            recursive=bool(set(flags) & set("rR")) or "--recursive" in long_flags,
            force="f" in flags or "--force" in long_flags,
            line=line,
        )
    raise DockerfileError(
        f"line {line}: RUN {' '.join(words)!r} cannot be reproduced without Docker. Supported: "
        "'pip install ... -r <file> --target <dir>', 'python -m compileall <paths>', 'rm <paths>', "
        "'python -m <module> [args]', chained with &&"
    )


def _stage_index(stages: List[Stage], ref: str) -> Optional[int]:
    """An earlier stage named (case-insensitively, as Docker does) or numbered ``ref``."""
    for stage in stages:
        if (stage.name is not None and stage.name.lower() == ref.lower()) or ref == str(stage.index):
            return stage.index
    return None


def _start_stage(plan: Optional[BuildPlan], value: List[str], variables: Dict[str, str],
                 global_args: Dict[str, str], line: int) -> Tuple[BuildPlan, Stage]:
    """A ``FROM`` line: a new stage on the base image or on an earlier stage."""
    if len(value) not in (1, 3) or (len(value) == 3 and value[1].upper() != "AS"):
        raise DockerfileError(f"line {line}: FROM must be 'FROM <image> [AS <name>]'")
    ref = expand(value[0], variables, line)
    name = value[2] if len(value) == 3 else None
    stages = plan.stages if plan is not None else []
    if name is not None and _stage_index(stages, name) is not None:
        raise DockerfileError(f"line {line}: a stage named {name!r} already exists")
    parent = _stage_index(stages, ref)
    if parent is None:
        version = python_version_from_image(ref)
        if plan is None:
            plan = BuildPlan(base_image=ref, python_version=version)
        elif version != plan.python_version:
            raise DockerfileError(
                f"line {line}: FROM {ref}: every stage must use Python {plan.python_version} "
                f"(FROM {plan.base_image}); local staging runs them all with one interpreter"
            )
        stage = Stage(index=len(plan.stages), name=name, parent=None, line=line)
    else:
        assert plan is not None
        base = plan.stages[parent]
        stage = Stage(index=len(plan.stages), name=name, parent=parent, line=line, env=dict(base.env),
                      cmd=list(base.cmd) if base.cmd else None, workdir=base.workdir)
    plan.stages.append(stage)
    variables.clear()
    variables.update(global_args)
    # What the base image defines (public.ecr.aws/lambda/python Dockerfile), then inherited ENV.
    variables.update(LAMBDA_TASK_ROOT=IMAGE_TASK_ROOT, LAMBDA_RUNTIME_DIR=IMAGE_RUNTIME_DIR)
    variables.update(stage.env)
    return plan, stage


def _copy_step(plan: BuildPlan, stage: Stage, cmd: str, command, variables: Dict[str, str], line: int) -> CopyStep:
    from_stage: Optional[int] = None
    for flag in command.flags:
        if flag.startswith("--from="):
            ref = expand(flag.partition("=")[2], variables, line)
            from_stage = _stage_index(plan.stages[: stage.index], ref)
            if from_stage is None:
                raise DockerfileError(
                    f"line {line}: {cmd} --from={ref}: only an earlier stage of this Dockerfile can be "
                    "staged without Docker (not another image)"
                )
            continue
        if flag.startswith("--from") or flag.startswith("--link=false"):
            raise DockerfileError(f"line {line}: {cmd} {flag} is not supported by local staging")
        if not re.match(r"--(chown|chmod|link)\b", flag):
            raise DockerfileError(f"line {line}: {cmd} {flag} is not supported by local staging")
        plan.warnings.append(f"line {line}: {cmd} {flag} has no effect on a local task root")
    if command.heredocs:
        raise DockerfileError(f"line {line}: {cmd} with a heredoc is not supported")
    values = [expand(v, variables, line) for v in command.value]
    *sources, dest = values
    for src in sources:
        if re.match(r"^[a-z][a-z0-9+.-]*://", src) or (cmd == "ADD" and re.search(r"\.(tar|tgz|gz|bz2|xz|zip)$", src)):
            raise DockerfileError(f"line {line}: {cmd} {src}: only plain local files can be staged (use COPY)")
        if from_stage is not None and not src.startswith("/"):
            raise DockerfileError(f"line {line}: {cmd} --from: give the source as an absolute path "
                                  f"(e.g. ${{LAMBDA_TASK_ROOT}}/{src}), not {src!r}")
    dest_path = str(PurePosixPath(stage.workdir, dest)) + ("/" if dest.endswith("/") else "")
    return CopyStep(tuple(sources), dest_path, line, from_stage)


def parse(dockerfile_path: Union[str, Path]) -> BuildPlan:
    """Interpret a Dockerfile into a :class:`BuildPlan`; raise :class:`DockerfileError` when it can't."""
    if not Path(dockerfile_path).is_file():
        raise DockerfileError(f"Dockerfile {dockerfile_path} not found (or not a file)")
    commands = dockerfile.parse_file(str(dockerfile_path))
    variables: Dict[str, str] = {}
    global_args: Dict[str, str] = {}  # ARGs before the first FROM
    plan: Optional[BuildPlan] = None
    stage: Optional[Stage] = None
    for command in commands:
        cmd, line = command.cmd.upper(), command.start_line
        flags = [f for f in command.flags]
        if cmd == "ARG":
            for item in command.value:
                name, eq, default = item.partition("=")
                if name not in variables:
                    variables[name] = expand(default, variables, line) if eq else variables.get(name, "")
                if stage is None:
                    global_args[name] = variables[name]
            continue
        if cmd == "FROM":
            plan, stage = _start_stage(plan, list(command.value), variables, global_args, line)
            continue
        if plan is None or stage is None:
            raise DockerfileError(f"line {line}: {cmd} before FROM")
        if cmd == "ENV":
            values = list(command.value)
            for name, value in zip(values[::2], values[1::2]):
                value = expand(value, variables, line)
                variables[name] = value
                stage.env[name] = value
        elif cmd in ("COPY", "ADD"):
            stage.steps.append(_copy_step(plan, stage, cmd, command, variables, line))
        elif cmd == "RUN":
            if flags:
                raise DockerfileError(f"line {line}: RUN {' '.join(flags)} is not supported by local staging")
            if command.json:
                chains = [list(command.value)]
            else:
                chains = _split_and_chain(" ".join(command.value), line)
            for words in chains:
                words = [expand(w, variables, line) for w in words]
                stage.steps.append(_interpret_run(words, line, stage.workdir))
        elif cmd == "CMD":
            if command.json:
                stage.cmd = list(command.value)
            else:
                stage.cmd = shlex.split(" ".join(command.value))
        elif cmd == "WORKDIR":
            stage.workdir = str(PurePosixPath(stage.workdir, expand(command.value[0], variables, line)))
        elif cmd == "ENTRYPOINT":
            raise DockerfileError(
                f"line {line}: a custom ENTRYPOINT replaces the Lambda base image's runtime; "
                "local staging only supports the base image's entrypoint (set the handler with CMD)"
            )
        elif cmd in ("LABEL", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL", "MAINTAINER", "VOLUME"):
            plan.warnings.append(f"line {line}: {cmd} has no effect on a local run")
        elif cmd == "USER":
            plan.warnings.append(f"line {line}: USER is ignored; the local runtime runs as the current user")
        else:
            raise DockerfileError(f"line {line}: {cmd} is not supported by local staging")
    if plan is None:
        raise DockerfileError(f"{dockerfile_path}: no FROM instruction")
    for stage in plan.stages:
        if stage.workdir != IMAGE_TASK_ROOT:
            raise DockerfileError(
                f"WORKDIR {stage.workdir} ({stage.label}): the Lambda runtime starts in {IMAGE_TASK_ROOT} "
                "(LAMBDA_TASK_ROOT); local staging only supports that working directory"
            )
    if not plan.cmd:
        plan.warnings.append("no CMD: the handler must come from the template's ImageConfig.Command")
    return plan
