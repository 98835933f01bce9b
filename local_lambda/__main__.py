"""``python -m local_lambda {lint,stage,invoke,start-api,preflight}``: sam build / local invoke / start-api without Docker, and pre-deploy checks."""

from __future__ import annotations

import argparse
import atexit
import json
import signal
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import lint as lint_mod
from .apigw import ApiServer, EmulatorRunner, build_api, gateway_responses, require_loopback, stderr_sink
from .cpu_quota import CpuQuota
from .emulator import Emulator, EmulatorError, check_payload_size
from .interpreters import InterpreterNotFound
from .memory_limit import MIB, MemoryLimit
from .stage import StageError, StageResult, stage
from .template import FunctionConfig, TemplateError, function_emulator, load_stacks, read_function


def _log(message: str) -> None:
    print(f"[local_lambda] {message}", file=sys.stderr, flush=True)


def _parameters(values: Optional[List[str]]) -> Dict[str, str]:
    """``--parameter-overrides`` parsed by SAM CLI's own option type: ``Key=Value``,
    ``ParameterKey=K,ParameterValue=V``, quoted values (``Key="a b"``), ``file://params.yaml``."""
    import click
    from samcli.cli.types import CfnParameterOverridesType

    if not values:
        return {}
    try:
        return dict(CfnParameterOverridesType().convert(tuple(values), None, None))
    except click.BadParameter as exc:
        raise ValueError(f"--parameter-overrides: {exc.message}") from exc


def _split_function(args) -> None:
    """``--parameter-overrides A=1 PredictFunction``: a trailing word that is no override is the function.

    The option takes every word up to the next option (as SAM CLI's), so a positional function name after
    it would be read as an override; SAM CLI refuses that, here it is taken as the function when none was given.
    """
    values = getattr(args, "parameter_overrides", None)
    if values and getattr(args, "function", "given") is None:
        last = values[-1]
        if "=" not in last and not last.startswith("file://"):
            args.function = values.pop()


def _build_dir(args, template: Path) -> Path:
    return Path(args.build_dir) if args.build_dir else template.resolve().parent / ".build" / "local_lambda"


def _stage_function(args, fn: FunctionConfig, template: Path) -> StageResult:
    build_dir = _build_dir(args, template)
    manifest = build_dir / fn.logical_id / "stage.json"
    if getattr(args, "skip_stage", False) and manifest.is_file():
        return StageResult.load(manifest)
    result = stage(fn.dockerfile, fn.context, build_dir=build_dir, function_name=fn.logical_id, lint=not args.no_lint)
    _log(
        f"staged {fn.logical_id} in {result.seconds:.1f}s -> {result.task_root} "
        f"(Python {result.python_version}, deps cache {'n/a' if result.deps_cache_hit is None else 'hit' if result.deps_cache_hit else 'miss'})"
    )
    return result


def _emulator(args, fn: FunctionConfig, staged: StageResult, env_vars: Dict[str, Any], log_sink=None) -> Emulator:
    emulator, warnings = function_emulator(fn, staged, env_vars, rie_log_level=args.rie_log_level, log_sink=log_sink)
    warning = fn.architecture_warning()
    for message in warnings + ([warning] if warning else []):
        _log(f"warning: {message}")
    if args.lambda_cpu:
        emulator.cpu_quota = _lambda_cgroup(fn, CpuQuota, "--lambda-cpu", "a CPU quota", "cpu",
                                            f"Lambda's CPU time at {fn.memory_mb} MB")
    if args.lambda_memory:
        emulator.memory_limit = _lambda_cgroup(fn, MemoryLimit, "--lambda-memory", "a memory limit", "memory",
                                               "a runtime that needs more is killed, as on Lambda")
    return emulator


def _lambda_cgroup(fn: FunctionConfig, kind, flag: str, what: str, controller: str, effect: str):
    """Lambda's CPU time or memory for the function's memory size (``kind``: CpuQuota or MemoryLimit),
    or an error that says why there is none. Both use one group name: on cgroup v2 the RIE is in one group."""
    group, note = kind.create(fn.memory_mb, name=f"local-lambda-{fn.logical_id}")
    if group is None:
        raise EmulatorError(f"{flag}: cannot set {what} here ({note}); it needs a writable cgroup "
                            f"{controller} controller (e.g. run as root)")
    atexit.register(group.close)  # once the emulator's processes are gone
    _log(f"{fn.logical_id}: {note} ({effect})")
    return group


class InputError(ValueError):
    """An input file (event, --env-vars) that cannot be used; said in one line, before any staging."""


def _read_json(option: str, path: str) -> str:
    """The text of a JSON file given on the command line ('-': stdin), checked to be JSON."""
    if path == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(path).read_text()
        except IsADirectoryError:
            raise InputError(f"{option} {path}: is a directory, not a JSON file") from None
        except FileNotFoundError:
            raise InputError(f"{option} {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{option} {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise InputError(f"{option} {path}: not valid JSON: {exc}") from None
    return text


def _env_vars(path: Optional[str]) -> Dict[str, Any]:
    if not path:
        return {}
    data = json.loads(_read_json("--env-vars", path))
    if not isinstance(data, dict):
        raise TemplateError(f"--env-vars {path}: expected a JSON object")
    return data


def cmd_lint(args) -> int:
    dockerfile = Path(args.dockerfile) if args.dockerfile else read_function(
        args.template, args.function, _parameters(args.parameter_overrides)).dockerfile
    findings = lint_mod.lint_dockerfile(dockerfile, fail_on="none")
    for finding in findings:
        print(finding)
    worst = max((lint_mod.LEVELS.index(f.level) for f in findings if f.level in lint_mod.LEVELS), default=-1)
    if not findings:
        print(f"{dockerfile}: hadolint found nothing")
    return 1 if worst >= lint_mod.LEVELS.index(args.failure_threshold) else 0


def cmd_stage(args) -> int:
    template = Path(args.template)
    if args.dockerfile:
        build_dir = Path(args.build_dir) if args.build_dir else Path(".build") / "local_lambda"
        result = stage(args.dockerfile, args.context, build_dir=build_dir, function_name=args.function or "function",
                       lint=not args.no_lint)
        _log(f"staged in {result.seconds:.1f}s -> {result.task_root}")
    else:
        fn = read_function(template, args.function, _parameters(args.parameter_overrides))
        result = _stage_function(args, fn, template)
    print(result.task_root)
    return 0


def cmd_invoke(args) -> int:
    template = Path(args.template)
    # the inputs first: a missing or malformed file, or an event Lambda would refuse, fails before staging
    event = (_read_json("--event", args.event) if args.event else "{}").encode()
    check_payload_size(event, f"--event {args.event}")
    env_vars = _env_vars(args.env_vars)
    fn = read_function(template, args.function, _parameters(args.parameter_overrides))
    staged = _stage_function(args, fn, template)
    emulator = _emulator(args, fn, staged, env_vars, log_sink=stderr_sink)
    with emulator:
        result = emulator.invoke_raw(event)
        memory = emulator.runtime_memory_mb()
    sys.stdout.write(result.text + "\n")
    sys.stdout.flush()
    _log(
        f"cold start (RIE start -> first response) {emulator.cold_start_s * 1000:.0f} ms, "
        f"runtime peak RSS {memory.get('peak_rss', 0):.0f} MiB of {fn.memory_mb} MB"
        + _memory_limit_summary(emulator.memory_limit)
    )
    return 0


def _memory_limit_summary(limit: Optional[MemoryLimit]) -> str:
    """``, cgroup peak 212 MiB, OOM kills 0`` for --lambda-memory (RIE + runtime, as Lambda's Max Memory Used)."""
    if limit is None:
        return ""
    peak, kills = limit.peak_bytes(), limit.oom_kills()
    summary = "" if peak is None else f", cgroup peak {peak / MIB:.0f} MiB"
    return summary + ("" if kills is None else f", OOM kills {kills}")


def cmd_start_api(args) -> int:
    require_loopback(args.host)
    template = Path(args.template)
    env_vars = _env_vars(args.env_vars)
    stacks = load_stacks(template, _parameters(args.parameter_overrides))
    api = build_api(stacks, cwd=str(template.resolve().parent))
    factories = {}
    for name in sorted({route.function_name for route in api.routes}):
        fn = read_function(template, name, stacks=stacks)
        staged = _stage_function(args, fn, template)
        factories[name] = (lambda fn=fn, staged=staged: _emulator(args, fn, staged, env_vars, log_sink=stderr_sink))
    runner = EmulatorRunner(factories)
    server = ApiServer(api, runner, host=args.host, port=args.port, responses=gateway_responses(stacks))
    runner.start_all()
    for method, path, function, event_type in server.routes():
        _log(f"Mounted {function} at {server.url}{path} [{method}] ({event_type})")
    _log("one warm runtime per function serves every request; Ctrl+C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_preflight(args) -> int:
    from .preflight import run_preflight

    checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks else None
    report = run_preflight(
        args.template,
        args.function,
        _parameters(args.parameter_overrides),
        cache_dir=args.cache_dir,
        checks=checks,
        context_fail_mb=args.context_fail_mb,
        context_warn_mb=args.context_warn_mb,
        offline=args.offline,
    )
    print(report.format(verbose=args.verbose))
    return 0 if report.ok else 1


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_lambda", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, function=True):
        if function:
            p.add_argument("function", nargs="?", help="function logical id (default: the template's only Image function)")
        p.add_argument("-t", "--template", default="template.yaml", help="SAM template (default: template.yaml)")
        p.add_argument("--parameter-overrides", nargs="+", action="extend", metavar="OVERRIDE",
                       help='template parameters, as sam: Key=Value, ParameterKey=K,ParameterValue=V, Key="a b"')
        p.add_argument("--build-dir", help="where staged roots live (default: <template dir>/.build/local_lambda)")
        p.add_argument("--no-lint", action="store_true", help="skip hadolint before staging")

    def runtime(p):
        p.add_argument("-n", "--env-vars", help='JSON: {"Parameters": {...}, "<Function>": {"VAR": "value"}}')
        p.add_argument("--skip-stage", action="store_true", help="reuse the last staged task root as is")
        p.add_argument("--rie-log-level", default="error", help="RIE log level (sam local uses error)")
        p.add_argument("--lambda-cpu", action="store_true",
                       help="give the function only the CPU time Lambda gives its MemorySize (MemorySize/1769 "
                       "CPUs, a cgroup CPU quota; needs a writable cgroup cpu controller, e.g. root)")
        p.add_argument("--lambda-memory", action="store_true",
                       help="kill the runtime when the function uses more than its MemorySize, as Lambda does "
                       "(a cgroup memory limit, no swap; needs a writable cgroup memory controller, e.g. root)")

    p = sub.add_parser("lint", help="hadolint the function's Dockerfile")
    common(p)
    p.add_argument("--dockerfile", help="lint this Dockerfile instead of the template's")
    p.add_argument("--failure-threshold", default="error", choices=lint_mod.LEVELS + ("none",))
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("stage", help="build the task root from the Dockerfile (sam build, without Docker)")
    common(p)
    p.add_argument("--dockerfile", help="stage this Dockerfile instead of the template's function")
    p.add_argument("--context", help="build context for --dockerfile (default: its folder)")
    p.set_defaults(func=cmd_stage)

    p = sub.add_parser("invoke", help="invoke once under the Lambda RIE (sam local invoke)")
    common(p)
    runtime(p)
    p.add_argument("-e", "--event", help="event JSON file ('-' for stdin; default {})")
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser("start-api", help="serve the template's Api routes (sam local start-api)")
    common(p, function=False)
    runtime(p)
    p.add_argument("-p", "--port", type=int, default=3000)
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.set_defaults(func=cmd_start_api)

    p = sub.add_parser("preflight", help="catch the classic deploy failures before sam deploy (exit 1 if any check fails)")
    p.add_argument("function", nargs="?", help="function logical id (default: the template's only Image function)")
    p.add_argument("-t", "--template", default="template.yaml", help="SAM template (default: template.yaml)")
    p.add_argument("--parameter-overrides", nargs="+", action="extend", metavar="OVERRIDE",
                   help="template parameters, as sam (Architecture=arm64 checks only arm64)")
    p.add_argument("--checks", help="comma-separated subset of python,wheels,files,context,paths (default: all)")
    p.add_argument("--context-fail-mb", type=float, default=500.0, help="fail above this build-context size (default 500)")
    p.add_argument("--context-warn-mb", type=float, default=100.0, help="warn above this build-context size (default 100)")
    p.add_argument("--cache-dir", help="wheel-resolution cache (default: <template dir>/.build/preflight)")
    p.add_argument("--offline", action="store_true", help="skip resolving the pins against the package index")
    p.add_argument("-v", "--verbose", action="store_true", help="also print what each check looked at")
    p.set_defaults(func=cmd_preflight)

    args = parser.parse_args(argv)
    _split_function(args)
    # SIGTERM and SIGHUP (the terminal closed) unwind like Ctrl+C, so the RIE and runtime processes (in their
    # own session, so the terminal's SIGHUP never reaches them) are stopped and the --lambda-cpu/--lambda-memory
    # cgroups removed.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))
    try:
        return args.func(args)
    except (StageError, TemplateError, EmulatorError, InterpreterNotFound, lint_mod.LintError, ValueError) as exc:
        print(f"local_lambda: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
