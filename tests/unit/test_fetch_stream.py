"""A URL's body decoded while it downloads: classifier.fetch.Fetched read by classifier.decode.

Every server here is a raw HTTP server on 127.0.0.1 (``fetch_fixtures``); the same safety net as
test_fetch.py makes any other connect or lookup fail the test. Nothing asserts a time except as
a generous upper bound on a deadline that must have been enforced.
"""

from __future__ import annotations

import functools
import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from classifier import errors
from classifier.decode import decode_image
from classifier.fetch import FetchPolicy, fetch_url
from classifier.spec import SOURCE_GRID_KEY, Preprocessing, draft_size, preprocess
from support import PHOTOS

from fetch_fixtures.helpers import LoopbackOnlyConnector, image

MAX_PIXELS = 50_000_000
# The bundled model's preprocessing (center crop 0.875, bicubic to 224): JPEGs are drafted to 1/2.
PREP = Preprocessing(height=224, width=224, resize="bicubic", crop_fraction=0.875,
                     scale=1.0, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), layout="NCHW")
FIT = functools.partial(draft_size, PREP)


def open_body(server, path, seconds=5.0, **policy):
    policy = FetchPolicy(allow_private_urls=True, allowed_ports=(server.port,),
                         connector=LoopbackOnlyConnector(), **policy)
    return fetch_url(server.url(path), policy, deadline=time.monotonic() + seconds)


def encode(picture: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    # The cat photo at 1800x1200 with grain, so bodies span many 64 KiB reads and JPEGs get drafted.
    big = Image.open(PHOTOS["chelsea.png"]).convert("RGB").resize((1800, 1200), Image.Resampling.LANCZOS)
    pixels = np.asarray(big, np.int16) + np.random.default_rng(1).normal(0, 4, (1200, 1800, 1)).round().astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def files(cat) -> dict[str, bytes]:
    rotated = Image.Exif()
    rotated[0x0112] = 6  # displayed rotated 90 degrees clockwise
    small = cat.resize((600, 400))
    return {
        "jpeg-drafted": encode(cat, "JPEG", quality=90),
        "jpeg-progressive": encode(cat, "JPEG", quality=90, progressive=True),
        "jpeg-exif-rotated": encode(cat, "JPEG", quality=90, exif=rotated.tobytes()),
        "png": encode(small, "PNG"),
        "gif": encode(small, "GIF"),
        "webp": encode(small, "WEBP"),
        "tiff": encode(small, "TIFF"),  # strips at offsets: Pillow seeks
        "tiff-lzw": encode(small, "TIFF", compression="tiff_lzw"),
        "bmp": encode(small, "BMP"),
    }


class Recorder:
    """A file wrapper around a Fetched body that notes, at each read, (position, size, bytes arrived)."""

    def __init__(self, body, on_read=None):
        self.body, self.on_read, self.reads = body, on_read, []

    def read(self, size=-1):
        self.reads.append((self.body.tell(), size, self.body.received))
        if self.on_read is not None:
            self.on_read(self.body.tell(), size)
        return self.body.read(size)

    def seek(self, offset, whence=0):
        return self.body.seek(offset, whence)

    def tell(self):
        return self.body.tell()


def assert_same_decode(streamed: Image.Image, reference: Image.Image) -> None:
    assert (streamed.mode, streamed.size) == (reference.mode, reference.size)
    assert np.array_equal(np.asarray(streamed), np.asarray(reference))
    assert streamed.info.get(SOURCE_GRID_KEY) == reference.info.get(SOURCE_GRID_KEY)
    assert np.array_equal(preprocess(streamed, PREP), preprocess(reference, PREP))


# --- the same image as from bytes -------------------------------------------------------------


@pytest.mark.parametrize("name", ["jpeg-drafted", "jpeg-progressive", "jpeg-exif-rotated", "png", "gif",
                                  "webp", "tiff", "tiff-lzw", "bmp"])
def test_a_streamed_body_decodes_to_exactly_the_same_tensor_as_its_bytes(name, files, server_factory):
    data = files[name]
    server = server_factory({"/img": image(data, "image/whatever")})
    reference = decode_image(data, MAX_PIXELS, draft_size=FIT)
    with open_body(server, "/img") as body:
        streamed = decode_image(body, MAX_PIXELS, draft_size=FIT)
    assert_same_decode(streamed, reference)
    if name.startswith("jpeg"):
        assert reference.info.get(SOURCE_GRID_KEY) is not None  # the drafted path was exercised
    if name == "jpeg-exif-rotated":
        assert streamed.size[0] < streamed.size[1]  # upright: portrait


def test_a_seek_past_what_has_arrived_reads_ahead_to_there(files, server_factory):
    data = files["png"]
    server = server_factory({"/img": image(data, "image/png")})
    with open_body(server, "/img") as body:
        assert body.read(4) == data[:4]
        arrived = body.received  # a pull takes what has arrived, at most 64 KiB
        assert 4 <= arrived <= 65_536
        assert body.seek(200_000) == 200_000 and body.received == arrived  # a seek alone downloads nothing
        assert body.read(10) == data[200_000:200_010] and 200_010 <= body.received <= 200_010 + 65_536
        assert body.seek(-10, 1) == 200_000 and body.read(10) == data[200_000:200_010]
        assert body.seek(0, 2) == len(data) and body.received == len(data)  # TIFF does this at open
        assert body.seek(len(data) + 5) == len(data) + 5 and body.read(3) == b""


# --- decoding while the body arrives -----------------------------------------------------------


@pytest.mark.parametrize("name", ["jpeg-drafted", "png"])
def test_decoding_starts_before_the_last_byte_arrives(name, files, server_factory):
    """The server sends the first half, then holds the rest until the decoder asks for bytes past
    that half. A fetch-then-decode would ask for everything at position 0 (or never start)."""
    data = files[name]
    half = len(data) // 2
    gate = threading.Event()
    at_gate = {}

    def route(conn, request):
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data[:half])
        if gate.wait(10):
            conn.sendall(data[half:])

    def on_read(position, size):
        if not gate.is_set() and (size is None or size < 0 or position + size > half):
            at_gate.update(position=position, received=body.received)
            gate.set()

    server = server_factory({"/img": route})
    with open_body(server, "/img") as body:
        recorder = Recorder(body, on_read)
        streamed = decode_image(recorder, MAX_PIXELS, draft_size=FIT)
    assert_same_decode(streamed, decode_image(data, MAX_PIXELS, draft_size=FIT))
    # When the decoder first needed the withheld half, it had consumed nearly all of the first
    # half (it reads at most 64 KiB at a time), and nothing past it had been sent.
    assert at_gate["received"] <= half
    assert at_gate["position"] > half - 70_000, (at_gate, half)
    assert sum(1 for position, _, _ in recorder.reads if position < half) >= 3


def test_a_trickled_body_is_decoded_as_it_arrives(files, server_factory):
    data = files["jpeg-drafted"]

    def route(conn, request):
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode())
        for start in range(0, len(data), 16_384):
            conn.sendall(data[start : start + 16_384])
            time.sleep(0.004)

    server = server_factory({"/img": route})
    with open_body(server, "/img") as body:
        recorder = Recorder(body)
        streamed = decode_image(recorder, MAX_PIXELS, draft_size=FIT)
        assert body.received == len(data)
    assert_same_decode(streamed, decode_image(data, MAX_PIXELS, draft_size=FIT))
    incomplete = [read for read in recorder.reads if read[2] < len(data)]
    assert len(incomplete) >= 3  # the decoder read (and so decoded) while bytes were still coming


# --- the fetch's limits, through the decoder: the same typed errors as a whole download ----------


def _whole(server, path, **policy) -> bytes:
    with open_body(server, path, **policy) as body:
        return body.read()


def _streamed(server, path, **policy):
    with open_body(server, path, **policy) as body:
        return decode_image(body, MAX_PIXELS, draft_size=FIT)


def _send_then(data: bytes, sent: int, then: str, length: int | None):
    """``route.stalled_to_the_end`` is appended to once a 3 s stall is over (the client waited it out)."""
    def route(conn, request):
        head = "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
        head += f"Content-Length: {length}\r\n\r\n" if length is not None else "Connection: close\r\n\r\n"
        conn.sendall(head.encode() + data[:sent])
        if then == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        elif then == "stall":
            time.sleep(3)
            route.stalled_to_the_end.append(True)
    route.stalled_to_the_end = []
    return route


@pytest.mark.parametrize("name", ["jpeg-drafted", "png", "tiff"])
@pytest.mark.parametrize("then", ["close", "reset"])
def test_a_body_shorter_than_its_length_is_an_upstream_error_not_a_corrupt_image(name, then, files, server_factory):
    data = files[name]
    server = server_factory({"/cut": _send_then(data, len(data) // 2, then, length=len(data))})
    with pytest.raises(errors.UpstreamError) as whole:
        _whole(server, "/cut")
    with pytest.raises(errors.UpstreamError) as streamed:
        _streamed(server, "/cut")
    assert streamed.value.status == whole.value.status == 502
    assert streamed.value.message == whole.value.message


@pytest.mark.parametrize("framing", ["close-delimited", "lying-length"])
def test_an_image_over_the_byte_cap_is_cut_while_decoding(framing, files, server_factory):
    data = files["jpeg-drafted"]
    cap = len(data) // 3
    if framing == "close-delimited":
        route = _send_then(data, len(data), "close", length=None)
    else:  # chunked wins over the (small) Content-Length
        def route(conn, request):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, len(data), 4096):
                piece = data[start : start + 4096]
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.sendall(b"0\r\n\r\n")
    server = server_factory({"/big": route})
    with pytest.raises(errors.PayloadTooLargeError):
        _whole(server, "/big", max_download_bytes=cap)
    with pytest.raises(errors.PayloadTooLargeError) as streamed:
        _streamed(server, "/big", max_download_bytes=cap)
    assert str(cap) in streamed.value.message
    assert _streamed(server, "/big", max_download_bytes=len(data)).size == (900, 600)  # exactly the cap is fine


def test_a_declared_length_over_the_cap_is_refused_before_a_body_byte(files, server_factory):
    data = files["jpeg-drafted"]
    route = _send_then(data, 1000, "stall", length=len(data))
    server = server_factory({"/big": route})
    with pytest.raises(errors.PayloadTooLargeError):
        open_body(server, "/big", max_download_bytes=len(data) - 1)
    assert route.stalled_to_the_end == []  # refused at the headers, not after waiting for the body


@pytest.mark.parametrize("limit", ["deadline", "read-timeout"])
def test_a_stalled_body_ends_in_a_timeout_not_a_corrupt_image(limit, files, server_factory):
    data = files["jpeg-drafted"]
    kwargs = {"seconds": 0.7, "read_timeout": 5.0} if limit == "deadline" else {"seconds": 10, "read_timeout": 0.3}
    for attempt in (_whole, _streamed):
        route = _send_then(data, len(data) // 2, "stall", length=len(data))
        server = server_factory({"/stall": route})
        with pytest.raises(errors.UpstreamTimeoutError) as info:
            attempt(server, "/stall", **kwargs)
        assert info.value.status == 504
        assert route.stalled_to_the_end == []  # cut while the server stalled (its close after 3 s would be a 502)


def test_a_failed_body_keeps_failing_with_the_same_error(files, server_factory):
    data = files["png"]
    server = server_factory({"/cut": _send_then(data, 5000, "close", length=len(data))})
    with open_body(server, "/cut") as body:
        assert body.read(100) == data[:100]
        with pytest.raises(errors.UpstreamError) as first:
            body.read()
        with pytest.raises(errors.UpstreamError) as again:
            body.read(1)
        assert again.value is first.value
        body.seek(0)
        with pytest.raises(errors.UpstreamError):
            body.read(10)  # even bytes that had arrived: the body is unusable


# --- stopping early --------------------------------------------------------------------------


def test_the_connection_is_closed_once_the_image_is_decoded(files, server_factory):
    """An image followed by 8 MB of trailing bytes: decoding stops at the image's end, closing the
    body closes the connection, and the server's next writes fail."""
    data = files["jpeg-drafted"]
    trailing = 8 * 1024 * 1024
    seen = {"sent": 0, "closed": threading.Event()}

    def route(conn, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + data)
        block = b"\x00" * 65536
        try:
            while seen["sent"] < trailing:
                conn.sendall(block)
                seen["sent"] += len(block)
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):  # not a timeout: the client hung up
            seen["closed"].set()

    server = server_factory({"/img": route})
    body = open_body(server, "/img", seconds=20, max_download_bytes=64 * 1024 * 1024)
    with body:
        streamed = decode_image(body, MAX_PIXELS, draft_size=FIT)
        received = body.received
    assert body.closed
    assert_same_decode(streamed, decode_image(data, MAX_PIXELS, draft_size=FIT))
    assert received < len(data) + 256 * 1024  # at most the decoder's last block past the image
    assert seen["closed"].wait(5), "the server could keep writing: the connection was not closed"
    assert seen["sent"] < trailing


def test_a_body_that_is_not_an_image_is_refused_after_its_first_bytes(server_factory):
    garbage = np.random.default_rng(5).integers(0, 256, 4 * 1024 * 1024, dtype=np.uint8).tobytes()
    server = server_factory({"/garbage": _send_then(garbage, len(garbage), "close", length=None)})
    with open_body(server, "/garbage") as body:
        with pytest.raises(errors.UnsupportedMediaError):
            decode_image(body, MAX_PIXELS)
        assert body.received < 256 * 1024


def test_an_empty_body_is_an_empty_image(server_factory):
    server = server_factory({"/empty": image(b"", "image/png")})
    with open_body(server, "/empty") as body:
        with pytest.raises(errors.UnsupportedMediaError, match="empty"):
            decode_image(body, MAX_PIXELS)
