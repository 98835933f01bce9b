"""The request pipeline: run the stages and turn errors into responses, in one place.

Stages (one module each): events -> source (fetch) -> decode -> spec.preprocess
-> model -> responses. ``handler`` wires the real parts together at cold start;
tests build the same pipeline with their own fetch or model.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from .decode import decode_image
from .errors import ClassifierError, InternalError
from .events import MODEL_INFO, event_kind, parse_event
from .model import Classifier
from .responses import error_body, model_info_body, prediction_body, respond
from .settings import Settings
from .source import Fetch, deadline_from, image_bytes
from .spec import preprocess

logger = logging.getLogger("classifier")

# Seconds kept back from the fetch deadline for decoding, inference and the response.
PROCESSING_RESERVE_SECONDS = 2.0

Handler = Callable[[Any, Any], dict]


def make_handler(settings: Settings, classifier: Classifier, fetch: Fetch) -> Handler:
    """Build a handler from its parts (tests inject their own fetch and model)."""

    def handle(event: Any, context: Any) -> dict:
        kind = event_kind(event)
        try:
            request = parse_event(event, settings.max_download_bytes)
            if request.action == MODEL_INFO:
                return respond(kind, 200, model_info_body(classifier))
            data = image_bytes(request, fetch, deadline_from(context, PROCESSING_RESERVE_SECONDS))
            image = decode_image(data, settings.max_image_pixels)
            scores = classifier.scores(preprocess(image, classifier.card.preprocessing))
            top = classifier.top_k(scores, request.top_k or settings.default_top_k)
            return respond(kind, 200, prediction_body(classifier, top, scores))
        except ClassifierError as error:
            logger.warning("request refused: %s (%s)", error.code, error.message)
            return respond(kind, error.status, error_body(error))
        except Exception:  # noqa: BLE001 - the one place where anything unexpected becomes a 500
            logger.exception("unexpected error")
            error = InternalError()
            return respond(kind, error.status, error_body(error))

    return handle
