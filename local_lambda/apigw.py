"""``start-api``: SAM CLI's own local API Gateway in front of warm :class:`Emulator` processes.

The HTTP side is ``samcli.local.apigw.local_apigw_service.LocalApigwService`` unchanged: it routes
requests with the template's Api/HttpApi events (``samcli.lib.providers.api_provider.ApiProvider``),
builds the REST v1 / HTTP API v2 proxy events (base64 bodies for BinaryMediaTypes) exactly as
``sam local start-api`` does, and turns the proxy response back into HTTP. Only its Lambda runner is
replaced: instead of a container per function, one warm RIE + awslambdaric process per function
serves every request (one request at a time, like one Lambda execution environment).

In front of it, :class:`ApiGateway` (WSGI) answers what API Gateway answers itself, with the template's
``GatewayResponses`` where it has them: a method or path with no route (MISSING_AUTHENTICATION_TOKEN;
also HEAD, which API Gateway does not map to GET), a body over 10 MB (a plain-text 413 no GatewayResponse
changes), an event over Lambda's 6 MB payload limit (413 ``Request Too Long``), a function that could not
answer (DEFAULT_5XX);
and a body that is not UTF-8 under a non-binary (or missing) Content-Type reaches the function as
text, as API Gateway passes it, instead of failing in SAM's event construction.
"""

from __future__ import annotations

import fnmatch
import io
import ipaddress
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional

from .emulator import Emulator, PayloadTooLarge

LOG = logging.getLogger(__name__)


def require_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"refusing to listen on {host}: start-api binds loopback addresses only (127.0.0.1)")


class MediaTypes(list):
    """BinaryMediaTypes that match like API Gateway's: ``image/*`` matches ``image/png``.

    SAM CLI tests ``mimetype in binary_types`` (exact string match only, so ``image/*`` never matches
    there); giving it this list makes its unchanged event/response code honour wildcards.
    """

    def __contains__(self, mimetype) -> bool:
        if not isinstance(mimetype, str):
            return False
        if list.__contains__(self, mimetype):
            return True
        return any("*" in pattern and fnmatch.fnmatchcase(mimetype.lower(), pattern.lower()) for pattern in self)


# API Gateway REST API quota: the largest request payload (body) it accepts.
MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class GatewayResponse:
    """What API Gateway answers itself for one response type (``AWS::Serverless::Api`` GatewayResponses)."""

    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def wsgi(self, start_response) -> List[bytes]:
        body = self.body.encode()
        headers = [("Content-Type", self.content_type), ("Content-Length", str(len(body)))]
        start_response(f"{self.status} {_REASONS.get(self.status, 'Error')}", headers + list(self.headers.items()))
        return [body]


_REASONS = {403: "Forbidden", 404: "Not Found", 413: "Request Entity Too Large", 502: "Bad Gateway"}

# API Gateway's own answers when the template does not customise them; DEFAULT_5XX covers every 5xx type
# not given (a Lambda function error or malformed response is INTEGRATION_FAILURE, itself unset here).
DEFAULT_GATEWAY_RESPONSES = {
    "MISSING_AUTHENTICATION_TOKEN": GatewayResponse(403, '{"message":"Missing Authentication Token"}'),
    "DEFAULT_5XX": GatewayResponse(502, '{"message": "Internal server error"}'),
}
# Lambda refused the event (over its 6 MB payload limit): not a gateway response type, so not customisable.
LAMBDA_PAYLOAD_TOO_LARGE = GatewayResponse(413, '{"message": "Request Too Long"}')
# A body over API Gateway's 10 MB: answered before any gateway response applies (a REQUEST_TOO_LARGE in the
# template is reported to change nothing: koki-develop/lgtm-generator#10, reapit/foundations#4338).
BODY_TOO_LARGE = GatewayResponse(413, f"HTTP content length exceeded {MAX_REQUEST_BODY_BYTES} bytes.",
                                 content_type="text; charset=utf-8")


def gateway_responses(stacks) -> Dict[str, GatewayResponse]:
    """The ``GatewayResponses`` of the template's ``AWS::Serverless::Api`` resources (the first API that sets a
    type wins), over API Gateway's defaults. Static header values are quoted (``"'value'"``) as in the template;
    other mappings (``method.request...``) are not emulated."""
    out = dict(DEFAULT_GATEWAY_RESPONSES)
    seen = set()
    for stack in stacks:
        for resource in (stack.resources or {}).values():
            if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Api":
                continue
            for kind, spec in ((resource.get("Properties") or {}).get("GatewayResponses") or {}).items():
                if kind in seen or not isinstance(spec, dict):
                    continue
                seen.add(kind)
                default = out.get(kind, out["DEFAULT_5XX"] if kind.startswith("DEFAULT_5") else None)
                templates = spec.get("ResponseTemplates") or {}
                body = templates.get("application/json", next(iter(templates.values()), None))
                headers = ((spec.get("ResponseParameters") or {}).get("Headers") or {})
                out[kind] = GatewayResponse(
                    status=int(spec.get("StatusCode") or (default.status if default else 500)),
                    body=body if isinstance(body, str) else (default.body if default else ""),
                    headers={k: v[1:-1] for k, v in headers.items()
                             if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == "'"},
                )
    return out


class ApiGateway:
    """WSGI middleware: what API Gateway itself answers, in front of SAM's LocalApigwService app."""

    def __init__(self, service, responses: Optional[Mapping[str, GatewayResponse]] = None):
        self.service = service
        self.app = service._app
        self.responses = dict(DEFAULT_GATEWAY_RESPONSES, **(responses or {}))
        answer = service.service_response  # SAM's way out for a response the function gave (and CORS preflight)

        def marked(body, headers, status_code):
            response = answer(body, headers, status_code)
            response.headers[_ANSWERED] = "1"
            return response

        service.service_response = marked

    def routed(self, environ) -> bool:
        """Whether the template has this method on this path (HEAD/OPTIONS only where declared, as on API
        Gateway; Flask would add HEAD to every GET)."""
        from samcli.local.apigw.local_apigw_service import LocalApigwService

        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            rule, _ = self.app.url_map.bind_to_environ(environ).match(return_rule=True, method=method)
        except Exception:  # noqa: BLE001 - werkzeug NotFound / MethodNotAllowed / RequestRedirect
            return False
        return LocalApigwService._route_key(method, rule.endpoint) in self.service._dict_of_routes

    def _text_body(self, environ, body: bytes) -> bytes:
        """A non-binary body as API Gateway passes it: a UTF-8 string (SAM's decode would fail on other bytes)."""
        content_type = environ.get("CONTENT_TYPE") or "application/json"  # API Gateway's default for REST APIs
        mimetype = content_type.split(";", 1)[0].strip().lower()
        if mimetype in self.service.api.binary_media_types:
            return body
        try:
            body.decode("utf-8")
            return body
        except UnicodeDecodeError:
            return body.decode("utf-8", errors="replace").encode("utf-8")

    def __call__(self, environ, start_response) -> Iterable[bytes]:
        if not self.routed(environ):
            _drain(environ)
            return self.responses["MISSING_AUTHENTICATION_TOKEN"].wsgi(start_response)
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > MAX_REQUEST_BODY_BYTES:
            _drain(environ)
            return BODY_TOO_LARGE.wsgi(start_response)
        body = _read_body(environ, MAX_REQUEST_BODY_BYTES + 1)
        if len(body) > MAX_REQUEST_BODY_BYTES:  # a chunked body
            _drain(environ)
            return BODY_TOO_LARGE.wsgi(start_response)
        body = self._text_body(environ, body)
        environ = dict(environ, **{"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        answer: Dict[str, object] = {}

        def capture(status, headers, exc_info=None):
            answer.update(status=status, headers=headers)
            return lambda data: None

        chunks = self.app(environ, capture)
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        status = str(answer.get("status", "500"))
        headers = list(answer.get("headers", []))
        if not any(name == _ANSWERED for name, _ in headers) and status[:1] == "5":
            # SAM's own 5xx (ServiceErrorResponses): the function crashed, timed out or gave a malformed response
            return self.responses["DEFAULT_5XX"].wsgi(start_response)
        start_response(status, [(name, value) for name, value in headers if name != _ANSWERED])
        return [payload]


_ANSWERED = "X-Local-Lambda-Answered"  # internal: set on the function's responses, removed before sending


def _body_chunks(environ, limit: Optional[int] = None) -> Iterator[bytes]:
    """The request body (Content-Length, or chunked: werkzeug ends that stream), up to ``limit`` bytes."""
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        remaining = int(length) if limit is None else min(int(length), limit)
    elif environ.get("wsgi.input_terminated"):
        remaining = limit
    else:
        return  # no body
    while remaining is None or remaining > 0:
        chunk = environ["wsgi.input"].read(65536 if remaining is None else min(65536, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def _read_body(environ, limit: int) -> bytes:
    return b"".join(_body_chunks(environ, limit))


def _drain(environ) -> None:
    """Read an unanswered body away, so that the connection's next request starts at a request line."""
    for _ in _body_chunks(environ):
        pass


class _Api:
    """The provider's Api with API Gateway's wildcard BinaryMediaTypes matching."""

    def __init__(self, api):
        self._api = api
        self.binary_media_types = MediaTypes(api.binary_media_types)

    def __getattr__(self, name):
        return getattr(self._api, name)


class EmulatorRunner:
    """Duck-types ``samcli.commands.local.lib.local_lambda.LocalLambdaRunner`` for LocalApigwService."""

    def __init__(self, factories: Dict[str, Callable[[], Emulator]]):
        self._factories = factories
        self._emulators: Dict[str, Emulator] = {}
        self._lock = threading.Lock()

    def is_debugging(self) -> bool:
        return False

    def emulator(self, function_identifier: str) -> Emulator:
        with self._lock:
            if function_identifier not in self._emulators:
                if function_identifier not in self._factories:
                    from samcli.local.lambdafn.exceptions import FunctionNotFound

                    raise FunctionNotFound(f"Unable to find a Function with name '{function_identifier}'")
                self._emulators[function_identifier] = self._factories[function_identifier]().start()
            return self._emulators[function_identifier]

    def invoke(self, function_identifier, event, tenant_id=None, stdout=None, stderr=None, **_ignored):
        result = self.emulator(function_identifier).invoke_raw(event)
        if stdout is not None:
            stdout.write_str(result.text)

    def start_all(self) -> None:
        for name in self._factories:
            self.emulator(name)

    def stop(self) -> None:
        with self._lock:
            for emulator in self._emulators.values():
                emulator.stop()
            self._emulators.clear()


class ApiServer:
    """``LocalApigwService`` served by werkzeug on a loopback port, in the foreground or a thread."""

    def __init__(self, api, runner: EmulatorRunner, host: str = "127.0.0.1", port: int = 3000,
                 responses: Optional[Mapping[str, GatewayResponse]] = None):
        """``responses``: the template's gateway responses (:func:`gateway_responses`); API Gateway's
        defaults otherwise."""
        from flask import make_response
        from samcli.local.apigw.local_apigw_service import LocalApigwService
        from werkzeug.serving import make_server

        require_loopback(host)
        self.api = _Api(api)
        self.runner = runner
        self.service = LocalApigwService(api=self.api, lambda_runner=runner, port=port, host=host, stderr=None)
        self.service.create()

        def refused(exc: PayloadTooLarge):
            stderr_sink(f"[local_lambda] 413: {exc}\n")
            too_large = LAMBDA_PAYLOAD_TOO_LARGE
            return make_response(too_large.body, too_large.status, {"Content-Type": "application/json"})

        self.service._app.register_error_handler(PayloadTooLarge, refused)
        self.gateway = ApiGateway(self.service, responses)
        self.server = make_server(host, port, self.gateway, threaded=True)
        self.host, self.port = host, self.server.server_port
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def routes(self):
        for route in self.api.routes:
            for method in route.methods:
                yield method, route.path, route.function_name, route.event_type

    def serve_forever(self) -> None:
        try:
            self.server.serve_forever()
        finally:
            self.runner.stop()

    def start(self) -> "ApiServer":
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-apigw", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.runner.stop()

    def __enter__(self) -> "ApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def build_api(stacks, cwd: str):
    from samcli.lib.providers.api_provider import ApiProvider

    api = ApiProvider(stacks, cwd=cwd).api
    if not api.routes:
        raise ValueError("no Api/HttpApi events in the template")
    return api


def stderr_sink(line: str) -> None:
    sys.stderr.write(line)
    sys.stderr.flush()
