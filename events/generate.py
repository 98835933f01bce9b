"""Regenerate the event fixtures in this folder.

The API Gateway shapes come from `sam local generate-event` (exactly what SAM
sends); this script only sets the method, path, headers and body of each.
The inline image is scikit-image's cat photo ("chelsea"), re-encoded as JPEG.

    python events/generate.py        # needs the dev install (sam, scikit-image)
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# A real public photo (Wikimedia Commons, CC BY-SA); tests serve a local cat photo in its place.
PUBLIC_CAT_URL = "https://upload.wikimedia.org/wikipedia/commons/3/3a/Cat03.jpg"


def cat_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def sam_event(*args: str) -> dict:
    sam = shutil.which("sam") or str(Path(sys.executable).with_name("sam"))
    out = subprocess.run([sam, "local", "generate-event", "apigateway", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def rest_event(method: str, path: str, body: str | None, content_type: str | None, is_base64: bool = False) -> dict:
    event = sam_event("aws-proxy", "--method", method, "--path", path.lstrip("/"), "--resource", path,
                      "--stage", "Prod", "--querystringparameters", "")
    event["path"] = path
    event["body"] = body
    event["isBase64Encoded"] = is_base64
    event["queryStringParameters"] = None
    event["multiValueQueryStringParameters"] = None
    _set_content_type(event, content_type)
    event["requestContext"]["httpMethod"] = method
    event["requestContext"]["resourcePath"] = path
    event["requestContext"]["path"] = "/Prod" + path
    return event


def http_event(method: str, path: str, body: str | None, content_type: str | None, is_base64: bool = False) -> dict:
    event = sam_event("http-api-proxy", "--method", method, "--path", path.lstrip("/"), "--stage", "$default")
    event["routeKey"] = f"{method} {path}"
    event["rawPath"] = path
    event["rawQueryString"] = ""
    event.pop("queryStringParameters", None)
    event.pop("cookies", None)
    event["headers"] = {"content-type": content_type} if content_type else {}
    event["requestContext"]["http"].update({"method": method, "path": path})
    event["requestContext"]["routeKey"] = event["routeKey"]
    event["body"] = body
    event["isBase64Encoded"] = is_base64
    return event


def _set_content_type(event: dict, content_type: str | None) -> None:
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Content-Type", None)
    if content_type:
        event["headers"]["Content-Type"] = content_type
        event["multiValueHeaders"]["Content-Type"] = [content_type]


def main() -> None:
    jpeg = base64.b64encode(cat_jpeg()).decode()
    url_body = json.dumps({"url": PUBLIC_CAT_URL, "top_k": 3})
    image_body = json.dumps({"image": jpeg, "top_k": 3})
    events = {
        # good requests
        "url.json": {"url": PUBLIC_CAT_URL},
        "base64.json": {"image": jpeg, "top_k": 3},
        "rest-url.json": rest_event("POST", "/predict", url_body, "application/json"),
        "rest-binary.json": rest_event("POST", "/predict", jpeg, "image/jpeg", is_base64=True),
        "rest-model.json": rest_event("GET", "/model", None, None),
        "httpapi-base64.json": http_event("POST", "/predict", image_body, "application/json"),
        "httpapi-binary.json": http_event("POST", "/predict", jpeg, "image/jpeg", is_base64=True),
        # bad requests: each must get a typed 4xx error, never a crash
        "bad-empty.json": {},
        "bad-both-fields.json": {"url": PUBLIC_CAT_URL, "image": jpeg[:64]},
        "bad-base64.json": {"image": "this is not base64!"},
        "bad-not-an-image.json": {"image": base64.b64encode(b"<html>hello</html>").decode()},
        "bad-truncated-image.json": {"image": base64.b64encode(base64.b64decode(jpeg)[:4000]).decode()},
        "bad-top-k.json": {"url": PUBLIC_CAT_URL, "top_k": -1},
        "bad-url-scheme.json": {"url": "file:///etc/passwd"},
        "bad-url-metadata.json": {"url": "http://169.254.169.254/latest/meta-data/"},
        "rest-bad-json.json": rest_event("POST", "/predict", "{not json", "application/json"),
        "rest-bad-content-type.json": rest_event("POST", "/predict", "hello", "text/plain"),
        "httpapi-bad-method.json": http_event("PUT", "/predict", None, None),
    }
    for name, event in events.items():
        (HERE / name).write_text(json.dumps(event, indent=2) + "\n")
    print(f"wrote {len(events)} events to {HERE}")


if __name__ == "__main__":
    main()
