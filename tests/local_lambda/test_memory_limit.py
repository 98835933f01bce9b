"""Lambda's memory limit as a cgroup memory limit: the cgroup it sets, a process over it killed, and the
RIE's runtime killed mid-invoke (``Runtime.ExitError``) then started afresh by the next invoke, as on Lambda.

Setting a limit needs a writable cgroup memory controller (root here); where there is none,
``MemoryLimit.create`` must say why, and the tests that need one are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from local_lambda import Emulator
from local_lambda.cpu_quota import CpuQuota
from local_lambda.memory_limit import MIB, MemoryLimit
from support import logs_once_they_hold

REPO = Path(__file__).resolve().parents[2]

# Allocates event["mb"] MiB and touches every page, so the memory is really used (resident).
HUNGRY_HANDLER = textwrap.dedent(
    '''
    import os

    INIT_PID = os.getpid()

    def handler(event, context):
        block = bytearray(event["mb"] * 2 ** 20)
        for offset in range(0, len(block), 4096):
            block[offset] = 1
        return {"mb": event["mb"], "pid": os.getpid(), "init_pid": INIT_PID}
    '''
)


def _limit(memory_mb: int, name: str):
    made, why = MemoryLimit.create(memory_mb, name=name)
    if made is None:
        pytest.skip(f"no writable cgroup memory controller here: {why}")
    return made


@pytest.fixture
def limit_64():
    made = _limit(64, "test-memory")
    try:
        yield made
    finally:
        made.close()


def _allocate(limit: MemoryLimit, mb: int) -> subprocess.CompletedProcess:
    """A plain Python child, inside the limit from its first instruction, that touches ``mb`` MiB."""
    code = f"block = bytearray({mb} << 20)\nfor i in range(0, len(block), 4096): block[i] = 1\n"
    return subprocess.run(limit.command([sys.executable, "-c", code]), capture_output=True, timeout=60)


def test_create_sets_the_limit_without_swap_and_close_removes_the_group():
    limit = _limit(64, "test-memory-files")
    try:
        assert limit.limit_bytes == 64 * MIB
        if limit.version == 1:
            assert int((limit.path / "memory.limit_in_bytes").read_text()) == 64 * MIB
            memsw = limit.path / "memory.memsw.limit_in_bytes"
            assert not memsw.is_file() or int(memsw.read_text()) == 64 * MIB  # swap cannot hide the excess
        else:
            assert int((limit.path / "memory.max").read_text()) == 64 * MIB
            swap = limit.path / "memory.swap.max"
            assert not swap.is_file() or swap.read_text().strip() == "0"
        assert limit.path.name == f"test-memory-files-{os.getpid()}"
        assert limit.usage_bytes() >= 0 and limit.oom_kills() in (0, None)
    finally:
        limit.close()
    assert not limit.path.exists()


def test_a_process_over_the_limit_is_killed_and_one_under_it_finishes(limit_64):
    small = _allocate(limit_64, 16)
    assert small.returncode == 0, small.stderr
    big = _allocate(limit_64, 200)
    assert big.returncode == -signal.SIGKILL, big.stderr  # the OOM killer, not a MemoryError
    kills = limit_64.oom_kills()
    assert kills is None or kills >= 1
    peak = limit_64.peak_bytes()
    assert peak is None or 16 * MIB < peak <= 64 * MIB


def test_without_a_controller_create_says_why(monkeypatch, tmp_path):
    import local_lambda.memory_limit as module

    monkeypatch.setattr(module, "_V1", tmp_path / "no-v1")
    monkeypatch.setattr(module, "_V2", tmp_path / "no-v2")
    made, why = MemoryLimit.create(2048)
    assert made is None and why == "no cgroup memory controller mounted"


def test_cgroup_v2_files(monkeypatch, tmp_path):
    """The v2 branch, on a stand-in directory (this machine may have v1): memory.max, swap.max 0, the counters."""
    import local_lambda.memory_limit as module

    monkeypatch.setattr(module, "_V1", tmp_path / "no-v1")
    monkeypatch.setattr(module, "_V2", tmp_path)
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    made, note = MemoryLimit.create(2048, name="v2")
    assert made is not None and made.version == 2
    assert note == "cgroup v2 memory limit 2048 MiB, swap not accounted"
    assert (made.path / "memory.max").read_text() == str(2048 * MIB)
    (made.path / "memory.swap.max").write_text("max")
    assert MemoryLimit.create(2048, name="v2")[1].endswith(", no swap")
    assert (made.path / "memory.swap.max").read_text() == "0"
    assert made.peak_bytes() is None and made.oom_kills() is None  # kernels without memory.peak / events
    (made.path / "memory.peak").write_text("123456\n")
    (made.path / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n")
    assert made.peak_bytes() == 123456 and made.oom_kills() == 1


# -- the emulator: Lambda kills the runtime, the invoke fails, the next one starts a fresh runtime ---------


@pytest.fixture
def hungry_task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    (root / "app.py").write_text(HUNGRY_HANDLER)
    return root


@pytest.fixture
def hungry_fn(hungry_task_root, runtime_python):
    limit = _limit(256, "test-memory-emulator")
    try:
        with Emulator(hungry_task_root, handler="app.handler", runtime_python=runtime_python, memory_mb=256,
                      timeout_s=10, memory_limit=limit) as fn:
            yield fn
    finally:
        limit.close()  # after the emulator stopped: the group is empty by then


def test_a_runtime_over_the_memory_size_is_killed_and_the_next_invoke_starts_afresh(hungry_fn):
    limit = hungry_fn.memory_limit
    first = hungry_fn.invoke({"mb": 10})
    assert first["pid"] == first["init_pid"]
    members = (limit.path / "cgroup.procs").read_text().split()
    assert str(hungry_fn.pid) in members and str(hungry_fn.runtime_pid) in members  # the RIE and its runtime
    kills_before = limit.oom_kills()

    result = hungry_fn.invoke_raw({"mb": 600})
    # What the RIE answers when its runtime dies of SIGKILL (Lambda: the same error type and message).
    assert result.status == 502, result.text
    assert result.error["errorType"] == "Runtime.ExitError"
    assert result.error["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    assert "Invoke DONE failed: Runtime.ExitError" in logs_once_they_hold(hungry_fn, "Invoke DONE failed")
    if kills_before is not None:
        assert limit.oom_kills() == kills_before + 1

    after = hungry_fn.invoke({"mb": 10})
    assert after == {"mb": 10, "pid": after["init_pid"], "init_pid": after["init_pid"]}
    assert after["pid"] != first["pid"]  # a fresh runtime, with a new init
    peak = limit.peak_bytes()
    assert peak is not None and 20 * MIB < peak <= 256 * MIB  # up to the limit, never past it


def test_the_emulator_puts_the_rie_under_every_limit_given(hungry_task_root, runtime_python):
    quota, why = CpuQuota.create(1769, name="test-memory-both")  # the same group name: one group on cgroup v2
    if quota is None:
        pytest.skip(f"no writable cgroup cpu controller here: {why}")
    limit = None
    try:
        limit = _limit(256, "test-memory-both")
        with Emulator(hungry_task_root, handler="app.handler", runtime_python=runtime_python, memory_mb=256,
                      timeout_s=10, cpu_quota=quota, memory_limit=limit) as fn:
            assert fn.invoke({"mb": 1})["mb"] == 1
            for group in (quota, limit):
                members = (group.path / "cgroup.procs").read_text().split()
                assert str(fn.pid) in members and str(fn.runtime_pid) in members
    finally:
        if limit is not None:
            limit.close()
        quota.close()


# -- the command line ----------------------------------------------------------------------------


TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Tiny:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      MemorySize: 128
      Timeout: 10
    Metadata: {Dockerfile: Dockerfile, DockerContext: ./fn, DockerTag: v1}
"""

DOCKERFILE = """
FROM public.ecr.aws/lambda/python:3.12
COPY app.py ${LAMBDA_TASK_ROOT}/
CMD ["app.handler"]
"""


def test_invoke_with_lambdas_memory_limit(tmp_path, cache_dir):
    """--lambda-memory: over MemorySize the runtime is killed and the CLI prints the RIE's error, or it says why not."""
    (tmp_path / "fn").mkdir()
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "fn" / "Dockerfile").write_text(DOCKERFILE.lstrip())
    (tmp_path / "fn" / "app.py").write_text(HUNGRY_HANDLER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOCAL_LAMBDA_CACHE_DIR": str(cache_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "local_lambda", "invoke", "--no-lint", "--lambda-memory", "-e", "-"],
                            cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate('{"mb": 300}', timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    probe, why = MemoryLimit.create(128, name="cli-probe")
    if probe is None:  # no writable memory controller on this machine: a clear refusal, not a silent unlimited run
        assert proc.returncode == 2 and "--lambda-memory: cannot set a memory limit here" in stderr
        return
    counts_kills = probe.oom_kills() is not None
    probe.close()
    assert proc.returncode == 0, stderr
    assert f"Tiny: cgroup v{probe.version} memory limit 128 MiB" in stderr
    error = json.loads(stdout)
    assert error["errorType"] == "Runtime.ExitError" and error["errorMessage"].endswith("signal: killed")
    assert "OOM kills 1" in stderr or not counts_kills
    assert not (probe.path.parent / f"local-lambda-Tiny-{proc.pid}").exists()  # removed on exit
