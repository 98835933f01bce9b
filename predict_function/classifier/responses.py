"""Response bodies, and the API Gateway proxy envelope around them."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Sequence

from .errors import ClassifierError
from .events import DIRECT
from .model import Classifier, Prediction, Scores
from .spec import ModelCard

JSON_HEADERS = {"Content-Type": "application/json"}


def prediction_body(card: ModelCard, predictions: Sequence[Prediction], scores: Scores) -> dict[str, Any]:
    body: dict[str, Any] = {
        "predictions": [{"label": p.label, "score": p.score} for p in predictions],
        "model": {"name": card.name, "version": card.version},
    }
    if scores.binary:
        body["prediction"] = float(scores.values[-1])  # the seed's single-sigmoid contract
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


def respond(kind: str, status: int, body: dict[str, Any], cors_origin: str = "",
            extra_headers: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """Direct invocations get the body itself; API Gateway events a proxy response.

    API responses carry ``Access-Control-Allow-Origin: cors_origin`` when it is set
    (Settings.cors_allow_origin); with a proxy integration API Gateway adds no CORS header itself.
    """
    if kind == DIRECT:
        return body
    headers = dict(JSON_HEADERS)
    headers.update(extra_headers)
    if cors_origin:  # one fixed origin (or "*"): no Vary needed
        headers["Access-Control-Allow-Origin"] = cors_origin
    return {
        "statusCode": status,
        "headers": headers,
        # NaN/inf are not JSON: raise (the handler then answers 500) rather than send a body no client parses.
        "body": json.dumps(body, separators=(",", ":"), allow_nan=False),
        "isBase64Encoded": False,
    }
