"""``python -m local_lambda preflight``: the real project passes; each classic deploy fault, planted in a
temporary copy of the project, is caught by its check with a message that says what to change.

The wheels check asks the package index (PyPI through pip's configured index) once per pin and
architecture; answers are cached by content in ``.build/preflight`` of the repo, so later runs are offline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import REPO, copy_project

from local_lambda.preflight import (
    CHECKS,
    FAIL,
    PASS,
    WARN,
    platform_tags,
    run_preflight,
    scan_source,
)

CACHE = REPO / ".build" / "preflight"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project", files=("template.yaml", "pyproject.toml"))


def _write(path: Path, text: str) -> None:
    """Replace (never write through a hard link into the repo)."""
    if path.exists():
        path.unlink()
    path.write_text(text)


def _preflight(root: Path, *checks: str, **kwargs):
    return run_preflight(root / "template.yaml", cache_dir=CACHE, checks=checks or None, **kwargs)


def _only_failure(report, key: str) -> str:
    failed = [r.key for r in report.results if r.status == FAIL]
    assert failed == [key], report.format()
    return "\n".join(report.result(key).problems)


# -- the real project ---------------------------------------------------------------------------


def test_the_real_project_passes_every_check():
    report = run_preflight(REPO / "template.yaml", cache_dir=CACHE)
    assert report.ok, report.format()
    assert [r.key for r in report.results] == list(CHECKS)
    assert all(r.status == PASS for r in report.results), report.format()
    assert report.architectures == ["x86_64", "arm64"]  # the Architecture parameter's AllowedValues
    wheels = "\n".join(report.result("wheels").details)
    assert "onnxruntime-1.32.0-cp312-cp312-manylinux_2_28_aarch64.whl" in wheels
    assert "numpy-2.5.5-cp312-cp312-manylinux_2_27_x86_64" in wheels


def test_cli_prints_a_table_and_exits_zero():
    proc = subprocess.run([sys.executable, "-m", "local_lambda", "preflight", "--cache-dir", str(CACHE)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for title in ("Python version", "wheels", "COPYed", "build context size", "current directory"):
        assert title in proc.stdout
    assert proc.stdout.count("PASS") == 5


def test_cli_exits_nonzero_on_a_failure(project):
    _write(project / "predict_function" / "Dockerfile",
           (REPO / "predict_function" / "Dockerfile").read_text().replace("COPY --from=model", "# COPY --from=model"))
    proc = subprocess.run([sys.executable, "-m", "local_lambda", "preflight", "-t", str(project / "template.yaml"),
                           "--checks", "files", "--cache-dir", str(CACHE)],
                          cwd=project, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout and "MODEL_PATH" in proc.stdout


def test_platform_tags_cover_manylinux_up_to_glibc_2_34_and_never_musl():
    arm = platform_tags("aarch64")
    assert arm[0] == "manylinux_2_34_aarch64" and "manylinux_2_17_aarch64" in arm and "manylinux2014_aarch64" in arm
    assert "manylinux_2_35_aarch64" not in arm and "manylinux_2_16_aarch64" not in arm
    x86 = platform_tags("x86_64")
    assert {"manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(x86)
    assert not any("musllinux" in t or t.startswith("linux_") for t in arm + x86)


# -- 1. Python mismatch -------------------------------------------------------------------------


def test_from_python_3_11_against_a_lock_for_3_12(project):
    dockerfile = project / "predict_function" / "Dockerfile"
    _write(dockerfile, dockerfile.read_text().replace("lambda/python:3.12", "lambda/python:3.11"))
    message = _only_failure(_preflight(project, "python"), "python")
    assert "runs Python 3.11" in message and "locked for Python 3.12" in message
    assert "Change FROM to public.ecr.aws/lambda/python:3.12" in message
    assert "--python-version 3.11" in message  # or re-lock with the command from the lock's header


def test_a_non_lambda_base_image_is_named(project):
    dockerfile = project / "predict_function" / "Dockerfile"
    _write(dockerfile, dockerfile.read_text().replace("public.ecr.aws/lambda/python:3.12", "python:3.11-slim"))
    message = "\n".join(_preflight(project, "python").result("python").problems)
    assert "not an AWS Lambda base image" in message and "public.ecr.aws/lambda/python:3.11" in message
    assert "locked for Python 3.12" in message


def test_requires_python_that_excludes_the_image(project):
    pyproject = project / "pyproject.toml"
    _write(pyproject, pyproject.read_text().replace('requires-python = ">=3.11"', 'requires-python = ">=3.13"'))
    message = _only_failure(_preflight(project, "python"), "python")
    assert "requires-python '>=3.13' excludes the image's Python 3.12" in message


def test_a_package_locked_only_for_another_python(project):
    lock = project / "predict_function" / "requirements.txt"
    _write(lock, lock.read_text().replace("numpy==2.5.5 \\", "numpy==2.5.5 ; python_version < '3.12' \\"))
    message = _only_failure(_preflight(project, "python"), "python")
    assert "numpy is locked only for python_version < \"3.12\"" in message


# -- 2. wheels for every architecture -----------------------------------------------------------

# Real PyPI releases (files of a release never change): mkl 2024.2.2 ships manylinux1_x86_64 (and
# Windows) wheels but nothing for aarch64; pywin32 306 is Windows-only. The hashes are their real ones.
MKL = "mkl==2024.2.2 \\\n    --hash=sha256:915e81274ac20964e60156ed940e0eeb29dab0c282b915ad2e231db0021b980d\n"
PYWIN32 = "pywin32==306 \\\n    --hash=sha256:37257794c1ad39ee9be652da0462dc2e394c8159dfd913a8a4e8eb6fd346da0e\n"


def test_pins_without_a_wheel_for_an_architecture_and_pins_without_hashes(project):
    lock = project / "predict_function" / "requirements.txt"
    locked = len(re.findall(r"^[A-Za-z0-9_.-]+==", lock.read_text(), flags=re.M))  # the project's own pins
    _write(lock, lock.read_text() + MKL + PYWIN32 + "six==1.17.0\n")
    report = _preflight(project, "wheels")
    message = _only_failure(report, "wheels")
    problems = report.result("wheels").problems
    mkl = [p for p in problems if "mkl==2024.2.2" in p]
    assert len(mkl) == 1 and "no wheel for arm64 (Linux aarch64" in mkl[0]  # x86_64 has one
    assert "remove arm64 from the template's Architecture(s)" in mkl[0]
    pywin = [p for p in problems if "pywin32==306" in p]
    assert len(pywin) == 2 and any("x86_64" in p for p in pywin) and any("arm64" in p for p in pywin)
    assert "six==1.17.0 has no --hash: pip install --require-hashes (Dockerfile) refuses the whole file" in message
    # six has a wheel (only its hash is missing); pywin32 has none anywhere, mkl none for arm64.
    total = locked + 3
    assert f"x86_64 {total - 1}/{total}, arm64 {total - 2}/{total}" in report.result("wheels").summary


def test_a_deploy_checks_only_its_own_architecture(project):
    lock = project / "predict_function" / "requirements.txt"
    _write(lock, lock.read_text() + MKL)  # x86_64 wheels only
    report = _preflight(project, "wheels", parameter_overrides={"Architecture": "x86_64"})
    assert report.ok and report.architectures == ["x86_64"], report.format()
    report = _preflight(project, "wheels", parameter_overrides={"Architecture": "arm64"})
    assert not report.ok and report.architectures == ["arm64"], report.format()
    assert "mkl" in "\n".join(report.result("wheels").problems).lower()


def test_a_lock_hash_that_does_not_match_the_wheel_pip_would_install(project):
    lock = project / "predict_function" / "requirements.txt"
    text = lock.read_text()
    # Drop the aarch64 numpy wheel's hash: what a lock made on (and for) x86_64 only looks like.
    aarch64_numpy = "a0750f2156d53446caca85663d0b65d67214e1664b9050454a731ea1418d176a"
    assert aarch64_numpy in text
    _write(lock, "\n".join(line for line in text.splitlines() if aarch64_numpy not in line) + "\n")
    message = _only_failure(_preflight(project, "wheels"), "wheels")
    assert "numpy-2.5.5-cp312-cp312-manylinux_2_27_aarch64" in message and "not among the pin's hashes" in message
    assert "--universal --generate-hashes" in message


# -- 3. missing files ---------------------------------------------------------------------------


def test_dockerfile_that_forgets_copy_model(project):
    dockerfile = project / "predict_function" / "Dockerfile"
    text = dockerfile.read_text()
    assert "COPY --from=model ${LAMBDA_TASK_ROOT}/model/ ${LAMBDA_TASK_ROOT}/model/" in text
    _write(dockerfile, text.replace("COPY --from=model ${LAMBDA_TASK_ROOT}/model/ ${LAMBDA_TASK_ROOT}/model/", ""))
    message = _only_failure(_preflight(project, "files"), "files")
    assert "MODEL_PATH=/var/task/model/model.onnx (template/ENV) is not in the image" in message
    assert "predict_function/model/model.onnx is in the build context" in message
    assert "add 'COPY model/ ${LAMBDA_TASK_ROOT}/model/'" in message


def test_dockerignore_that_excludes_the_model(project):
    ignore = project / "predict_function" / ".dockerignore"
    _write(ignore, ignore.read_text() + "# large binaries\n**/*.onnx\n")
    message = _only_failure(_preflight(project, "files"), "files")
    assert "COPY model/" in message and "excluded by predict_function/.dockerignore (pattern '**/*.onnx')" in message
    assert "add '!model/model-int8.onnx' after it" in message  # the first file the COPY would take


def test_model_path_pointing_at_a_file_not_copied(project):
    template = project / "template.yaml"
    # the default (ModelVariant=fp32) branch of MODEL_PATH's !If
    _write(template, template.read_text().replace("/var/task/model/model.onnx]", "/var/task/models/resnet50.onnx]"))
    message = _only_failure(_preflight(project, "files"), "files")
    assert "MODEL_PATH=/var/task/models/resnet50.onnx (template/ENV) is not in the image" in message
    assert "no resnet50.onnx in the build context" in message
    lines = (project / "predict_function" / "Dockerfile").read_text().splitlines()
    run_line = next(i for i, line in enumerate(lines, 1) if line.startswith("RUN python -m image_build.external_weights"))
    assert f"the image has /var/task/model/ (made at build time by RUN line {run_line}, stage model)" in message


def test_handler_module_not_copied_and_a_module_left_out_by_dockerignore(project):
    dockerfile = project / "predict_function" / "Dockerfile"
    _write(dockerfile, dockerfile.read_text().replace('CMD ["classifier.handler.lambda_handler"]',
                                                      'CMD ["app.handler"]'))
    ignore = project / "predict_function" / ".dockerignore"
    _write(ignore, ignore.read_text() + "classifier/fetch.py\n")
    problems = _preflight(project, "files").result("files").problems
    text = "\n".join(problems)
    assert "handler app.handler: the image has no /var/task/app.py" in text
    assert "imports classifier.fetch, which is not in the image" in text
    assert "excluded by predict_function/.dockerignore (pattern 'classifier/fetch.py')" in text


def test_copy_from_a_stage_path_nothing_makes(project):
    dockerfile = project / "predict_function" / "Dockerfile"
    _write(dockerfile, dockerfile.read_text().replace(
        "RUN python -m image_build.external_weights model-src model \\\n    && python -m image_build.preoptimize model\n", ""))
    message = _only_failure(_preflight(project, "files"), "files")
    assert "COPY --from=model /var/task/model/: no earlier step of stage model puts anything there" in message
    assert "MODEL_PATH=/var/task/model/model.onnx (template/ENV) is not in the image" in message


def test_a_git_lfs_pointer_instead_of_the_model(project):
    model = project / "predict_function" / "model" / "model.onnx"
    model.unlink()  # the hard link only
    model.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0000\nsize 18711403\n")
    message = _only_failure(_preflight(project, "files"), "files")
    assert "Git LFS pointer" in message and "git lfs pull" in message


def test_the_model_source_a_build_stage_converts_is_missing(project):
    """MODEL_PATH is made by the model stage's RUN from model/<name>.onnx: without that file the build
    still succeeds (the RUN converts whatever is there) and every invoke fails, so preflight must fail."""
    (project / "predict_function" / "model" / "model.onnx").unlink()  # the hard link only
    message = _only_failure(_preflight(project, "files"), "files")
    assert "MODEL_PATH=/var/task/model/model.onnx is made at build time by RUN line" in message
    assert "predict_function/model/model.onnx does not exist in the build context" in message
    assert "(it has predict_function/model/model-int8.onnx)" in message


@pytest.mark.parametrize("name", ["model.onnx", "model-int8.onnx"])
@pytest.mark.parametrize("content, why", [(b"", "is empty"), (b"<html>404 Not Found</html>\n", "is not an ONNX model")])
def test_an_empty_or_non_onnx_model_source(project, name, content, why):
    model = project / "predict_function" / "model" / name
    assert _preflight(project, "files").result("files").status == PASS  # parsed once, while it was a model
    model.unlink()  # the hard link only
    model.write_bytes(content)
    message = _only_failure(_preflight(project, "files"), "files")
    assert f"predict_function/model/{name} {why}" in message
    assert message.count(f"predict_function/model/{name}") == 1  # reported once
    if name == "model.onnx":
        assert message.startswith("MODEL_PATH=/var/task/model/model.onnx: ")


@pytest.mark.parametrize("change, differs", [({"name": "my-model"}, "name"), ({"version": "0-int8"}, "version"),
                                             ({"version": "10-int8"}, "version")])
def test_an_int8_copy_left_from_another_model_is_a_warning(project, change, differs):
    from classifier.spec import ModelCard
    from model_export.metadata import write_card
    import onnx

    model_dir = project / "predict_function" / "model"
    assert _preflight(project, "files").result("files").status == PASS  # the bundled pair agrees (1 and 1-int8)
    int8 = onnx.load(str(model_dir / "model-int8.onnx"))
    card = ModelCard.from_metadata({p.key: p.value for p in int8.metadata_props})
    write_card(int8, ModelCard.from_dict({**json.loads(card.to_json()), **change}))
    (model_dir / "model-int8.onnx").unlink()  # the hard link only
    onnx.save(int8, str(model_dir / "model-int8.onnx"))
    result = _preflight(project, "files").result("files")
    assert result.status == WARN and not result.problems
    [warning] = result.warnings
    assert "predict_function/model/model-int8.onnx is not an INT8 copy of predict_function/model/model.onnx" in warning
    assert f"differs in {differs}" in warning and "model_export quantize" in warning


# -- 4. build context size ----------------------------------------------------------------------


def test_a_600_mb_file_in_the_context(project):
    junk = project / "predict_function" / "training-data.bin"
    subprocess.run(["truncate", "-s", "600M", str(junk)], check=True)  # sparse: no disk used
    ignore = project / "predict_function" / ".dockerignore"
    _write(ignore, "# nothing excluded\n")
    report = _preflight(project, "context")
    message = _only_failure(report, "context")
    # Apparent size, as Docker's tar sends it (the sparse file occupies no blocks): 600 MiB + the project.
    assert "MB after .dockerignore (limit 500 MB)" in message
    total = float(re.search(r"is (\d+(?:\.\d+)?) MB", message).group(1))
    assert total >= 629.1  # the junk alone is 600 MiB; the rest depends on the model's size
    assert "training-data.bin 629.1 MB (no COPY uses it: add 'training-data.bin' to predict_function/.dockerignore)" in message
    # The limit is configurable.
    assert _preflight(project, "context", context_fail_mb=1000).ok


def test_virtualenv_and_git_in_the_context(project):
    ctx = project / "predict_function"
    (ctx / ".venv" / "lib").mkdir(parents=True)
    (ctx / ".venv" / "lib" / "big.so").write_bytes(b"\0" * 2_000_000)
    (ctx / ".git").mkdir()
    (ctx / ".git" / "pack").write_bytes(b"\0" * 1000)
    _write(ctx / ".dockerignore", "__pycache__\n")
    report = _preflight(project, "context", context_warn_mb=10)
    result = report.result("context")
    assert result.status == "WARN", report.format()
    text = "\n".join(result.warnings)
    size = float(re.search(r"build context (\d+(?:\.\d+)?) MB \(> 10 MB\)", text).group(1))
    assert size > 10
    assert "add '.venv/' to predict_function/.dockerignore" in text and "add '.git/'" in text
    # The project's own .dockerignore keeps them out.
    _write(ctx / ".dockerignore", (REPO / "predict_function" / ".dockerignore").read_text())
    assert _preflight(project, "context").result("context").status == PASS


# -- 5. hidden paths ----------------------------------------------------------------------------


def test_code_that_opens_a_relative_path(project):
    handler = project / "predict_function" / "classifier" / "labels.py"
    _write(handler, textwrap.dedent('''
        import json
        from pathlib import Path

        def labels():
            with open("model/labels.json") as fh:
                return json.load(fh)

        LABELS_DIR = Path("model")
    '''))
    report = _preflight(project, "paths")
    message = _only_failure(report, "paths")
    assert "predict_function/classifier/labels.py:6: open('model/labels.json') is resolved against the current directory" in message
    assert "predict_function/classifier/labels.py:9: Path('model')" in message
    assert "os.environ['LAMBDA_TASK_ROOT']" in message


@pytest.mark.parametrize(
    "code, flagged",
    [
        ("import os\nROOT = os.getcwd()\n", "os.getcwd() is the process's working directory"),
        ("from pathlib import Path\nROOT = Path.cwd() / 'model'\n", "Path.cwd() is the process's working directory"),
        ("import os\nos.chdir('/tmp')\n", "os.chdir changes"),
        ("import sys\nsys.path.insert(0, 'vendor')\n", "sys.path.insert('vendor') adds a cwd-relative import path"),
        ("import numpy as np\nW = np.load('weights.npy')\n", "np.load('weights.npy') is resolved against"),
        # Three folders up from classifier/x.py is outside /var/task: the repo checkout, not the image.
        ("from pathlib import Path\nSPEC = Path(__file__).resolve().parents[2] / 'model_export' / 'spec.json'\n",
         "climbs 1 folder(s) above the task root"),
        ("import os\nD = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))\n",
         "climbs 1 folder(s) above the task root"),
    ],
)
def test_cwd_dependent_code_is_flagged(code, flagged):
    findings = scan_source(code, "classifier/x.py", depth=1)
    assert any(flagged in message for _, message in findings), findings


@pytest.mark.parametrize(
    "code",
    [
        "import os\nP = os.path.join(os.environ['LAMBDA_TASK_ROOT'], 'model', 'model.onnx')\nopen(P)\n",
        "from pathlib import Path\nP = Path(__file__).resolve().parent / Path('labels.json')\n",
        "import os\nROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))\n",  # the task root itself
        "from pathlib import Path\nROOT = Path(__file__).parents[1]\n",
        "import io\nfrom PIL import Image\nImage.open(io.BytesIO(b''))\n",
        "RELATIVE = 'model/model.onnx'\n",  # a name, not a file access
        "open('/var/task/model/model.onnx')\n",
    ],
)
def test_anchored_paths_are_fine(code):
    assert scan_source(code, "classifier/x.py", depth=1) == []


def test_the_function_works_from_a_working_directory_other_than_the_task_root(tmp_path, monkeypatch, runtime_python):
    """Lambda starts the runtime in /var/task, and local_lambda does the same (cwd = staged task root),
    so code that silently relies on the cwd passes both. Here the staged function runs from an empty
    folder instead: it still cold-starts and answers, i.e. nothing in it depends on the cwd (the static
    check is what names the line when something does)."""
    import local_lambda.emulator as emulator_mod
    from local_lambda import stage
    from local_lambda.template import function_emulator, read_function

    fn = read_function(REPO / "template.yaml", "PredictFunction")
    staged = stage(fn.dockerfile, fn.context, build_dir=tmp_path / "build", function_name=fn.logical_id,
                   lint=False, cache_dir=REPO / ".build" / "local_lambda" / "cache")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real_popen = emulator_mod.subprocess.Popen
    seen = []

    def popen(args, **kwargs):
        if kwargs.get("cwd") == staged.task_root:
            kwargs["cwd"] = str(elsewhere)
            seen.append(args[0])
        return real_popen(args, **kwargs)

    monkeypatch.setattr(emulator_mod.subprocess, "Popen", popen)
    function, _ = function_emulator(fn, staged, {}, shell_env={})
    with function:
        result = function.invoke(json.loads((REPO / "events" / "rest-model.json").read_text()))
    assert seen, "the emulator was not started from the other folder"
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"])["model"]["name"]


RELATIVE_HANDLER = """
def handler(event, context):
    with open("data.txt") as fh:  # relative: resolved against the cwd
        return {"data": fh.read()}
"""


def test_a_cwd_relative_open_works_from_the_task_root_and_breaks_elsewhere(tmp_path, monkeypatch, runtime_python):
    """Why the different cwd matters: the relative open passes under Lambda's (and the emulator's)
    cwd = task root, and fails as soon as anything (a test, a script, a refactor) runs it from elsewhere.
    The static check flags the line either way."""
    import local_lambda.emulator as emulator_mod
    from local_lambda import Emulator

    root = tmp_path / "task"
    root.mkdir()
    (root / "app.py").write_text(RELATIVE_HANDLER)
    (root / "data.txt").write_text("ok")
    assert [line for line, _ in scan_source(RELATIVE_HANDLER, "app.py", depth=0)] == [3]

    with Emulator(root, handler="app.handler", runtime_python=runtime_python) as function:
        assert function.invoke({}) == {"data": "ok"}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real_popen = emulator_mod.subprocess.Popen

    def popen(args, **kwargs):
        if kwargs.get("cwd") == str(root):
            kwargs["cwd"] = str(elsewhere)
        return real_popen(args, **kwargs)

    monkeypatch.setattr(emulator_mod.subprocess, "Popen", popen)
    with Emulator(root, handler="app.handler", runtime_python=runtime_python) as function:
        result = function.invoke({})
    assert result["errorType"] == "FileNotFoundError", result


def test_an_onnxruntime_that_aborts_on_lambda_arm64_is_caught(project):
    lock = project / "predict_function" / "requirements.txt"
    text = lock.read_text()
    assert "onnxruntime==1.32.0" in text
    _write(lock, text.replace("onnxruntime==1.32.0", "onnxruntime==1.25.1"))
    report = _preflight(project, "wheels", offline=True)  # known-bad versions need no index
    message = "\n".join(report.result("wheels").problems)
    assert "onnxruntime==1.25.1 aborts at import on Lambda arm64" in message and "onnxruntime>=1.26" in message
    x86_only = _preflight(project, "wheels", offline=True, parameter_overrides={"Architecture": "x86_64"})
    assert not any("aborts at import" in p for p in x86_only.result("wheels").problems)
