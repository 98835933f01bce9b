"""Lambda's memory limit, emulated: a cgroup memory limit of ``memory_mb`` MiB with no swap.

Lambda kills the runtime when the execution environment uses more than the function's MemorySize
(MiB: 2048 MB is 2 GiB); the invoke fails (``Runtime.ExitError``, "signal: killed") and the next
invoke starts a fresh runtime (a new init). ``MemoryLimit`` reproduces that with the memory
controller: processes added to it (and their children, e.g. the runtime the RIE starts) share
``memory_mb * 2**20`` bytes, and the kernel's OOM killer kills the biggest of them (the runtime,
not the small RIE) when they need more. Swap is limited too where the kernel accounts it (v1
``memory.memsw.limit_in_bytes`` = the limit, v2 ``memory.swap.max`` = 0), so it cannot hide the excess.

It needs a writable cgroup memory controller (cgroup v1 ``/sys/fs/cgroup/memory`` or a cgroup v2
hierarchy with the ``memory`` controller delegated), as root on most machines; ``MemoryLimit.create``
returns ``None`` and a reason where there is none. On cgroup v2 a process is in one group for every
controller: give it the same ``name`` as the ``CpuQuota`` so both limits are set on one group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

from .cgroup import Cgroup, make_group

MIB = 2 ** 20  # Lambda's "MB" of MemorySize are MiB
_V1 = Path("/sys/fs/cgroup/memory")
_V2 = Path("/sys/fs/cgroup")


class MemoryLimit(Cgroup):
    """A cgroup whose processes share ``limit_bytes`` of memory. Close it after its processes ended."""

    def __init__(self, path: Path, limit_bytes: int, version: int) -> None:
        super().__init__(path, version)
        self.limit_bytes = limit_bytes

    @classmethod
    def create(cls, memory_mb: int, name: str = "local-lambda") -> Tuple[Optional["MemoryLimit"], str]:
        """A limit for a function of ``memory_mb``; ``(None, reason)`` where the machine allows none."""
        limit = int(memory_mb) * MIB
        made, swap = make_group(name, ((1, _V1, "memory.limit_in_bytes", lambda path: cls._write_v1(path, limit)),
                                       (2, _V2, "cgroup.controllers", lambda path: cls._write_v2(path, limit))),
                                "no cgroup memory controller mounted")
        if made is None:
            return None, swap
        path, version = made
        return cls(path, limit, version), f"cgroup v{version} memory limit {memory_mb} MiB, {swap}"

    @staticmethod
    def _write_v1(path: Path, limit: int) -> str:
        (path / "memory.limit_in_bytes").write_text(str(limit))
        memsw = path / "memory.memsw.limit_in_bytes"  # only with swap accounting; must stay >= the limit
        if not memsw.is_file():
            return "swap not accounted"
        memsw.write_text(str(limit))
        return "no swap"

    @staticmethod
    def _write_v2(path: Path, limit: int) -> str:
        (path / "memory.max").write_text(str(limit))  # fails unless "memory" is delegated here
        swap = path / "memory.swap.max"
        if not swap.is_file():
            return "swap not accounted"
        swap.write_text("0")
        return "no swap"

    def usage_bytes(self) -> int:
        """Memory the group's processes use now (page cache included, as the limit counts it)."""
        return int((self.path / ("memory.usage_in_bytes" if self.version == 1 else "memory.current")).read_text())

    def peak_bytes(self) -> Optional[int]:
        """The most memory the group used at once so far (``None`` on a v2 kernel older than 5.19).

        Pages of files other processes had already read (the interpreter, shared libraries) stay charged
        to their groups, so this can be below the runtime's peak RSS."""
        try:
            return int((self.path / ("memory.max_usage_in_bytes" if self.version == 1 else "memory.peak")).read_text())
        except OSError:
            return None

    def oom_kills(self) -> Optional[int]:
        """Processes the OOM killer killed in the group (``None`` where the kernel does not count them)."""
        try:
            return self._counters("memory.oom_control" if self.version == 1 else "memory.events").get("oom_kill")
        except OSError:
            return None

    def _counters(self, file: str) -> Dict[str, int]:
        pairs = (line.split() for line in (self.path / file).read_text().splitlines())
        return {pair[0]: int(pair[1]) for pair in pairs if len(pair) == 2}

    def __repr__(self) -> str:
        return f"MemoryLimit({self.limit_bytes // MIB} MiB, cgroup v{self.version} {self.path})"
