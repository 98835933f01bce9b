"""`.dockerignore` with Docker's semantics (last match wins, `**`, parent directories)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_lambda.dockerignore import DockerIgnore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project_ignore():
    return DockerIgnore.for_context(REPO / "predict_function", REPO / "predict_function" / "Dockerfile")


@pytest.mark.parametrize(
    "path, ignored",
    [
        ("requirements.txt", False),
        ("model/model.onnx", False),
        ("model/README.md", True),
        ("classifier/handler.py", False),
        ("classifier/sub/pkg/mod.py", False),
        ("classifier/__pycache__/handler.cpython-312.pyc", True),
        ("classifier/notes.txt", True),
        ("Dockerfile", True),
        ("requirements.in", True),
        (".venv/lib/x.py", True),
    ],
)
def test_project_dockerignore(project_ignore, path, ignored):
    assert project_ignore.ignored(path) is ignored


def test_semantics():
    ignore = DockerIgnore(["# comment", "", "*.log", "build/", "!build/keep.txt", "docs/**/*.md", "/tmp?"])
    assert ignore.ignored("a.log")
    assert not ignore.ignored("sub/a.log")  # `*` does not cross `/`
    assert ignore.ignored("build/x/y.bin")  # a parent directory matches
    assert not ignore.ignored("build/keep.txt")  # the later exception wins
    assert ignore.ignored("docs/readme.md") and ignore.ignored("docs/a/b/c.md")
    assert not ignore.ignored("docs/a/b/c.txt")
    assert ignore.ignored("tmp1") and not ignore.ignored("tmp12")


def test_dockerfile_specific_ignore_file_wins(tmp_path):
    (tmp_path / ".dockerignore").write_text("*.txt\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("*.md\n")
    ignore = DockerIgnore.for_context(tmp_path, tmp_path / "Dockerfile")
    assert ignore.ignored("a.md") and not ignore.ignored("a.txt")
