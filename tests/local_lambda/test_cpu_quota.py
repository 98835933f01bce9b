"""Lambda's CPU allotment as a cgroup CPU quota: the numbers, the cgroup it sets, and the RIE's runtime inside it.

Setting a quota needs a writable cgroup cpu controller (root here); where there is none,
``CpuQuota.create`` must say why, and the tests that need one are skipped with that reason.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from local_lambda import Emulator
from local_lambda.cpu_quota import MB_PER_VCPU, PERIOD_US, CpuQuota, lambda_cpus


def test_lambda_cpus_follow_memory():
    assert lambda_cpus(MB_PER_VCPU) == 1.0
    assert round(lambda_cpus(2048), 3) == 1.158
    assert round(lambda_cpus(10240), 2) == 5.79


@pytest.fixture
def quota():
    made, why = CpuQuota.create(1769, name="test-quota")
    if made is None:
        pytest.skip(f"no writable cgroup cpu controller here: {why}")
    yield made
    made.close()


def _quota_us(quota: CpuQuota) -> int:
    if quota.version == 1:
        return int((quota.path / "cpu.cfs_quota_us").read_text())
    return int((quota.path / "cpu.max").read_text().split()[0])


def test_a_quota_of_one_cpu_throttles_two_busy_threads(quota):
    assert quota.cpus == 1.0 and _quota_us(quota) == PERIOD_US
    # hashlib releases the GIL on large buffers: two threads hashing really want two CPUs.
    busy = ("import hashlib, threading, time\n"
            "block = bytes(4 << 20)\n"
            "def spin():\n"
            "    end = time.monotonic() + 1.0\n"
            "    while time.monotonic() < end: hashlib.sha256(block).digest()\n"
            "ts = [threading.Thread(target=spin) for _ in range(2)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n")
    process = subprocess.Popen([sys.executable, "-c", busy])
    quota.add(process.pid)
    assert str(process.pid) in (quota.path / "cgroup.procs").read_text().split()
    assert process.wait(timeout=30) == 0
    # Two threads want two CPUs; one CPU of quota makes them wait for the next period.
    assert quota.throttled_us() > 0


def test_a_command_runs_inside_the_quota_from_its_start(quota):
    argv = quota.command([sys.executable, "-c", "print(open('/proc/self/cgroup').read())"])
    process = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert process.returncode == 0, process.stderr
    assert quota.path.name in process.stdout  # already in the group when its first line ran


def test_the_emulators_runtime_runs_inside_the_quota(quota, tiny_task_root, runtime_python):
    with Emulator(tiny_task_root, handler="app.handler", runtime_python=runtime_python, memory_mb=1769,
                  timeout_s=2, cpu_quota=quota) as fn:
        assert fn.invoke({"n": 1})["event"] == {"n": 1}
        members = (quota.path / "cgroup.procs").read_text().split()
        assert str(fn.pid) in members and str(fn.runtime_pid) in members  # the RIE and the runtime it started


def test_without_a_controller_create_says_why(monkeypatch, tmp_path):
    import local_lambda.cpu_quota as module

    monkeypatch.setattr(module, "_V1", tmp_path / "no-v1")
    monkeypatch.setattr(module, "_V2", tmp_path / "no-v2")
    made, why = CpuQuota.create(2048)
    assert made is None and why == "no cgroup cpu controller mounted"
