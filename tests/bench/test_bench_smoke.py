"""The benchmark's building blocks on a tiny scale, so `python -m bench` cannot silently rot.

One fresh start per function, one warm round, floor with 1 repeat. No time value is asserted
(timings on a shared 2-core machine are noise); only that every figure exists and has the right shape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import report, run  # noqa: E402
from bench.images import IMAGE_KEYS, make_images  # noqa: E402


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    build = tmp_path_factory.mktemp("bench")
    output = build / "latest.json"
    code = run.main(["--sessions", "1", "--warm", "1", "--floor-repeats", "1", "--no-base64", "--pause-ms", "20",
                     "--build-dir", str(build), "--output", str(output)])
    assert code == 0
    return json.loads(output.read_text())


def test_images_are_the_advertised_sizes(tmp_path):
    images = make_images(tmp_path)
    assert set(images) == set(IMAGE_KEYS)
    assert images["png_0.3mp"].format == "PNG" and 0.2 <= images["png_0.3mp"].megapixels <= 0.4
    assert images["jpeg_1mp"].format == "JPEG" and 0.9 <= images["jpeg_1mp"].megapixels <= 1.1
    assert (images["jpeg_12mp"].width, images["jpeg_12mp"].height) == (4000, 3000)
    assert make_images(tmp_path) == images  # reused, not remade


def test_every_figure_is_there(results):
    for name in ("ours", "baseline"):
        fn = results["functions"][name]
        assert fn["cold_start_s"]["n"] == 1 and fn["cold_start_s"]["median"] > 0
        assert fn["cold_start_cpu_ms"]["median"] > 0
        assert fn["init_ms"]["median"] is not None  # the RIE's INIT REPORT was found in its log
        assert fn["peak_rss_mb"]["median"] > 0
        assert set(fn["warm_ms"]) == {f"{k}_url" for k in IMAGE_KEYS}
        for stats in fn["warm_ms"].values():
            assert stats["n"] == 1 and stats["p50"] > 0 and stats["p95"] >= stats["p50"]
        assert fn["size_bytes"]["model"]["apparent"] > 0 and fn["size_bytes"]["deps"]["apparent"] > 0
        assert fn["init_profile"]["import_handler_s"]["median"] > 0
    assert results["functions"]["ours"]["handler_stage_ms_p50"]  # our handler's log lines were parsed
    floor = results["floor"]
    assert floor["python"].startswith("3.12")
    assert set(floor["images"]) == set(IMAGE_KEYS)
    assert "decode_draft" in floor["images"]["jpeg_12mp"] and "decode_draft" not in floor["images"]["png_0.3mp"]
    assert floor["inference_ours"]["median"] > 0 and floor["inference_default"]["median"] > 0
    assert set(results["overhead"]["ours"]) == set(report.URL_INPUTS)
    assert results["tensorflow"].get("total", {}).get("apparent", 0) > 0 or "error" in results["tensorflow"]
    quota = results["meta"]["cpu_quota"]  # under Lambda's CPU time for 2048 MB where cgroups allow it, and said
    assert quota["note"] and (quota["cpus"] is None or round(quota["cpus"], 2) == 1.16)
    assert report.render(results).splitlines()[1] == f"CPU: {quota['note']}"
    host = results["meta"]["host"]  # which CPU, and its speed on scalar code, so runs on two hosts can be told apart
    assert host["cpu_model"] and isinstance(host["simd"], list) and floor["python_loop_2m"]["median"] > 0
    assert report.render(results).splitlines()[4].startswith(f"host: {host['cpu_model']} (")
    memory = results["meta"]["memory_limit"]  # Lambda's memory limit where cgroups allow it, and said
    assert memory.startswith(("cgroup v", "memory not enforced")) and f"({memory})" in report.render(results).splitlines()[0]


def test_targets_and_table(results):
    assert [t["limit"] for t in results["targets"]] == [0.35, 0.75, 0.15, 200_000_000]
    assert all(t["pass"] in (True, False) for t in results["targets"])
    table = report.render(results)
    for text in ("cold start", "init", "warm jpeg_12mp url", "peak RSS", "installed", "Floor", "Targets"):
        assert text in table
    assert table.count("PASS") + table.count("FAIL") == 4
    assert results["meta"]["pause_ms_between_warm_requests"] == 20 and "20 ms idle before each warm request" in table
    for key in report.URL_INPUTS:  # ours's p50 split: floor + crop/resize + RIE round trip + the rest
        row = results["overhead"]["ours"][key]
        parts = row["floor_ms"] + row["preprocess_ms"] + row["rie_ms"] + row["rest_ms"]
        assert abs(parts - row["p50_ms"]) < 1e-6
        assert f"ours {key.replace('_url', '')}" in table


def test_percentile():
    assert report.percentile([], 50) is None
    assert report.percentile([3.0], 95) == 3.0
    assert report.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert report.percentile(list(range(101)), 95) == 95


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        run.parse_args(["--help"])
    assert exc.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_baseline_env_reaches_the_baseline_runtime_only(tmp_path):
    """--baseline-env: the baseline's runtime gets the variables (e.g. ours' OPENBLAS_NUM_THREADS=1); ours does not."""
    from bench.functions import BASELINE, OURS, stage_functions

    functions = stage_functions(tmp_path, 8000, baseline_env={"OPENBLAS_NUM_THREADS": "1", "BENCH_MARK": "x"})
    assert functions[BASELINE].environment()["OPENBLAS_NUM_THREADS"] == "1"
    assert functions[BASELINE].environment()["BENCH_MARK"] == "x"
    assert "BENCH_MARK" not in functions[OURS].environment()
    assert "OPENBLAS_NUM_THREADS" not in stage_functions(tmp_path, 8000)[BASELINE].environment()


class _RecordingEmulator:
    """Stands in for the RIE in run_session: answers every event with one prediction, records the order."""

    cold_start_s = 0.1
    logs = ""

    def __init__(self):
        self.events = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def invoke_raw(self, event):
        self.events.append(event.get("key"))

        class Result:
            status, seconds, text = 200, 0.001, ""

            @staticmethod
            def json():
                return {"predictions": [{"label": "x", "score": 1.0}]}

        return Result()

    def runtime_cpu_ms(self):
        return 1.0

    def runtime_memory_mb(self):
        return {"peak_rss": 1.0}


def test_warm_rounds_shuffle_the_inputs_the_same_way_for_both_functions():
    from bench.run import COLD_START_INPUT, run_session

    keys = [COLD_START_INPUT] + [f"input{i}" for i in range(4)]
    inputs = {key: {"key": key} for key in keys}

    def orders(seed):
        emulator = _RecordingEmulator()
        fn = type("Fn", (), {"name": "f", "emulator": lambda self, cpu_quota=None, memory_limit=None: emulator})()
        run_session(fn, inputs, warm=12, seed=seed)
        warm = emulator.events[1 + len(keys):]  # after the cold start and one warm-up per input
        return [warm[i:i + len(keys)] for i in range(0, len(warm), len(keys))]

    rounds = orders(seed=3)
    assert rounds == orders(seed=3) and rounds != orders(seed=4)  # same seed, same orders: ours and baseline alike
    assert all(sorted(r) == sorted(keys) for r in rounds)
    followers = {(a, b) for r in rounds for a, b in zip(r, r[1:])}
    assert len(followers) > len(keys) + 2  # a rotation only ever gives len(keys) distinct neighbour pairs


def test_stage_timings_leave_out_the_cold_start_and_each_inputs_warm_up():
    import json as _json

    def line(cold, size, total):
        return _json.dumps({"message": "request served", "cold_start": cold, "input_kind": "url",
                            "image_size": size, "timings_ms": {"total": total}})

    logs = "\n".join([line(True, "8x8", 900), line(False, "8x8", 50), line(False, "4x4", 60),
                      line(False, "8x8", 5), line(False, "4x4", 6)])
    assert run._stage_timings(logs) == {"url 8x8": {"total": [5.0]}, "url 4x4": {"total": [6.0]}}


def test_the_cpu_quota_and_the_memory_limit_are_one_group_name():
    # On cgroup v2 a process is in one group: the RIE joins both limits, so both must be that group.
    quota, _ = run.make_cpu_quota("auto", 2048)
    limit, note = run.make_memory_limit(2048)
    try:
        if quota is None or limit is None:
            pytest.skip(f"no writable cgroup cpu and memory controllers here: {note}")
        assert quota.path.name == limit.path.name
    finally:
        for group in (quota, limit):
            if group is not None:
                group.close()
