"""What the SSRF-safe fetcher costs per URL over a bare ``http.client`` GET of the same image.

    python -m bench.fetch_cost                 # ~10 s
    python -m bench.fetch_cost --fetches 1000 --image jpeg_12mp

One child on the function's Python 3.12 and staged task root (the image's ENV) fetches the bench's
1 MP JPEG from the bench's loopback server (a separate process, as in ``python -m bench``), in
turns: ``classifier.fetch.fetch_url`` + reading the whole body (URL checks, the pinned socket, the
deadline watchdog, 64 KiB pulls, the download cap), and a bare ``http.client`` GET + ``read()``.
Printed per variant: p50 and p95 wall time and the CPU time per fetch (the child's, all threads;
the server's is not counted). Not under the CPU quota: this compares code paths, not Lambda.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.cold_start import _staged_task_root, child_env  # noqa: E402
from bench.report import percentile  # noqa: E402
from bench.images import IMAGE_KEYS, make_images  # noqa: E402

_SERVER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from bench.server import ImageServer
with ImageServer() as server:
    server.add("/image", open(sys.argv[2], "rb").read(), sys.argv[3])
    print(server.port, flush=True)
    sys.stdin.read()  # until the parent closes the pipe
"""

_CHILD = r"""
import http.client, json, sys, time
port, fetches = int(sys.argv[1]), int(sys.argv[2])
from classifier.fetch import FetchPolicy, fetch_url
policy = FetchPolicy(allow_private_urls=True, allowed_ports=(port,))
url = f"http://127.0.0.1:{port}/image"

def ours():
    with fetch_url(url, policy, deadline=time.monotonic() + 20) as body:
        return len(body.read())

def bare():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/image")
    size = len(conn.getresponse().read())
    conn.close()
    return size

variants = {"fetch_url": ours, "http.client": bare}
assert len({f() for f in variants.values()}) == 1, "both read the same body"
wall = {name: [] for name in variants}
cpu = {name: [] for name in variants}
for i in range(fetches + 20):
    for name, f in (variants.items() if i % 2 == 0 else reversed(variants.items())):
        c0, t0 = time.process_time(), time.perf_counter()
        f()
        t1, c1 = time.perf_counter(), time.process_time()
        if i >= 20:  # warm-up
            wall[name].append((t1 - t0) * 1e3)
            cpu[name].append((c1 - c0) * 1e3)
print(json.dumps({"wall_ms": wall, "cpu_ms": cpu}))
"""


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fetch_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetches", type=int, default=400, help="recorded fetches per variant (default 400)")
    parser.add_argument("--image", choices=IMAGE_KEYS, default="jpeg_1mp", help="which bench image (default jpeg_1mp)")
    parser.add_argument("--build-dir", type=Path, default=REPO / ".build" / "bench")
    args = parser.parse_args(argv)

    image = make_images(args.build_dir / "images")[args.image]
    task_root, python, image_env = _staged_task_root(args.build_dir / "stage")
    env = child_env(task_root, image_env)
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(REPO), image.path, image.format],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        result = subprocess.run([str(python), "-c", _CHILD, str(port), str(args.fetches)], env=env, cwd=str(task_root),
                                capture_output=True, text=True, timeout=600)
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        return 1
    got = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{args.image} ({image.bytes} bytes) from a loopback server, {args.fetches} fetches per variant, alternating")
    print(f"{'variant':12s} {'p50 ms':>7s} {'p95 ms':>7s} {'CPU ms/fetch':>12s}")
    for name, wall in got["wall_ms"].items():
        cpu = got["cpu_ms"][name]
        print(f"{name:12s} {percentile(wall, 50):7.3f} {percentile(wall, 95):7.3f} {sum(cpu) / len(cpu):12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
