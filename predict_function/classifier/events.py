"""Read-only views over the three event shapes the function accepts.

* direct invocation: ``{"url": "https://..."}`` or ``{"image": "<base64>"}``, optional ``"top_k"``;
* API Gateway REST API (payload v1 proxy event);
* API Gateway HTTP API (payload v2 event).

Each becomes a plain :class:`Request`; nothing here fetches or decodes an image.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import BadRequestError, MethodNotAllowedError, NotFoundError, PayloadTooLargeError, UnsupportedMediaError

DIRECT, REST, HTTP = "direct", "rest", "http"
PREDICT, MODEL_INFO = "predict", "model_info"

# An API event's route: the last segment of its path (after any stage or base path) -> the one method it takes.
ROUTES = {"predict": "POST", "model": "GET"}
NO_ROUTE = "no such route: the API serves POST /predict and GET /model"
IMAGE_CONTENT_TYPES = ("image/", "application/octet-stream")
# Content codings that change the body's bytes (RFC 9110 8.4.1, IANA registry); others (identity, or a
# charset some clients put there by mistake) leave it as it is.
COMPRESSED_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "br", "compress", "x-compress", "zstd", "dcb", "dcz"})
# A float above 2**53 is no exact integer (I-JSON, RFC 7493 2.2): such a top_k is refused, like 1.5.
MAX_EXACT_FLOAT_INT = 2**53


@dataclass(frozen=True)
class Request:
    kind: str  # DIRECT, REST or HTTP: decides the response shape
    action: str = PREDICT
    source: str = "url"  # url, base64, binary or model_info: how the image arrived (for logs)
    url: str | None = None
    image: bytes | None = None
    top_k: int | None = None


def event_kind(event: Any) -> str:
    """Which shape an event has; never raises, so even a bad event gets the right response shape."""
    if isinstance(event, Mapping):
        if event.get("version") == "2.0" and isinstance(event.get("requestContext"), Mapping):
            return HTTP
        if "httpMethod" in event and "requestContext" in event:
            return REST
    return DIRECT


def parse_event(event: Any, max_image_bytes: int) -> Request:
    kind = event_kind(event)
    if kind == DIRECT:
        return _from_payload(event, DIRECT, max_image_bytes)
    method, path = _route(event, kind)
    # A REST API routes only what the template declares; an HTTP API catch-all route or a function URL
    # sends anything, so the function answers unknown paths itself. "/model/" is /model, as API Gateway has it.
    route = path.rstrip("/").rpartition("/")[2]
    if route not in ROUTES:
        raise NotFoundError(NO_ROUTE)
    if method != ROUTES[route]:
        what = "to classify an image" if route == "predict" else "for the model's info"
        raise MethodNotAllowedError(f"use {ROUTES[route]} {what} (got {method})", allow=ROUTES[route])
    if route == "model":
        return Request(kind=kind, action=MODEL_INFO, source="model_info")
    return _from_api_body(event, kind, max_image_bytes)


def _object(value: Any, what: str) -> Mapping[str, Any]:
    """A field API Gateway always sends as an object (or null); anything else is a malformed event."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequestError(f"malformed event: {what} must be an object")
    return value


def _route(event: Mapping[str, Any], kind: str) -> tuple[str, str]:
    if kind == HTTP:
        http = _object(event["requestContext"].get("http"), "requestContext.http")
        return str(http.get("method", "")).upper(), str(event.get("rawPath") or http.get("path") or "")
    return str(event.get("httpMethod", "")).upper(), str(event.get("path") or event.get("resource") or "")


def _header(event: Mapping[str, Any], name: str) -> str:
    for key, value in _object(event.get("headers"), "headers").items():
        if key.lower() == name:
            return str(value or "")
    return ""


def _content_type(event: Mapping[str, Any]) -> str:
    """The media type, lower case, without parameters. An HTTP API joins a repeated header with commas:
    the same type twice is that type, two different ones are refused."""
    types = {part.split(";")[0].strip().lower() for part in _split_list(_header(event, "content-type"))} - {""}
    if len(types) > 1:
        raise UnsupportedMediaError(f"conflicting Content-Type values {sorted(types)!r}: send one")
    return types.pop() if types else ""


def _split_list(value: str) -> list[str]:
    """A header's comma-separated values (an HTTP API joins a repeated header with commas); a comma
    inside a quoted parameter (``name="a,b.png"``) belongs to its value."""
    parts, start, quoted = [], 0, False
    for i, char in enumerate(value):
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(value[start:i])
            start = i + 1
    return parts + [value[start:]]


def _check_encoding(event: Mapping[str, Any]) -> None:
    codings = {coding.strip().lower() for coding in _split_list(_header(event, "content-encoding"))}
    compressed = sorted(codings & COMPRESSED_CODINGS)
    if compressed:  # RFC 9110 15.5.16: an unsupported content coding is a 415
        raise UnsupportedMediaError(f"unsupported Content-Encoding {compressed[0]!r}: send the body uncompressed")


def _from_api_body(event: Mapping[str, Any], kind: str, max_image_bytes: int) -> Request:
    body = event.get("body")
    if body is None or body == "":
        raise BadRequestError('request body is empty: send JSON {"url": ...} or {"image": ...}, or an image')
    if not isinstance(body, str):
        raise BadRequestError("malformed event: body must be a string")
    _check_encoding(event)
    content_type = _content_type(event)
    is_base64 = _is_base64(event)
    if content_type.startswith(IMAGE_CONTENT_TYPES):
        raw = _b64decode(body, max_image_bytes, "request body") if is_base64 else body.encode("latin-1", "replace")
        _check_size(len(raw), max_image_bytes)
        top_k = _query_top_k(event)
        return Request(kind=kind, source="binary", image=raw, top_k=top_k)
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaError(f"unsupported Content-Type {content_type!r}: send application/json or image/*")
    # The body carries the image base64-encoded (4/3 of its size) plus the JSON around it.
    text = (_b64decode(body, max_image_bytes * 2, "request body", limited="JSON request body").decode("utf-8", "replace")
            if is_base64 else body)
    try:
        payload = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested too deep
        raise BadRequestError("request body is not valid JSON") from exc
    request = _from_payload(payload, kind, max_image_bytes)
    if request.top_k is None:
        request = dataclasses.replace(request, top_k=_query_top_k(event))
    return request


def _is_base64(event: Mapping[str, Any]) -> bool:
    """API Gateway sends a JSON boolean; anything else (a hand-written "false", where bool("false")
    is True) is refused rather than guessed at."""
    value = event.get("isBase64Encoded")
    if value is not None and not isinstance(value, bool):
        raise BadRequestError("malformed event: isBase64Encoded must be true or false")
    return bool(value)


def _query_top_k(event: Mapping[str, Any]) -> int | None:
    params = _object(event.get("queryStringParameters"), "queryStringParameters")
    return _top_k(params.get("top_k")) if "top_k" in params else None


def _from_payload(payload: Any, kind: str, max_image_bytes: int) -> Request:
    if not isinstance(payload, Mapping):
        raise BadRequestError('expected a JSON object such as {"url": "https://..."}')
    url, image = payload.get("url"), payload.get("image")
    if (url is None) == (image is None):
        raise BadRequestError('give exactly one of "url" or "image"')
    top_k = _top_k(payload["top_k"]) if payload.get("top_k") is not None else None
    if url is not None:
        if not isinstance(url, str) or not url.strip():
            raise BadRequestError('"url" must be a non-empty string')
        return Request(kind=kind, url=url.strip(), top_k=top_k)
    if not isinstance(image, str) or not image:
        raise BadRequestError('"image" must be a base64-encoded string')
    data = _b64decode(_strip_data_url(image), max_image_bytes, '"image"')
    return Request(kind=kind, source="base64", image=data, top_k=top_k)


def _strip_data_url(value: str) -> str:
    if value[:5].lower() == "data:" and "," in value:  # a URL scheme is case-insensitive
        return value.split(",", 1)[1]
    return value


def _b64decode(value: str, max_bytes: int, what: str, limited: str = "image") -> bytes:
    """``limited``: what ``max_bytes`` limits, as the 413 names it (the image, or a JSON body around one)."""
    # Refuse before decoding: 4 base64 characters carry 3 bytes.
    _check_size(len(value) * 3 // 4 - 2, max_bytes, limited)
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise BadRequestError(f"{what} is not valid base64") from exc
    _check_size(len(data), max_bytes, limited)
    return data


def _check_size(size: int, max_bytes: int, what: str = "image") -> None:
    if size > max_bytes:
        raise PayloadTooLargeError(f"{what} is larger than the {max_bytes} byte limit; send a smaller image or a URL")


def _top_k(value: Any) -> int:
    """A positive integer, given as a JSON number (3 or 3.0: JSON has one number type) or as digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_FLOAT_INT:  # not NaN or inf
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        try:
            value = int(value)
        except ValueError:  # digits int() refuses ("\u00b2") or more than Python's 4300-digit limit
            raise BadRequestError('"top_k" must be a positive integer') from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequestError('"top_k" must be a positive integer')
    return value
