"""A cgroup for the emulated function's processes: made under cgroup v1 or v2, joined, removed.

``cpu_quota.CpuQuota`` (Lambda's CPU time) and ``memory_limit.MemoryLimit`` (its memory size) are
the two kinds; each says which hierarchies it can use and what to write there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple

# (version, controller root, a file that shows the controller is there, write(group path) -> note)
Hierarchy = Tuple[int, Path, str, Callable[[Path], str]]


def make_group(name: str, hierarchies: Iterable[Hierarchy], none_mounted: str) -> Tuple[Optional[Tuple[Path, int]], str]:
    """``<name>-<pid>`` in the first hierarchy that takes its settings: ``((path, version), note)``,
    or ``(None, why)`` (each failure's reason, else ``none_mounted``)."""
    group = f"{name}-{os.getpid()}"
    errors = []
    for version, parent, marker, write in hierarchies:
        if not (parent / marker).is_file():
            continue
        path = parent / group
        try:
            path.mkdir(exist_ok=True)
            return (path, version), write(path)
        except OSError as exc:
            errors.append(f"cgroup v{version}: {exc.strerror or exc}")
            try:
                path.rmdir()
            except OSError:
                pass
    return None, "; ".join(errors) or none_mounted


class Cgroup:
    """A cgroup at ``path`` (hierarchy ``version``). Close it after its processes ended."""

    def __init__(self, path: Path, version: int) -> None:
        self.path, self.version = path, version

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the group; children it starts later stay in it."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def command(self, argv: List[str]) -> List[str]:
        """``argv`` run inside the group from its first instruction: a shell joins the cgroup, then
        execs ``argv`` (same process id). ``add`` moves a process that is already running."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def close(self) -> None:
        try:
            self.path.rmdir()  # only once its processes have exited
        except OSError:
            pass
