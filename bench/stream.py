"""Decoding a URL's body while it downloads vs downloading it first, at several bandwidths.

    python -m bench.stream                      # 1 MP and 12 MP JPEGs; unlimited, 1000, 100, 20 Mbit/s
    python -m bench.stream --repeats 3 --bandwidths 0,20

The bench's JPEGs (``bench/images.py``) are served from 127.0.0.1 by ``bench.server.ImageServer``
paced to each bandwidth (0: unpaced loopback), one server per bandwidth, each in a child process
so that its pacing never waits for this process's GIL. In this process, per image and bandwidth,
interleaved (ABBA) and after one unrecorded warm-up of each:

* ``download``: ``fetch_url`` + reading the whole body (what the function did before decoding);
* ``then decode``: the same, then ``decode_image(bytes)``: the function before streaming;
* ``streamed``: ``decode_image(fetch_url(...))``: the decoder reads the body as it arrives.

Both decodes are the function's own (draft to the bundled model's input, EXIF, RGB). Medians in
ms; ``hidden`` is the share of the decode that the streamed run took off the wall time:
(then decode - streamed) / (then decode - download). Nothing here asserts a time: the machine is
shared, compare ratios within one run.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import multiprocessing
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

if __package__ in (None, ""):  # `python bench/stream.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "predict_function"))

from bench.images import make_images  # noqa: E402
from bench.server import ImageServer  # noqa: E402
from classifier.decode import decode_image  # noqa: E402
from classifier.fetch import FetchPolicy, fetch_url  # noqa: E402
from classifier.spec import ModelCard, draft_size  # noqa: E402

IMAGES = ("jpeg_1mp", "jpeg_12mp")
BANDWIDTHS = (0.0, 1000.0, 100.0, 20.0)  # Mbit/s; 0 = unpaced loopback
MAX_PIXELS = 50_000_000
DEFAULT_BUILD_DIR = REPO / ".build" / "bench"
MODEL = REPO / "predict_function" / "model" / "model.onnx"


def _serve(files: Dict[str, bytes], bandwidth_mbit: float, conn) -> None:
    with ImageServer(bandwidth_mbit or None) as server:
        for path, data in files.items():
            server.add(path, data, "JPEG")
        conn.send(server.port)
        conn.recv()  # until the parent says stop


def _loopback_only(address: str, port: int, timeout: float) -> socket.socket:
    if not ipaddress.ip_address(address).is_loopback:
        raise RuntimeError(f"bench.stream only talks to loopback, not {address}")
    return socket.create_connection((address, port), timeout=timeout)


def _card_preprocessing():
    import onnx

    model = onnx.load(str(MODEL), load_external_data=False)
    return ModelCard.from_metadata({p.key: p.value for p in model.metadata_props}).preprocessing


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="recorded runs per variant and cell (default 7)")
    parser.add_argument("--bandwidths", default=",".join(f"{b:g}" for b in BANDWIDTHS),
                        help="Mbit/s, comma-separated; 0 = unpaced loopback (default 0,1000,100,20)")
    parser.add_argument("--images", default=",".join(IMAGES), help="bench image keys (default jpeg_1mp,jpeg_12mp)")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR)
    args = parser.parse_args(argv)
    bandwidths = [float(b) for b in args.bandwidths.split(",")]
    keys = args.images.split(",")

    images = make_images(args.build_dir / "images")
    files = {f"/{key}.jpg": Path(images[key].path).read_bytes() for key in keys}
    fit = functools.partial(draft_size, _card_preprocessing())

    context = multiprocessing.get_context("spawn")
    servers = []
    for bandwidth in bandwidths:
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(files, bandwidth, child), daemon=True)
        process.start()
        servers.append((bandwidth, parent.recv(), parent, process))

    def policy(port: int) -> FetchPolicy:
        return FetchPolicy(allow_private_urls=True, allowed_ports=(port,), connector=_loopback_only,
                           max_download_bytes=15 * 1024 * 1024)

    def download(url, pol):
        with fetch_url(url, pol, deadline=time.monotonic() + 60) as body:
            return body.read()

    def then_decode(url, pol):
        return decode_image(download(url, pol), MAX_PIXELS, draft_size=fit)

    def streamed(url, pol):
        with fetch_url(url, pol, deadline=time.monotonic() + 60) as body:
            return decode_image(body, MAX_PIXELS, draft_size=fit)

    variants: Dict[str, Callable] = {"download": download, "then decode": then_decode, "streamed": streamed}
    samples: Dict[tuple, List[float]] = {}
    try:
        cells = [(key, bandwidth, port) for key in keys for bandwidth, port, _, _ in servers]
        for key, bandwidth, port in cells:  # warm-up: imports, first connections, page cache
            for fn in variants.values():
                fn(f"http://127.0.0.1:{port}/{key}.jpg", policy(port))
        for round_ in range(args.repeats):
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for key, bandwidth, port in cells:
                url, pol = f"http://127.0.0.1:{port}/{key}.jpg", policy(port)
                for name in order:
                    started = time.perf_counter()
                    variants[name](url, pol)
                    samples.setdefault((key, bandwidth, name), []).append((time.perf_counter() - started) * 1000.0)
            print(f"[bench.stream] round {round_ + 1}/{args.repeats}", file=sys.stderr, flush=True)
    finally:
        for _, _, parent, process in servers:
            parent.send("stop")
            process.join(5)

    print(f"\nmedians of {args.repeats} interleaved runs, ms (image from 127.0.0.1, paced per bandwidth)\n")
    print("| image | bandwidth | download | download then decode | streamed | streamed / then decode | decode hidden |")
    print("|---|---|---|---|---|---|---|")
    for key in keys:
        size = len(files[f"/{key}.jpg"]) / 1e6
        for bandwidth in bandwidths:
            median = {name: statistics.median(samples[(key, bandwidth, name)]) for name in variants}
            decode = median["then decode"] - median["download"]
            hidden = (median["then decode"] - median["streamed"]) / decode if decode > 0 else float("nan")
            label = f"{bandwidth:g} Mbit/s" if bandwidth else "unlimited"
            print(f"| {key} ({size:.1f} MB) | {label} | {median['download']:.1f} | {median['then decode']:.1f} | "
                  f"{median['streamed']:.1f} | **{median['streamed'] / median['then decode']:.2f}x** | {hidden:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
