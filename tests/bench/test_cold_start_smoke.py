"""bench/cold_start.py, session_options.py, idle_threads.py, fetch_cost.py, decode_memory.py and worst_case.py on a tiny scale: every variant starts, runs, and is reported (no time asserted)."""

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
    out = capsys.readouterr().out
    assert "the image's ENV {'OPENBLAS_NUM_THREADS': '1'}" in out  # children run with the image's ENV
    rows = [line for line in out.splitlines() if "init + first request" in line]
    assert {row.split(":")[0].split()[-1] for row in rows} == {"tree", "HEAD"}
    from local_lambda.cpu_quota import CpuQuota

    quota, _ = CpuQuota.create(2048, name="smoke-probe")
    if quota is not None:  # where a quota can be set, the cold start is also measured under Lambda's CPU time
        quota.close()
        assert sum(row.lstrip().startswith("1.16 CPUs") for row in rows) == 2
    for row in rows:
        init, total = (float(v) for v in re.findall(r"init(?: \+ first request)? +([\d.]+)", row))
        assert 0 < init < total
        assert float(re.search(r"cpu +([\d.]+)", row).group(1)) > 0  # the process's CPU time


def test_child_env_is_the_image_env_and_the_task_root_not_the_callers_shell(tmp_path, monkeypatch):
    monkeypatch.setenv("SHELL_ONLY", "x")
    env = cold_start.child_env(tmp_path, {"OPENBLAS_NUM_THREADS": "1"}, EXTRA="y")
    assert env["OPENBLAS_NUM_THREADS"] == "1" and env["PYTHONPATH"] == str(tmp_path) and env["EXTRA"] == "y"
    assert "SHELL_ONLY" not in env and env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_parameter_overrides_choose_the_model_ours_serves_and_the_baseline_keeps_fp32(tmp_path):
    from bench.functions import BASELINE, OURS, stage_functions

    default = stage_functions(tmp_path / "fp32", image_port=8000)
    int8 = stage_functions(tmp_path / "int8", image_port=8000, parameters={"ModelVariant": "int8"})
    assert default[OURS].model_path().name == "model.onnx"
    assert int8[OURS].model_path().name == "model-int8.onnx" and int8[OURS].model_path().is_file()
    assert sorted(p.name for p in (int8[BASELINE].task_root / "model").iterdir()) == ["model.onnx"]


def test_session_options_reports_every_variant(tmp_path, capsys):
    from bench import session_options

    assert session_options.main(["--runs", "1", "--build-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("CPU: ")  # under Lambda's CPU quota or not, said
    for name in session_options.VARIANTS:
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        session, first, total, warm, request, rss_session, rss_runs = (float(v) for v in row[len(name):].split())
        assert 0 < session < total and 0 < first < total and 0 < warm < request  # a request also decodes
        assert 0 < rss_session <= rss_runs  # a peak only grows


def test_cold_start_runs_on_the_given_task_root(tmp_path):
    """--task-root replaces the staged dependencies + model: a root without the model fails the run."""
    import os
    import shutil

    import pytest

    staged, _, _ = cold_start._staged_task_root(tmp_path / "stage")
    other = tmp_path / "other"
    shutil.copytree(staged, other, copy_function=os.link, ignore=shutil.ignore_patterns("model"))
    with pytest.raises(SystemExit, match="model file not found"):
        cold_start.main(["--against", "HEAD", "--runs", "1", "--build-dir", str(tmp_path), "--task-root", str(other)])


def test_idle_threads_reports_every_variant_and_pause_and_every_child_exits(tmp_path, capsys):
    from bench import idle_threads

    assert idle_threads.main(["--requests", "3", "--repeats", "1", "--pauses", "0,10", "--build-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "frozen (SIGSTOP) between requests" in out and out.splitlines()[1].startswith("CPU: ")
    rows = [line.split() for line in out.splitlines()[3:]]
    assert {(row[0], float(row[1])) for row in rows} == {(v, p) for v in idle_threads.VARIANTS for p in (0.0, 10.0)}
    for _, _, request, p95, inference, cpu in rows:
        assert 0 < float(inference) < float(request) <= float(p95) and float(cpu) > 0


def test_fetch_cost_fetches_the_same_image_both_ways_and_reports_both(tmp_path, capsys):
    from bench import fetch_cost

    assert fetch_cost.main(["--fetches", "5", "--image", "png_0.3mp", "--build-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("png_0.3mp (") and "from a loopback server" in out
    rows = {row.split()[0]: [float(v) for v in row.split()[1:]] for row in out.splitlines()[2:]}
    assert set(rows) == {"fetch_url", "http.client"}
    for p50, p95, cpu in rows.values():
        assert 0 < p50 <= p95 and cpu > 0


def test_decode_memory_reports_every_kind_of_image(tmp_path, capsys):
    from bench import decode_memory

    assert decode_memory.main(["--mp", "4", "--runs", "1", "--build-dir", str(tmp_path)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(rows) == set(decode_memory.KINDS)
    assert float(rows["jpeg-reduced-decode"][2]) < float(rows["jpeg-full-decode"][2]) == 4.0  # decoded MP
    assert all(float(row[4]) >= float(row[3]) > 0 for row in rows.values())  # peak >= warm


def test_worst_case_sends_each_file_to_the_real_handler_and_reports_its_status(tmp_path, capsys):
    from bench import worst_case

    over, under = "jpeg progressive 12.5 MP, 101 scans (over)", "gif 65,536 extension blocks"
    assert worst_case.main(["--only", over, "--only", under, "--build-dir", str(tmp_path)]) == 0
    rows = {line[:52].strip(): line[52:].split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(rows) == {over, under}
    assert rows[over][1] == "413" and rows[under][1] == "200"  # KB, status, CPU s, wall s, +MB
    assert float(rows[under][3]) > 0  # it was decoded and classified: inference alone takes milliseconds


def test_built_files_are_rebuilt_when_their_builder_changes(tmp_path):
    from bench.crafted import builds_folder

    builder, cache = tmp_path / "builder.py", tmp_path / "cache"
    builder.write_text("A = 1\n")
    first = builds_folder(cache, str(builder))
    (first / "file.bin").write_bytes(b"old")
    assert builds_folder(cache, str(builder)) == first and (first / "file.bin").exists()  # unchanged: kept
    builder.write_text("A = 2\n")
    second = builds_folder(cache, str(builder))
    assert second != first and not first.exists() and list(cache.iterdir()) == [second]  # changed: a fresh folder
