"""Soak: thousands of mixed good and bad requests through ONE warm emulated function (issue 4).

    python bench/soak.py                      # 3000 requests (about 3 minutes on 2 cores)
    python bench/soak.py --requests 10000 --out /tmp/soak.json

``PredictFunction`` is staged from predict_function/Dockerfile into ``.build/soak`` (sharing
local_lambda's dependency cache; the test suite's ``.build/local_lambda`` staging is left alone) and
started once under the real Lambda Runtime Interface Emulator with the template's environment plus
``ALLOW_PRIVATE_URLS=true`` (loopback only), the image server's port in ``ALLOWED_PORTS``,
``MAX_DOWNLOAD_BYTES=3000000`` (so an oversized base64 body stays under the RIE's 6 MB invoke limit)
and ``FETCH_READ_TIMEOUT=0.5`` (so a stalled server costs half a second). Images come from a loopback
server this script starts; every URL is 127.0.0.1 or an IP literal the fetcher refuses before
connecting (169.254.169.254, and a redirect to it).

Requests follow a fixed cycle (``MIX``, one entry per request, in order), so the counts by status
and code are known in advance: ``plan(n)``. Reported: requests/s, the runtime process's peak RSS
(VmHWM) and its RSS after the first 10 % of requests vs at the end (growth), open file descriptors
and threads at the same two points, counts by status/code (observed vs planned), per-case latency,
and whether the runtime process stayed the same (pid). Nothing is asserted: this is a report.
A table goes to stdout, JSON to ``bench/results/soak.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import base64
import collections
import gzip
import importlib.util
import io
import json
import os
import socketserver
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Run as a script, bench/ would be first on sys.path and its modules could shadow the stdlib's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.crafted import encode, png_header_bomb, png_real_bomb  # noqa: E402
from local_lambda import Emulator, stage  # noqa: E402
from local_lambda.template import function_emulator, read_function  # noqa: E402

DEFAULT_OUT = HERE / "results" / "soak.json"
DEFAULT_BUILD = REPO / ".build" / "soak"
DEFAULT_CACHE = REPO / ".build" / "local_lambda" / "cache"
MAX_DOWNLOAD_BYTES = 3_000_000
ENV_OVERRIDES = {
    "ALLOW_PRIVATE_URLS": "true",  # opens loopback only
    "MAX_DOWNLOAD_BYTES": str(MAX_DOWNLOAD_BYTES),
    "FETCH_READ_TIMEOUT": "0.5",
}

# One cycle of the mix: (case, expected status, expected error code). Good requests are ~half.
MIX: list[tuple[str, int, str | None]] = [
    ("cat-base64", 200, None),
    ("png-header-bomb-base64", 413, "payload_too_large"),
    ("cat-url", 200, None),
    ("truncated-jpeg-base64", 422, "corrupt_image"),
    ("cat-rest-binary", 200, None),
    ("garbage-base64", 415, "unsupported_media"),
    ("cmyk-jpeg-url", 200, None),
    ("html-as-image-url", 415, "unsupported_media"),
    ("cat-http-json-url", 200, None),
    ("metadata-url", 403, "blocked_url"),
    ("png16-base64", 200, None),
    ("redirect-to-metadata", 403, "blocked_url"),
    ("animated-gif-url", 200, None),
    ("real-png-bomb-url", 413, "payload_too_large"),
    ("palette-png-rest-binary", 200, None),
    ("gzip-upstream", 502, "upstream_error"),
    ("cat-base64", 200, None),
    ("lying-content-length", 502, "upstream_error"),
    ("cat-url", 200, None),
    ("redirect-loop", 502, "upstream_error"),
    ("cat-http-binary", 200, None),
    ("bad-base64", 400, "bad_request"),
    ("cat-base64", 200, None),
    ("rest-bad-json", 400, "bad_request"),
    ("cat-url", 200, None),
    ("upstream-404", 502, "upstream_error"),
    ("cat-base64", 200, None),
    ("oversized-base64", 413, "payload_too_large"),
    ("cat-url", 200, None),
    ("stalled-upstream", 504, "upstream_timeout"),
]


def plan(n: int) -> dict[str, int]:
    """Counts by "status code" (e.g. "413 payload_too_large", "200") that ``n`` requests of MIX imply."""
    counts: collections.Counter = collections.Counter()
    for i in range(n):
        _, status, code = MIX[i % len(MIX)]
        counts[_label(status, code)] += 1
    return dict(sorted(counts.items()))


def _label(status: int, code: str | None) -> str:
    return f"{status} {code}" if code else str(status)


# --- inputs -------------------------------------------------------------------------------------------


def cat_photo() -> bytes:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-image is not installed: its chelsea.png is the cat photo (pip install scikit-image)")
    return (Path(list(spec.submodule_search_locations)[0]) / "data" / "chelsea.png").read_bytes()


def build_inputs() -> dict[str, bytes]:
    import numpy as np
    from PIL import Image

    cat = Image.open(io.BytesIO(cat_photo())).convert("RGB")
    cat_jpeg = encode(cat, "JPEG", quality=90)
    rng = np.random.default_rng(0)
    return {
        "cat": cat_jpeg,
        "cmyk": encode(cat.convert("CMYK"), "JPEG"),
        "png16": encode(Image.fromarray(np.asarray(cat.convert("L"), np.uint16) * 257), "PNG"),
        "gif": encode(cat, "GIF", save_all=True, append_images=[cat.rotate(90), cat.rotate(180)], duration=100),
        "palette": encode(cat.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
        "header-bomb": png_header_bomb(),
        "real-bomb": png_real_bomb(),
        "truncated": cat_jpeg[: len(cat_jpeg) // 2],
        "garbage": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "html": b"<!doctype html><html><body><h1>Sign in</h1></body></html>",
        "oversized": rng.integers(0, 256, MAX_DOWNLOAD_BYTES + 100_000, dtype=np.uint8).tobytes(),
    }


# --- a loopback image server (some routes misbehave on purpose) ---------------------------------------


def _send(sock, status=200, body=b"", content_type="image/jpeg", headers=(), length="auto"):
    lines = [f"HTTP/1.1 {status} X"] + ([f"Content-Type: {content_type}"] if content_type else [])
    if length == "auto":
        lines.append(f"Content-Length: {len(body)}")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in headers] + ["Connection: close", "", ""]
    sock.sendall("\r\n".join(lines).encode("latin-1") + body)


class LoopbackServer:
    def __init__(self, inputs: dict[str, bytes]) -> None:
        cat = inputs["cat"]
        self.routes = {
            "/cat.jpg": lambda s: _send(s, 200, cat),
            "/cmyk.jpg": lambda s: _send(s, 200, inputs["cmyk"]),
            "/anim.gif": lambda s: _send(s, 200, inputs["gif"], "image/gif"),
            "/bomb.png": lambda s: _send(s, 200, inputs["real-bomb"], "image/png"),
            "/page.jpg": lambda s: _send(s, 200, inputs["html"], "image/jpeg"),
            "/gzip.jpg": lambda s: _send(s, 200, gzip.compress(cat), headers=(("Content-Encoding", "gzip"),)),
            "/lying.jpg": lambda s: _send(s, 200, cat, length=len(cat) + 4096),
            "/to-metadata": lambda s: _send(s, 302, b"", None,
                                            headers=(("Location", "http://169.254.169.254/latest/meta-data/"),)),
            "/loop": lambda s: _send(s, 302, b"", None, headers=(("Location", "/loop"),)),
            "/stall": lambda s: time.sleep(5),
        }
        routes = self.routes

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock = self.request
                sock.settimeout(30)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = sock.recv(4096)
                        if not chunk:
                            return
                        head += chunk
                    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                    route = routes.get(parts[1] if len(parts) > 1 else "/")
                    if route is None:
                        _send(sock, 404, b"not found", "text/plain")
                    else:
                        route(sock)
                except OSError:
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- events -------------------------------------------------------------------------------------------


def _api(kind: str, body: str, content_type: str = "application/json", is_base64: bool = False) -> dict:
    if kind == "rest":
        return {"resource": "/predict", "path": "/predict", "httpMethod": "POST",
                "headers": {"Content-Type": content_type}, "queryStringParameters": None,
                "requestContext": {"resourcePath": "/predict", "httpMethod": "POST", "stage": "Prod"},
                "body": body, "isBase64Encoded": is_base64}
    return {"version": "2.0", "routeKey": "POST /predict", "rawPath": "/predict", "rawQueryString": "",
            "headers": {"content-type": content_type},
            "requestContext": {"http": {"method": "POST", "path": "/predict"}, "stage": "$default"},
            "body": body, "isBase64Encoded": is_base64}


def build_events(inputs: dict[str, bytes], server: LoopbackServer) -> dict[str, bytes]:
    """Every case of MIX as the exact bytes POSTed to the RIE (built once, reused)."""
    b64 = {name: base64.b64encode(data).decode() for name, data in inputs.items()}
    url = server.url
    events = {
        "cat-base64": {"image": b64["cat"]},
        "cat-url": {"url": url("/cat.jpg")},
        "cat-rest-binary": _api("rest", b64["cat"], "image/jpeg", True),
        "cat-http-json-url": _api("http", json.dumps({"url": url("/cat.jpg"), "top_k": 3})),
        "cat-http-binary": _api("http", b64["cat"], "application/octet-stream", True),
        "cmyk-jpeg-url": {"url": url("/cmyk.jpg")},
        "png16-base64": {"image": b64["png16"]},
        "animated-gif-url": {"url": url("/anim.gif")},
        "palette-png-rest-binary": _api("rest", b64["palette"], "image/png", True),
        "png-header-bomb-base64": {"image": b64["header-bomb"]},
        "real-png-bomb-url": {"url": url("/bomb.png")},
        "truncated-jpeg-base64": {"image": b64["truncated"]},
        "garbage-base64": {"image": b64["garbage"]},
        "html-as-image-url": {"url": url("/page.jpg")},
        "metadata-url": {"url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"},
        "redirect-to-metadata": {"url": url("/to-metadata")},
        "gzip-upstream": {"url": url("/gzip.jpg")},
        "lying-content-length": {"url": url("/lying.jpg")},
        "redirect-loop": {"url": url("/loop")},
        "upstream-404": {"url": url("/missing.jpg")},
        "bad-base64": {"image": "%%%not base64%%%"},
        "rest-bad-json": _api("rest", "{'url': nope"),
        "oversized-base64": {"image": b64["oversized"]},
        "stalled-upstream": {"url": url("/stall")},
    }
    missing = {case for case, _, _ in MIX} - set(events)
    assert not missing, missing
    return {name: json.dumps(event).encode() for name, event in events.items()}


def _outcome(event: bytes, payload: bytes) -> tuple[int, str | None]:
    """(status, code) from the function's answer; a Lambda-level error or timeout is (0, errorType)."""
    try:
        document = json.loads(payload)
    except ValueError:
        return 0, "unparseable_response"
    if isinstance(document, dict) and "errorType" in document and "errorMessage" in document:
        return 0, str(document["errorType"])
    if b'"requestContext"' in event:
        body = json.loads(document["body"])
        return int(document["statusCode"]), (body.get("error") or {}).get("code")
    if "error" in document:
        return int(document["error"]["status"]), document["error"]["code"]
    return 200, None


# --- the runtime process ------------------------------------------------------------------------------


def process_stats(pid: int | None) -> dict:
    """VmRSS / VmHWM (MiB), threads and open file descriptors of the runtime process."""
    out: dict = {}
    if pid is None:
        return out
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "VmRSS":
                out["rss_mb"] = int(value.split()[0]) / 1024
            elif key == "VmHWM":
                out["peak_rss_mb"] = int(value.split()[0]) / 1024
            elif key == "Threads":
                out["threads"] = int(value)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


def start_function(port: int, build_dir: Path, cache_dir: Path) -> Emulator:
    fn = read_function(REPO / "template.yaml", "PredictFunction")
    staged = stage(fn.dockerfile, fn.context, build_dir=build_dir, function_name=fn.logical_id, cache_dir=cache_dir)
    overrides = dict(ENV_OVERRIDES, ALLOWED_PORTS=f"80,443,{port}")
    return function_emulator(fn, staged, {fn.logical_id: overrides}, shell_env={})[0]


def _max_rss(samples: list[dict], first: float, last: float) -> float | None:
    values = [s["rss_mb"] for s in samples if first <= s["request"] <= last and "rss_mb" in s]
    return round(max(values), 1) if values else None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else 0.0


def soak(requests: int, build_dir: Path = DEFAULT_BUILD, cache_dir: Path = DEFAULT_CACHE,
         progress: bool = True) -> dict:
    inputs = build_inputs()
    with LoopbackServer(inputs) as server:
        events = build_events(inputs, server)
        emulator = start_function(server.port, build_dir, cache_dir)
        with emulator:
            cold = time.perf_counter()
            warm = _outcome(events["cat-base64"], emulator.invoke_raw(events["cat-base64"]).payload)
            cold_start_s = time.perf_counter() - cold
            if warm != (200, None):
                raise SystemExit(f"the warm-up request failed: {warm}\n{emulator.logs[-3000:]}")
            pid_start = emulator.runtime_pid
            at_start = process_stats(pid_start)
            checkpoint = max(1, requests // 10)
            observed: collections.Counter = collections.Counter()
            latencies: dict[str, list[float]] = collections.defaultdict(list)
            mismatches: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
            samples = []
            at_10pct: dict = {}
            started = time.perf_counter()
            for i in range(requests):
                case, status, code = MIX[i % len(MIX)]
                result = emulator.invoke_raw(events[case])
                latencies[case].append(result.seconds * 1000.0)
                got = _outcome(events[case], result.payload) if result.status == 200 else (0, f"rie_http_{result.status}")
                observed[_label(*got)] += 1
                if got != (status, code):
                    mismatches[case][_label(*got)] += 1
                done = i + 1
                if done == checkpoint:
                    at_10pct = process_stats(emulator.runtime_pid)
                if done % max(1, requests // 50) == 0 or done == requests:
                    stats = process_stats(emulator.runtime_pid)
                    samples.append({"request": done, "seconds": round(time.perf_counter() - started, 2), **stats})
                    if progress:
                        print(f"  {done:>6}/{requests}  {done / (time.perf_counter() - started):6.1f} req/s  "
                              f"rss {stats.get('rss_mb', 0):7.1f} MiB  peak {stats.get('peak_rss_mb', 0):7.1f} MiB",
                              file=sys.stderr, flush=True)
            seconds = time.perf_counter() - started
            pid_end = emulator.runtime_pid
            at_end = process_stats(pid_end)
    all_latencies = [v for values in latencies.values() for v in values]
    return {
        "requests": requests,
        "cycle": [{"case": c, "status": s, "code": k} for c, s, k in MIX],
        "env_overrides": ENV_OVERRIDES,
        "cold_start_s": round(cold_start_s, 3),
        "seconds": round(seconds, 2),
        "requests_per_s": round(requests / seconds, 2) if seconds else None,
        "latency_ms": {"p50": round(_percentile(all_latencies, 0.5), 1), "p95": round(_percentile(all_latencies, 0.95), 1),
                       "max": round(max(all_latencies, default=0.0), 1)},
        "runtime_pid": {"start": pid_start, "end": pid_end, "same_process": pid_start == pid_end},
        "memory_mb": {
            "peak_rss": round(at_end.get("peak_rss_mb", 0.0), 1),
            "rss_after_warmup": round(at_start.get("rss_mb", 0.0), 1),
            "rss_at_10pct": round(at_10pct.get("rss_mb", 0.0), 1),
            "rss_end": round(at_end.get("rss_mb", 0.0), 1),
            "growth_10pct_to_end": round(at_end.get("rss_mb", 0.0) - at_10pct.get("rss_mb", 0.0), 1),
            # RSS swings by a few MiB as the allocator returns memory; compare the two halves' highs too.
            "max_rss_10_to_55pct": _max_rss(samples, checkpoint, requests * 0.55),
            "max_rss_55_to_100pct": _max_rss(samples, requests * 0.55, requests),
        },
        "fds": {"after_warmup": at_start.get("fds"), "at_10pct": at_10pct.get("fds"), "end": at_end.get("fds")},
        "threads": {"after_warmup": at_start.get("threads"), "at_10pct": at_10pct.get("threads"),
                    "end": at_end.get("threads")},
        "by_code": dict(sorted(observed.items())),
        "planned_by_code": plan(requests),
        "mismatches": {case: dict(counter) for case, counter in mismatches.items()},
        "by_case": {case: {"n": len(values), "p50_ms": round(_percentile(values, 0.5), 1),
                           "p95_ms": round(_percentile(values, 0.95), 1)}
                    for case, values in sorted(latencies.items())},
        "samples": samples,
    }


def table(result: dict) -> str:
    mem, pid = result["memory_mb"], result["runtime_pid"]
    lines = [
        f"soak: {result['requests']} requests through one warm PredictFunction (RIE), "
        f"{result['seconds']} s, {result['requests_per_s']} req/s "
        f"(latency p50 {result['latency_ms']['p50']} ms, p95 {result['latency_ms']['p95']} ms)",
        f"runtime process: pid {pid['start']} -> {pid['end']} ({'same' if pid['same_process'] else 'REPLACED'})",
        "",
        f"{'memory (MiB)':<28}{'value':>10}",
        f"{'peak RSS (VmHWM)':<28}{mem['peak_rss']:>10.1f}",
        f"{'RSS after warm-up':<28}{mem['rss_after_warmup']:>10.1f}",
        f"{'RSS after 10% of requests':<28}{mem['rss_at_10pct']:>10.1f}",
        f"{'RSS at the end':<28}{mem['rss_end']:>10.1f}",
        f"{'growth (10% -> end)':<28}{mem['growth_10pct_to_end']:>+10.1f}",
        f"{'max RSS, 10-55% / 55-100%':<28}{str(mem['max_rss_10_to_55pct']) + ' / ' + str(mem['max_rss_55_to_100pct']):>10}",
        f"{'open fds (10% -> end)':<28}{str(result['fds']['at_10pct']) + ' -> ' + str(result['fds']['end']):>10}",
        f"{'threads (10% -> end)':<28}{str(result['threads']['at_10pct']) + ' -> ' + str(result['threads']['end']):>10}",
        "",
        f"{'status / code':<28}{'observed':>10}{'planned':>10}",
    ]
    codes = sorted(set(result["by_code"]) | set(result["planned_by_code"]))
    for code in codes:
        lines.append(f"{code:<28}{result['by_code'].get(code, 0):>10}{result['planned_by_code'].get(code, 0):>10}")
    lines += ["", f"{'case':<28}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}"]
    for case, stats in result["by_case"].items():
        lines.append(f"{case:<28}{stats['n']:>6}{stats['p50_ms']:>10.1f}{stats['p95_ms']:>10.1f}")
    if result["mismatches"]:
        lines += ["", "MISMATCHES (case: observed -> count): " + json.dumps(result["mismatches"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests after warm-up (default 3000)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD, help="where to stage the function")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="local_lambda dependency cache")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be positive")
    result = soak(args.requests, args.build_dir, args.cache_dir, progress=not args.quiet)
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
