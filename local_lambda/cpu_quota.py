"""Lambda's CPU allotment, emulated: a cgroup CPU quota of ``memory_mb / 1769`` CPUs.

Lambda gives a function CPU time in proportion to its memory (one vCPU's worth at 1,769 MB),
while the sandbox may see more CPUs than that: at 2048 MB a function sees 2 CPUs but gets
~1.16 CPUs of time. Threads that would run in parallel on an idle developer machine (a session
built on a second thread, onnxruntime workers spinning) then compete for one CPU-period budget.
``CpuQuota`` reproduces that with the Linux CFS bandwidth controller: processes added to it (and
their children, e.g. the runtime the RIE starts) get ``quota`` microseconds of CPU time per
100 ms period, over all their threads.

It needs a writable cgroup cpu controller (cgroup v1 ``/sys/fs/cgroup/cpu`` or a cgroup v2
hierarchy with the ``cpu`` controller delegated), as root on most machines; ``CpuQuota.create``
returns ``None`` and a reason where there is none.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Tuple

from .cgroup import Cgroup, make_group

MB_PER_VCPU = 1769  # Lambda: one vCPU's worth of CPU time per 1,769 MB of memory
PERIOD_US = 100_000
_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")


def lambda_cpus(memory_mb: int) -> float:
    """CPUs' worth of time Lambda gives ``memory_mb`` of memory (1.158 at 2048 MB)."""
    return memory_mb / MB_PER_VCPU


class CpuQuota(Cgroup):
    """A cgroup whose processes share ``cpus`` CPUs' worth of time. Close it after its processes ended."""

    def __init__(self, path: Path, cpus: float, version: int) -> None:
        super().__init__(path, version)
        self.cpus = cpus

    @classmethod
    def create(cls, memory_mb: int, name: str = "local-lambda") -> Tuple[Optional["CpuQuota"], str]:
        """A quota for a function of ``memory_mb``; ``(None, reason)`` where the machine allows none."""
        cpus = lambda_cpus(memory_mb)
        quota_us = max(1000, math.ceil(cpus * PERIOD_US))
        made, note = make_group(name, ((1, _V1, "cpu.cfs_quota_us", lambda path: cls._write_v1(path, quota_us)),
                                       (2, _V2, "cgroup.controllers", lambda path: cls._write_v2(path, quota_us))),
                                "no cgroup cpu controller mounted")
        if made is None:
            return None, note
        path, version = made
        return cls(path, cpus, version), f"cgroup v{version} CPU quota {cpus:.2f} CPUs"

    @staticmethod
    def _write_v1(path: Path, quota_us: int) -> str:
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(quota_us))
        return ""

    @staticmethod
    def _write_v2(path: Path, quota_us: int) -> str:
        (path / "cpu.max").write_text(f"{quota_us} {PERIOD_US}")  # fails unless "cpu" is delegated here
        return ""

    def throttled_us(self) -> int:
        """Microseconds the group's processes waited for the next period so far."""
        name = "throttled_time" if self.version == 1 else "throttled_usec"  # v1 counts nanoseconds
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value) // 1000 if self.version == 1 else int(value)
        return 0

    def __repr__(self) -> str:
        return f"CpuQuota({self.cpus:.2f} CPUs, cgroup v{self.version} {self.path})"
