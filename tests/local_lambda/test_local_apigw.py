"""start-api: SAM's LocalApigwService (event construction, response mapping) in front of a warm emulator."""

from __future__ import annotations

import base64
import json
import textwrap
import urllib.error
import urllib.request

import pytest

from local_lambda import Emulator
from local_lambda.apigw import ApiServer, EmulatorRunner, MediaTypes, build_api, require_loopback
from local_lambda.template import load_stacks

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  RestApi:
    Type: AWS::Serverless::Api
    Properties:
      StageName: Prod
      BinaryMediaTypes: ["image~1*", "application~1octet-stream"]
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      Events:
        Predict: {Type: Api, Properties: {RestApiId: !Ref RestApi, Path: /predict, Method: post}}
        Image: {Type: Api, Properties: {RestApiId: !Ref RestApi, Path: /image, Method: get}}
        Model: {Type: HttpApi, Properties: {Path: /model, Method: get}}
    Metadata: {Dockerfile: Dockerfile, DockerContext: ., DockerTag: v1}
"""

# What SAM's REST (v1) and HTTP API (v2) proxy events hold at the top level.
V1_KEYS = {"body", "headers", "httpMethod", "isBase64Encoded", "multiValueHeaders", "multiValueQueryStringParameters",
           "path", "pathParameters", "queryStringParameters", "requestContext", "resource", "stageVariables"}
V2_KEYS = {"body", "cookies", "headers", "isBase64Encoded", "pathParameters", "rawPath", "rawQueryString",
           "requestContext", "routeKey", "stageVariables", "version"}


@pytest.fixture
def api_server(tmp_path, tiny_task_root, runtime_python):
    template = tmp_path / "template.yaml"
    template.write_text(textwrap.dedent(TEMPLATE))
    api = build_api(load_stacks(template), cwd=str(tmp_path))
    runner = EmulatorRunner({"Fn": lambda: Emulator(tiny_task_root, handler="app.proxy", runtime_python=runtime_python)})
    with ApiServer(api, runner, port=0) as server:
        yield server


def request(url, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_rest_api_json_request_is_a_v1_proxy_event(api_server):
    status, headers, body = request(
        f"{api_server.url}/predict?top_k=3", data=b'{"url": "x"}', headers={"Content-Type": "application/json"}
    )
    assert status == 201
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert set(event) == V1_KEYS
    assert event["httpMethod"] == "POST" and event["path"] == "/predict" and event["resource"] == "/predict"
    assert event["body"] == '{"url": "x"}' and event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"top_k": "3"}


def test_binary_body_is_base64_when_binary_media_types_match(api_server):
    raw = b"\x89PNG\r\n\x1a\n\x00\xff binary"
    status, _, body = request(f"{api_server.url}/predict", data=raw, headers={"Content-Type": "image/png"})
    assert status == 201
    event = json.loads(body)
    assert event["isBase64Encoded"] is True  # image/png matches image/* as on API Gateway
    assert base64.b64decode(event["body"]) == raw


def test_base64_response_comes_back_as_bytes(api_server):
    status, headers, body = request(f"{api_server.url}/image", headers={"Accept": "image/png"})
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == b"\x89PNG\r\n\x1a\n-bytes"


def test_http_api_route_is_a_v2_event(api_server):
    status, _, body = request(f"{api_server.url}/model")
    assert status == 201
    event = json.loads(body)
    assert set(event) == V2_KEYS
    assert event["version"] == "2.0" and event["routeKey"] == "GET /model" and event["rawPath"] == "/model"


def test_one_warm_runtime_serves_all_requests_and_unknown_routes_are_refused(api_server):
    pids = {request(f"{api_server.url}/model")[1]["X-Pid"] for _ in range(3)}
    assert len(pids) == 1
    status, _, body = request(f"{api_server.url}/nope")
    assert status == 403 and json.loads(body) == {"message": "Missing Authentication Token"}


def test_media_type_wildcards():
    types = MediaTypes(["image/*", "application/octet-stream"])
    assert "image/jpeg" in types and "application/octet-stream" in types
    assert "application/json" not in types and None not in types and "*/*" not in types


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_only_loopback_addresses(host):
    with pytest.raises(ValueError, match="loopback"):
        require_loopback(host)
    require_loopback("127.0.0.1")
