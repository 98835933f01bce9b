"""docs/openapi.yaml matches what the function really answers.

Every event fixture in events/ runs through the real pipeline in-process (bundled model, real
parsing, decoding and error handling) and each response body is validated against the schema
the spec documents for that route and status. The public cat URL is served from a local JPEG;
every other URL goes to the real guarded fetcher, whose resolver and connector refuse to be
called: the URL fixtures must be refused before any DNS lookup or connection.
"""

from __future__ import annotations

import base64
import inspect
import json

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from samcli.yamlhelper import yaml_parse

from classifier import errors, responses
from classifier.app import make_handler
from classifier.errors import ClassifierError, UpstreamError, UpstreamTimeoutError
from classifier.events import DIRECT, HTTP, REST, event_kind
from classifier.fetch import FetchPolicy, fetch_url
from classifier.model import Classifier
from classifier.settings import Settings
from classifier.spec import ModelCard, Preprocessing
from support import DEFAULT_MODEL, EVENTS, REPO, tiny_model
from expectations import EXPECTED

SPEC_PATH = REPO / "docs" / "openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text())
SPEC_URI = "urn:image-classifier:openapi"
REGISTRY = Registry().with_resource(SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012))
PUBLIC_CAT_URL = "https://upload.wikimedia.org/wikipedia/commons/3/3a/Cat03.jpg"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# API Gateway answers these itself (template.yaml GatewayResponses); the function never does.
GATEWAY_ONLY_STATUSES = {404, 429}


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 20_000


# --- the spec ------------------------------------------------------------------------------


def deref(node: dict) -> dict:
    while "$ref" in node:
        pointer = node["$ref"].removeprefix("#/").split("/")
        node = SPEC
        for part in pointer:
            node = node[part]
    return node


def operations():
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def documented_response(path: str, method: str, status: int) -> dict:
    """The response the spec documents for this route and status.

    A method the spec does not list on a documented path can only be answered 405; the
    405 response documented on that path's operations describes it.
    """
    assert path in SPEC["paths"], f"{path} is not documented"
    item = SPEC["paths"][path]
    if method not in item:
        assert status == 405, f"{method.upper()} {path} is undocumented, so it must be refused with 405"
        method = next(m for m in item if m in HTTP_METHODS)
    responses_ = item[method]["responses"]
    assert str(status) in responses_, f"status {status} of {method.upper()} {path} is not documented"
    return deref(responses_[str(status)])


def schema_validator(response: dict, media_type: str = "application/json") -> Draft202012Validator:
    assert media_type in response["content"], response
    schema = response["content"][media_type]["schema"]
    # Resolve the schema inside the spec document, so its "#/components/..." references work.
    return Draft202012Validator({"$id": SPEC_URI + "/inline", **_absolutise(schema)}, registry=REGISTRY)


def _absolutise(node):
    """Point "#/..." references at the spec document (the inline schema has its own base URI)."""
    if isinstance(node, dict):
        return {k: (SPEC_URI + v if k == "$ref" and v.startswith("#") else _absolutise(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolutise(v) for v in node]
    return node


def assert_valid(validator: Draft202012Validator, body) -> None:
    problems = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not problems, "\n".join(f"{list(p.path)}: {p.message}" for p in problems) + f"\nbody: {body}"


def test_spec_is_valid_openapi():
    import openapi_spec_validator as validator
    assert SPEC["openapi"].startswith("3.")
    validator.validate(SPEC)


def test_schemas_are_valid_json_schema():
    for name, schema in SPEC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)


def test_routes_are_the_templates():
    template = yaml_parse((REPO / "template.yaml").read_text())
    events = template["Resources"]["PredictFunction"]["Properties"]["Events"]
    routes = {(e["Properties"]["Path"], e["Properties"]["Method"].lower()) for e in events.values()}
    assert {(path, method) for path, method, _ in operations()} == routes


def test_every_function_status_and_error_code_is_documented():
    error_classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, ClassifierError)]
    codes = {c.code for c in error_classes}
    statuses = {c.status for c in error_classes}
    documented_codes = set(SPEC["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    assert codes <= documented_codes, codes - documented_codes
    predict = {int(s) for s in SPEC["paths"]["/predict"]["post"]["responses"]}
    assert predict == statuses | {200} | GATEWAY_ONLY_STATUSES
    expected = {status for status, _ in EXPECTED.values()}
    assert expected <= predict
    for path, method, operation in operations():
        for status in (403, 404, 429, 500, 502):  # key, routes, throttling, catch-all, dead function: every route
            assert str(status) in operation["responses"], (path, method, status)


def test_each_error_response_pins_its_codes_to_its_status():
    """The per-status code lists in the spec agree with errors.py (e.g. 415 is unsupported_media)."""
    by_status: dict[int, set[str]] = {}
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, ClassifierError):
            by_status.setdefault(cls.status, set()).add(cls.code)
    for status, codes in by_status.items():
        validator = schema_validator(documented_response("/predict", "post", status))
        for code in codes:
            assert_valid(validator, {"error": {"code": code, "message": "m", "status": status}})
        wrong_status = {"error": {"code": next(iter(codes)), "message": "m", "status": 599}}
        assert list(validator.iter_errors(wrong_status)), f"{status} schema accepts any status"


def _gateway_error_bodies(template: dict):
    """(kind, status, body) of every error API Gateway or the stage's WAF web ACL answers itself."""
    for kind, response in template["Resources"]["PredictApi"]["Properties"]["GatewayResponses"].items():
        yield kind, int(response["StatusCode"]), json.loads(response["ResponseTemplates"]["application/json"])
    acl = template["Resources"]["PredictApiWebAcl"]["Properties"]
    for rule in acl["Rules"]:
        response = rule["Action"]["Block"]["CustomResponse"]
        body = acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]
        yield rule["Name"], response["ResponseCode"], json.loads(body["Content"])


def test_gateway_error_bodies_in_the_template_are_documented():
    template = yaml_parse((REPO / "template.yaml").read_text())
    for kind, status, body in _gateway_error_bodies(template):
        assert body["error"]["status"] == status, kind  # the body says the status it is sent with
        documented = [(path, method) for path, method, _ in operations()
                      if str(status) in SPEC["paths"][path][method]["responses"]]
        assert documented, f"{kind}: status {status} is documented for no operation"
        for path, method in documented:
            assert_valid(schema_validator(documented_response(path, method, status)), body)


# --- real responses ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    return Classifier.load(str(DEFAULT_MODEL), intra_op_threads=1)


class NoNetwork:
    """Resolver and connector for the real fetcher that fail the test if they are ever called."""

    def __init__(self) -> None:
        self.calls: list = []

    def resolve(self, *args, **kwargs):
        self.calls.append(("resolve", args))
        raise AssertionError(f"the fetcher tried to resolve {args[:1]}")

    def connect(self, address, port, timeout):
        self.calls.append(("connect", address, port))
        raise AssertionError(f"the fetcher tried to connect to {address}:{port}")


@pytest.fixture()
def no_network():
    return NoNetwork()


@pytest.fixture()
def handler(classifier, cat_jpeg, no_network):
    settings = Settings.from_env({})
    policy = FetchPolicy.from_settings(settings, resolver=no_network.resolve, connector=no_network.connect)

    def fetch(url: str, deadline: float) -> bytes:
        if url == PUBLIC_CAT_URL:
            return cat_jpeg
        return fetch_url(url, policy, deadline=deadline)  # the real SSRF guard

    return make_handler(settings, classifier, fetch)


def route_of(event) -> tuple[str, str]:
    kind = event_kind(event)
    if kind == DIRECT:
        return "/predict", "post"  # a direct invocation is a POST /predict without the envelope
    if kind == HTTP:
        return event["rawPath"], event["requestContext"]["http"]["method"].lower()
    assert kind == REST
    return event["path"], event["httpMethod"].lower()


def status_and_body(response: dict, event) -> tuple[int, object]:
    if event_kind(event) == DIRECT:
        return (response["error"]["status"] if "error" in response else 200), response
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["isBase64Encoded"] is False
    return response["statusCode"], json.loads(response["body"])


def check_against_spec(event, response) -> tuple[int, object]:
    status, body = status_and_body(response, event)
    path, method = route_of(event)
    documented = documented_response(path, method, status)
    assert_valid(schema_validator(documented), body)
    if event_kind(event) != DIRECT:
        undocumented = set(response["headers"]) - {"Content-Type"} - set(documented.get("headers", {}))
        assert not undocumented, f"response headers missing from the spec: {undocumented}"
        required = {name for name, header in documented.get("headers", {}).items() if deref(header).get("required")}
        assert required <= set(response["headers"]), f"required headers missing: {required - set(response['headers'])}"
    return status, body


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("*.json")))
def test_event_fixture_response_matches_the_spec(name, handler, no_network):
    event = json.loads((EVENTS / name).read_text())
    status, body = check_against_spec(event, handler(event, Context()))
    assert (status, body.get("error", {}).get("code")) == EXPECTED[name]
    assert no_network.calls == []


@pytest.mark.parametrize(
    "failure, status",
    [(UpstreamError("upstream answered HTTP 404"), 502), (UpstreamTimeoutError("too slow"), 504), (RuntimeError("x"), 500)],
)
def test_fetch_failures_match_the_spec(classifier, failure, status):
    def failing_fetch(url, deadline):
        raise failure

    handle = make_handler(Settings.from_env({}), classifier, failing_fetch)
    rest = json.loads((EVENTS / "rest-url.json").read_text())
    for event in ({"url": "https://example.test/cat.jpg"}, rest):
        got, body = check_against_spec(event, handle(event, Context()))
        assert got == status and body["error"]["status"] == status


def test_too_large_and_query_top_k_match_the_spec(classifier, cat_jpeg):
    handle = make_handler(Settings.from_env({"MAX_DOWNLOAD_BYTES": "1000"}), classifier, lambda u, d: b"")
    event = json.loads((EVENTS / "rest-binary.json").read_text())
    status, _ = check_against_spec(event, handle(event, Context()))
    assert status == 413

    handle = make_handler(Settings.from_env({}), classifier, lambda u, d: b"")
    event = dict(event, body=base64.b64encode(cat_jpeg).decode(), queryStringParameters={"top_k": "2"})
    status, body = check_against_spec(event, handle(event, Context()))
    assert status == 200 and len(body["predictions"]) == 2
    bad = dict(event, queryStringParameters={"top_k": "0"})
    assert check_against_spec(bad, handle(bad, Context()))[0] == 400


def test_cors_header_on_api_responses_only(classifier, cat_jpeg):
    origin = "https://app.example.com"
    settings = Settings.from_env({"CORS_ALLOW_ORIGIN": origin})
    handler = make_handler(settings, classifier, lambda u, d: cat_jpeg)
    assert set(handler({"image": "!!"}, Context())) == {"error"}  # direct invocation: the bare body
    for name in ("rest-model.json", "rest-bad-json.json", "httpapi-bad-method.json", "rest-binary.json"):
        event = json.loads((EVENTS / name).read_text())
        response = handler(event, Context())
        assert response["headers"]["Access-Control-Allow-Origin"] == origin
        check_against_spec(event, response)  # the header is documented


def test_cors_off_by_default(handler):
    assert Settings.from_env({}).cors_allow_origin == ""
    assert Settings.from_env({"CORS_ALLOW_ORIGIN": " * "}).cors_allow_origin == "*"
    response = handler(json.loads((EVENTS / "rest-model.json").read_text()), Context())
    assert "Access-Control-Allow-Origin" not in response["headers"]
    star = responses.respond(HTTP, 200, {"ok": 1}, cors_origin="*")
    assert star["headers"] == {"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"}
    assert responses.respond(DIRECT, 200, {"ok": 1}, cors_origin="*") == {"ok": 1}


def request_json(event):
    """The JSON request body of an event, or None for an image body."""
    kind = event_kind(event)
    if kind == DIRECT:
        return event
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if not headers.get("content-type", "application/json").startswith("application/json") or not event.get("body"):
        return None
    body = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"]
    try:
        return json.loads(body)
    except ValueError:
        return None


def test_request_fixtures_match_the_documented_request_body():
    validator = schema_validator(SPEC["paths"]["/predict"]["post"]["requestBody"])
    schema_violations = {"bad-empty.json", "bad-both-fields.json", "bad-top-k.json"}
    checked = 0
    for path in sorted(EVENTS.glob("*.json")):
        event = json.loads(path.read_text())
        if route_of(event) != ("/predict", "post"):
            continue
        payload = request_json(event)
        if payload is None:
            continue
        checked += 1
        valid = not list(validator.iter_errors(payload))
        if EXPECTED[path.name][0] == 200:
            assert valid, path.name
        if path.name in schema_violations:
            assert not valid, f"{path.name} is refused by the function but allowed by the spec"
    assert checked >= 8


def test_a_label_less_binary_model_matches_the_spec(tmp_path, cat_jpeg):
    # model_export allows a model without labels (it warns): GET /model then says "labels": 0.
    card = ModelCard(name="tiny", version="0", preprocessing=Preprocessing(height=8, width=8), activation="sigmoid")
    classifier = Classifier.load(tiny_model(tmp_path / "m.onnx", card))
    handle = make_handler(Settings.from_env({}), classifier, lambda u, d: b"")
    event = json.loads((EVENTS / "rest-model.json").read_text())
    assert check_against_spec(event, handle(event, Context()))[1]["labels"] == 0
    event = {"image": base64.b64encode(cat_jpeg).decode()}
    status, body = check_against_spec(event, handle(event, Context()))
    assert status == 200 and body["predictions"][0]["label"] == "class_0" and "prediction" in body
