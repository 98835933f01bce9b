"""The costliest single requests: CPU and memory of files built to sit at each work limit, beside
the largest real images the function accepts.

    python -m bench.worst_case               # one fresh process per file (~2 min; files cached in .build/bench/worst_case)
    python -m bench.worst_case --runs 3 --only jpeg --only png

What a stranger's request can cost is bounded by the limits in ``classifier._file_limits``,
``_jpeg_scans`` and ``decode`` (scans, also of a TIFF's JPEG strips, strips, segments, chunks, RLE data, pixels). Each row here is
one file built to sit at (or one step past) such a limit, or a real image of the largest size
allowed (50 MP, under the 15 MB download cap), sent inline (base64) to the real handler module
(``classifier.handler``: cold start as in the image, ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE=2048``) in
a fresh ``<runtime python>`` on the staged task root, after one warm-up request. Printed per file:
its size, the status it got, the CPU seconds of the request (all threads: decode, preprocess,
inference, response), the wall time, and the peak RSS it added over the warm runtime. Under
Lambda's CPU allotment (1.16 CPUs at 2048 MB) a single-threaded decode takes its CPU time in
wall time; the function's timeout (25 s) is what no request may reach.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import crafted  # noqa: E402
from bench.cold_start import _staged_task_root, child_env, interleaved  # noqa: E402
from bench.crafted import (bmp_rle8, builds_folder, encode, gif_extension_bomb, jpeg_header_padding_bomb,  # noqa: E402
                           jpeg_scan_bomb, jpeg_sequential_scans, png, png_chunk_bomb, png_keyed, tiff_jpeg_strips,
                           tiff_strip_bomb, webp_lossless_groups, webp_lossless_walk, zlib_with_empty_blocks)

_CHILD = r"""
import base64, json, sys, time

def hwm_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024

class Context:
    aws_request_id = "worst-case"
    function_name = "PredictFunction"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:PredictFunction"
    def get_remaining_time_in_millis(self):
        return 25_000

from classifier.handler import lambda_handler
warm = json.load(open("events/base64.json"))
lambda_handler(warm, Context())
before = hwm_mb()
event = {"image": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}
cpu, wall = time.process_time(), time.perf_counter()
body = lambda_handler(event, Context())
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
status = body["error"]["status"] if "error" in body else 200
print(json.dumps({"status": status, "cpu_s": cpu, "wall_s": wall, "added_mb": hwm_mb() - before}))
"""


def _flat_progressive_gray(side: int, scans: int) -> bytes:
    """A flat progressive gray JPEG with its last scan (an AC refinement, the costliest kind to
    repeat: a pass over every block of the image) repeated up to ``scans`` scans in all."""
    return jpeg_scan_bomb(side, side, scans - 6)  # libjpeg's progression for gray: 6 scans


def _bmp_rle_at_limits(side: int) -> bytes:
    """An RLE BMP at the pixel limit with the most data allowed: runs of one pixel (2 bytes each)."""
    row = b"".join(b"\x01%c" % (x % 256) for x in range(side)) + b"\x00\x00"
    return bmp_rle8(side, side, row * side + b"\x00\x01")


def _keyed_png_with_padding(side: int, padding: int) -> bytes:
    """A black 16-bit RGB PNG whose tRNS key is black (decode decodes it twice): ``padding`` bytes of
    empty Deflate blocks, then its rows compressed (a few KB)."""
    rows = (b"\x00" + bytes(6 * side)) * side
    return png_keyed(png(side, side, 16, 2, zlib_with_empty_blocks(padding, rows, compress=True)), bytes(6))


def _photo_like(width: int, height: int, grain: float = 2.0) -> Image.Image:
    """A smooth gradient with seeded grain: a lossy file compresses like a photo, not like noise
    (``grain=0`` for the lossless formats, which the 15 MB download cap would refuse otherwise)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    if grain:
        base += np.random.default_rng(5).normal(0, grain, base.shape).astype(np.float32)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _bands(width: int, height: int) -> Image.Image:
    """Horizontal bands of 64 colours: a TIFF (LZW) or GIF of 50 MP under the 15 MB download cap."""
    column = np.stack(np.broadcast_arrays(np.arange(height) // 96 * 4 % 256, 90, 200), -1).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(column[:, None], (height, width, 3))))


# Just under 50 MP at 4:3, the default MAX_IMAGE_PIXELS.
_W, _H = 8160, 6120

CASES: Dict[str, Callable[[], bytes]] = {
    # hostile, at a limit (or one step past it: refused only once the decoder reads that far)
    "jpeg progressive 12.5 MP, 99 scans": lambda: _flat_progressive_gray(3535, 99),
    "jpeg progressive 12.5 MP, 101 scans (over)": lambda: _flat_progressive_gray(3535, 101),
    "jpeg progressive 49 MP, 25 scans": lambda: _flat_progressive_gray(7000, 25),
    "jpeg progressive 49 MP, 26 scans (over)": lambda: _flat_progressive_gray(7000, 26),
    "jpeg sequential 12.5 MP, 99 scans": lambda: jpeg_sequential_scans(3535, 3535, 99 - 3),
    "bmp rle8 1 MP, most data allowed": lambda: _bmp_rle_at_limits(1000),
    "tiff 65,536 strips": lambda: tiff_strip_bomb(65_536),
    "tiff jpeg strip 49 MP, 25 scans": lambda: tiff_jpeg_strips(_flat_progressive_gray(7000, 25), 7000, 7000),
    "tiff jpeg strip 49 MP, 26 scans (over)": lambda: tiff_jpeg_strips(_flat_progressive_gray(7000, 26), 7000, 7000),
    "jpeg header 990 segments + 60 KiB fill": lambda: jpeg_header_padding_bomb(990, fill=61_440),
    "gif 65,536 extension blocks": lambda: gif_extension_bomb(32_767),
    "png 65,536 chunks": lambda: png_chunk_bomb(65_530),
    "png 16-bit keyed 1280x1280, 7.4 MB of empty blocks (at the keyed limit)": lambda: _keyed_png_with_padding(
        1280, 7_800_000),  # _file_limits.PNG_KEYED_16_BIT_DATA is 7,864,320
    "png 16-bit keyed 1280x1280, 12 MB of empty blocks (over; 3.1-4 s before)": lambda: _keyed_png_with_padding(
        1280, 12_000_000),
    "png 2500x2000 16-bit, 14 MB of empty blocks only": lambda: png(
        2500, 2000, 16, 2, zlib_with_empty_blocks(14_000_000, b"")),
    "tiff deflate, 14 strips of 1 MB empty blocks": lambda: tiff_jpeg_strips(
        zlib_with_empty_blocks(990_000, b"\x80"), 1, 14, strips=14, compression=8),
    "webp lossless 1 MP, 4,096 code groups, long codes": lambda: webp_lossless_groups(long_codes=True, groups=4096),
    "webp lossless 1 MP, 65,536 code groups (over)": lambda: webp_lossless_groups(),
    "webp lossless 1 MP, 65,536 groups, long codes (over)": lambda: webp_lossless_groups(long_codes=True),
    "webp lossless 50 MP, sub-image at the walk limit": lambda: webp_lossless_walk(7064, 3),
    # the largest real images allowed
    "jpeg 50 MP baseline": lambda: encode(_photo_like(_W, _H), "JPEG", quality=85),
    "jpeg 50 MP progressive": lambda: encode(_photo_like(_W, _H), "JPEG", quality=85, progressive=True),
    "webp 50 MP lossy": lambda: encode(_photo_like(_W, _H), "WEBP", quality=80),
    "webp 50 MP lossless (bands)": lambda: encode(_bands(_W, _H), "WEBP", lossless=True),
    "png 50 MP RGB": lambda: encode(_photo_like(_W, _H, grain=0), "PNG", compress_level=9),
    "tiff 50 MP LZW (bands)": lambda: encode(_bands(_W, _H), "TIFF", compression="tiff_lzw"),
    "tiff 50 MP JPEG-compressed": lambda: encode(_photo_like(_W, _H), "TIFF", compression="jpeg", quality=85),
    "gif 50 MP (bands)": lambda: encode(_bands(_W, _H).convert("P"), "GIF"),
}


def make(folder: Path, names: List[str]) -> Dict[str, Path]:
    folder = builds_folder(folder, __file__, crafted.__file__)
    paths = {}
    for name in names:
        path = folder / (name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "") + ".bin")
        if not path.exists():
            path.write_bytes(CASES[name]())
        paths[name] = path
    return paths


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="fresh processes per file (default 1; medians)")
    parser.add_argument("--only", action="append", default=[], help="only the files whose name contains this (repeatable)")
    parser.add_argument("--build-dir", type=Path, default=REPO / ".build" / "bench")
    args = parser.parse_args(argv)
    names = [name for name in CASES if not args.only or any(part in name for part in args.only)]
    task_root, python, image_env = _staged_task_root(args.build_dir / "stage")
    env = child_env(task_root, image_env, LAMBDA_TASK_ROOT=str(task_root), AWS_LAMBDA_FUNCTION_MEMORY_SIZE="2048",
                    POWERTOOLS_LOG_LEVEL="ERROR")
    paths = make(args.build_dir / "worst_case", names)
    results = interleaved({name: [str(python), "-c", _CHILD, str(paths[name])] for name in names}, args.runs, env, REPO)
    print(f"{'file':<52} {'KB':>8} {'status':>6} {'CPU s':>6} {'wall s':>6} {'+MB':>6}")
    for name in names:
        series = results[name]
        median = {key: statistics.median(values) for key, values in series.items()}
        print(f"{name:<52} {paths[name].stat().st_size / 1024:>8.0f} {int(median['status']):>6} {median['cpu_s']:>6.2f} "
              f"{median['wall_s']:>6.2f} {median['added_mb']:>6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
