"""Installed sizes, ``du``-style: every file counted once (hard links by inode), in bytes.

* ``apparent``: sum of file sizes (``du -sb``); ``disk``: allocated blocks (``du -s`` x 1024).
* A staged task root is split into ``model`` (model/), ``code`` (the function's own files),
  ``deps`` (everything else ``pip install --target`` put there, bytecode and ``bin/`` included).
* tensorflow-cpu: the files listed in the RECORD of every distribution in its install closure
  (its ``Requires-Dist`` followed recursively, markers evaluated for this interpreter, extras off),
  as installed in the dev venv (cp311 wheels; same platform). ``shared`` are the distributions of
  that closure which the ONNX stack installs too (numpy, protobuf, ...); ``tf_only`` the rest.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Iterable, Set, Tuple


def _walk(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            yield Path(dirpath, name)


def _account(paths: Iterable[Path], seen: Set[Tuple[int, int]]) -> Dict[str, int]:
    apparent = disk = files = 0
    for path in paths:
        try:
            st = path.lstat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        apparent += st.st_size
        disk += st.st_blocks * 512
        files += 1
    return {"apparent": apparent, "disk": disk, "files": files}


def task_root_sizes(task_root: Path, code_paths: Tuple[str, ...]) -> dict:
    task_root = Path(task_root)
    seen: Set[Tuple[int, int]] = set()
    groups: Dict[str, Dict[str, int]] = {}
    entries: Dict[str, Dict[str, int]] = {}
    for entry in sorted(task_root.iterdir()):
        files = list(_walk(entry)) if entry.is_dir() and not entry.is_symlink() else [entry]
        size = _account(files, seen)
        group = "model" if entry.name == "model" else "code" if entry.name in code_paths else "deps"
        label = "*.dist-info" if entry.name.endswith(".dist-info") else entry.name
        for table, key in ((groups, group), (entries, label)):
            row = table.setdefault(key, {"apparent": 0, "disk": 0, "files": 0})
            for k, v in size.items():
                row[k] += v
    total = {k: sum(g[k] for g in groups.values()) for k in ("apparent", "disk", "files")}
    pycache = _account((p for p in _walk(task_root) if "__pycache__" in p.parts), set())
    top = dict(sorted(entries.items(), key=lambda kv: -kv[1]["apparent"])[:12])
    return {"total": total, **{g: groups.get(g, {"apparent": 0, "disk": 0, "files": 0}) for g in ("deps", "model", "code")},
            "bytecode": pycache, "largest_entries": top}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_closure(root: str) -> Dict[str, "object"]:
    """``{canonical name: Distribution}`` of ``root`` and everything it requires, recursively."""
    from importlib import metadata

    from packaging.requirements import Requirement

    installed = {}
    for dist in metadata.distributions():
        installed.setdefault(_canonical(dist.metadata["Name"]), dist)
    closure: Dict[str, object] = {}
    todo = [_canonical(root)]
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        dist = installed.get(name)
        if dist is None:
            closure[name] = None  # required but not installed (reported)
            continue
        closure[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canonical(req.name))
    return closure


def tensorflow_sizes(shared_with: Iterable[str], root: str = "tensorflow-cpu") -> dict:
    """Size of ``root`` + its install closure in this interpreter's site-packages."""
    try:
        closure = distribution_closure(root)
    except Exception as exc:  # noqa: BLE001 - reported, never fatal
        return {"error": f"{type(exc).__name__}: {exc}"}
    if closure.get(_canonical(root)) is None:
        return {"error": f"{root} is not installed in this interpreter"}
    shared = {_canonical(n) for n in shared_with}
    seen: Set[Tuple[int, int]] = set()
    per_dist = {}
    for name, dist in sorted(closure.items()):
        if dist is None:
            continue
        files = [Path(dist.locate_file(f)) for f in (dist.files or [])]
        per_dist[name] = {**_account(files, seen), "version": dist.version, "shared_with_onnx_stack": name in shared}
    total = {k: sum(d[k] for d in per_dist.values()) for k in ("apparent", "disk", "files")}
    tf_only = {k: sum(d[k] for d in per_dist.values() if not d["shared_with_onnx_stack"]) for k in ("apparent", "disk", "files")}
    largest = dict(sorted(per_dist.items(), key=lambda kv: -kv[1]["apparent"])[:8])
    return {
        "root": root,
        "version": closure[_canonical(root)].version,
        "distributions": len(per_dist),
        "missing": sorted(n for n, d in closure.items() if d is None),
        "total": total,
        "tf_only": tf_only,
        "shared": sorted(n for n, d in per_dist.items() if d["shared_with_onnx_stack"]),
        "largest": largest,
        "method": "files in RECORD of tensorflow-cpu and its recursive Requires-Dist closure (markers for this "
                  "interpreter, no extras), deduplicated by inode, in the dev venv (cp311, same platform)",
    }


def requirement_names(requirements_txt: Path) -> list:
    names = []
    for line in Path(requirements_txt).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line.strip())
        if match:
            names.append(match.group(1))
    return names
