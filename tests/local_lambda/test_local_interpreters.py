"""Finding the FROM tag's Python the way users' machines offer it (PATH, pyenv, uv)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from local_lambda.interpreters import InterpreterNotFound, find_python


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def fake_python(path: Path, version: str) -> Path:
    return script(path, f'echo "{version} CPython {path}"')


def env_with(bin_dir: Path, **extra: str) -> dict:
    return {"PATH": str(bin_dir), **extra}


def test_python_on_path(tmp_path):
    exe = fake_python(tmp_path / "bin" / "python3.12", "3.12")
    found = find_python("3.12", env_with(tmp_path / "bin"), beside_python=False)
    assert found.executable == str(exe) and found.found_by == "python3.12 on PATH"


def test_inactive_pyenv_shim_is_skipped_for_pyenv_prefix(tmp_path):
    bin_dir = tmp_path / "bin"
    # The shim exists on PATH but the version is not activated, as with `pyenv global 3.11.7`.
    script(bin_dir / "python3.12", 'echo "pyenv: python3.12: command not found" >&2; exit 127')
    real = fake_python(tmp_path / "versions" / "3.12.4" / "bin" / "python3.12", "3.12")
    script(
        bin_dir / "pyenv",
        'case "$1" in\n'
        '  versions) printf "3.11.7\\n3.12.1\\n3.12.4\\n3.13.0\\n" ;;\n'
        f'  prefix) echo "{tmp_path}/versions/$2" ;;\n'
        "esac",
    )
    found = find_python("3.12", env_with(bin_dir), beside_python=False)
    assert found.executable == str(real)
    assert found.found_by == "pyenv (3.12.4)"  # the newest patch release first


def test_uv_python_find(tmp_path):
    real = fake_python(tmp_path / "uv-pythons" / "cpython-3.12" / "bin" / "python3.12", "3.12")
    script(tmp_path / "bin" / "uv", f'[ "$1 $2" = "python find" ] && echo "{real}"')
    found = find_python("3.12", env_with(tmp_path / "bin"), beside_python=False)
    assert found.executable == str(real) and found.found_by == "uv python find"


def test_explicit_override_must_be_the_right_version(tmp_path):
    wrong = fake_python(tmp_path / "py311", "3.11")
    with pytest.raises(InterpreterNotFound, match="Python 3.11"):
        find_python("3.12", env_with(tmp_path / "empty", LOCAL_LAMBDA_PYTHON=str(wrong)), beside_python=False)


def test_nothing_found_says_exactly_what_to_install(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InterpreterNotFound) as info:
        find_python("3.12", env_with(tmp_path / "empty"), why="by FROM public.ecr.aws/lambda/python:3.12", beside_python=False)
    message = str(info.value)
    assert "Python 3.12 is needed by FROM public.ecr.aws/lambda/python:3.12" in message
    assert "pyenv install 3.12" in message
    assert "uv python install 3.12" in message
    assert "LOCAL_LAMBDA_PYTHON" in message


def test_this_machine_has_the_image_python():
    found = find_python("3.12")
    assert Path(found.executable).exists()
    assert found.executable != sys.executable
