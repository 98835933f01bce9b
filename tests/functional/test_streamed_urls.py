"""URL inputs through the whole pipeline with the real fetcher: the body is decoded as it arrives.

Images come from the fetch tests' raw HTTP server on 127.0.0.1 (each route writes whatever bytes
it likes); the policy's connector refuses any address that is not loopback, and URLs are IP
literals (nothing is resolved).
"""

from __future__ import annotations

import base64
import ipaddress
import io
import json
import socket
import threading
import time
import uuid

import pytest
from PIL import Image

from classifier.app import make_handler
from classifier.fetch import FetchPolicy, fetch_url
from classifier.model import Classifier
from classifier.observability import Telemetry
from classifier.settings import Settings
from support import DEFAULT_MODEL, PHOTOS
from tests.unit.fetch_fixtures.helpers import LoopbackServer


class Context:
    aws_request_id = "req-stream"

    def __init__(self, remaining_ms: int = 20_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def loopback_connector(address: str, port: int, timeout: float) -> socket.socket:
    if not ipaddress.ip_address(address).is_loopback:
        raise AssertionError(f"the fetcher tried to connect to {address}:{port}")
    return socket.create_connection((address, port), timeout=timeout)


def head(length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Connection: close"
    return f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n{framing}\r\n\r\n".encode()


def pieces(data: bytes, size: int, pause: float):
    def route(sock, request):
        sock.sendall(head(len(data)))
        for start in range(0, len(data), size):
            sock.sendall(data[start : start + size])
            time.sleep(pause)
    return route


@pytest.fixture(scope="module")
def classifier():
    return Classifier.load(str(DEFAULT_MODEL), intra_op_threads=1)


@pytest.fixture(scope="module")
def server():
    raw = LoopbackServer({})
    yield raw
    raw.close()


@pytest.fixture(scope="module")
def big_cat() -> bytes:
    """The cat photo as a 1800x1200 JPEG (about 0.3 MB: several 64 KiB reads; drafted to 1/2)."""
    buffer = io.BytesIO()
    Image.open(PHOTOS["chelsea.png"]).convert("RGB").resize((1800, 1200), Image.Resampling.LANCZOS).save(
        buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def make(classifier, env=None):
    settings = Settings.from_env({"ALLOW_PRIVATE_URLS": "true", **(env or {})})
    policy = FetchPolicy.from_settings(settings, allowed_ports=(80, 443), connector=loopback_connector)

    def handler(port: int):
        scoped = FetchPolicy.from_settings(settings, allowed_ports=(port,), connector=loopback_connector)
        telemetry = Telemetry("m", "1", service=f"test-{uuid.uuid4().hex}")
        return make_handler(settings, classifier, lambda url, deadline: fetch_url(url, scoped, deadline=deadline),
                            telemetry)

    assert policy.allow_private_urls
    return handler


def log_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()
            if line.startswith("{") and "_aws" not in line]


def test_a_trickled_url_gives_the_same_answer_as_the_inline_bytes(classifier, server, big_cat, capsys):
    server.routes["/cat"] = pieces(big_cat, 16_384, 0.005)
    handle = make(classifier)(server.port)
    capsys.readouterr()
    by_url = handle({"url": server.url("/cat")}, Context())
    inline = handle({"image": base64.b64encode(big_cat).decode()}, Context())
    assert by_url == inline and by_url["predictions"][0]["label"]
    served, _ = log_lines(capsys)
    assert served["image_bytes"] == len(big_cat) and served["image_size"] == "900x600"  # drafted
    timings = served["timings_ms"]
    assert set(timings) == {"fetch", "decode", "preprocess", "inference", "total"}
    assert all(value >= 0 for value in timings.values()), timings
    # fetch includes the waits for the body; decode only the decoder's own work
    assert timings["fetch"] + timings["decode"] <= timings["total"]


def test_an_image_over_the_byte_cap_is_413_while_it_streams(classifier, server, big_cat):
    server.routes["/big"] = lambda sock, request: sock.sendall(head(None) + big_cat)
    handle = make(classifier, {"MAX_DOWNLOAD_BYTES": str(len(big_cat) // 3)})(server.port)
    response = handle({"url": server.url("/big")}, Context())
    assert (response["error"]["status"], response["error"]["code"]) == (413, "payload_too_large")


@pytest.mark.parametrize("then,status,code", [("close", 502, "upstream_error"), ("stall", 504, "upstream_timeout")])
def test_a_body_cut_short_keeps_its_fetch_error(then, status, code, classifier, server, big_cat):
    stalled_to_the_end = []

    def route(sock, request):
        sock.sendall(head(len(big_cat)) + big_cat[: len(big_cat) // 2])
        if then == "stall":
            time.sleep(4)
            stalled_to_the_end.append(True)

    server.routes[f"/cut-{then}"] = route
    handle = make(classifier)(server.port)
    # 2.7 s left: the fetch deadline is 0.7 s away (the pipeline keeps 2 s for the rest)
    response = handle({"url": server.url(f"/cut-{then}")}, Context(remaining_ms=2_700))
    assert (response["error"]["status"], response["error"]["code"]) == (status, code)
    assert stalled_to_the_end == []  # the deadline cut the stall (waited out, it would end in a close)


@pytest.mark.parametrize("body,status", [("image", 200), ("garbage", 415)])
def test_the_connection_is_closed_when_the_decoder_is_done(body, status, classifier, server, big_cat):
    """Whatever the outcome, the pipeline stops reading and closes the connection: a server
    still writing 8 MB of trailing bytes sees the hang-up."""
    first = big_cat if body == "image" else b"<!doctype html>" + bytes(100_000)
    path = f"/trailing-{body}"
    hung_up = threading.Event()

    def route(sock, request):
        sock.sendall(head(None) + first)
        try:
            for _ in range(128):
                sock.sendall(bytes(65_536))
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):  # not a timeout: the client closed
            hung_up.set()

    server.routes[path] = route
    handle = make(classifier, {"MAX_DOWNLOAD_BYTES": str(64 * 1024 * 1024)})(server.port)
    response = handle({"url": server.url(path)}, Context())
    assert response.get("error", {}).get("status", 200) == status, response
    assert hung_up.wait(5), "the server could keep writing: the connection was not closed"


@pytest.mark.parametrize("cut", ["short", "cap"])
def test_a_failed_body_read_frees_the_body_and_the_image_without_the_garbage_collector(cut, classifier, server, big_cat):
    """A failed read's error kept its traceback, whose frames held the body and the decoder's
    half-decoded image: a cycle only the collector freed, many requests later (~50 MB per failed
    16 MP request, an out-of-memory kill after ~8 in a warm function)."""
    import gc
    import weakref

    from classifier import fetch as fetch_module

    bodies: list = []

    def route(sock, request):
        if cut == "short":  # fewer bytes than the Content-Length: 502
            sock.sendall(head(len(big_cat)) + big_cat[: len(big_cat) * 3 // 4])
        else:  # over the byte cap while it streams: 413
            sock.sendall(head(None) + big_cat)

    server.routes[f"/fail-{cut}"] = route
    env = {"MAX_DOWNLOAD_BYTES": str(len(big_cat) // 2)} if cut == "cap" else {}
    settings = Settings.from_env({"ALLOW_PRIVATE_URLS": "true", **env})
    scoped = FetchPolicy.from_settings(settings, allowed_ports=(server.port,), connector=loopback_connector)

    def fetch(url, deadline):
        body = fetch_module.fetch_url(url, scoped, deadline=deadline)
        bodies.append(weakref.ref(body))
        return body

    handle = make_handler(settings, classifier, fetch, Telemetry("m", "1", service=f"test-{uuid.uuid4().hex}"))
    gc.collect()
    gc.disable()
    try:
        response = handle({"url": server.url(f"/fail-{cut}")}, Context())
        assert response["error"]["status"] == (502 if cut == "short" else 413)
        assert bodies and all(ref() is None for ref in bodies), "the failed body outlived its request"
    finally:
        gc.enable()
