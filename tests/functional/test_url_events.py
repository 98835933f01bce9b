"""URL fixtures that must be refused, through the pipeline with the real guarded fetcher.

The fetcher gets a resolver and a connector that record every use and never reach
the network: a refused URL must be refused before anything is resolved or dialled.
"""

from __future__ import annotations

import json

import pytest

from classifier.app import make_handler
from classifier.fetch import FetchPolicy, fetch_url
from classifier.model import Classifier
from classifier.settings import Settings
from support import DEFAULT_MODEL, EVENTS
from expectations import EXPECTED


class Recorder:
    def __init__(self):
        self.calls = []

    def resolve(self, host, port, *args, **kwargs):
        self.calls.append(("resolve", host))
        raise AssertionError("a refused URL must not be resolved")

    def connect(self, address, port, timeout):
        self.calls.append(("connect", address))
        raise AssertionError("a refused URL must not be dialled")


@pytest.fixture(scope="module")
def classifier():
    return Classifier.load(str(DEFAULT_MODEL), intra_op_threads=1)


@pytest.mark.parametrize("allow_private", ["false", "true"])
@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.startswith("bad-url")))
def test_refused_url_fixture(name, allow_private, classifier):
    settings = Settings.from_env({"ALLOW_PRIVATE_URLS": allow_private})
    recorder = Recorder()
    policy = FetchPolicy.from_settings(settings, resolver=recorder.resolve, connector=recorder.connect)
    handle = make_handler(settings, classifier, lambda url, deadline: fetch_url(url, policy, deadline=deadline))
    response = handle(json.loads((EVENTS / name).read_text()), None)
    status, code = EXPECTED[name]
    assert response["error"]["status"] == status and response["error"]["code"] == code, response
    assert "169.254" not in response["error"]["message"]
    assert recorder.calls == []
