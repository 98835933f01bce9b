"""Frozen settings: onnxruntime threads follow the CPU Lambda grants at the configured memory."""

from __future__ import annotations

import os

import pytest

from classifier.settings import Settings, decode_pixel_budget, granted_cpus


@pytest.mark.parametrize(
    "memory_mb, cpus, threads",
    [
        (512, 2, 1),
        (1769, 2, 1),  # exactly one vCPU's worth of CPU time
        (1770, 2, 2),
        (2048, 2, 2),  # the template's default
        (3008, 2, 2),
        (10240, 6, 6),  # ceil(5.8)
        (10240, 2, 2),  # never more than the CPUs the sandbox shows
        (None, 4, 4),  # off Lambda: every CPU
        (0, 3, 3),
        (2048, 0, 1),
    ],
)
def test_granted_cpus(memory_mb, cpus, threads):
    assert granted_cpus(memory_mb, cpus) == threads


def test_from_env_resolves_cpus_and_threads_from_the_lambda_memory_size():
    cpus = len(os.sched_getaffinity(0))
    small = Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"})
    assert (small.cpus, small.ort_intra_op_threads) == (1, 1)
    assert Settings.from_env({}).cpus == cpus
    assert Settings.from_env({}).ort_intra_op_threads == cpus
    explicit = Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "ORT_INTRA_OP_THREADS": "3"})
    assert (explicit.cpus, explicit.ort_intra_op_threads) == (1, 3)
    assert Settings.from_env({"ORT_INTRA_OP_THREADS": "0"}).ort_intra_op_threads == cpus
    with pytest.raises(ValueError, match="invalid function setting"):
        Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"})


@pytest.mark.parametrize("memory_mb, megapixels", [(512, 18.2), (1024, 48.0), (2048, 107.6), (10240, 584.9)])
def test_the_pixels_a_request_may_decode_follow_the_memory_size(memory_mb, megapixels):
    # (MemorySize - 200 MB) / 18 bytes a pixel: the lossless WebP with alpha peaks at 17 (bench.decode_memory)
    assert decode_pixel_budget(memory_mb) / 1e6 == pytest.approx(megapixels, abs=0.1)
    assert Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb)}).max_decoded_pixels == decode_pixel_budget(memory_mb)


def test_no_decode_budget_where_the_memory_is_unknown():
    assert decode_pixel_budget(None) is None and decode_pixel_budget(0) is None
    assert Settings.from_env({}).max_decoded_pixels is None


def test_onnxruntime_threads_do_not_spin_unless_asked():
    assert Settings.from_env({}).ort_allow_spinning is False
    assert Settings.from_env({"ORT_ALLOW_SPINNING": "0"}).ort_allow_spinning is False
    assert Settings.from_env({"ORT_ALLOW_SPINNING": "1"}).ort_allow_spinning is True
    assert Settings.from_env({"ORT_ALLOW_SPINNING": "true"}).ort_allow_spinning is True


@pytest.mark.parametrize(
    "name, value",
    [("DEFAULT_TOP_K", "0"), ("DEFAULT_TOP_K", "-3"), ("MAX_DOWNLOAD_BYTES", "0"), ("MAX_IMAGE_PIXELS", "-1"),
     ("MAX_REDIRECTS", "-1"), ("ORT_INTRA_OP_THREADS", "-2"), ("FETCH_CONNECT_TIMEOUT", "0"),
     ("FETCH_READ_TIMEOUT", "nan"), ("ALLOWED_PORTS", "443,70000"), ("ALLOWED_PORTS", "0")],
)
def test_out_of_range_settings_fail_the_cold_start_naming_the_variable(name, value):
    with pytest.raises(ValueError, match=f"invalid function setting: {name}"):
        Settings.from_env({name: value})


def test_template_defaults_are_valid():
    settings = Settings.from_env({"DEFAULT_TOP_K": "5", "MAX_REDIRECTS": "0", "ALLOWED_PORTS": "80,443"})
    assert (settings.default_top_k, settings.max_redirects, settings.allowed_ports) == (5, 0, (80, 443))
