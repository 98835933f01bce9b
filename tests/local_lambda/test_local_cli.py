"""`python -m local_lambda ...` as users run it (subprocesses)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from local_lambda.__main__ import _parameters
from local_lambda.emulator import MAX_SYNC_PAYLOAD_BYTES

REPO = Path(__file__).resolve().parents[2]

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Setting: {Type: String, Default: from-template}
Resources:
  Tiny:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      MemorySize: 256
      Timeout: 5
      Environment:
        Variables:
          MY_SETTING: !Ref Setting
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


# -- --parameter-overrides as sam parses them ---------------------------------------------------


@pytest.mark.parametrize("values, expected", [
    (["ParameterKey=MemorySize,ParameterValue=1024"], {"MemorySize": "1024"}),
    (['AllowedHosts="a.example.com b.example.com"'], {"AllowedHosts": "a.example.com b.example.com"}),
    (['AllowedHosts="a.com"', "ModelVariant=int8"], {"AllowedHosts": "a.com", "ModelVariant": "int8"}),
    (["A=1 B=2"], {"A": "1", "B": "2"}),
    (['CorsAllowOrigin=""'], {"CorsAllowOrigin": ""}),
])
def test_parameter_overrides_parse_like_sam(values, expected):
    assert _parameters(values) == expected


def test_a_malformed_parameter_override_is_a_clear_error(project):
    out = run("stage", "--parameter-overrides", "NoEquals", "Tiny=x", cwd=project)
    assert out.returncode == 2 and "--parameter-overrides: NoEquals is not a valid format" in out.stderr
    assert "Traceback" not in out.stderr


def test_invoke_with_quoted_override_and_the_function_after_the_option(project, cache_dir):
    out = run("invoke", "--parameter-overrides", 'Setting="two words"', "Tiny", "-e", str(project / "event.json"),
              cwd=project, env_extra={"LOCAL_LAMBDA_CACHE_DIR": str(cache_dir)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["env"]["MY_SETTING"] == "two words"
    out = run("invoke", "Tiny", "--skip-stage", "--parameter-overrides", "ParameterKey=Setting,ParameterValue=kv",
              cwd=project, env_extra={"LOCAL_LAMBDA_CACHE_DIR": str(cache_dir)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["env"]["MY_SETTING"] == "kv"


# -- bad inputs: one line naming the file, before staging ----------------------------------------


def _fails_before_staging(out, project, message):
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == f"local_lambda: error: {message}"  # one line, no traceback
    assert not (project / ".build").exists()  # nothing staged


@pytest.mark.parametrize("args, message", [
    (["-e", "missing.json"], "--event missing.json: no such file"),
    (["-e", "fn"], "--event fn: is a directory, not a JSON file"),
    (["-e", "bad.json"], "--event bad.json: not valid JSON: Expecting property name enclosed in double quotes: "
                         "line 1 column 2 (char 1)"),
    (["-e", "event.json", "--env-vars", "missing.json"], "--env-vars missing.json: no such file"),
    (["-e", "event.json", "-n", "fn"], "--env-vars fn: is a directory, not a JSON file"),
    (["-e", "event.json", "-n", "bad.json"], "--env-vars bad.json: not valid JSON: Expecting property name "
                                             "enclosed in double quotes: line 1 column 2 (char 1)"),
])
def test_a_missing_or_malformed_input_file(project, args, message):
    (project / "bad.json").write_text("{nope")
    _fails_before_staging(run("invoke", *args, cwd=project), project, message)


def test_stage_a_missing_dockerfile(project):
    out = run("stage", "--no-lint", "--dockerfile", "nope/Dockerfile", cwd=project)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("local_lambda: error: Dockerfile ") and "nope/Dockerfile not found" in out.stderr


def test_an_event_over_lambdas_payload_limit_is_refused_before_the_function_runs(project):
    size = MAX_SYNC_PAYLOAD_BYTES + 1
    (project / "big.json").write_text('{"image": "' + "A" * (size - 13) + '"}')
    assert (project / "big.json").stat().st_size == size
    out = run("invoke", "-e", "big.json", cwd=project)
    _fails_before_staging(out, project, out.stderr.strip().removeprefix("local_lambda: error: "))
    assert f"--event big.json is {size:,} bytes, over Lambda's synchronous invocation payload limit " \
           f"({MAX_SYNC_PAYLOAD_BYTES:,} bytes" in out.stderr
    assert "RequestEntityTooLargeException" in out.stderr


# -- lint --------------------------------------------------------------------------------------


def test_lint_fails_when_hadolint_cannot_read_the_dockerfile(project):
    out = run("lint", "--dockerfile", "nope/Dockerfile", cwd=project)
    assert out.returncode == 2 and "found nothing" not in out.stdout
    assert "cannot lint nope/Dockerfile: no such file" in out.stderr


def test_lint_fails_when_hadolint_fails(tmp_path, monkeypatch):
    from local_lambda import lint

    fake = tmp_path / "hadolint"
    fake.write_text("#!/bin/sh\necho 'hadolint: cannot parse' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(lint, "hadolint_executable", lambda: str(fake))
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE)
    with pytest.raises(lint.LintError, match=r"hadolint failed on .*Dockerfile \(exit 1\): hadolint: cannot parse"):
        lint.lint_dockerfile(dockerfile, fail_on="none")


# -- closing the terminal -------------------------------------------------------------------------


API_TEMPLATE = TEMPLATE.replace("      Timeout: 5\n", """      Timeout: 5
      ImageConfig: {Command: ["app.proxy"]}
      Events:
        Model: {Type: Api, Properties: {Path: /model, Method: get}}
""")


def _descendants(pid):
    kids = []
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for kid in child.read_text().split():
            kids += [int(kid)] + _descendants(int(kid))
    return kids


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_start_api_cleans_up_on_sighup_like_sigterm(project, cache_dir, signum):
    """Closing the terminal (SIGHUP): the RIE and the runtime stop, and the --lambda-cpu cgroup goes."""
    from local_lambda.cpu_quota import CpuQuota

    (project / "template.yaml").write_text(textwrap.dedent(API_TEMPLATE))
    probe, _ = CpuQuota.create(256, name="cli-probe")
    lambda_cpu = probe is not None
    if probe is not None:
        probe.close()
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOCAL_LAMBDA_CACHE_DIR": str(cache_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "local_lambda", "start-api", "--port", "0", "--no-lint"]
                            + (["--lambda-cpu"] if lambda_cpu else []),
                            cwd=project, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:
            if "Mounted Tiny at " in line:
                url = line.split("Mounted Tiny at ", 1)[1].split("/model", 1)[0]
                break
        assert url, "start-api did not start"
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "/model", timeout=60) as resp:
            assert resp.status == 201  # the runtime is up too
        processes = _descendants(proc.pid)
        assert len(processes) >= 2, processes  # the RIE and the runtime it started
        groups = glob.glob(f"/sys/fs/cgroup/*/local-lambda-Tiny-{proc.pid}") + \
            glob.glob(f"/sys/fs/cgroup/local-lambda-Tiny-{proc.pid}")
        assert bool(groups) == lambda_cpu
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == 128 + signum
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid in processes:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived start-api"
    for group in groups:
        assert not Path(group).exists(), f"cgroup {group} left behind"
