"""The Lambda entry point. Settings, model and fetch policy load once per cold start.

``CMD ["classifier.handler.lambda_handler"]`` in the Dockerfile names this.
"""

from __future__ import annotations

from .app import Handler, make_handler
from .fetch import FetchPolicy, fetch_url
from .model import Classifier
from .settings import Settings


def cold_start() -> Handler:
    settings = Settings.from_env()
    classifier = Classifier.load(settings.model_path, settings.ort_intra_op_threads)
    policy = FetchPolicy.from_settings(settings)

    def fetch(url: str, deadline: float) -> bytes:
        return fetch_url(url, policy, deadline=deadline)

    return make_handler(settings, classifier, fetch)


lambda_handler = cold_start()
