"""`python -m local_lambda ...` as users run it (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Tiny:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      MemorySize: 256
      Timeout: 5
      Environment:
        Variables:
          MY_SETTING: from-template
    Metadata: {Dockerfile: Dockerfile, DockerContext: ./fn, DockerTag: v1}
"""

DOCKERFILE = """
FROM public.ecr.aws/lambda/python:3.12
COPY app.py ${LAMBDA_TASK_ROOT}/
RUN python -m compileall -q ${LAMBDA_TASK_ROOT}/app.py
CMD ["app.handler"]
"""


def run(*args, cwd, env_extra=None, stdin=None):
    # PYTHONPATH: `local_lambda` imports from the repo even before the editable install lists it.
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "local_lambda", *args],
        cwd=cwd, env=env, capture_output=True, text=True, input=stdin, timeout=300,
    )


@pytest.fixture
def project(tmp_path, cache_dir, tiny_task_root):
    (tmp_path / "fn").mkdir()
    (tmp_path / "template.yaml").write_text(textwrap.dedent(TEMPLATE))
    (tmp_path / "fn" / "Dockerfile").write_text(DOCKERFILE.lstrip())
    (tmp_path / "fn" / "app.py").write_text((tiny_task_root / "app.py").read_text())
    (tmp_path / "event.json").write_text('{"hello": "cli"}')
    (tmp_path / "env.json").write_text('{"Tiny": {"MY_SETTING": "from-env-vars"}}')
    return tmp_path


def test_invoke_prints_the_response(project, cache_dir):
    # Run from elsewhere: the function must not depend on the caller's working directory.
    out = run("invoke", "-t", str(project / "template.yaml"), "-e", str(project / "event.json"),
              "--env-vars", str(project / "env.json"), cwd=REPO, env_extra={"LOCAL_LAMBDA_CACHE_DIR": str(cache_dir)})
    assert out.returncode == 0, out.stderr
    response = json.loads(out.stdout)
    assert response["event"] == {"hello": "cli"}
    assert response["env"]["MY_SETTING"] == "from-env-vars"
    assert response["memory_limit_in_mb"] == "256"
    assert response["cwd"] == str(project / ".build" / "local_lambda" / "Tiny" / "task")
    assert "cold start" in out.stderr and "handled" in out.stderr


def test_invoke_reads_stdin(project, cache_dir):
    out = run("invoke", "Tiny", "-e", "-", cwd=project, stdin='{"from": "stdin"}',
              env_extra={"LOCAL_LAMBDA_CACHE_DIR": str(cache_dir)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["event"] == {"from": "stdin"}


def test_lint_the_project_dockerfile():
    out = run("lint", cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr


def test_stage_fails_clearly_on_an_unsupported_dockerfile(project):
    (project / "fn" / "Dockerfile").write_text(DOCKERFILE.replace("CMD", "RUN yum install -y gcc\nCMD"))
    out = run("stage", cwd=project)
    assert out.returncode == 2
    assert "RUN 'yum install -y gcc' cannot be reproduced without Docker" in out.stderr


def test_start_api_refuses_non_loopback(project):
    out = run("start-api", "--host", "0.0.0.0", cwd=project)
    assert out.returncode == 2 and "loopback" in out.stderr


def test_invoke_with_lambdas_cpu_time(project, cache_dir):
    """--lambda-cpu: the runtime runs in a cgroup with MemorySize/1769 CPUs of quota, or the CLI says why not."""
    from local_lambda.cpu_quota import CpuQuota

    (project / "fn" / "app.py").write_text(
        "def handler(event, context):\n"
        "    return {'cgroups': open('/proc/self/cgroup').read()}\n")
    out = run("invoke", "Tiny", "--lambda-cpu", cwd=project, env_extra={"LOCAL_LAMBDA_CACHE_DIR": str(cache_dir)})
    probe, why = CpuQuota.create(256, name="cli-probe")
    if probe is None:  # no writable cpu controller on this machine: a clear refusal, not a silent full-CPU run
        assert out.returncode == 2 and "--lambda-cpu: cannot set a CPU quota here" in out.stderr
        return
    probe.close()
    assert out.returncode == 0, out.stderr
    assert "Tiny: cgroup v" in out.stderr and "CPU quota 0.14 CPUs (Lambda's CPU time at 256 MB)" in out.stderr
    cgroups = json.loads(out.stdout)["cgroups"]
    assert "local-lambda-Tiny-" in cgroups  # the runtime process itself was inside the quota's cgroup
