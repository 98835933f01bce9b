"""Hostile and awkward inputs through the emulated Lambda (issue 4, "Proof").

Every case goes through the staged function under the real Runtime Interface Emulator, has an
expected status and error code, and is followed by a good request (the cat photo) that must
still be classified by the SAME warm runtime process (``Emulator.runtime_pid`` unchanged).

Three warm functions, each with the template's environment plus:

* ``fn``: ``ALLOW_PRIVATE_URLS=true`` (opens loopback only), the hostile server's port allowed,
  small limits (``MAX_IMAGE_PIXELS=4000000``, ``MAX_DOWNLOAD_BYTES=3000000``) so that bombs,
  huge images and oversized bodies stay cheap and under the RIE's 6 MB invoke payload limit;
* ``fn_strict``: ``ALLOW_PRIVATE_URLS=false`` as deployed (loopback spellings must be 403);
* ``fn_slow``: like ``fn`` with a 4 s Lambda timeout, for servers that trickle or stall (the
  fetch deadline is the remaining time minus the 2 s processing reserve: 504 after ~2 s).

Network safety: no URL here points at a non-loopback address the fetcher does not refuse
before connecting (IP literals only, never names that would need DNS), and

1. each such URL (and each redirect target) is first checked in-process with
   ``classifier.fetch.check_url`` under a resolver and connector that raise if called, so a
   broken guard fails the test before the URL is ever sent to the function;
2. the function's runtime imports a tripwire ``sitecustomize`` (on ``PYTHONPATH`` ahead of the task
   root) that logs every ``connect``/``getaddrinfo`` of the process and refuses anything that is
   not loopback; the tests assert on that log (no non-loopback attempt, ever; redirects into
   private space dial only the loopback server).
"""

from __future__ import annotations

import base64
import gzip
import io
import ipaddress
import json
import socket
import socketserver
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.crafted import (
    bmp_header_bomb,
    bmp_rle8,
    encode,
    exif_with_odd_tag,
    gif_extension_bomb,
    gif_header_bomb,
    jpeg_arithmetic,
    jpeg_header_bomb,
    jpeg_header_padding_bomb,
    jpeg_repeat_last_scan,
    jpeg_scan_bomb,
    jpeg_sequential_scans,
    png,
    png_chunk_bomb,
    png_header_bomb,
    png_real_bomb,
    png_rgb16,
    tiff_header_bomb,
    tiff_jpeg_strips,
    tiff_strip_bomb,
    webp_header_bomb,
    webp_lossless_groups,
    zlib_with_empty_blocks,
)
from local_lambda import Emulator
from local_lambda.template import function_emulator

from support import assert_refused_before_connecting

REPO = Path(__file__).resolve().parents[2]
CAT_CLASS_INDICES = range(281, 286)  # ImageNet-1k: tabby, tiger cat, Persian, Siamese, Egyptian

MAX_PIXELS = 4_000_000
MAX_BYTES = 3_000_000
SLOW_TIMEOUT_S = 4

# --- the tripwire loaded into the function's runtime -----------------------------------------

TRIPWIRE = '''\
"""Test tripwire (tests/lambda/test_hostile.py), never staged: log every connect and name lookup
of this process and refuse any that is not loopback."""
import ipaddress
import os
import socket

_LOG = os.environ["HOSTILE_NET_LOG"]
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _note(kind, host, port):
    with open(_LOG, "a") as log:
        log.write(f"{kind} {host} {port}\\n")


def _loopback(host):
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        _note("connect", address[0], address[1])
        if not _loopback(address[0]):
            raise ConnectionRefusedError("tripwire: connect to a non-loopback address refused")


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


def getaddrinfo(host, port, *args, **kwargs):
    _note("resolve", host, port)
    if not (_loopback(host) or str(host).lower().rstrip(".") == "localhost"):
        raise socket.gaierror(socket.EAI_NONAME, "tripwire: name lookups are refused")
    return _getaddrinfo(host, port, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
_note("loaded", os.getpid(), 0)
'''


# --- crafted files: bench/crafted.py ------------------------------------------------------------


def build_corpus(cat_jpeg: bytes) -> dict[str, bytes]:
    cat = Image.open(io.BytesIO(cat_jpeg)).convert("RGB")
    cat_png = encode(cat, "PNG")
    middle = len(cat_png) // 2
    gradient = Image.linear_gradient("L").resize((2600, 1600)).convert("RGB")  # 4.16 M pixels
    rng = np.random.default_rng(4)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    return {
        # decompression bombs and images over the pixel limit -> 413
        "png-header-50000x50000": png_header_bomb(),
        "gif-header-50000x50000": gif_header_bomb(),
        "jpeg-header-65000x65000": jpeg_header_bomb(),
        "bmp-header-60000x60000": bmp_header_bomb(),
        "tiff-header-60000x60000": tiff_header_bomb(),
        "webp-header-16384x16384": webp_header_bomb(),
        "png-valid-20000x20000-50KB": png_real_bomb(),
        "jpeg-2600x1600-over-pixel-limit": encode(gradient, "JPEG", quality=80),
        "jpeg-progressive-scan-repeated-3000x": jpeg_scan_bomb(),  # ~100 KB, 3000 passes over 2.25 MP
        "tiff-2-pixels-1000000-strips": tiff_strip_bomb(),  # ~2 MB, ~10 s of Python without the strip limit
        "jpeg-header-1000000-empty-segments": jpeg_header_padding_bomb(1_000_000),  # 4 MB, ~1.3 s of Python without the limit
        "gif-700000-comment-extensions": gif_extension_bomb(700_000),  # 3.5 MB, ~0.15 GB kept by Pillow without the limit
        "png-200000-empty-chunks": png_chunk_bomb(200_000),  # 2.4 MB, ~0.5 s of Python without the chunk limit
        "bmp-rle8-3000x3000": bmp_rle8(3000, 3000),  # 13 KB, ~2.5 s of Python without the RLE limits
        "jpeg-sequential-scan-repeated-150x": jpeg_sequential_scans(1024, 1024, 150),  # 0.6 MB, 150 passes over 1 MP
        "webp-lossless-65536-code-groups": webp_lossless_groups(),  # 288 KB, ~2.5 s and ~360 MB in libwebp without the limit
        "webp-alpha-65536-code-groups": webp_lossless_groups(container="ALPH"),  # the same as a lossy WebP's alpha
        # truncated / corrupt -> 422
        "jpeg-truncated-half": cat_jpeg[: len(cat_jpeg) // 2],
        "jpeg-header-only": cat_jpeg[:200],
        "png-corrupt-idat": cat_png[:middle] + bytes(b ^ 0x5A for b in cat_png[middle : middle + 64]) + cat_png[middle + 64 :],
        "png-truncated-half": cat_png[: len(cat_png) // 2],
        # not an image / not an allowed format -> 415
        "garbage-4KB": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "png-signature-only": b"\x89PNG\r\n\x1a\n",
        "png-zero-dimensions": png(0, 0, 8, 2, zlib.compress(b"")),
        "html": b"<!doctype html><html><head><title>Not found</title></head><body>nope</body></html>",
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
        "pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
        "ico-not-allow-listed": encode(cat.resize((32, 32)), "ICO"),
        "nul-bytes": b"\x00" * 1024,
        "jpeg-arithmetic-progressive": jpeg_arithmetic(progressive=True),  # a real file; Chrome and Firefox refuse it too
        # awkward but valid -> 200
        "png-16bit-gray": encode(Image.fromarray(np.asarray(cat.convert("L"), np.uint16) * 257), "PNG"),
        "png-16bit-rgb": png_rgb16(cat),
        "jpeg-cmyk": encode(cat.convert("CMYK"), "JPEG"),
        "png-palette-transparency": encode(cat.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
        "gif-animated-3-frames": encode(cat, "GIF", save_all=True, append_images=[cat.rotate(90), cat.rotate(180)], duration=100, loop=0),
        "png-gray-alpha": encode(cat.convert("LA"), "PNG"),
        "jpeg-grayscale": encode(cat.convert("L"), "JPEG"),
        "jpeg-progressive": encode(cat, "JPEG", progressive=True),
        "jpeg-progressive-scan-repeated-20x": jpeg_repeat_last_scan(encode(cat, "JPEG", progressive=True), 20),
        "jpeg-exif-rotated": encode(cat, "JPEG", exif=exif),
        "jpeg-exif-rotated-odd-tag": encode(cat, "JPEG", exif=exif_with_odd_tag(6)),  # was a 500
        "webp": encode(cat, "WEBP"),
        "webp-lossless": encode(cat, "WEBP", lossless=True, method=6),
        "webp-lossy-alpha": encode(cat.convert("RGBA"), "WEBP", quality=80),
        "tiff": encode(cat, "TIFF"),
        "tiff-jpeg-compressed": encode(cat, "TIFF", compression="jpeg"),
        # one JPEG strip whose last scan repeats: 150 scans (libtiff itself would stop at 100, after 100 passes)
        "tiff-jpeg-strip-150-scans": tiff_jpeg_strips(
            jpeg_repeat_last_scan(encode(Image.new("L", (2000, 2000), 128), "JPEG", progressive=True), 144), 2000, 2000),
        "png-1x1-2mb-of-empty-deflate-blocks": png(1, 1, 8, 0, zlib_with_empty_blocks(2_000_000, b"\x00\x80")),  # ~0.3 s of zlib
        "tiff-64-strips-sharing-1mb-of-empty-deflate-blocks": tiff_jpeg_strips(  # ~10 s of zlib without the bytes check
            zlib_with_empty_blocks(1_000_000, b"\x80"), 1, 64, strips=64, compression=8, shared=True),
        "tiff-old-style-jpeg": tiff_jpeg_strips(encode(Image.new("L", (64, 48), 128), "JPEG"), 64, 48, compression=6),
        "bmp": encode(cat, "BMP"),
        "png-1x1": encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
    }


IMAGE_EXPECTATIONS = {
    "png-header-50000x50000": (413, "payload_too_large"),
    "gif-header-50000x50000": (413, "payload_too_large"),
    "jpeg-header-65000x65000": (413, "payload_too_large"),
    "bmp-header-60000x60000": (413, "payload_too_large"),
    "tiff-header-60000x60000": (413, "payload_too_large"),
    "webp-header-16384x16384": (413, "payload_too_large"),
    "png-valid-20000x20000-50KB": (413, "payload_too_large"),
    "jpeg-2600x1600-over-pixel-limit": (413, "payload_too_large"),
    "jpeg-progressive-scan-repeated-3000x": (413, "payload_too_large"),
    "tiff-2-pixels-1000000-strips": (413, "payload_too_large"),
    "jpeg-header-1000000-empty-segments": (413, "payload_too_large"),
    "gif-700000-comment-extensions": (413, "payload_too_large"),
    "png-200000-empty-chunks": (413, "payload_too_large"),
    "bmp-rle8-3000x3000": (413, "payload_too_large"),
    "jpeg-sequential-scan-repeated-150x": (413, "payload_too_large"),
    "webp-lossless-65536-code-groups": (413, "payload_too_large"),
    "webp-alpha-65536-code-groups": (413, "payload_too_large"),
    "jpeg-truncated-half": (422, "corrupt_image"),
    "jpeg-header-only": (422, "corrupt_image"),
    "png-corrupt-idat": (422, "corrupt_image"),
    "png-truncated-half": (422, "corrupt_image"),
    "garbage-4KB": (415, "unsupported_media"),
    "png-signature-only": (422, "corrupt_image"),  # a PNG by its signature: broken, not another format
    "png-zero-dimensions": (422, "corrupt_image"),  # Pillow cannot open it, but it starts as a PNG
    "html": (415, "unsupported_media"),
    "svg": (415, "unsupported_media"),
    "pdf": (415, "unsupported_media"),
    "ico-not-allow-listed": (415, "unsupported_media"),
    "nul-bytes": (415, "unsupported_media"),
    "jpeg-arithmetic-progressive": (415, "unsupported_media"),
    "png-16bit-gray": (200, None),
    "png-16bit-rgb": (200, None),
    "jpeg-cmyk": (200, None),
    "png-palette-transparency": (200, None),
    "gif-animated-3-frames": (200, None),
    "png-gray-alpha": (200, None),
    "jpeg-grayscale": (200, None),
    "jpeg-progressive": (200, None),
    "jpeg-progressive-scan-repeated-20x": (200, None),
    "jpeg-exif-rotated": (200, None),
    "jpeg-exif-rotated-odd-tag": (200, None),
    "webp": (200, None),
    "webp-lossless": (200, None),
    "webp-lossy-alpha": (200, None),
    "tiff": (200, None),
    "tiff-jpeg-compressed": (200, None),
    "tiff-jpeg-strip-150-scans": (413, "payload_too_large"),
    "tiff-old-style-jpeg": (415, "unsupported_media"),
    "png-1x1-2mb-of-empty-deflate-blocks": (413, "payload_too_large"),
    "tiff-64-strips-sharing-1mb-of-empty-deflate-blocks": (413, "payload_too_large"),
    "bmp": (200, None),
    "png-1x1": (200, None),
}
# Images whose top-1 label must still be a cat (the photo, re-encoded or converted).
CAT_IMAGES = {"png-16bit-rgb", "jpeg-cmyk", "png-palette-transparency", "gif-animated-3-frames",
              "jpeg-progressive", "jpeg-progressive-scan-repeated-20x", "jpeg-exif-rotated", "jpeg-exif-rotated-odd-tag", "webp", "webp-lossless", "webp-lossy-alpha", "tiff", "tiff-jpeg-compressed", "bmp"}


# --- a loopback server that misbehaves on purpose ------------------------------------------------


def send(sock: socket.socket, status: int = 200, body: bytes = b"", content_type: str | None = "image/jpeg",
         headers: tuple[tuple[str, str], ...] = (), length: int | None | str = "auto") -> None:
    lines = [f"HTTP/1.1 {status} X"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if length == "auto":
        lines.append(f"Content-Length: {len(body)}")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in headers] + ["Connection: close", "", ""]
    sock.sendall("\r\n".join(lines).encode("latin-1") + body)


def redirect(location: str, status: int = 302):
    return lambda sock: send(sock, status, b"", None, headers=(("Location", location),))


def trickle(data: bytes, interval: float, limit_s: float = 15.0):
    def route(sock):
        started = time.monotonic()
        for i in range(len(data)):
            if time.monotonic() - started > limit_s:
                return
            sock.sendall(data[i : i + 1])
            time.sleep(interval)
    return route


def stall(seconds: float = 15.0):
    return lambda sock: time.sleep(seconds)


class HostileServer:
    """Raw HTTP on 127.0.0.1: each path is a function writing whatever bytes it likes."""

    def __init__(self) -> None:
        self.routes: dict[str, object] = {}
        self.hits: list[str] = []
        outer = self

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
                    target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                    path = target[1] if len(target) > 1 else "/"
                    outer.hits.append(path)
                    route = outer.routes.get(path)
                    if route is None:
                        send(sock, 404, b"not found", "text/plain")
                    else:
                        route(sock)
                except OSError:  # the function hung up first (cap reached, deadline passed): fine
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def image(self, path: str, data: bytes, content_type: str = "image/jpeg") -> None:
        self.routes[path] = lambda sock: send(sock, 200, data, content_type)


# --- the functions --------------------------------------------------------------------------------


class Function:
    """A started Emulator, its tripwire log and the runtime pid seen after warm-up."""

    def __init__(self, emulator: Emulator, net_log: Path, allow_private: bool, cat_event: dict):
        self.emulator, self.net_log, self.allow_private = emulator, net_log, allow_private
        self.cat_event = cat_event
        self.pid: int | None = None

    def net_events(self) -> list[tuple[str, str, int]]:
        if not self.net_log.exists():
            return []
        out = []
        for line in self.net_log.read_text().splitlines():
            kind, host, port = line.split(" ")
            out.append((kind, host, int(port) if port.isdigit() else -1))
        return out


@pytest.fixture(scope="module")
def hostile_server(cat_jpeg):
    server = HostileServer()
    server.image("/cat.jpg", cat_jpeg)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def tripwire_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tripwire")
    (path / "sitecustomize.py").write_text(TRIPWIRE)
    return path


def _start(staged_project, predict_function_config, tripwire_dir, name, overrides, timeout_s=None):
    fn = predict_function_config
    net_log = tripwire_dir / f"{name}.net.log"
    extra = {"HOSTILE_NET_LOG": str(net_log), "PYTHONPATH": f"{tripwire_dir}:{staged_project.task_root}"}
    emulator, _ = function_emulator(fn, staged_project, {fn.logical_id: overrides}, shell_env={}, extra_env=extra,
                                    timeout_s=timeout_s or fn.timeout_s)
    return emulator, net_log


@pytest.fixture(scope="module")
def cat_event(cat_jpeg):
    return {"image": base64.b64encode(cat_jpeg).decode()}


def _function(request, staged_project, predict_function_config, tripwire_dir, cat_event, name, overrides,
              allow_private, timeout_s=None):
    emulator, net_log = _start(staged_project, predict_function_config, tripwire_dir, name, overrides, timeout_s)
    emulator.start()
    request.addfinalizer(emulator.stop)
    function = Function(emulator, net_log, allow_private, cat_event)
    response = emulator.invoke(cat_event)  # cold start outside any test's timing
    assert "predictions" in response, (response, emulator.logs[-3000:])
    function.pid = emulator.runtime_pid
    assert function.pid is not None
    # Else every "no forbidden traffic" check on this function would pass without looking.
    assert ("loaded", str(function.pid), 0) in function.net_events(), "the tripwire is not loaded in the runtime"
    return function


@pytest.fixture(scope="module")
def fn(request, staged_project, predict_function_config, tripwire_dir, cat_event, hostile_server):
    overrides = {
        "ALLOW_PRIVATE_URLS": "true",
        "ALLOWED_PORTS": f"80,443,{hostile_server.port}",
        "MAX_IMAGE_PIXELS": str(MAX_PIXELS),
        "MAX_DOWNLOAD_BYTES": str(MAX_BYTES),
        "FETCH_READ_TIMEOUT": "2",
    }
    return _function(request, staged_project, predict_function_config, tripwire_dir, cat_event, "fn", overrides, True)


@pytest.fixture(scope="module")
def fn_strict(request, staged_project, predict_function_config, tripwire_dir, cat_event, hostile_server):
    overrides = {"ALLOW_PRIVATE_URLS": "false", "ALLOWED_PORTS": f"80,443,{hostile_server.port}"}
    return _function(request, staged_project, predict_function_config, tripwire_dir, cat_event, "strict", overrides, False)


@pytest.fixture(scope="module")
def fn_slow(request, staged_project, predict_function_config, tripwire_dir, cat_event, hostile_server):
    overrides = {"ALLOW_PRIVATE_URLS": "true", "ALLOWED_PORTS": f"80,443,{hostile_server.port}"}
    return _function(request, staged_project, predict_function_config, tripwire_dir, cat_event, "slow", overrides,
                     True, timeout_s=SLOW_TIMEOUT_S)


@pytest.fixture(scope="module")
def cat_labels():
    from classifier.model import Classifier

    labels = Classifier.load(str(REPO / "predict_function" / "model" / "model.onnx"), intra_op_threads=1).card.labels
    return {labels[i] for i in CAT_CLASS_INDICES}


@pytest.fixture(scope="module")
def corpus(cat_jpeg, hostile_server):
    files = build_corpus(cat_jpeg)
    for name, data in files.items():
        hostile_server.image(f"/img/{name}", data)
    return files


# --- invoking and checking -------------------------------------------------------------------------

# Nothing of the function's inside may reach a caller: stack traces, file paths, internal addresses.
LEAKS = ("Traceback", 'File "', "stackTrace", "errorType", "site-packages", "/work/", "/tmp/", "/var/task",
         "/var/runtime", ".build", "classifier/", ".py", "169.254", "10.0.0", "100.64", "fe80", "fd00",
         "127.0.0.1", "0x7f", "2130706433", "localhost", "::1", "urllib3", "PIL", "Errno")


def api_event(kind: str, body: str, content_type: str = "application/json", is_base64: bool = False,
              method: str = "POST", path: str = "/predict", query: dict | None = None) -> dict:
    if kind == "rest":
        return {
            "resource": path, "path": path, "httpMethod": method,
            "headers": {"Content-Type": content_type, "Host": "abc123.execute-api.us-east-1.amazonaws.com"},
            "multiValueHeaders": {"Content-Type": [content_type]},
            "queryStringParameters": query, "multiValueQueryStringParameters": None,
            "pathParameters": None, "stageVariables": None,
            "requestContext": {"resourcePath": path, "httpMethod": method, "path": f"/Prod{path}", "stage": "Prod",
                               "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "accountId": "123456789012",
                               "identity": {"sourceIp": "203.0.113.9"}},
            "body": body, "isBase64Encoded": is_base64,
        }
    return {
        "version": "2.0", "routeKey": f"{method} {path}", "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "queryStringParameters": query,
        "headers": {"content-type": content_type, "host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {"accountId": "123456789012", "apiId": "abc123", "stage": "$default",
                           "requestId": "id", "routeKey": f"{method} {path}",
                           "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "203.0.113.9", "userAgent": "curl/8"}},
        "body": body, "isBase64Encoded": is_base64,
    }


def shaped(kind: str, payload: dict) -> dict:
    """The same JSON request as a direct invocation, a REST API (v1) or an HTTP API (v2) event."""
    return payload if kind == "direct" else api_event(kind, json.dumps(payload))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def invoke(function: Function, event: dict) -> tuple[int, dict, str]:
    """(status, body, raw response text); fails on a Lambda-level error, a timeout or a leak."""
    result = function.emulator.invoke_raw(json.dumps(event).encode())
    text = result.text
    assert result.status == 200, (result.status, text[:500])
    assert result.error is None, (text[:2000], function.emulator.logs[-3000:])
    document = result.json()
    if isinstance(event, dict) and "requestContext" in event:
        assert document["headers"]["Content-Type"] == "application/json"
        assert document["isBase64Encoded"] is False
        status, body = document["statusCode"], json.loads(document["body"])
    else:
        body = document
        status = body["error"]["status"] if "error" in body else 200
    if status != 200:
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
        for leak in LEAKS:
            assert leak not in text, f"{leak!r} leaked in {text!r}"
    return status, body, text


def expect(function: Function, event: dict, status: int, code: str | None) -> dict:
    got, body, _ = invoke(function, event)
    assert (got, body.get("error", {}).get("code")) == (status, code), body
    return body


def still_serves_the_cat(function: Function) -> None:
    """The good request after a bad one: classified by the same warm process."""
    status, body, _ = invoke(function, function.cat_event)
    assert status == 200 and body["predictions"], body
    assert function.emulator.runtime_pid == function.pid, "the runtime process was replaced (crash or timeout)"


def no_forbidden_traffic(function: Function) -> None:
    for kind, host, port in function.net_events():
        if kind == "loaded":
            continue
        if kind == "resolve":
            raise AssertionError(f"the function looked up {host!r}")
        assert ipaddress.ip_address(host.split("%")[0]).is_loopback, f"the function dialled {host}:{port}"


# --- 1. image bytes: base64 in a direct invocation, and served over URL --------------------------------


@pytest.mark.parametrize("name", sorted(IMAGE_EXPECTATIONS))
def test_image_corpus_as_base64(name, fn, corpus, cat_labels):
    status, code = IMAGE_EXPECTATIONS[name]
    body = expect(fn, {"image": b64(corpus[name])}, status, code)
    if name in CAT_IMAGES:
        assert body["predictions"][0]["label"] in cat_labels, body["predictions"][:3]
    still_serves_the_cat(fn)


@pytest.mark.parametrize("name", sorted(IMAGE_EXPECTATIONS))
def test_image_corpus_over_url(name, fn, corpus, hostile_server):
    status, code = IMAGE_EXPECTATIONS[name]
    expect(fn, {"url": hostile_server.url(f"/img/{name}")}, status, code)
    still_serves_the_cat(fn)


# --- 2. servers that lie, misbehave or are slow -------------------------------------------------------


SERVER_EXPECTATIONS = {
    # name: (expected status, expected code)
    "html-served-as-image-jpeg": (415, "unsupported_media"),
    "html-served-as-text-html": (415, "unsupported_media"),
    "cat-served-as-text-plain": (200, None),  # the bytes decide, not the upstream's label
    "empty-200": (415, "unsupported_media"),
    "content-length-smaller-than-body": (422, "corrupt_image"),  # the header frames the body: truncated JPEG
    "content-length-larger-than-body": (502, "upstream_error"),  # connection closes early
    "content-length-not-a-number": (200, None),  # ignored: body framed by the close, cap still enforced
    "content-length-conflicting": (502, "upstream_error"),
    "content-length-claims-4GB": (413, "payload_too_large"),  # refused before reading
    # Random bytes over the cap: the body is decoded while it downloads, so it is refused as not an
    # image after its first bytes, long before the cap is reached (it was 413 when the whole body was
    # downloaded first). The cap while streaming: tests/functional/test_streamed_urls.py.
    "no-content-length-over-cap": (415, "unsupported_media"),
    "chunked-over-cap": (415, "unsupported_media"),
    "chunked-bad-chunk-size": (502, "upstream_error"),
    "gzip-encoded-body": (502, "upstream_error"),  # identity was asked for
    "gzip-bomb-encoded": (502, "upstream_error"),  # never inflated
    "not-http-at-all": (502, "upstream_error"),
    "closes-without-answering": (502, "upstream_error"),
    "http-404": (502, "upstream_error"),
    "http-500-with-internal-details": (502, "upstream_error"),  # the upstream body is not echoed
    "redirect-without-location": (502, "upstream_error"),
    "stalls-after-accept-read-timeout": (504, "upstream_timeout"),  # FETCH_READ_TIMEOUT=2 on fn
}


def _server_routes(cat_jpeg: bytes) -> dict[str, object]:
    html = b"<!doctype html><html><body><h1>Login</h1><form>...</form></body></html>"
    big = np.random.default_rng(7).integers(0, 256, MAX_BYTES + 1_000_000, dtype=np.uint8).tobytes()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(big[i : i + 65536]), big[i : i + 65536]) for i in range(0, len(big), 65536))
    chunked += b"0\r\n\r\n"
    return {
        "html-served-as-image-jpeg": lambda s: send(s, 200, html, "image/jpeg"),
        "html-served-as-text-html": lambda s: send(s, 200, html, "text/html; charset=utf-8"),
        "cat-served-as-text-plain": lambda s: send(s, 200, cat_jpeg, "text/plain"),
        "empty-200": lambda s: send(s, 200, b"", "image/jpeg"),
        "content-length-smaller-than-body": lambda s: send(s, 200, cat_jpeg, length=len(cat_jpeg) // 2),
        "content-length-larger-than-body": lambda s: send(s, 200, cat_jpeg, length=len(cat_jpeg) + 5000),
        "content-length-not-a-number": lambda s: send(s, 200, cat_jpeg, length="banana"),
        "content-length-conflicting": lambda s: send(s, 200, cat_jpeg, headers=(("Content-Length", "10"),)),
        "content-length-claims-4GB": lambda s: send(s, 200, cat_jpeg[:1000], length=4 * 1024**3),
        "no-content-length-over-cap": lambda s: send(s, 200, big, length=None),
        "chunked-over-cap": lambda s: send(s, 200, chunked, length=None, headers=(("Transfer-Encoding", "chunked"),)),
        "chunked-bad-chunk-size": lambda s: send(s, 200, b"zz\r\nabc\r\n0\r\n\r\n", length=None,
                                                 headers=(("Transfer-Encoding", "chunked"),)),
        "gzip-encoded-body": lambda s: send(s, 200, gzip.compress(cat_jpeg), headers=(("Content-Encoding", "gzip"),)),
        "gzip-bomb-encoded": lambda s: send(s, 200, gzip.compress(b"\x00" * 20_000_000),
                                            headers=(("Content-Encoding", "gzip"),)),
        "not-http-at-all": lambda s: s.sendall(b"SSH-2.0-OpenSSH_9.6\r\n"),
        "closes-without-answering": lambda s: None,
        "http-404": lambda s: send(s, 404, b"not found", "text/plain"),
        "http-500-with-internal-details": lambda s: send(
            s, 500, b"Traceback (most recent call last): File \"/srv/app.py\" 10.0.0.7", "text/plain"),
        "redirect-without-location": lambda s: send(s, 302, b"", None),
        "stalls-after-accept-read-timeout": stall(8),
    }


@pytest.fixture(scope="module")
def server_cases(hostile_server, cat_jpeg):
    for name, route in _server_routes(cat_jpeg).items():
        hostile_server.routes[f"/srv/{name}"] = route
    return hostile_server


@pytest.mark.parametrize("name", sorted(SERVER_EXPECTATIONS))
def test_misbehaving_servers(name, fn, server_cases):
    status, code = SERVER_EXPECTATIONS[name]
    expect(fn, {"url": server_cases.url(f"/srv/{name}")}, status, code)
    still_serves_the_cat(fn)


@pytest.mark.parametrize("name,route", [
    ("trickles-body-1-byte-per-200ms", "body"),
    ("trickles-headers-1-byte-per-200ms", "headers"),
    ("stalls-after-accept", "stall"),
])
def test_slow_servers_end_in_504_before_the_lambda_timeout(name, route, fn_slow, hostile_server, cat_jpeg):
    head = f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(cat_jpeg)}\r\n\r\n".encode()
    routes = {"body": lambda s: (s.sendall(head), trickle(cat_jpeg, 0.2)(s)),
              "headers": trickle(head + cat_jpeg, 0.2),
              "stall": stall(15)}
    hostile_server.routes[f"/slow/{name}"] = routes[route]
    # A function past its timeout gets no 504 of its own: the emulator answers for it (Sandbox.Timedout).
    expect(fn_slow, {"url": hostile_server.url(f"/slow/{name}")}, 504, "upstream_timeout")
    still_serves_the_cat(fn_slow)


# --- 3. redirects: into private space (refused before dialling), loops, chains -----------------------

PRIVATE_REDIRECTS = {
    "to-imds": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "to-imds-hex": "http://0xa9fea9fe/latest/meta-data/",
    "to-imds-decimal": "http://2852039166/latest/meta-data/",
    "to-imds-ipv4-mapped": "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "to-imds-ipv6": "http://[fd00:ec2::254]/latest/meta-data/",
    "to-ecs-credentials": "http://169.254.170.2/v2/credentials/",
    "to-private-10": "http://10.0.0.1/",
    "to-private-192-168": "http://192.168.0.1:443/",
    "to-cgnat": "http://100.64.0.1/",
    "to-https-imds": "https://169.254.169.254/",
}


@pytest.fixture(scope="module")
def redirect_routes(hostile_server, cat_jpeg):
    for name, location in PRIVATE_REDIRECTS.items():
        hostile_server.routes[f"/r/{name}"] = redirect(location)
    hostile_server.routes["/r/hop-then-imds"] = redirect("/r/to-imds", 301)  # relative, then private
    hostile_server.routes["/r/307-to-imds"] = redirect(PRIVATE_REDIRECTS["to-imds"], 307)
    hostile_server.routes["/r/308-to-private"] = redirect(PRIVATE_REDIRECTS["to-private-10"], 308)
    hostile_server.routes["/r/to-port-22"] = redirect("http://127.0.0.1:22/")  # a port not allowed
    hostile_server.routes["/r/to-file"] = redirect("file:///etc/passwd")
    hostile_server.routes["/r/to-gopher"] = redirect(f"gopher://127.0.0.1:{hostile_server.port}/_GET")
    hostile_server.routes["/r/to-userinfo"] = redirect(f"http://user:pw@127.0.0.1:{hostile_server.port}/cat.jpg")
    hostile_server.routes["/r/loop"] = redirect("/r/loop")
    hostile_server.routes["/r/ping"] = redirect("/r/pong")
    hostile_server.routes["/r/pong"] = redirect("/r/ping")
    for n in range(1, 6):
        hostile_server.routes[f"/r/chain{n}"] = redirect(f"/r/chain{n - 1}" if n > 1 else "/cat.jpg")
    return hostile_server


@pytest.mark.parametrize("name", sorted(PRIVATE_REDIRECTS) + ["hop-then-imds", "307-to-imds", "308-to-private"])
def test_redirect_into_private_space_is_refused_before_dialling(name, fn, redirect_routes):
    server = redirect_routes
    target = PRIVATE_REDIRECTS.get(name) or PRIVATE_REDIRECTS["to-private-10" if "private" in name else "to-imds"]
    assert_refused_before_connecting(target, allow_private=True, ports=(80, 443, server.port))
    before = len(fn.net_events())
    expect(fn, {"url": server.url(f"/r/{name}")}, 403, "blocked_url")
    dialled = fn.net_events()[before:]
    hops = 2 if name == "hop-then-imds" else 1
    assert dialled == [("connect", "127.0.0.1", server.port)] * hops, dialled
    still_serves_the_cat(fn)


@pytest.mark.parametrize("name,status,code", [
    ("to-port-22", 403, "blocked_url"),
    ("to-file", 502, "upstream_error"),
    ("to-gopher", 502, "upstream_error"),
    ("to-userinfo", 502, "upstream_error"),
    ("loop", 502, "upstream_error"),
    ("ping", 502, "upstream_error"),
    ("chain3", 200, None),  # MAX_REDIRECTS=3: exactly the limit is fine
    ("chain4", 502, "upstream_error"),
    ("chain5", 502, "upstream_error"),
])
def test_redirect_loops_chains_and_unusable_targets(name, status, code, fn, redirect_routes):
    before = len(fn.net_events())
    expect(fn, {"url": redirect_routes.url(f"/r/{name}")}, status, code)
    dialled = fn.net_events()[before:]
    assert len(dialled) <= 4 and set(dialled) == {("connect", "127.0.0.1", redirect_routes.port)}, dialled
    still_serves_the_cat(fn)


# --- 4. every blocked address spelling --------------------------------------------------------------

# Loopback spellings: allowed by ALLOW_PRIVATE_URLS=true, so they are checked on fn_strict, and
# carry the hostile server's (allowed) port: if the guard failed they would fetch the cat (200).
LOOPBACK_SPELLINGS = [
    "http://2130706433:{port}/cat.jpg",
    "http://0x7f.1:{port}/cat.jpg",
    "http://0177.0.0.1:{port}/cat.jpg",
    "http://0x7f000001:{port}/cat.jpg",
    "http://127.1:{port}/cat.jpg",
    "http://127.0.0.1:{port}/cat.jpg",
    "http://127.0.0.1.:{port}/cat.jpg",
    "http://%31%32%37.0.0.1:{port}/cat.jpg",
    "http://\uff11\uff12\uff17.0.0.1:{port}/cat.jpg",  # fullwidth digits, IDNA-normalised
    "http://[::ffff:127.0.0.1]:{port}/cat.jpg",
    "http://[0:0:0:0:0:ffff:7f00:1]:{port}/cat.jpg",
    "http://[::1]:{port}/cat.jpg",
    "http://localhost:{port}/cat.jpg",
    "http://LocalHost.:{port}/cat.jpg",
    "http://0.0.0.0:{port}/cat.jpg",
    "http://0:{port}/cat.jpg",
    "http://[::]:{port}/cat.jpg",
    "http://127.0.0.1:9001/",  # the Lambda Runtime API's usual port (not allowed either)
]

# Link-local, private and other non-public spellings: refused with ANY setting.
PRIVATE_SPELLINGS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://2852039166/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://169\u3002254\u3002169\u3002254/",  # ideographic full stops
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[::a9fe:a9fe]/",
    "http://169.254.170.2/v2/credentials",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://100.64.0.1/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "https://169.254.169.254/",
]
BAD_REQUEST_SPELLINGS = {  # not blocked as an address: refused as a malformed URL (400)
    "http://[fe80::1%25eth0]/": (400, "bad_request"),
    "http://user@169.254.169.254/": (400, "bad_request"),
    "http://169.254.169.254\\@127.0.0.1/": (400, "bad_request"),
    "file:///proc/self/environ": (400, "bad_request"),
    "gopher://169.254.169.254/": (400, "bad_request"),
}


@pytest.mark.parametrize("template", LOOPBACK_SPELLINGS)
def test_loopback_spellings_are_blocked_without_allow_private_urls(template, fn_strict, hostile_server):
    url = template.format(port=hostile_server.port)
    assert_refused_before_connecting(url, allow_private=False, ports=(80, 443, hostile_server.port))
    before = len(fn_strict.net_events())
    expect(fn_strict, {"url": url}, 403, "blocked_url")
    assert fn_strict.net_events()[before:] == []
    still_serves_the_cat(fn_strict)


@pytest.mark.parametrize("strict", [False, True], ids=["allow-private", "strict"])
@pytest.mark.parametrize("url", PRIVATE_SPELLINGS + sorted(BAD_REQUEST_SPELLINGS))
def test_private_spellings_are_blocked_with_any_setting(url, strict, request):
    function = request.getfixturevalue("fn_strict" if strict else "fn")
    refused_with = assert_refused_before_connecting(url, allow_private=function.allow_private)
    status, code = BAD_REQUEST_SPELLINGS.get(url, (403, "blocked_url"))
    assert refused_with == status
    before = len(function.net_events())
    expect(function, {"url": url}, status, code)
    assert function.net_events()[before:] == []
    still_serves_the_cat(function)


# --- 5. API Gateway shapes (REST v1 and HTTP v2) for a few of them ----------------------------------


@pytest.mark.parametrize("kind", ["direct", "rest", "http"])
@pytest.mark.parametrize("case", ["imds-url", "redirect-to-imds", "html-over-url", "png-bomb-base64",
                                  "truncated-base64", "cat-url-top-k-2"])
def test_event_shapes(case, kind, fn, corpus, redirect_routes):
    server = redirect_routes
    payloads = {
        "imds-url": ({"url": "http://169.254.169.254/latest/meta-data/"}, 403, "blocked_url"),
        "redirect-to-imds": ({"url": server.url("/r/to-imds")}, 403, "blocked_url"),
        "html-over-url": ({"url": server.url("/img/html")}, 415, "unsupported_media"),
        "png-bomb-base64": ({"image": b64(corpus["png-header-50000x50000"])}, 413, "payload_too_large"),
        "truncated-base64": ({"image": b64(corpus["jpeg-truncated-half"])}, 422, "corrupt_image"),
        "cat-url-top-k-2": ({"url": server.url("/cat.jpg"), "top_k": 2}, 200, None),
    }
    payload, status, code = payloads[case]
    if "url" in payload and "169.254" in payload["url"]:
        assert_refused_before_connecting(payload["url"], allow_private=True)
    expect(fn, shaped(kind, payload), status, code)
    still_serves_the_cat(fn)


@pytest.mark.parametrize("kind", ["rest", "http"])
@pytest.mark.parametrize("name", ["png-header-50000x50000", "png-valid-20000x20000-50KB", "garbage-4KB",
                                  "jpeg-truncated-half", "html", "jpeg-cmyk", "gif-animated-3-frames"])
def test_raw_binary_uploads(name, kind, fn, corpus):
    status, code = IMAGE_EXPECTATIONS[name]
    expect(fn, api_event(kind, b64(corpus[name]), content_type="image/png", is_base64=True), status, code)
    still_serves_the_cat(fn)


# --- 6. oversized bodies and hostile events -----------------------------------------------------------


def _over_cap() -> bytes:
    # Random bytes (incompressible) just over MAX_DOWNLOAD_BYTES; the base64 stays under the
    # RIE's 6 MB synchronous payload limit so the function, not the RIE, answers.
    return np.random.default_rng(3).integers(0, 256, MAX_BYTES + 200_000, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("shape", ["direct-base64", "direct-data-url", "rest-json-base64", "http-json-base64",
                                   "rest-binary", "http-binary"])
def test_oversized_base64_body_is_413(shape, fn):
    encoded = b64(_over_cap())
    events = {
        "direct-base64": lambda: {"image": encoded},
        "direct-data-url": lambda: {"image": "data:image/jpeg;base64," + encoded},
        "rest-json-base64": lambda: shaped("rest", {"image": encoded}),
        "http-json-base64": lambda: shaped("http", {"image": encoded}),
        "rest-binary": lambda: api_event("rest", encoded, "image/jpeg", is_base64=True),
        "http-binary": lambda: api_event("http", encoded, "application/octet-stream", is_base64=True),
    }
    body = expect(fn, events[shape](), 413, "payload_too_large")
    assert f"than the {MAX_BYTES} byte limit" in body["error"]["message"]  # says which limit it broke
    still_serves_the_cat(fn)


def _deep_json(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


HOSTILE_EVENTS = {
    # name: (event factory, status, code)
    "direct-not-an-object": (lambda: ["url", "http://x/"], 400, "bad_request"),
    "direct-string": (lambda: "hello", 400, "bad_request"),
    "direct-null": (lambda: None, 400, "bad_request"),
    "direct-url-not-a-string": (lambda: {"url": {"$ne": None}}, 400, "bad_request"),
    "direct-image-not-a-string": (lambda: {"image": [1, 2, 3]}, 400, "bad_request"),
    "direct-image-invalid-base64": (lambda: {"image": "%%%%"}, 400, "bad_request"),
    "direct-top-k-zero": (lambda: {"image": "AAAA", "top_k": 0}, 400, "bad_request"),
    "direct-top-k-superscript-digit": (lambda: {"url": "http://127.0.0.1/", "top_k": "\u00b2"}, 400, "bad_request"),
    "direct-top-k-5000-digits": (lambda: {"url": "http://127.0.0.1/", "top_k": "9" * 5000}, 400, "bad_request"),
    "direct-top-k-float": (lambda: {"url": "http://127.0.0.1/", "top_k": 1e308}, 400, "bad_request"),
    "direct-url-too-long": (lambda: {"url": "http://127.0.0.1/" + "a" * 10_000}, 400, "bad_request"),
    "direct-url-with-nul": (lambda: {"url": "http://127.0.0.1\u0000/"}, 400, "bad_request"),
    "rest-deeply-nested-json-body": (lambda: api_event("rest", _deep_json()), 400, "bad_request"),
    "http-deeply-nested-json-body": (lambda: api_event("http", _deep_json()), 400, "bad_request"),
    "http-base64-deeply-nested-json": (lambda: api_event("http", b64(_deep_json().encode()), is_base64=True),
                                       400, "bad_request"),
    "rest-top-k-superscript-query": (lambda: api_event("rest", b64(b"x"), "image/jpeg", True, query={"top_k": "\u00b2"}),
                                     400, "bad_request"),
    "http-top-k-huge-query": (lambda: api_event("http", b64(b"x"), "image/jpeg", True, query={"top_k": "9" * 5000}),
                              400, "bad_request"),
    "rest-json-not-an-object": (lambda: api_event("rest", "[1,2,3]"), 400, "bad_request"),
    "rest-invalid-utf8-base64-json": (lambda: api_event("rest", b64(b"\xff\xfe{\"url\":1}"), is_base64=True),
                                      400, "bad_request"),
    "http-xml-content-type": (lambda: api_event("http", "<a/>", "application/xml"), 415, "unsupported_media"),
    "http-get-predict": (lambda: api_event("http", "", method="GET"), 405, "method_not_allowed"),
    "rest-delete": (lambda: api_event("rest", "{}", method="DELETE"), 405, "method_not_allowed"),
    "http-post-unknown-path": (lambda: api_event("http", '{"url": "http://127.0.0.1:9/a.jpg"}', path="/nope"),
                               404, "not_found"),  # a catch-all route or a function URL: not a prediction
    "http-post-model": (lambda: api_event("http", "{}", path="/model"), 405, "method_not_allowed"),
    "rest-gzip-json": (lambda: api_event("rest", b64(b"\x1f\x8b"), "application/json", True) | {
        "headers": {"Content-Type": "application/json", "Content-Encoding": "gzip"}}, 415, "unsupported_media"),
    "rest-empty-body": (lambda: api_event("rest", ""), 400, "bad_request"),
    "http-null-body": (lambda: api_event("http", None), 400, "bad_request"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_EVENTS))
def test_hostile_events(name, fn):
    factory, status, code = HOSTILE_EVENTS[name]
    expect(fn, factory(), status, code)
    still_serves_the_cat(fn)


# --- 7. payloads the Lambda runtime itself cannot unmarshal (direct invocations only) -------------------

RUNTIME_REJECTS = {
    "not-json": b"{not json",
    "deeply-nested-array": _deep_json().encode(),
    "5000-digit-number": b'{"url": "http://127.0.0.1/", "top_k": ' + b"9" * 5000 + b"}",
}


@pytest.mark.parametrize("name", sorted(RUNTIME_REJECTS))
def test_payloads_the_runtime_cannot_unmarshal_do_not_kill_it(name, fn):
    """awslambdaric parses a direct invocation's JSON before the handler runs; API Gateway always
    sends valid JSON events, so only IAM-authorised direct callers can get here. The runtime answers
    with its own error document (Runtime.UnmarshalError) and the process survives."""
    result = fn.emulator.invoke_raw(RUNTIME_REJECTS[name])
    assert result.error is not None and result.error.get("errorType") == "Runtime.UnmarshalError", result.text[:500]
    still_serves_the_cat(fn)


# --- 8. the whole module, once more: no lookup or dial outside loopback, never a new process ------------


def test_no_function_ever_dialled_or_resolved_outside_loopback(fn, fn_strict, fn_slow):
    assert any(kind != "loaded" for kind, _, _ in fn.net_events()), "the tripwire saw no connection at all"
    for function in (fn, fn_strict, fn_slow):
        no_forbidden_traffic(function)
        assert function.emulator.runtime_pid == function.pid

