"""`make demo` installs only the ``local`` extra (pyproject.toml), while CI runs in the full
development venv: a third-party import added to local_lambda but missing from that extra would
pass CI and break the README's first command on a fresh machine. This checks, without a second
venv, that every third-party module local_lambda imports comes from a distribution that
``pip install -e '.[local]'`` installs (the extra's requirements and everything they require)."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support import REPO

PROJECT = "lambda-image-classifier"


def local_extra() -> list[Requirement]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [Requirement(r) for r in data["project"]["optional-dependencies"]["local"]]


def closure(requirements: list[Requirement]) -> set[str]:
    """Distributions (canonical names) installed for ``requirements``, following their own
    requirements (markers evaluated here, the extras asked for included)."""
    seen: set[str] = set()
    todo = [(r, "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        wanted = {(name, e) for e in requirement.extras} | {(name, "")}
        if all(key in seen for key in wanted):
            continue
        seen.update(wanted)
        for own in metadata.requires(requirement.name) or []:
            own = Requirement(own)
            todo.extend((own, e) for e in [""] + sorted(requirement.extras))
    return {name for name, _ in seen}


def third_party_imports() -> set[str]:
    """Top-level module names local_lambda imports (at module level or inside functions)."""
    names = set()
    for path in (REPO / "local_lambda").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"local_lambda", "__future__"}


def test_the_local_extra_provides_every_module_local_lambda_imports():
    installed = closure(local_extra())
    providers = metadata.packages_distributions()
    missing = {}
    for module in sorted(third_party_imports()):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & installed:
            missing[module] = sorted(dists) or ["(not installed at all)"]
    assert not missing, f"imported by local_lambda but not installed by '.[local]': {missing}"
    assert {"samcli", "dockerfile", "onnx"} <= third_party_imports()  # the scan sees the real imports


def test_the_full_extras_include_the_local_one():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("dev", "export"):
        assert any(Requirement(r).name == PROJECT and "local" in Requirement(r).extras for r in data[extra]), extra
