"""Environment variable names and the frozen settings read from them once per cold start."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Mapping

# Environment variable names (documented in template.yaml and README.md).
MODEL_PATH = "MODEL_PATH"
DEFAULT_TOP_K = "DEFAULT_TOP_K"
ALLOW_PRIVATE_URLS = "ALLOW_PRIVATE_URLS"
ALLOWED_HOSTS = "ALLOWED_HOSTS"
ALLOWED_PORTS = "ALLOWED_PORTS"
MAX_DOWNLOAD_BYTES = "MAX_DOWNLOAD_BYTES"
MAX_IMAGE_PIXELS = "MAX_IMAGE_PIXELS"
FETCH_CONNECT_TIMEOUT = "FETCH_CONNECT_TIMEOUT"
FETCH_READ_TIMEOUT = "FETCH_READ_TIMEOUT"
MAX_REDIRECTS = "MAX_REDIRECTS"
ORT_INTRA_OP_THREADS = "ORT_INTRA_OP_THREADS"
ORT_ALLOW_SPINNING = "ORT_ALLOW_SPINNING"
CORS_ALLOW_ORIGIN = "CORS_ALLOW_ORIGIN"

# Set by Lambda (and by the base image): where the function's code and model live, and its memory.
LAMBDA_TASK_ROOT = "LAMBDA_TASK_ROOT"
LAMBDA_MEMORY_SIZE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
# Lambda gives one vCPU's worth of CPU time per 1769 MB of memory (and shows 2 CPUs up to 3008 MB).
MB_PER_VCPU = 1769
DEFAULT_MODEL_RELATIVE_PATH = os.path.join("model", "model.onnx")
# Decoding peaks at up to 17-18 bytes per decoded pixel over the warm runtime (a lossless or lossy WebP
# with alpha 17: Pillow's RGBA, its copy, the composite on white; a gray TIFF with associated alpha,
# La -> LA -> RGBA, 17.7 with its 13 MB file at 20 MP; a float TIFF 13, an 8-bit PNG with alpha 9, a JPEG
# decoded at full size 4, progressive 10-12), measured by `python -m bench.decode_memory`. A JPEG read in
# several scans also holds its full-size DCT coefficients (decode._held_coefficients). Lambda kills a runtime
# that outgrows MemorySize, so the pixels one request may decode are capped by what the memory holds
# once the runtime (~100-120 MB warm), the request's bytes (an inline image or a URL's body, up to
# 15 MB, held while decoding) and a margin are set aside: 18 MP at 512 MB, 48 MP at 1024 MB.
DECODE_BYTES_PER_PIXEL = 18
DECODE_RESERVED_MB = 200


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in (value or "").split(",") if item.strip())


def granted_cpus(memory_mb: int | None, cpus: int) -> int:
    """The CPUs worth using at ``memory_mb``: one per started vCPU's worth of CPU time that
    Lambda grants, never more than the CPUs the sandbox shows (all of them off Lambda)."""
    cpus = max(1, cpus)
    if not memory_mb or memory_mb <= 0:
        return cpus
    return max(1, min(cpus, math.ceil(memory_mb / MB_PER_VCPU)))


def decode_pixel_budget(memory_mb: int | None) -> int | None:
    """The most pixels one request may decode at ``memory_mb`` (None: no memory limit known)."""
    if not memory_mb or memory_mb <= 0:
        return None
    return max(1, (memory_mb - DECODE_RESERVED_MB) * 2**20 // DECODE_BYTES_PER_PIXEL)


def _default_model_path(env: Mapping[str, str]) -> str:
    task_root = env.get(LAMBDA_TASK_ROOT) or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(task_root, DEFAULT_MODEL_RELATIVE_PATH)


@dataclass(frozen=True)
class Settings:
    model_path: str
    default_top_k: int = 5
    allow_private_urls: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = (80, 443)
    max_download_bytes: int = 15 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    max_decoded_pixels: int | None = None  # what MemorySize holds (decode_pixel_budget); None: unknown
    fetch_connect_timeout: float = 3.0
    fetch_read_timeout: float = 10.0
    max_redirects: int = 3
    cpus: int = 1  # CPUs worth using at the configured memory (granted_cpus)
    ort_intra_op_threads: int = 0  # 0: one thread per available CPU; from_env defaults it to ``cpus``
    ort_allow_spinning: bool = False  # idle onnxruntime workers spin before they sleep (bench.idle_threads)
    cors_allow_origin: str = ""  # Access-Control-Allow-Origin on API responses; "" = no CORS header

    def __post_init__(self) -> None:
        """Out-of-range values fail the cold start, naming the variable, instead of acting oddly."""
        at_least = ((DEFAULT_TOP_K, self.default_top_k, 1), (MAX_DOWNLOAD_BYTES, self.max_download_bytes, 1),
                    (MAX_IMAGE_PIXELS, self.max_image_pixels, 1), (MAX_REDIRECTS, self.max_redirects, 0),
                    (ORT_INTRA_OP_THREADS, self.ort_intra_op_threads, 0))
        for name, value, low in at_least:
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        for name, value in ((FETCH_CONNECT_TIMEOUT, self.fetch_connect_timeout), (FETCH_READ_TIMEOUT, self.fetch_read_timeout)):
            if not value > 0:  # also NaN
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        if not all(0 < port < 65536 for port in self.allowed_ports):
            raise ValueError(f"{ALLOWED_PORTS} must be TCP ports (1-65535), got {self.allowed_ports}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        try:
            memory_mb = int(env.get(LAMBDA_MEMORY_SIZE) or 0)
            cpus = granted_cpus(memory_mb, len(os.sched_getaffinity(0)))
            return cls(
                model_path=env.get(MODEL_PATH) or _default_model_path(env),
                default_top_k=int(env.get(DEFAULT_TOP_K, 5)),
                allow_private_urls=_flag(env.get(ALLOW_PRIVATE_URLS)),
                allowed_hosts=_csv(env.get(ALLOWED_HOSTS)),
                allowed_ports=tuple(int(p) for p in _csv(env.get(ALLOWED_PORTS, "80,443"))),
                max_download_bytes=int(env.get(MAX_DOWNLOAD_BYTES, 15 * 1024 * 1024)),
                max_image_pixels=int(env.get(MAX_IMAGE_PIXELS, 50_000_000)),
                max_decoded_pixels=decode_pixel_budget(memory_mb),
                fetch_connect_timeout=float(env.get(FETCH_CONNECT_TIMEOUT, 3.0)),
                fetch_read_timeout=float(env.get(FETCH_READ_TIMEOUT, 10.0)),
                max_redirects=int(env.get(MAX_REDIRECTS, 3)),
                cpus=cpus,
                ort_intra_op_threads=int(env.get(ORT_INTRA_OP_THREADS) or 0) or cpus,
                ort_allow_spinning=_flag(env.get(ORT_ALLOW_SPINNING)),
                cors_allow_origin=(env.get(CORS_ALLOW_ORIGIN) or "").strip(),
            )
        except ValueError as exc:
            # A misconfigured function should fail its cold start loudly, naming the variable.
            raise ValueError(f"invalid function setting: {exc}") from exc
