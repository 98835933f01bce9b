""".dockerignore matching with Docker's semantics (moby/patternmatcher).

* Patterns are cleaned paths relative to the context root; a leading ``/`` is ignored.
* ``*`` and ``?`` never cross ``/``; ``**`` matches any number of directories (also none).
* A pattern matches a path when it matches the path itself or one of its parent directories.
* ``!pattern`` re-includes; the last pattern that matches decides.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import List, Optional, Tuple, Union


def _translate(pattern: str) -> "re.Pattern[str]":
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


class DockerIgnore:
    def __init__(self, lines: List[str]):
        self.patterns: List[Tuple[bool, "re.Pattern[str]"]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            line = posixpath.normpath(line).lstrip("/")
            if line in ("", "."):
                continue
            self.patterns.append((exclusion, _translate(line)))

    @classmethod
    def for_context(cls, context: Union[str, Path], dockerfile: Optional[Union[str, Path]] = None) -> "DockerIgnore":
        """BuildKit reads ``<Dockerfile>.dockerignore`` first, then ``<context>/.dockerignore``."""
        candidates = []
        if dockerfile is not None:
            candidates.append(Path(str(dockerfile) + ".dockerignore"))
        candidates.append(Path(context) / ".dockerignore")
        for candidate in candidates:
            if candidate.is_file():
                return cls(candidate.read_text().splitlines())
        return cls([])

    def ignored(self, relpath: str) -> bool:
        """Whether ``relpath`` (relative to the context, ``/``-separated) is left out of the context."""
        relpath = posixpath.normpath(relpath.replace(os.sep, "/")).lstrip("/")
        parts = relpath.split("/")
        prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        excluded = False
        for exclusion, regex in self.patterns:
            if exclusion != excluded:
                continue  # this pattern cannot change the outcome
            if any(regex.match(p) for p in prefixes):
                excluded = not exclusion
        return excluded

    def files_under(self, context: Path, directory: Path) -> List[Path]:
        """The files below ``directory`` that the build context sends, in a stable order."""
        files = []
        for root, dirs, names in os.walk(directory):
            dirs.sort()
            for name in sorted(names):
                path = Path(root, name)
                if not self.ignored(path.relative_to(context).as_posix()):
                    files.append(path)
        return files
