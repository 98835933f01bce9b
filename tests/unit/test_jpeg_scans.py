"""The JPEG scan limit: a progressive JPEG that repeats a scan is refused before it burns CPU."""

import io

import pytest
from PIL import Image

from bench.crafted import jpeg_repeat_last_scan as repeat_last_scan
from bench.crafted import jpeg_segments as segments
from bench.crafted import jpeg_scan_bomb
from classifier._jpeg_scans import MAX_JPEG_SCANS, MIN_JPEG_SCANS, SCAN_PIXEL_BUDGET, ScanLimitedReader, scan_limit
from classifier.decode import decode_image
from classifier.errors import PayloadTooLargeError

MAX_PIXELS = 50_000_000


def progressive_jpeg(size=(64, 48), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 90) if mode == "RGB" else 120).save(out, "JPEG", progressive=True, quality=90)
    return out.getvalue()


def count_scans(data: bytes) -> int:
    return sum(marker == 0xDA for marker, _ in segments(data))


def test_normal_progressive_jpegs_decode():
    for mode in ("RGB", "L"):
        data = progressive_jpeg(mode=mode)
        assert 1 < count_scans(data) <= 10
        assert decode_image(data, MAX_PIXELS).size == (64, 48)


def test_a_few_repeated_scans_still_decode():
    data = repeat_last_scan(progressive_jpeg(), 20)
    assert count_scans(data) < MAX_JPEG_SCANS
    assert decode_image(data, MAX_PIXELS).size == (64, 48)


def test_a_jpeg_over_the_scan_limit_is_refused():
    data = repeat_last_scan(progressive_jpeg(), MAX_JPEG_SCANS)
    assert count_scans(data) > MAX_JPEG_SCANS
    with pytest.raises(PayloadTooLargeError, match="scans"):
        decode_image(data, MAX_PIXELS)


def test_the_limit_falls_with_the_pixels_a_scan_walks():
    assert scan_limit(1) == scan_limit(12_000_000) == MAX_JPEG_SCANS
    assert scan_limit(25_000_000) == SCAN_PIXEL_BUDGET // 25_000_000 == 50
    assert scan_limit(50_000_000) == scan_limit(10**9) == MIN_JPEG_SCANS
    sizes = range(1, 80_000_000, 997_001)
    assert all(scan_limit(a) >= scan_limit(b) for a, b in zip(sizes, sizes[1:]))


def test_a_large_jpeg_is_held_to_its_lower_limit():
    # 6 + 54 = 60 scans: within the limit at 4 MP, over it at 25 MP (each repeat a pass over 25 MP)
    assert decode_image(jpeg_scan_bomb(2000, 2000, repeats=54), MAX_PIXELS).size == (2000, 2000)
    with pytest.raises(PayloadTooLargeError, match="more than 50 scans"):
        decode_image(jpeg_scan_bomb(5000, 5000, repeats=54), MAX_PIXELS)


def test_real_progressive_jpegs_are_far_below_the_limit_at_the_largest_size():
    assert count_scans(progressive_jpeg()) * 2 < MIN_JPEG_SCANS


def test_the_decoder_stops_reading_at_the_limit():
    data = repeat_last_scan(progressive_jpeg(size=(16, 16), mode="L"), 50_000)

    class Counting(io.BytesIO):
        furthest = 0

        def read(self, size=-1):
            chunk = super().read(size)
            Counting.furthest = max(Counting.furthest, self.tell())
            return chunk

    with pytest.raises(PayloadTooLargeError):
        decode_image(Counting(data), MAX_PIXELS)
    assert Counting.furthest < len(data) // 4  # refused within the first 64 KiB block, not after all of them


def test_a_marker_split_between_two_reads_is_counted():
    raw = io.BytesIO(b"\x00\xff" + b"\xda\x00" * 2)
    reader = ScanLimitedReader(raw, limit=5)
    assert reader.read(2) == b"\x00\xff" and reader.scans == 0
    reader.read(1)
    assert reader.scans == 1
    reader.seek(0)  # a seek forgets the pending FF
    reader.read(2)
    reader.seek(2)
    assert reader.read() and reader.scans == 1


def test_baseline_jpegs_are_far_below_the_limit():
    out = io.BytesIO()
    Image.new("RGB", (40, 30)).save(out, "JPEG")
    reader = ScanLimitedReader(io.BytesIO(out.getvalue()))
    while reader.read(7):
        pass
    assert reader.scans == 1


def test_markers_are_counted_like_bytes_count():
    import random

    rng = random.Random(7)
    for _ in range(200):
        data = bytes(rng.choice((0xFF, 0xDA, 0x00, rng.randrange(256))) for _ in range(rng.randrange(1, 300)))
        reader = ScanLimitedReader(io.BytesIO(data), limit=10**9)
        reader.read()
        assert reader.scans == data.count(b"\xff\xda")
