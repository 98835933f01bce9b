"""The Lambda entry point. Settings, model and fetch policy load once per cold start.

``CMD ["classifier.handler.lambda_handler"]`` in the Dockerfile names this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model import Classifier
from .settings import Settings

if TYPE_CHECKING:  # app is imported inside cold_start, while the model loads
    from .app import Handler


def cold_start() -> "Handler":
    settings = Settings.from_env()
    loading = Classifier.start_loading(settings.model_path, settings.ort_intra_op_threads, settings.cpus > 1)
    # With a second CPU, onnxruntime builds the session (mostly outside the GIL) while the rest
    # of the pipeline (Pillow's decoders, Powertools, the fetcher, ...) imports, instead of one after the other.
    from .app import make_handler
    from .fetch import Fetched, FetchPolicy, fetch_url

    policy = FetchPolicy.from_settings(settings)
    classifier = loading.result()  # a model that cannot load fails the cold start here

    def fetch(url: str, deadline: float) -> Fetched:  # the body, read by the decoder as it arrives
        return fetch_url(url, policy, deadline=deadline)

    return make_handler(settings, classifier, fetch)


lambda_handler = cold_start()
