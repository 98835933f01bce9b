"""Read a function's configuration from a SAM template with SAM CLI's own providers.

``SamLocalStackProvider`` + ``SamFunctionProvider`` are what ``sam local invoke`` uses: they parse the
CloudFormation YAML (``!Ref``/``!Sub``/... tags), apply ``AWS::LanguageExtensions`` (as ``sam local
--language-extensions``) and ``Globals``, resolve parameters (defaults, overrides, pseudo parameters)
and make ``Metadata.DockerContext`` absolute.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple, Union

if TYPE_CHECKING:
    from .emulator import Emulator

logging.getLogger("samcli").setLevel(logging.ERROR)


class TemplateError(ValueError):
    pass


@dataclass
class FunctionConfig:
    logical_id: str
    function_name: str
    dockerfile: Path
    context: Path
    docker_tag: Optional[str]
    memory_mb: int
    timeout_s: int
    command: Optional[List[str]]  # ImageConfig.Command (overrides the Dockerfile's CMD)
    architectures: List[str]
    variables: Dict[str, Any] = field(default_factory=dict)  # template-resolved, before overrides
    sam_function: Any = None  # samcli.lib.providers.provider.Function

    @property
    def handler_override(self) -> Optional[str]:
        return self.command[0] if self.command else None

    @property
    def architecture(self) -> str:
        return (self.architectures or ["x86_64"])[0]

    def architecture_warning(self) -> Optional[str]:
        host = {"aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(), "x86_64")
        if self.architecture != host:
            return (
                f"{self.logical_id} is {self.architecture} in the template, but this machine is {host}: "
                f"running the {host} RIE with {host} wheels"
            )
        return None


def load_stacks(template: Union[str, Path], parameter_overrides: Optional[Mapping[str, str]] = None):
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    template = Path(template)
    if not template.is_file():
        raise TemplateError(f"template {template} not found")
    # language_extensions_enabled: AWS::LanguageExtensions (Fn::If in Cors/Auth/GatewayResponses, Fn::ForEach...)
    # is resolved first, as `sam local --language-extensions` (set in samconfig.toml) and CloudFormation do.
    stacks, _ = SamLocalStackProvider.get_stacks(str(template), parameter_overrides=dict(parameter_overrides or {}),
                                                 language_extensions_enabled=True)
    return stacks


def _functions(stacks) -> list:
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider

    return list(SamFunctionProvider(stacks, ignore_code_extraction_warnings=True).get_all())


def read_function(
    template: Union[str, Path],
    name: Optional[str] = None,
    parameter_overrides: Optional[Mapping[str, str]] = None,
    stacks=None,
) -> FunctionConfig:
    """The Image function ``name`` (logical id or FunctionName; the only one if omitted)."""
    stacks = stacks if stacks is not None else load_stacks(template, parameter_overrides)
    images = [f for f in _functions(stacks) if f.packagetype == "Image"]
    if name:
        chosen = [f for f in images if name in (f.name, f.function_id, f.functionname, f.full_path)]
    else:
        chosen = images
    if not chosen:
        known = ", ".join(f.name for f in images) or "none"
        raise TemplateError(f"no PackageType: Image function {name or ''} in {template} (Image functions: {known})")
    if len(chosen) > 1:
        raise TemplateError(f"{template} has several Image functions; name one of: {', '.join(f.name for f in chosen)}")
    fn = chosen[0]
    metadata = fn.metadata or {}
    if "DockerContext" not in metadata:
        raise TemplateError(f"{fn.name}: Metadata.DockerContext is missing (needed to stage the image)")
    context = Path(metadata["DockerContext"])
    if not context.is_absolute():
        context = Path(template).resolve().parent / context
    dockerfile = context / metadata.get("Dockerfile", "Dockerfile")
    image_config = fn.imageconfig or {}
    if image_config.get("EntryPoint"):
        raise TemplateError(f"{fn.name}: ImageConfig.EntryPoint replaces the Lambda runtime; not supported locally")
    workdir = image_config.get("WorkingDirectory")
    if workdir and workdir.rstrip("/") != "/var/task":
        raise TemplateError(f"{fn.name}: ImageConfig.WorkingDirectory {workdir} is not supported locally")
    env = fn.environment if isinstance(fn.environment, dict) else {}
    return FunctionConfig(
        logical_id=fn.name,
        function_name=fn.functionname,
        dockerfile=dockerfile,
        context=context,
        docker_tag=metadata.get("DockerTag"),
        memory_mb=int(fn.memory or 128),
        timeout_s=int(fn.timeout or 3),
        command=list(image_config["Command"]) if image_config.get("Command") else None,
        architectures=list(fn.architectures or ["x86_64"]),
        variables=dict(env.get("Variables") or {}),
        sam_function=fn,
    )


def function_environment(
    fn: FunctionConfig,
    handler: str,
    env_vars: Optional[Mapping[str, Any]] = None,
    shell_env: Optional[Mapping[str, str]] = None,
) -> Tuple[Dict[str, str], List[str]]:
    """The environment ``sam local invoke`` gives the function, and warnings.

    ``env_vars`` is the ``--env-vars`` JSON: ``{"Parameters": {...}, "<Function>": {...}}``; the
    function's own entry wins over ``Parameters`` (samcli LocalLambdaRunner._make_env_vars). As in SAM,
    only variables declared in the template are set, with the shell's value (``shell_env``) over the
    template's and the JSON's over both; AWS credentials are always fake placeholders.
    """
    from samcli.local.lambdafn.env_vars import EnvironmentVariables

    env_vars = dict(env_vars or {})
    for key, value in env_vars.items():
        if not isinstance(value, dict):
            raise TemplateError(f"--env-vars: {key} must map variable names to values")
    overrides: Dict[str, Any] = dict(env_vars.get("Parameters", {}))
    sam_fn = fn.sam_function
    keys = [fn.logical_id, fn.function_name] + ([sam_fn.function_id, sam_fn.full_path] if sam_fn is not None else [])
    specific: Dict[str, Any] = {}
    for key in keys:
        if key in env_vars:
            specific = dict(env_vars[key])
            break
    overrides.update(specific)
    warnings = [
        f"--env-vars: {name} is not declared in the template's Environment.Variables for {fn.logical_id}; "
        "ignored (as sam local does)"
        for name in specific
        if name not in fn.variables
    ]
    resolved = EnvironmentVariables(
        fn.logical_id,
        fn.memory_mb,
        fn.timeout_s,
        handler,
        variables=fn.variables,
        shell_env_values=dict(shell_env if shell_env is not None else os.environ),
        override_values=overrides,
        aws_creds={},
    ).resolve()
    return resolved, warnings


def function_emulator(
    fn: FunctionConfig,
    staged: Any,
    env_vars: Optional[Mapping[str, Any]] = None,
    shell_env: Optional[Mapping[str, str]] = None,
    extra_env: Optional[Mapping[str, str]] = None,
    **emulator_options: Any,
) -> Tuple[Emulator, List[str]]:
    """An (unstarted) Emulator for ``fn`` on its staged task root (a :class:`StageResult`), with the
    environment ``sam local invoke`` would give it, and that environment's warnings.

    ``extra_env`` is added as is (test hooks); ``emulator_options`` go to :class:`Emulator`
    (e.g. ``timeout_s`` to override the template's, ``rie_log_level``, ``log_sink``).
    """
    from .emulator import Emulator

    handler = fn.handler_override or staged.handler
    if not handler:
        raise TemplateError(f"{fn.logical_id}: no handler (Dockerfile CMD or ImageConfig.Command)")
    env, warnings = function_environment(fn, handler, env_vars, shell_env=shell_env)
    env.update(extra_env or {})
    options = {"memory_mb": fn.memory_mb, "timeout_s": fn.timeout_s, **emulator_options}
    emulator = Emulator(staged.task_root, handler=handler, env=env, runtime_python=staged.runtime_python,
                        function_name=fn.logical_id, image_env=staged.image_env, **options)
    return emulator, warnings
