"""start-api: SAM's LocalApigwService (event construction, response mapping) in front of a warm emulator."""

from __future__ import annotations

import base64
import http.client
import json
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from local_lambda import Emulator
from local_lambda.apigw import (
    MAX_REQUEST_BODY_BYTES,
    ApiServer,
    EmulatorRunner,
    MediaTypes,
    build_api,
    gateway_responses,
    require_loopback,
)
from local_lambda.emulator import MAX_SYNC_PAYLOAD_BYTES
from local_lambda.template import load_stacks

REPO = Path(__file__).resolve().parents[2]

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


def test_an_event_over_lambdas_6_mb_limit_is_refused_before_the_function_runs(api_server):
    """An image under API Gateway's 10 MB whose base64 event is over 6 MB: Lambda refuses the invocation,
    API Gateway answers 413 Request Too Long; the runtime never sees a (truncated) event."""
    emulator = api_server.runner.emulator("Fn")
    before = emulator.invocations
    raw = b"\xff" * (MAX_SYNC_PAYLOAD_BYTES * 3 // 4 + 1000)  # base64: just over the limit
    status, headers, body = request(f"{api_server.url}/predict", data=raw, headers={"Content-Type": "image/png"})
    assert (status, json.loads(body)) == (413, {"message": "Request Too Long"})
    assert emulator.invocations == before
    assert request(f"{api_server.url}/model")[0] == 201  # still serving


# -- what API Gateway answers itself, from the project's template (a stand-in function) ------------


class RecordingRunner:
    """A LambdaRunner that records events and answers ``response`` (a proxy response, or raw text)."""

    def __init__(self, response=None):
        self.events = []
        self.response = response or {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                                     "body": '{"ok": true}'}

    def is_debugging(self):
        return False

    def invoke(self, function_identifier, event, stdout=None, **_):
        self.events.append(json.loads(event))
        stdout.write_str(self.response if isinstance(self.response, str) else json.dumps(self.response))

    def stop(self):
        pass


def project_gateway(runner, **overrides):
    stacks = load_stacks(REPO / "template.yaml", overrides)
    server = ApiServer(build_api(stacks, cwd=str(REPO)), runner, port=0, responses=gateway_responses(stacks))
    template = stacks[0].resources["PredictApi"]["Properties"]["GatewayResponses"]
    return server, {kind: json.loads(spec["ResponseTemplates"]["application/json"]) for kind, spec in template.items()}


def raw_request(server, method, path, body=None, headers=None):
    """http.client: sends no Content-Type unless given (urllib adds form-urlencoded to every POST)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("method, path", [("GET", "/nope"), ("PUT", "/predict"), ("GET", "/predict"),
                                          ("POST", "/model"), ("POST", "/Prod/predict"), ("OPTIONS", "/predict"),
                                          ("HEAD", "/model")])
def test_unknown_routes_and_methods_get_the_templates_not_found(method, path):
    runner = RecordingRunner()
    server, templates = project_gateway(runner)
    with server:
        status, headers, body = raw_request(server, method, path, body=b"{}" if method in ("POST", "PUT") else None)
    assert status == 404  # MISSING_AUTHENTICATION_TOKEN, as the template customises it
    assert body == b"" if method == "HEAD" else json.loads(body) == templates["MISSING_AUTHENTICATION_TOKEN"]
    assert headers["Content-Type"] == "application/json" and "Access-Control-Allow-Origin" not in headers
    assert runner.events == []


def test_cors_preflight_and_gateway_responses_follow_cors_allow_origin():
    server, templates = project_gateway(RecordingRunner(), CorsAllowOrigin="https://app.example.com")
    with server:
        status, headers, _ = raw_request(server, "OPTIONS", "/predict", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"})
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert headers["Access-Control-Allow-Headers"] == "Content-Type,X-Api-Key"
        assert headers["Access-Control-Max-Age"] == "600"
        status, headers, body = raw_request(server, "GET", "/nope")
    assert status == 404 and json.loads(body) == templates["MISSING_AUTHENTICATION_TOKEN"]
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "X-Local-Lambda-Answered" not in headers


def test_a_body_over_10_mb_gets_api_gateways_plain_text_413():
    runner = RecordingRunner()
    server, _ = project_gateway(runner)
    with server:
        status, headers, body = raw_request(server, "POST", "/predict", body=b"x" * (MAX_REQUEST_BODY_BYTES + 1),
                                            headers={"Content-Type": "image/jpeg"})
        assert (status, body) == (413, b"HTTP content length exceeded 10485760 bytes.")
        assert headers["Content-Type"].startswith("text")
        assert raw_request(server, "GET", "/model")[0] == 200
    assert len(runner.events) == 1  # only GET /model


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/x-www-form-urlencoded"}])
def test_binary_bytes_under_a_text_or_missing_content_type_reach_the_function_as_text(headers):
    """curl --data-binary @cat.jpg without -H 'Content-Type: image/jpeg': API Gateway passes the body as a
    UTF-8 string (a missing Content-Type counts as application/json) and the function answers its own 4xx."""
    runner = RecordingRunner({"statusCode": 415, "headers": {"Content-Type": "application/json"},
                              "body": '{"error": {"code": "unsupported_media"}}'})
    server, _ = project_gateway(runner)
    with server:
        status, _, body = raw_request(server, "POST", "/predict", body=b"\xff\xd8\xff\xe0\x00\x10JFIF", headers=headers)
    assert status == 415 and json.loads(body) == {"error": {"code": "unsupported_media"}}
    (event,) = runner.events
    assert event["isBase64Encoded"] is False and event["body"].endswith("JFIF") and "\ufffd" in event["body"]


@pytest.mark.parametrize("response", [{"errorMessage": "boom", "errorType": "ValueError"}, "not a proxy response"])
def test_a_function_that_cannot_answer_gets_the_templates_default_5xx(response):
    server, templates = project_gateway(RecordingRunner(response))
    with server:
        status, _, body = raw_request(server, "POST", "/predict", body=b"{}", headers={"Content-Type": "application/json"})
    assert (status, json.loads(body)) == (502, templates["DEFAULT_5XX"])


def test_a_5xx_the_function_returns_itself_is_passed_on():
    server, _ = project_gateway(RecordingRunner({"statusCode": 503, "body": '{"message": "Internal server error"}'}))
    with server:
        status, _, body = raw_request(server, "GET", "/model")
    assert (status, json.loads(body)) == (503, {"message": "Internal server error"})
