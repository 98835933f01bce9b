"""Staging a task root from a fixture Dockerfile: COPY, .dockerignore, pip --target with hashes, compileall, cache."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import textwrap
import zipfile
from pathlib import Path

import pytest

from local_lambda import Emulator, StageError, stage
from local_lambda.lint import LintError, lint_dockerfile

REPO = Path(__file__).resolve().parents[2]

DOCKERFILE = """
FROM public.ecr.aws/lambda/python:3.12
ENV GREETING=hello DATA_DIR=${LAMBDA_TASK_ROOT}/data
COPY requirements.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir --require-hashes --target "${LAMBDA_TASK_ROOT}" -r "${LAMBDA_TASK_ROOT}/requirements.txt" \\
    && rm "${LAMBDA_TASK_ROOT}/requirements.txt"
COPY data/*.json ${LAMBDA_TASK_ROOT}/data/
COPY app/ ${LAMBDA_TASK_ROOT}/app/
RUN python -m compileall -q "${LAMBDA_TASK_ROOT}/app"
CMD ["app.main.handler"]
"""

HANDLER = textwrap.dedent(
    """
    import json, os, tinydep

    def handler(event, context):
        with open(os.path.join(os.environ["DATA_DIR"], "a.json")) as f:
            data = json.load(f)
        return {"greeting": os.environ["GREETING"], "value": tinydep.VALUE, "data": data, "version": VERSION}

    VERSION = 1
    """
)


def make_wheel(directory: Path, value: int = 42) -> Path:
    """A minimal pure-Python wheel, so pip --require-hashes runs offline (PIP_NO_INDEX + PIP_FIND_LINKS)."""
    files = {
        "tinydep/__init__.py": f"VALUE = {value}\n".encode(),
        "tinydep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
        "tinydep-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinydep-1.0.dist-info/RECORD,,")
    files["tinydep-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "tinydep-1.0-py3-none-any.whl"
    wheel.write_bytes(buffer.getvalue())
    return wheel


@pytest.fixture
def context(tmp_path, monkeypatch):
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "data").mkdir()
    wheel = make_wheel(tmp_path / "wheels")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel.parent))
    (ctx / "Dockerfile").write_text(DOCKERFILE.lstrip())
    (ctx / ".dockerignore").write_text("**/__pycache__\napp/secret.txt\n")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (ctx / "requirements.txt").write_text(f"tinydep==1.0 --hash=sha256:{digest}\n")
    (ctx / "app" / "__init__.py").write_text("")
    (ctx / "app" / "main.py").write_text(HANDLER)
    (ctx / "app" / "old.py").write_text("")
    (ctx / "app" / "secret.txt").write_text("not for the image")
    (ctx / "data" / "a.json").write_text('{"a": 1}')
    (ctx / "data" / "b.txt").write_text("not copied: COPY data/*.json")
    return ctx


def test_stage_reproduces_the_dockerfile(context, tmp_path, cache_dir):
    result = stage(context / "Dockerfile", build_dir=tmp_path / "build", function_name="Fn", cache_dir=cache_dir)
    root = Path(result.task_root)
    assert root == (tmp_path / "build" / "Fn" / "task").resolve()
    assert result.handler == "app.main.handler"
    assert result.python_version == "3.12"
    assert result.image_env == {"GREETING": "hello", "DATA_DIR": "/var/task/data"}
    assert result.deps_cache_hit is False
    # pip installed with the image's Python and compiled the bytecode
    assert (root / "tinydep" / "__init__.py").read_text() == "VALUE = 42\n"
    assert (root / "tinydep" / "__pycache__" / "__init__.cpython-312.pyc").is_file()
    assert (root / "tinydep-1.0.dist-info").is_dir()
    # COPY, .dockerignore, the RUN rm and compileall
    assert not (root / "requirements.txt").exists()
    assert (root / "data" / "a.json").is_file() and not (root / "data" / "b.txt").exists()
    assert (root / "app" / "main.py").is_file()
    assert not (root / "app" / "secret.txt").exists()
    assert (root / "app" / "__pycache__" / "main.cpython-312.pyc").is_file()
    assert json.loads((root.parent / "stage.json").read_text())["handler"] == "app.main.handler"


def test_restage_after_a_code_change_reuses_the_installed_dependencies(context, tmp_path, cache_dir):
    first = stage(context / "Dockerfile", build_dir=tmp_path / "build", function_name="Fn", cache_dir=cache_dir, lint=False)
    (context / "app" / "main.py").write_text(HANDLER.replace("VERSION = 1", "VERSION = 2"))
    (context / "app" / "old.py").unlink()
    second = stage(context / "Dockerfile", build_dir=tmp_path / "build", function_name="Fn", cache_dir=cache_dir, lint=False)
    root = Path(second.task_root)
    assert second.deps_cache_hit is True and second.deps_dir == first.deps_dir
    assert "VERSION = 2" in (root / "app" / "main.py").read_text()
    assert not (root / "app" / "old.py").exists()  # the task root is rebuilt, not merged
    # dependencies are hard links into the cache, not fresh copies
    cached = Path(second.deps_dir) / "tinydep" / "__init__.py"
    assert os.stat(cached).st_ino == os.stat(root / "tinydep" / "__init__.py").st_ino

    # a changed lock is a new cache entry
    wheel = make_wheel(Path(os.environ["PIP_FIND_LINKS"]), value=7)
    (context / "requirements.txt").write_text(f"tinydep==1.0 --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}\n")
    third = stage(context / "Dockerfile", build_dir=tmp_path / "build", function_name="Fn", cache_dir=cache_dir, lint=False)
    assert third.deps_cache_hit is False and third.deps_dir != first.deps_dir
    assert (Path(third.task_root) / "tinydep" / "__init__.py").read_text() == "VALUE = 7\n"


def test_staged_root_runs_under_the_emulator(context, tmp_path, cache_dir):
    result = stage(context / "Dockerfile", build_dir=tmp_path / "build", function_name="Fn", cache_dir=cache_dir, lint=False)
    with Emulator(result.task_root, timeout_s=10) as fn:  # handler, runtime and ENV from stage.json
        assert fn.invoke({}) == {"greeting": "hello", "value": 42, "data": {"a": 1}, "version": 1}


MULTI_STAGE = """
FROM public.ecr.aws/lambda/python:3.12 AS deps
COPY requirements.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir --require-hashes --target "${LAMBDA_TASK_ROOT}" -r "${LAMBDA_TASK_ROOT}/requirements.txt" \\
    && rm "${LAMBDA_TASK_ROOT}/requirements.txt"
ENV GREETING=hello DATA_DIR=${LAMBDA_TASK_ROOT}/data

FROM deps AS data
COPY data/*.json ${LAMBDA_TASK_ROOT}/raw/
COPY tools/ ${LAMBDA_TASK_ROOT}/tools/
RUN python -m tools.convert raw ${LAMBDA_TASK_ROOT}/data

FROM deps
COPY --from=data ${LAMBDA_TASK_ROOT}/data/ ${LAMBDA_TASK_ROOT}/data/
COPY app/ ${LAMBDA_TASK_ROOT}/app/
CMD ["app.main.handler"]
"""

CONVERT = textwrap.dedent(
    """
    import json, os, sys, tinydep
    from pathlib import Path

    src, dest = Path(sys.argv[1]), Path(sys.argv[2])  # relative to the task root / absolute, mapped
    dest.mkdir(parents=True)
    for f in src.glob("*.json"):
        data = json.loads(f.read_text())
        data["by"] = [tinydep.VALUE, os.environ["GREETING"], os.getcwd() == os.environ["LAMBDA_TASK_ROOT"],
                      os.environ.get("SHELL_ONLY")]  # the caller's shell does not reach a build step
        (dest / f.name).write_text(json.dumps(data))
    """
)


def test_multi_stage_build(context, tmp_path, cache_dir, monkeypatch):
    """A build stage runs `python -m` in its task root with the dependencies; the function stage
    copies only its output; files shared by hard links with the cache are never written through."""
    (context / "Dockerfile").write_text(MULTI_STAGE.lstrip())
    (context / "tools").mkdir()
    (context / "tools" / "__init__.py").write_text("")
    (context / "tools" / "convert.py").write_text(CONVERT)
    monkeypatch.setenv("SHELL_ONLY", "secret")
    (context / "app" / "tinydep").mkdir()
    (context / "app" / "tinydep" / "__init__.py").write_text("VALUE = 'app'\n")
    result = stage(context / "Dockerfile", build_dir=tmp_path / "build", function_name="Fn", cache_dir=cache_dir)
    root = Path(result.task_root)
    assert result.deps_cache_hit is False and result.handler == "app.main.handler"
    assert result.image_env == {"GREETING": "hello", "DATA_DIR": "/var/task/data"}  # inherited from "deps"
    assert json.loads((root / "data" / "a.json").read_text()) == {"a": 1, "by": [42, "hello", True, None]}
    assert not (root / "raw").exists() and not (root / "tools").exists()  # build-stage files stay there
    assert (tmp_path / "build" / "Fn" / "stages" / "1-data" / "task" / "tools" / "convert.py").is_file()
    cached = Path(result.deps_dir) / "tinydep" / "__init__.py"
    assert os.stat(cached).st_ino == os.stat(root / "tinydep" / "__init__.py").st_ino
    with Emulator(result.task_root, timeout_s=10) as fn:
        assert fn.invoke({})["data"] == {"a": 1, "by": [42, "hello", True, None]}

    # COPY over a file that came from the dependency cache replaces it, the cache keeps its own
    (context / "Dockerfile").write_text(MULTI_STAGE.lstrip().replace("COPY app/", "COPY app/tinydep/ ${LAMBDA_TASK_ROOT}/tinydep/\nCOPY app/"))
    again = stage(context / "Dockerfile", build_dir=tmp_path / "build", function_name="Fn", cache_dir=cache_dir, lint=False)
    assert again.deps_cache_hit is True
    assert (Path(again.task_root) / "tinydep" / "__init__.py").read_text() == "VALUE = 'app'\n"
    assert cached.read_text() == "VALUE = 42\n"


def test_a_failing_build_stage_fails_the_stage(context, tmp_path, cache_dir):
    (context / "Dockerfile").write_text(MULTI_STAGE.lstrip())
    (context / "tools").mkdir()
    (context / "tools" / "__init__.py").write_text("")
    (context / "tools" / "convert.py").write_text("raise SystemExit('no data')\n")
    with pytest.raises(StageError, match=r"python -m tools.convert \(data\) failed(.|\n)*no data"):
        stage(context / "Dockerfile", build_dir=tmp_path / "build", function_name="Fn", cache_dir=cache_dir, lint=False)


def test_a_wrong_hash_fails_the_stage(context, tmp_path, cache_dir):
    (context / "requirements.txt").write_text("tinydep==1.0 --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(StageError, match="pip install"):
        stage(context / "Dockerfile", build_dir=tmp_path / "build", cache_dir=cache_dir, lint=False)


def test_unknown_run_fails_before_staging(context, tmp_path, cache_dir):
    (context / "Dockerfile").write_text(DOCKERFILE.replace("CMD", "RUN dnf install -y libgomp\nCMD"))
    with pytest.raises(StageError, match="cannot be reproduced without Docker"):
        stage(context / "Dockerfile", build_dir=tmp_path / "build", function_name="Fn", cache_dir=cache_dir, lint=False)
    assert not (tmp_path / "build" / "Fn" / "task").exists()


def test_missing_copy_source_fails(context, tmp_path, cache_dir):
    (context / "Dockerfile").write_text(DOCKERFILE.replace("COPY app/", "COPY model/ ${LAMBDA_TASK_ROOT}/model/\nCOPY app/"))
    with pytest.raises(StageError, match="COPY model/: not found"):
        stage(context / "Dockerfile", build_dir=tmp_path / "build", cache_dir=cache_dir, lint=False)


def test_hadolint_errors_fail_the_stage(context, tmp_path, cache_dir):
    (context / "Dockerfile").write_text(DOCKERFILE.replace("ENV GREETING", "MAINTAINER someone\nENV GREETING"))
    with pytest.raises(StageError, match="DL4000"):
        stage(context / "Dockerfile", build_dir=tmp_path / "build", cache_dir=cache_dir)


def test_project_dockerfile_lints_clean():
    findings = lint_dockerfile(REPO / "predict_function" / "Dockerfile")
    assert [f for f in findings if f.level in ("error", "warning")] == []


def test_lint_threshold(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM public.ecr.aws/lambda/python:3.12\nRUN pip install -r r.txt -t .\nCMD [\"a.b\"]\n")
    findings = lint_dockerfile(path, fail_on="error")  # DL3042 (pip cache) is a warning
    assert any(f.code == "DL3042" for f in findings)
    with pytest.raises(LintError, match="DL3042"):
        lint_dockerfile(path, fail_on="warning")
