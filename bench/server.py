"""A loopback image server (127.0.0.1 only) for URL events.

``bandwidth_mbit`` (default None: as fast as loopback goes) paces every body to that many
Mbit/s (10^6 bits), sent in pieces of at most 16 KiB, to look like a real network; it can be
changed between requests.
"""

from __future__ import annotations

import http.server
import threading
import time
from typing import Dict, Optional, Tuple

PACED_PIECE = 16 * 1024

CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}


class ImageServer:
    def __init__(self, bandwidth_mbit: Optional[float] = None) -> None:
        self.files: Dict[str, Tuple[bytes, str]] = {}
        self.requests = 0
        self.bandwidth_mbit = bandwidth_mbit
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                entry = server.files.get(self.path)
                if entry is None:
                    self.send_error(404)
                    return
                body, content_type = entry
                server.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if server.bandwidth_mbit:
                    _paced(self.wfile, body, server.bandwidth_mbit * 1e6 / 8)
                else:
                    self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="bench-images", daemon=True)

    def add(self, path: str, body: bytes, fmt: str) -> str:
        self.files[path] = (body, CONTENT_TYPES.get(fmt, "application/octet-stream"))
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> "ImageServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _paced(out, body: bytes, bytes_per_second: float) -> None:
    """Write ``body`` no faster than ``bytes_per_second``: each piece leaves once the link would
    have carried its last byte, so the whole body takes ``len(body) / bytes_per_second``."""
    started = time.perf_counter()
    for start in range(0, len(body), PACED_PIECE):
        due = started + min(start + PACED_PIECE, len(body)) / bytes_per_second
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        out.write(body[start : start + PACED_PIECE])
