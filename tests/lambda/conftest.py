"""The staged project under the real Lambda RIE, once per test session.

``lambda_function`` is a started :class:`local_lambda.Emulator` for ``PredictFunction``: the task
root staged from ``predict_function/Dockerfile`` (as ``python -m local_lambda stage`` does), the
template's environment (memory, timeout, variables; not the caller's shell) plus
``ALLOW_PRIVATE_URLS=true`` and the image server's port in ``ALLOWED_PORTS`` so that URL events can
be served from loopback by ``image_server``.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from local_lambda import stage
from local_lambda.template import function_emulator, read_function

REPO = Path(__file__).resolve().parents[2]


class ImageServer:
    """Serves registered bytes (``files``: path -> body) on 127.0.0.1 (the URLs in events/ point at
    public hosts), with a Content-Type from the path's suffix (image/jpeg when it has none known)."""

    TYPES = {".png": "image/png", ".gif": "image/gif", ".webp": "image/webp", ".bmp": "image/bmp",
             ".tif": "image/tiff"}

    def __init__(self):
        self.files = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", server.TYPES.get(Path(self.path).suffix, "image/jpeg"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="session")
def image_server(cat_jpeg):
    server = ImageServer()
    server.files["/cat.jpg"] = cat_jpeg
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(scope="session")
def predict_function_config():
    return read_function(REPO / "template.yaml", "PredictFunction")


@pytest.fixture(scope="session")
def staged_project(predict_function_config):
    """Stage once per session (dependencies come from the stage cache after the first run)."""
    fn = predict_function_config
    return stage(fn.dockerfile, fn.context, build_dir=REPO / ".build" / "local_lambda", function_name=fn.logical_id)


@pytest.fixture(scope="session")
def lambda_function(staged_project, predict_function_config, image_server):
    fn = predict_function_config
    overrides = {fn.logical_id: {"ALLOW_PRIVATE_URLS": "true", "ALLOWED_PORTS": f"80,443,{image_server.port}"}}
    emulator, _ = function_emulator(fn, staged_project, overrides, shell_env={})
    with emulator:
        yield emulator
