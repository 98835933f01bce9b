"""bench/memory_sweep.py: a tiny sweep runs both functions at a memory size and prices their billed
durations; the cost arithmetic and the RIE REPORT parsing on fixed inputs. No time is asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import memory_sweep, run  # noqa: E402
from local_lambda.cpu_quota import CpuQuota  # noqa: E402

REPORT_LINES = (
    "START RequestId: a Version: $LATEST\n"
    "REPORT RequestId: a\tInit Duration: 0.02 ms\tDuration: 191.68 ms\tBilled Duration: 192 ms\tMemory Size: 2048 MB\t\n"
    "some log line with Duration: 5.00 ms\tBilled Duration: 5 ms\n"
    "REPORT RequestId: b\tDuration: 19.24 ms\tBilled Duration: 20 ms\tMemory Size: 2048 MB\tMax Memory Used: 2048 MB\t\n"
)


def test_report_lines_give_each_invokes_billed_duration_in_order():
    assert [int(m.group(2)) for m in run._REPORT.finditer(REPORT_LINES)] == [192, 20]


def test_cost_is_billed_seconds_times_gigabytes_times_price_plus_the_request_fee():
    session = {"cold_start_s": 0.3, "cold_billed_ms": 300, "warm_ms": {"jpeg_1mp_url": [19.0, 21.0, 20.0]},
               "billed_ms": {"jpeg_1mp_url": [19, 21, 20]}}
    summary = memory_sweep.summarize([session], 2048, gb_second_usd=0.00001, request_usd=0.0000002)
    assert summary["billed_p50_ms"]["jpeg_1mp_url"] == 20
    assert summary["usd_per_million"] == pytest.approx(1e6 * (0.020 * 2 * 0.00001 + 0.0000002))


def test_cost_prices_the_mean_billed_duration_not_the_median():
    # Below one vCPU the tail is long: a million requests cost a million times the mean.
    session = {"cold_start_s": 0.3, "cold_billed_ms": 300, "warm_ms": {"jpeg_1mp_url": [20.0] * 4},
               "billed_ms": {"jpeg_1mp_url": [20, 20, 20, 100]}}
    summary = memory_sweep.summarize([session], 1024, gb_second_usd=0.00001, request_usd=0.0)
    assert summary["billed_p50_ms"]["jpeg_1mp_url"] == 20 and summary["billed_mean_ms"]["jpeg_1mp_url"] == 40
    assert summary["usd_per_million"] == pytest.approx(1e6 * 0.040 * 1 * 0.00001)


def test_a_sweep_at_one_size_prices_both_functions(tmp_path, capsys):
    probe, why = CpuQuota.create(1769, name="memory-sweep-probe")
    if probe is None:
        pytest.skip(f"no writable cgroup cpu controller here: {why}")
    probe.close()
    output = tmp_path / "sweep.json"
    assert memory_sweep.main(["--sizes", "1769", "--sessions", "1", "--warm", "1", "--build-dir", str(tmp_path),
                              "--output", str(output)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(" 1769")]
    assert sorted(row[2] for row in rows) == ["baseline", "ours"]
    summary = json.loads(output.read_text())["summary"]["1769"]
    for name in ("ours", "baseline"):
        s = summary[name]
        assert s["cold_billed_ms"] > 0 and s["usd_per_million"] > 0.2  # duration is charged on top of the fee
        assert set(s["billed_p50_ms"]) == {"png_0.3mp_url", "jpeg_1mp_url", "jpeg_12mp_url"}


def test_sizes_beyond_the_machines_cpus_are_refused():
    with pytest.raises(SystemExit):
        memory_sweep.main(["--sizes", str(1769 * (run._cpus() + 1))])
