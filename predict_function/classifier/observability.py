"""One structured log line and a few CloudWatch metrics per request (Powertools).

Logs are JSON (Powertools ``Logger``); metrics use the embedded metric format
(Powertools ``Metrics``): they are log lines too, so no API call is made.
Never logged: image bytes, full URLs (only scheme and host), query strings.

Timings (``timings_ms``, milliseconds): ``fetch``, ``decode``, ``preprocess``, ``inference``
and ``total``. A URL's body is decoded while it downloads, so for URL inputs ``fetch`` is the
time to the response headers (DNS, connect, TLS, redirects) plus the time the decoder's reads
spent waiting for body bytes from the network, and ``decode`` is the rest of the decode stage:
the decoder's own work (a decode that never waited is all ``decode``; a slow network shows up
in ``fetch``, as before). For inline images ``fetch`` is ~0. ``image_bytes`` is the size of
the inline image, or for a URL the bytes received before the decoder was done (the body, or
less when it carries bytes past the image's end, which are not downloaded).
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import urlsplit

import logging

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric

DEFAULT_SERVICE = "image-classifier"
DEFAULT_NAMESPACE = "ImageClassifier"
# Powertools reads these itself; the defaults above apply when they are unset or empty (an empty
# service name makes Powertools filter out every log line; an empty namespace is invalid EMF).
SERVICE_ENV = "POWERTOOLS_SERVICE_NAME"
NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"
IMAGE_INPUT_KINDS = ("url", "base64", "binary")  # RequestRecord.input_kind of a request that carried an image


# CloudWatch's rules for a metric namespace (AWS/ is reserved for AWS services).
_NAMESPACE = re.compile(r"(?!AWS/)[0-9A-Za-z._/#: -]{1,255}")
# What a log line may name as a URL's scheme and host (a DNS name, IDNA-encoded; an IPv4 or IPv6 literal).
_LOGGED_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,15}")
_LOGGED_HOST = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_.])?|[0-9a-f:.]{2,45}")


@dataclass
class RequestRecord:
    """What one invocation did; filled in by the pipeline, then emitted once."""

    input_kind: str = "unknown"  # url, base64, binary, model_info
    url_host: str | None = None
    image_bytes: int | None = None
    image_size: str | None = None
    status: int = 200
    error_code: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings_ms[stage] = round((time.perf_counter() - started) * 1000.0, 2)

    def move_time(self, seconds: float, source: str, target: str) -> None:
        """Count ``seconds`` of stage ``source`` under ``target`` instead (e.g. the decoder's
        reads that waited for the network belong to ``fetch``)."""
        ms = round(seconds * 1000.0, 2)
        self.timings_ms[target] = round(self.timings_ms.get(target, 0.0) + ms, 2)
        self.timings_ms[source] = max(0.0, round(self.timings_ms.get(source, 0.0) - ms, 2))

    def set_url(self, url: str) -> None:
        """Scheme and host, only when the URL's authority is well formed and the host reads as a
        DNS name or an IP literal: otherwise what urlsplit calls the host may be a user name or a
        token (``https://user:pa/ss@host/``), megabytes long, or characters a log line cannot
        carry, and the line logs no URL (the fetcher refuses such a URL with a 400 anyway)."""
        self.url_host = None
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
            host = (parts.hostname or "").encode("idna").decode("ascii").lower()
        except (ValueError, UnicodeError):  # e.g. "http://[::1/x", a lone surrogate, an empty label
            return
        if _LOGGED_SCHEME.fullmatch(parts.scheme) and _LOGGED_HOST.fullmatch(host):
            self.url_host = f"{parts.scheme}://[{host}]" if ":" in host else f"{parts.scheme}://{host}"


class Telemetry:
    def __init__(self, model_name: str, model_version: str, service: str | None = None,
                 model_graph: str = "portable") -> None:
        service = service or os.environ.get(SERVICE_ENV, "").strip() or DEFAULT_SERVICE
        self.logger = Logger(service=service)
        self.namespace = os.environ.get(NAMESPACE_ENV, "").strip() or DEFAULT_NAMESPACE
        if not _NAMESPACE.fullmatch(self.namespace):  # CloudWatch would drop every metric, silently
            raise ValueError(f"invalid function setting: {NAMESPACE_ENV} {self.namespace[:300]!r} is not a CloudWatch "
                             "namespace (letters, digits, . _ / # : - and spaces, at most 255, not AWS/...)")
        # The same service as the logs, not Powertools' own reading of the variable (unset: no
        # service dimension; " ": a dimension the Errors metric alone would carry).
        self.metrics = Metrics(namespace=self.namespace, service=service)
        # The modules' own loggers (fetch's blocked-URL warnings, ...) write JSON lines through
        # this logger's handler too, instead of plain text through the runtime's root handler.
        logging.getLogger(__package__)  # registered, so Powertools configures it (it skips child loggers)
        copy_config_to_registered_loggers(source_logger=self.logger, include={__package__})
        # model_graph: "portable", or the CPU layout whose build-time optimised graph serves (preoptimized.py)
        self.model = {"model": model_name, "model_version": model_version, "model_graph": model_graph}
        if self.metrics.default_dimensions.get("model") != model_name:  # Metrics state is shared
            self.metrics.set_default_dimensions(model=model_name)
        self.cold_start = True

    @property
    def service(self) -> str:
        return self.logger.service

    def begin(self, context: Any) -> None:
        """At the start of each request: the module loggers' lines (a blocked URL, ...) carry its id."""
        self.logger.append_keys(request_id=getattr(context, "aws_request_id", None))

    def emit(self, record: RequestRecord, context: Any, total_ms: float, exc_info: BaseException | None = None) -> None:
        fields = {
            "request_id": getattr(context, "aws_request_id", None),
            "cold_start": self.cold_start,
            **self.model,
            "input_kind": record.input_kind,
            "url": record.url_host,
            "image_bytes": record.image_bytes,
            "image_size": record.image_size,
            "status": record.status,
            "error_code": record.error_code,
            "timings_ms": {**record.timings_ms, "total": round(total_ms, 2)},
        }
        if record.status == 500:  # ours; 502/504 are the image host's and stay warnings
            self.logger.error("request failed", extra=fields, exc_info=exc_info)
        elif record.status >= 400:
            self.logger.warning("request refused", extra=fields)
        else:
            self.logger.info("request served", extra=fields)
        self._metrics(record, total_ms)
        self.cold_start = False

    def _metrics(self, record: RequestRecord, total_ms: float) -> None:
        if self.cold_start:
            self.metrics.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
        # Requests that carried an image, served or not: GET /model and events refused before their image
        # (a 404, 405, malformed JSON) answer in ~0.1 ms and would drag every percentile down.
        if record.input_kind in IMAGE_INPUT_KINDS:
            self.metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=total_ms)
        self.metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        self.metrics.flush_metrics(raise_on_empty_metrics=False)
        if record.error_code:
            with single_metric(
                name="Errors", unit=MetricUnit.Count, value=1, namespace=self.namespace,
                default_dimensions={**self.metrics.default_dimensions, "service": self.service},
            ) as metric:
                metric.add_dimension(name="code", value=record.error_code)
