"""Every file in events/ through the staged project under the real Lambda RIE (like sam local invoke)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from expectations import EXPECTED, check_event_response
from support import CAT_CLASS_INDICES, EVENTS, REPO, assert_refused_before_connecting


@pytest.fixture(scope="module")
def labels():
    from classifier.model import Classifier

    return Classifier.load(str(REPO / "predict_function" / "model" / "model.onnx"), intra_op_threads=1).card.labels


def to_loopback(url, image_server):
    """Public photo URLs are served from loopback; refused URLs (metadata, file:) stay as they are."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme in ("http", "https") and any(c.isalpha() for c in host) and host != "localhost":
        return image_server.url("/cat.jpg")
    return url


def load_event(name, image_server):
    """The fixture with its photo URLs moved to loopback; a URL left elsewhere (the metadata service) must be
    one the guard refuses without a lookup or connection (checked here, before the function gets it)."""
    event = json.loads((EVENTS / name).read_text())
    if isinstance(event.get("url"), str):
        event["url"] = _safe(to_loopback(event["url"], image_server), image_server)
    body = event.get("body")
    if isinstance(body, str) and not event.get("isBase64Encoded"):
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("url"), str):
            payload["url"] = _safe(to_loopback(payload["url"], image_server), image_server)
            event["body"] = json.dumps(payload)
    return event


def _safe(url, image_server):
    if not url.startswith(image_server.url("/")):
        assert_refused_before_connecting(url, allow_private=True, ports=(80, 443, image_server.port))
    return url


def status_and_body(response, is_api):
    if is_api:
        assert response["headers"]["Content-Type"] == "application/json"
        return response["statusCode"], json.loads(response["body"])
    return (response["error"]["status"] if "error" in response else 200), response


def test_the_task_root_is_not_the_source_folder(staged_project):
    root = Path(staged_project.task_root)
    assert root != REPO / "predict_function" and not (root / "Dockerfile").exists()
    assert (root / "classifier" / "__pycache__").is_dir()  # compileall ran with Python 3.12
    assert (root / "model" / "model.onnx").is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_fixture_through_the_emulator(name, lambda_function, image_server, labels):
    event = load_event(name, image_server)
    response = lambda_function.invoke(event)
    assert "errorType" not in response, (response, lambda_function.logs[-3000:])
    status, body = status_and_body(response, "requestContext" in event)
    check_event_response(name, status, body, labels)


def test_bad_input_then_good_input_in_the_same_warm_process(lambda_function, cat_jpeg):
    pid = lambda_function.invoke({"image": base64.b64encode(cat_jpeg).decode()}) and lambda_function.runtime_pid
    assert lambda_function.invoke({"image": "%%%not-base64"})["error"]["status"] == 400
    assert "predictions" in lambda_function.invoke({"image": base64.b64encode(cat_jpeg).decode()})
    assert lambda_function.runtime_pid == pid


def test_start_api_serves_a_raw_image_upload(staged_project, predict_function_config, cat_jpeg, labels):
    from local_lambda.apigw import ApiServer, EmulatorRunner, build_api
    from local_lambda.template import function_emulator, load_stacks

    fn = predict_function_config
    runner = EmulatorRunner({fn.logical_id: lambda: function_emulator(fn, staged_project, {}, shell_env={})[0]})
    api = build_api(load_stacks(REPO / "template.yaml"), cwd=str(REPO))
    with ApiServer(api, runner, port=0) as server:
        request = urllib.request.Request(f"{server.url}/predict", data=cat_jpeg, headers={"Content-Type": "image/jpeg"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=60) as response:
                status, body = response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:  # e.g. an API key requirement in the template
            status, body = exc.code, json.loads(exc.read() or b"{}")
    assert status == 200, body
    assert body["predictions"][0]["label"] in {labels[i] for i in CAT_CLASS_INDICES}
