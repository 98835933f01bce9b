"""Response bodies, and the API Gateway proxy envelope around them."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from functools import lru_cache
from typing import Any, Sequence

from .errors import ClassifierError
from .events import DIRECT
from .model import Classifier, Prediction
from .settings import CORS_ALLOW_ORIGIN

JSON_HEADERS = {"Content-Type": "application/json"}


def prediction_body(classifier: Classifier, predictions: Sequence[Prediction], scores) -> dict[str, Any]:
    body: dict[str, Any] = {
        "predictions": [{"label": p.label, "score": p.score} for p in predictions],
        "model": {"name": classifier.card.name, "version": classifier.card.version},
    }
    if classifier.is_binary:
        body["prediction"] = float(scores[-1])  # the seed's single-sigmoid contract
    return body


def model_info_body(classifier: Classifier) -> dict[str, Any]:
    card = classifier.card
    model_input = classifier.session.get_inputs()[0]
    return {
        "model": {"name": card.name, "version": card.version},
        "input": {"name": model_input.name, "shape": [d if isinstance(d, int) else None for d in model_input.shape]},
        "preprocessing": asdict(card.preprocessing),
        "activation": card.activation,
        "labels": len(card.labels),
    }


def error_body(error: ClassifierError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "status": error.status}}


@lru_cache(maxsize=1)
def _process_cors_origin() -> str:
    """CORS_ALLOW_ORIGIN of this process, read once (the same value Settings.cors_allow_origin holds)."""
    return (os.environ.get(CORS_ALLOW_ORIGIN) or "").strip()


def respond(kind: str, status: int, body: dict[str, Any], cors_origin: str | None = None) -> dict[str, Any]:
    """Direct invocations get the body itself; API Gateway events a proxy response.

    API responses carry ``Access-Control-Allow-Origin: cors_origin`` when it is set (None: the
    process's CORS_ALLOW_ORIGIN); with a proxy integration API Gateway adds no CORS header itself.
    """
    if kind == DIRECT:
        return body
    origin = _process_cors_origin() if cors_origin is None else cors_origin
    headers = dict(JSON_HEADERS)
    if origin:  # one fixed origin (or "*"): no Vary needed
        headers["Access-Control-Allow-Origin"] = origin
    return {
        "statusCode": status,
        "headers": headers,
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }
