"""The Lambda entry point. Settings, model and fetch policy load once per cold start.

``CMD ["classifier.handler.lambda_handler"]`` in the Dockerfile names this.
"""

from __future__ import annotations

import gc

# Init allocates tens of thousands of long-lived objects (numpy, onnxruntime, Pillow,
# Powertools, ours): cyclic GC passes over them while they import are pure cost (~8 ms of
# CPU, which Lambda's CPU allotment charges to init). Off until cold_start() ends, then what
# init built is frozen, so later collections during requests do not traverse it either.
gc.disable()

from typing import TYPE_CHECKING  # noqa: E402

from .model import Classifier  # noqa: E402
from .settings import Settings  # noqa: E402

if TYPE_CHECKING:  # app is imported inside cold_start, while the model loads
    from .app import Handler


def cold_start() -> "Handler":
    try:
        return _build()
    finally:
        gc.freeze()
        gc.enable()


def _build() -> "Handler":
    settings = Settings.from_env()
    loading = Classifier.start_loading(settings.model_path, settings.ort_intra_op_threads, settings.cpus > 1,
                                       settings.ort_allow_spinning)
    # With a second CPU, onnxruntime builds the session (mostly outside the GIL) while the rest
    # of the pipeline (Pillow's decoders, Powertools, the fetcher, ...) imports, instead of one after the other.
    try:
        from .app import make_handler
        from .fetch import Fetched, FetchPolicy, fetch_url

        policy = FetchPolicy.from_settings(settings)
    except BaseException:
        # A bad setting fails the cold start here; the interpreter must not exit while onnxruntime
        # is still building the session on the other thread (it then aborts the process).
        loading.wait()
        raise
    classifier = loading.result()  # a model that cannot load fails the cold start here

    def fetch(url: str, deadline: float) -> Fetched:  # the body, read by the decoder as it arrives
        return fetch_url(url, policy, deadline=deadline)

    return make_handler(settings, classifier, fetch)


lambda_handler = cold_start()
