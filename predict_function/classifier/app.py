"""The request pipeline: run the stages and turn errors into responses, in one place.

Stages (one module each): events -> source (fetch) -> decode -> spec.preprocess
-> model -> responses. ``handler`` wires the real parts together at cold start;
tests build the same pipeline with their own fetch or model.

A URL's body is not downloaded before decoding: the fetch returns at the response headers
and the decoder reads the body as it arrives (a PNG's chunks are counted to its end first) (see ``observability`` for how the time is
split between the ``fetch`` and ``decode`` timings).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

from .decode import decode_image
from .errors import ClassifierError, InternalError
from .events import MODEL_INFO, Request, event_kind, parse_event
from .model import Classifier
from .observability import RequestRecord, Telemetry
from .responses import error_body, model_info_body, prediction_body, respond
from .settings import Settings
from .source import Fetch, deadline_from, image_source, release
from .spec import draft_size, preprocess

# Seconds kept back from the fetch deadline for decoding, inference and the response. (The
# deadline bounds every read of a URL's body, also those the decoder makes while decoding.)
PROCESSING_RESERVE_SECONDS = 2.0

Handler = Callable[[Any, Any], dict]


def make_handler(settings: Settings, classifier: Classifier, fetch: Fetch, telemetry: Telemetry | None = None) -> Handler:
    """Build a handler from its parts (tests inject their own fetch, model or telemetry)."""
    telemetry = telemetry or Telemetry(classifier.card.name, classifier.card.version,
                                       model_graph=classifier.optimized_for or "portable")
    fit = functools.partial(draft_size, classifier.card.preprocessing)

    def predict(request: Request, record: RequestRecord, context: Any) -> dict:
        with record.timed("fetch"):
            source = image_source(request, fetch, deadline_from(context, PROCESSING_RESERVE_SECONDS))
        try:
            with record.timed("decode"):
                image = decode_image(source, settings.max_image_pixels, draft_size=fit,
                                     max_decoded_pixels=settings.max_decoded_pixels)
        finally:
            record.image_bytes, waited = release(source)  # a streamed body: stop downloading
            record.move_time(waited, "decode", "fetch")  # decoding, the reads waited for the network
        record.image_size = f"{image.width}x{image.height}"
        with record.timed("preprocess"):
            tensor = preprocess(image, classifier.card.preprocessing)
        with record.timed("inference"):
            scores = classifier.classify(tensor)
        top = classifier.top_k(scores.values, request.top_k or settings.default_top_k)
        return prediction_body(classifier.card, top, scores)

    def handle(event: Any, context: Any) -> dict:
        started = time.perf_counter()
        kind = event_kind(event)
        reply = functools.partial(respond, kind, cors_origin=settings.cors_allow_origin)
        record = RequestRecord()
        failure: Exception | None = None
        telemetry.begin(context)
        try:
            request = parse_event(event, settings.max_download_bytes)
            record.input_kind = request.source
            if request.url:
                record.set_url(request.url)
            if request.action == MODEL_INFO:
                return reply(200, model_info_body(classifier))
            return reply(200, predict(request, record, context))
        except ClassifierError as error:
            record.status, record.error_code = error.status, error.code
            if isinstance(error, InternalError):  # a stage's own translation of a bug: log what it hides
                failure = error.__cause__ or error
            return reply(error.status, error_body(error), extra_headers=error.headers)
        except Exception as exc:  # noqa: BLE001 - the one place where anything unexpected becomes a 500
            error, failure = InternalError(), exc
            record.status, record.error_code = error.status, error.code
            return reply(error.status, error_body(error))
        except BaseException:  # SystemExit, KeyboardInterrupt: the invocation fails, and its line says so
            record.status, record.error_code = InternalError.status, InternalError.code
            raise
        finally:
            telemetry.emit(record, context, (time.perf_counter() - started) * 1000.0, exc_info=failure)

    return handle
