"""``start-api``: SAM CLI's own local API Gateway in front of warm :class:`Emulator` processes.

The HTTP side is ``samcli.local.apigw.local_apigw_service.LocalApigwService`` unchanged: it routes
requests with the template's Api/HttpApi events (``samcli.lib.providers.api_provider.ApiProvider``),
builds the REST v1 / HTTP API v2 proxy events (base64 bodies for BinaryMediaTypes) exactly as
``sam local start-api`` does, and turns the proxy response back into HTTP. Only its Lambda runner is
replaced: instead of a container per function, one warm RIE + awslambdaric process per function
serves every request (one request at a time, like one Lambda execution environment).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import sys
import threading
from typing import Callable, Dict, Optional

from .emulator import Emulator

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

    def __init__(self, api, runner: EmulatorRunner, host: str = "127.0.0.1", port: int = 3000):
        from samcli.local.apigw.local_apigw_service import LocalApigwService
        from werkzeug.serving import make_server

        require_loopback(host)
        self.api = _Api(api)
        self.runner = runner
        self.service = LocalApigwService(api=self.api, lambda_runner=runner, port=port, host=host, stderr=None)
        self.service.create()
        self.server = make_server(host, port, self.service._app, threaded=True)
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
