"""bench/soak.py on a tiny scale (one cycle of its mix), so the soak cannot silently rot.

Asserts only what the mix implies (counts by status and code) and that one runtime process served
everything; memory and time figures are reported by the real run, never asserted here.
"""

from __future__ import annotations

import collections
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_soak():
    # By path, under its own name: bench/ is also a package another benchmark owns.
    spec = importlib.util.spec_from_file_location("bench_soak_script", REPO / "bench" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def soak():
    return _load_soak()


@pytest.fixture(scope="module")
def result(soak, tmp_path_factory):
    build = tmp_path_factory.mktemp("soak")
    out = build / "soak.json"
    assert soak.main(["--requests", str(len(soak.MIX)), "--out", str(out), "--build-dir", str(build), "--quiet"]) == 0
    return json.loads(out.read_text())


def test_counts_by_code_are_what_the_mix_implies(soak, result):
    implied = collections.Counter(f"{status} {code}" if code else str(status) for _, status, code in soak.MIX)
    assert len(implied) >= 8  # the mix covers 200, 400, 403, 413, 415, 422, 502, 504
    assert result["requests"] == len(soak.MIX)
    assert result["by_code"] == dict(implied) == result["planned_by_code"]
    assert result["mismatches"] == {}


def test_one_warm_process_served_everything(result):
    assert result["runtime_pid"]["same_process"] and result["runtime_pid"]["start"]


def test_every_figure_is_reported(result):
    memory = result["memory_mb"]
    assert memory["peak_rss"] > 0 and memory["rss_at_10pct"] > 0 and memory["rss_end"] > 0
    assert isinstance(memory["growth_10pct_to_end"], float)
    assert result["requests_per_s"] > 0 and result["fds"]["end"] and result["threads"]["end"]
    assert set(result["by_case"]) == {entry["case"] for entry in result["cycle"]}
    assert result["samples"][-1]["request"] == result["requests"]


def test_plan_counts_partial_cycles(soak):
    n = len(soak.MIX) + 3
    planned = soak.plan(n)
    assert sum(planned.values()) == n
    first_three = collections.Counter(f"{s} {c}" if c else str(s) for _, s, c in soak.MIX[:3])
    for label, count in first_three.items():
        assert planned[label] == sum(1 for _, s, c in soak.MIX if (f"{s} {c}" if c else str(s)) == label) + count
