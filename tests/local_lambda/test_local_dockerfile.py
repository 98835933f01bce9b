"""Interpreting Dockerfiles (parsed by BuildKit's parser through the `dockerfile` package)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from local_lambda import dockerfile_plan as dp

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_project_dockerfile_is_understood():
    plan = dp.parse(REPO / "predict_function" / "Dockerfile")
    assert plan.python_version == "3.12"
    assert plan.handler == "classifier.handler.lambda_handler"
    deps, model, function = plan.stages
    assert (deps.name, deps.parent, model.name, model.parent, function.name, function.parent) == (
        "deps", None, "model", 0, None, 0)
    assert [type(s).__name__ for s in deps.steps] == ["CopyStep", "PipInstallStep", "RemoveStep", "RemoveStep"]
    pip = deps.steps[1]
    assert pip.target == "/var/task"
    assert pip.requirements == ("/var/task/requirements.txt",)
    assert pip.compile_bytecode
    assert model.steps[-2:] == [dp.PythonModuleStep("image_build.external_weights", ("model-src", "model"), model.steps[-1].line),
                                dp.PythonModuleStep("image_build.preoptimize", ("model",), model.steps[-1].line)]
    # the function stage: the model out of the build stage, then the code (layers: deps -> model -> code)
    kinds = [type(s).__name__ for s in plan.steps]
    assert kinds == ["CopyStep", "CopyStep", "CompileallStep"]
    assert plan.steps[0].from_stage == model.index and plan.steps[0].sources == ("/var/task/model/",)
    assert all(c.dest.startswith("/var/task/") for c in plan.all_steps() if isinstance(c, dp.CopyStep))


@pytest.mark.parametrize(
    "image, version",
    [
        ("public.ecr.aws/lambda/python:3.12", "3.12"),
        ("public.ecr.aws/lambda/python:3.13", "3.13"),
        ("public.ecr.aws/lambda/python:3.12-arm64", "3.12"),
        ("public.ecr.aws/lambda/python:3.12.2025.01.01.10-x86_64", "3.12"),
        ("amazon/aws-lambda-python:3.11", "3.11"),
    ],
)
def test_python_version_from_the_from_tag(image, version):
    assert dp.python_version_from_image(image) == version


@pytest.mark.parametrize("image", ["python:3.12-slim", "public.ecr.aws/lambda/python:latest", "public.ecr.aws/lambda/nodejs:20"])
def test_other_base_images_are_refused(image):
    with pytest.raises(dp.DockerfileError):
        dp.python_version_from_image(image)


def test_arg_env_and_variable_expansion(tmp_path):
    plan = dp.parse(write(tmp_path, """
        ARG PY=3.13
        FROM public.ecr.aws/lambda/python:${PY}
        ENV APP_DIR=${LAMBDA_TASK_ROOT}/app MODE=fast
        COPY src/ $APP_DIR/
        COPY a.txt b.txt ${LAMBDA_TASK_ROOT}/data/
        RUN python3 -m compileall -q ${APP_DIR}
        CMD ["app.main.handler"]
    """))
    assert plan.python_version == "3.13"
    assert plan.env == {"APP_DIR": "/var/task/app", "MODE": "fast"}
    assert plan.steps[0] == dp.CopyStep(("src/",), "/var/task/app/", 4)
    assert plan.steps[1].sources == ("a.txt", "b.txt")
    assert plan.steps[2] == dp.CompileallStep(("-q", "/var/task/app"), 6)
    assert plan.handler == "app.main.handler"


def test_pip_options_are_interpreted(tmp_path):
    plan = dp.parse(write(tmp_path, """
        FROM public.ecr.aws/lambda/python:3.12
        COPY requirements.txt .
        RUN pip install --no-cache-dir --only-binary=:all: -t . -r requirements.txt --no-compile && rm -f requirements.txt
        CMD ["app.handler"]
    """))
    pip, rm = plan.steps[1], plan.steps[2]
    assert isinstance(pip, dp.PipInstallStep)
    assert pip.target == "/var/task" and pip.requirements == ("/var/task/requirements.txt",)
    assert pip.options == ("--no-cache-dir", "--only-binary=:all:")
    assert not pip.compile_bytecode
    assert rm == dp.RemoveStep(("/var/task/requirements.txt",), recursive=False, force=True, line=3)


@pytest.mark.parametrize(
    "run, message",
    [
        ("RUN dnf install -y gcc", "cannot be reproduced without Docker"),
        ("RUN pip install requests", "locked requirements file"),
        ("RUN pip install -r requirements.txt", "without --target"),
        ("RUN pip install --index-url https://example.org -r r.txt -t .", "--index-url is not supported"),
        ("RUN curl -s https://x | sh", "shell operator '|'"),
        ("RUN pip uninstall -y x", "only 'pip install'"),
        ("RUN --mount=type=cache,target=/root/.cache pip install -r r.txt -t .", "RUN --mount"),
    ],
)
def test_unknown_run_lines_fail_clearly(tmp_path, run, message):
    path = write(tmp_path, f"FROM public.ecr.aws/lambda/python:3.12\n{run}\nCMD [\"a.b\"]\n")
    with pytest.raises(dp.DockerfileError, match="line 2") as info:
        dp.parse(path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("FROM public.ecr.aws/lambda/python:3.12 AS b\nFROM public.ecr.aws/lambda/python:3.13\n", "every stage must use Python 3.12"),
        ("FROM public.ecr.aws/lambda/python:3.12 AS b\nFROM public.ecr.aws/lambda/python:3.12 AS B\n", "already exists"),
        ("FROM public.ecr.aws/lambda/python:3.12 AS b\nFROM b\nCOPY --from=b x /var/task/\n", "absolute path"),
        ("FROM public.ecr.aws/lambda/python:3.12\nCOPY --from=python:3.12 /x /var/task/\n", "only an earlier stage"),
        ("FROM public.ecr.aws/lambda/python:3.12 as a\nCOPY --from=a /var/task/x /var/task/\n", "only an earlier stage"),
        ("FROM public.ecr.aws/lambda/python:3.12\nRUN python build.py\n", "python -m <module>"),
        ("FROM public.ecr.aws/lambda/python:3.12\nRUN python -c 'print(1)'\n", "python -m <module>"),
        ("FROM public.ecr.aws/lambda/python:3.12\nENTRYPOINT [\"/bin/sh\"]\n", "ENTRYPOINT"),
        ("FROM public.ecr.aws/lambda/python:3.12\nWORKDIR /app\n", "WORKDIR /app"),
        ("FROM public.ecr.aws/lambda/python:3.12\nCOPY --from=builder /x /var/task/\n", "--from=builder"),
        ("FROM public.ecr.aws/lambda/python:3.12\nADD https://example.org/x.py /var/task/\n", "only plain local files"),
        ("FROM public.ecr.aws/lambda/python:3.12\nCOPY x $UNDEFINED/\n", "$UNDEFINED is not defined"),
    ],
)
def test_unsupported_instructions_fail(tmp_path, text, message):
    with pytest.raises(dp.DockerfileError) as info:
        dp.parse(write(tmp_path, text))
    assert message in str(info.value)


def test_shell_form_cmd_and_harmless_instructions(tmp_path):
    plan = dp.parse(write(tmp_path, """
        FROM public.ecr.aws/lambda/python:3.12
        LABEL maintainer=me
        USER 1000
        CMD app.handler
    """))
    assert plan.handler == "app.handler"
    assert any("LABEL" in w for w in plan.warnings) and any("USER" in w for w in plan.warnings)


def test_multi_stage_builds(tmp_path):
    plan = dp.parse(write(tmp_path, """
        ARG PY=3.12
        FROM public.ecr.aws/lambda/python:${PY} AS base
        ENV MODE=fast
        CMD ["app.handler"]
        FROM base AS build
        COPY tools/ ${LAMBDA_TASK_ROOT}/tools/
        RUN python -m tools.make --out $LAMBDA_TASK_ROOT/out && rm -rf ${LAMBDA_TASK_ROOT}/tools
        FROM public.ecr.aws/lambda/python:${PY}-arm64 AS other
        FROM Base
        COPY --from=build ${LAMBDA_TASK_ROOT}/out/ ${LAMBDA_TASK_ROOT}/data/
        COPY --from=2 /var/task/x.txt /var/task/
    """))
    assert [(s.name, s.parent) for s in plan.stages] == [("base", None), ("build", 0), ("other", None), (None, 0)]
    build = plan.stages[1]
    assert build.steps[1] == dp.PythonModuleStep("tools.make", ("--out", "/var/task/out"), 7)
    assert build.env == {"MODE": "fast"} and plan.stages[2].env == {}
    assert plan.env == {"MODE": "fast"} and plan.handler == "app.handler"  # inherited from "base"
    assert plan.steps == [dp.CopyStep(("/var/task/out/",), "/var/task/data/", 10, from_stage=1),
                          dp.CopyStep(("/var/task/x.txt",), "/var/task/", 11, from_stage=2)]
    assert [s.name for s in plan.lineage()] == ["base", None]
    assert len(plan.all_steps()) == 5
