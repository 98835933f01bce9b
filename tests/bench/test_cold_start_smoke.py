"""bench/cold_start.py on a tiny scale: both variants start, serve, and are reported (no time asserted)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import cold_start  # noqa: E402


def test_cold_start_compares_the_work_tree_with_a_revision(tmp_path, capsys):
    assert cold_start.main(["--against", "HEAD", "--runs", "1", "--build-dir", str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "init + first request" in line]
    assert {row.split(":")[0].split()[-1] for row in rows} == {"tree", "HEAD"}
    for row in rows:
        init, total = (float(v) for v in re.findall(r"init(?: \+ first request)? +([\d.]+)", row))
        assert 0 < init < total
