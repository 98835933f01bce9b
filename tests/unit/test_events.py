import base64
import json

import pytest

from classifier.errors import BadRequestError, MethodNotAllowedError, PayloadTooLargeError, UnsupportedMediaError
from classifier.events import DIRECT, HTTP, MODEL_INFO, PREDICT, REST, event_kind, parse_event
from support import EVENTS

LIMIT = 1_000_000


def load(name):
    return json.loads((EVENTS / name).read_text())


def test_direct_url_and_base64():
    assert parse_event({"url": " https://x.test/a.jpg ", "top_k": 2}, LIMIT) == parse_event(
        {"url": "https://x.test/a.jpg", "top_k": 2}, LIMIT
    )
    request = parse_event({"image": base64.b64encode(b"abc").decode()}, LIMIT)
    assert (request.kind, request.image, request.url, request.top_k) == (DIRECT, b"abc", None, None)


@pytest.mark.parametrize("prefix", ["data:image/png;base64,", "DATA:image/png;base64,", "Data:Image/PNG;BASE64,"])
def test_data_url_prefix_is_accepted(prefix):
    # A URL scheme is case-insensitive (RFC 3986 3.1).
    assert parse_event({"image": prefix + base64.b64encode(b"abc").decode()}, LIMIT).image == b"abc"


@pytest.mark.parametrize("top_k, expected", [(3.0, 3), (1e2, 100), (7, 7)])
def test_an_integral_json_number_is_a_top_k(top_k, expected):
    # JSON has one number type: 3.0 (json.dumps of a Python float) is an integer to the API spec's
    # `type: integer` (JSON Schema 2020-12); only fractional, non-finite or inexact ones are refused.
    assert parse_event({"url": "https://x.test/a", "top_k": top_k}, LIMIT).top_k == expected
    event = load("rest-url.json") | {"body": json.dumps({"url": "https://x.test/a", "top_k": top_k})}
    assert parse_event(event, LIMIT).top_k == expected


@pytest.mark.parametrize("top_k", [0.0, -0.0, -2.0, float("inf"), float("nan"), 1e308, float(2**53 + 2)])
def test_zero_negative_non_finite_or_inexact_float_top_k_is_refused(top_k):
    # Past 2**53 a float is no exact integer (I-JSON, RFC 7493); 1.5 is in test_bad_direct_payloads.
    with pytest.raises(BadRequestError, match="top_k"):
        parse_event({"url": "https://x.test/a", "top_k": top_k}, LIMIT)


@pytest.mark.parametrize(
    "payload",
    [{}, {"url": "a", "image": "b"}, {"url": ""}, {"url": 5}, {"image": ""}, {"image": "!!"}, [], "x", None,
     {"url": "https://x", "top_k": 0}, {"url": "https://x", "top_k": True},
     {"url": "https://x", "top_k": 1.5}],
)
def test_bad_direct_payloads(payload):
    with pytest.raises(BadRequestError):
        parse_event(payload, LIMIT)


def test_oversized_base64_is_refused_before_decoding(monkeypatch):
    import classifier.events

    decoded = []
    real = classifier.events.base64.b64decode
    monkeypatch.setattr(classifier.events.base64, "b64decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    with pytest.raises(PayloadTooLargeError, match="image is larger than the 1000 byte limit"):
        parse_event({"image": "A" * 4000}, 1000)
    assert decoded == []  # refused from its length: 4 MB of base64 is never decoded to be measured
    parse_event({"image": "A" * 400}, 1000)
    assert decoded == [1]


def test_a_too_large_base64_json_body_names_the_limit_it_broke():
    # An HTTP API base64-encodes a JSON body sent without Content-Type; the body may be twice the image limit.
    event = load("httpapi-base64.json") | {"headers": {}, "isBase64Encoded": True}
    event["body"] = base64.b64encode(json.dumps({"image": "A" * 3000}).encode()).decode()
    with pytest.raises(PayloadTooLargeError, match="JSON request body is larger than the 2000 byte limit"):
        parse_event(event, 1000)
    event["body"] = base64.b64encode(json.dumps({"image": "A" * 1400}).encode()).decode()
    with pytest.raises(PayloadTooLargeError, match="^image is larger than the 1000 byte limit"):
        parse_event(event, 1000)


@pytest.mark.parametrize("value", ["application/json,application/json", "application/json, application/json; x=1",
                                   "Application/JSON,application/json", 'application/json; name="a,b"'])
def test_a_content_type_an_http_api_repeated_is_still_that_type(value):
    # Payload 2.0 joins repeated headers with commas.
    event = load("rest-url.json") | {"headers": {"Content-Type": value}}
    assert parse_event(event, LIMIT).url


def test_two_different_content_types_are_refused():
    with pytest.raises(UnsupportedMediaError, match="conflicting"):
        parse_event(load("rest-url.json") | {"headers": {"content-type": "application/json,image/png"}}, LIMIT)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate, gzip", "identity, GZIP", "zstd"])
def test_a_compressed_body_is_unsupported_media(encoding):
    event = load("rest-url.json") | {"headers": {"content-type": "application/json", "Content-Encoding": encoding}}
    with pytest.raises(UnsupportedMediaError, match="Content-Encoding"):
        parse_event(event, LIMIT)


@pytest.mark.parametrize("encoding", ["identity", "identity, identity", "UTF-8", "none", ""])
def test_a_content_encoding_that_compresses_nothing_is_ignored(encoding):
    # A charset in Content-Encoding is a common client mistake; the body is as it was sent.
    event = load("rest-url.json") | {"headers": {"content-type": "application/json", "Content-Encoding": encoding}}
    assert parse_event(event, LIMIT).url


@pytest.mark.parametrize(
    "name,kind,field",
    [
        ("rest-url.json", REST, "url"),
        ("rest-binary.json", REST, "image"),
        ("httpapi-base64.json", HTTP, "image"),
        ("httpapi-binary.json", HTTP, "image"),
    ],
)
def test_api_gateway_fixtures(name, kind, field):
    event = load(name)
    assert event_kind(event) == kind
    request = parse_event(event, LIMIT)
    assert request.kind == kind and request.action == PREDICT
    assert getattr(request, field)
    if field == "image":
        assert request.image[:2] == b"\xff\xd8"  # the JPEG arrives intact


@pytest.mark.parametrize("path", ["/model", "/model/", "/Prod/model/", "/model//"])
def test_model_route(path):
    # API Gateway (REST) routes GET /model/ to the /model resource and passes the path as sent.
    assert parse_event(load("rest-model.json") | {"path": path}, LIMIT).action == MODEL_INFO
    http = load("httpapi-bad-method.json") | {"rawPath": path, "body": None}
    http["requestContext"] = http["requestContext"] | {"http": {"method": "GET", "path": path}}
    assert parse_event(http, LIMIT).action == MODEL_INFO


def test_api_errors():
    with pytest.raises(BadRequestError, match="JSON"):
        parse_event(load("rest-bad-json.json"), LIMIT)
    with pytest.raises(UnsupportedMediaError):
        parse_event(load("rest-bad-content-type.json"), LIMIT)
    with pytest.raises(MethodNotAllowedError, match="POST"):
        parse_event(load("httpapi-bad-method.json"), LIMIT)
    empty = load("rest-url.json") | {"body": None}
    with pytest.raises(BadRequestError, match="empty"):
        parse_event(empty, LIMIT)


def test_base64_encoded_json_body_and_query_top_k():
    event = load("rest-url.json")
    event["body"] = base64.b64encode(json.dumps({"url": "https://x.test/a"}).encode()).decode()
    event["isBase64Encoded"] = True
    event["queryStringParameters"] = {"top_k": "7"}
    request = parse_event(event, LIMIT)
    assert (request.url, request.top_k) == ("https://x.test/a", 7)


def test_event_kind_never_raises():
    for junk in (None, 3, "s", [], {"version": "2.0"}, {"httpMethod": "GET"}):
        assert event_kind(junk) == DIRECT


@pytest.mark.parametrize("top_k", ["\u00b2", "9" * 5000, "-3", " 4x"])
def test_odd_top_k_strings_are_bad_requests(top_k):
    with pytest.raises(BadRequestError):
        parse_event({"url": "https://x.test/a", "top_k": top_k}, LIMIT)
    event = load("rest-url.json")
    event["body"] = json.dumps({"url": "https://x.test/a"})
    event["queryStringParameters"] = {"top_k": top_k}
    with pytest.raises(BadRequestError):
        parse_event(event, LIMIT)


def test_deeply_nested_json_body_is_a_bad_request():
    event = load("rest-url.json")
    event["body"] = "[" * 100_000
    with pytest.raises(BadRequestError):
        parse_event(event, LIMIT)


@pytest.mark.parametrize(
    "change",
    [
        {"headers": [["content-type", "application/json"]]},
        {"headers": "content-type: application/json"},
        {"queryStringParameters": ["top_k"], "body": json.dumps({"url": "https://x.test/a"})},
        {"body": {"url": "https://x.test/a"}},
        {"body": 123, "isBase64Encoded": True},
        {"body": ["x"], "headers": {"content-type": "image/png"}},
        {"isBase64Encoded": "false"},  # bool("false") is True: it used to be base64-decoded
        {"isBase64Encoded": 1},
    ],
)
def test_malformed_rest_events_are_bad_requests(change):
    # API Gateway never sends these; a direct invoke can. 400, not an internal error.
    with pytest.raises(BadRequestError, match="malformed event"):
        parse_event(load("rest-url.json") | change, LIMIT)


def test_malformed_http_api_route_is_a_bad_request():
    with pytest.raises(BadRequestError, match="requestContext.http"):
        parse_event({"version": "2.0", "requestContext": {"http": "x"}, "body": "{}"}, LIMIT)
