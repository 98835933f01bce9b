"""One structured log line per request, EMF metrics, and nothing secret in either."""

from __future__ import annotations

import base64
import io
import json
import uuid

import pytest

from classifier.app import make_handler
from classifier.errors import UpstreamError
from classifier.model import Classifier
from classifier.observability import RequestRecord, Telemetry
from classifier.settings import Settings
from support import DEFAULT_MODEL, EVENTS


class Context:
    aws_request_id = "req-123"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


@pytest.fixture(scope="module")
def classifier():
    return Classifier.load(str(DEFAULT_MODEL), intra_op_threads=1)


def telemetry() -> Telemetry:
    # A logger of its own per test: Powertools binds its handler to the stdout of the moment.
    return Telemetry("m", "1", service=f"test-{uuid.uuid4().hex}")


def lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def split(records):
    logs = [r for r in records if "_aws" not in r]
    metrics = [r for r in records if "_aws" in r]
    return logs, metrics


def test_a_served_request_logs_its_timings_and_emits_metrics(classifier, cat_jpeg, capsys):
    capsys.readouterr()
    handle = make_handler(Settings.from_env({}), classifier, lambda u, d: cat_jpeg, telemetry())
    handle({"url": "https://img.example/cat.jpg?token=SECRET"}, Context())
    handle({"image": base64.b64encode(cat_jpeg).decode()}, Context())
    logs, metrics = split(lines(capsys))
    assert [log["message"] for log in logs] == ["request served", "request served"]
    first, second = logs
    assert first["cold_start"] is True and second["cold_start"] is False
    assert first["request_id"] == "req-123" and first["model"] == "m" and first["model_version"] == "1"
    assert first["model_graph"] == "portable"
    assert (first["input_kind"], second["input_kind"]) == ("url", "base64")
    assert first["url"] == "https://img.example" and first["image_size"] == "451x300"
    assert set(first["timings_ms"]) == {"fetch", "decode", "preprocess", "inference", "total"}
    assert all(value >= 0 for value in first["timings_ms"].values())
    everything = json.dumps(logs + metrics)
    assert "SECRET" not in everything and "cat.jpg" not in everything
    assert base64.b64encode(cat_jpeg).decode()[:100] not in everything
    names = [m["Name"] for record in metrics for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names.count("ColdStart") == 1 and names.count("Latency") == 2 and names.count("Requests") == 2
    assert all(record["model"] == "m" for record in metrics)


def test_errors_are_logged_once_with_their_code_and_counted_by_code(classifier, capsys):
    capsys.readouterr()

    def failing(url, deadline):
        raise UpstreamError("upstream answered 404")

    handle = make_handler(Settings.from_env({}), classifier, failing, telemetry())
    handle({"url": "https://img.example/missing.jpg"}, Context())
    logs, metrics = split(lines(capsys))
    assert len(logs) == 1 and logs[0]["level"] == "WARNING"
    assert logs[0]["status"] == 502 and logs[0]["error_code"] == "upstream_error"
    errors = [r for r in metrics if any(m["Name"] == "Errors" for m in r["_aws"]["CloudWatchMetrics"][0]["Metrics"])]
    assert len(errors) == 1 and errors[0]["code"] == "upstream_error" and errors[0]["Errors"] in (1.0, [1.0])


def test_an_unexpected_error_logs_the_traceback_but_answers_generically(classifier, capsys):
    capsys.readouterr()

    def broken(url, deadline):
        raise KeyError("internal detail")

    handle = make_handler(Settings.from_env({}), classifier, broken, telemetry())
    response = handle({"url": "https://img.example/a.jpg"}, Context())
    assert response["error"]["code"] == "internal_error" and "internal detail" not in json.dumps(response)
    logs, _ = split(lines(capsys))
    assert logs[0]["level"] == "ERROR" and "internal detail" in logs[0]["exception"]


class _StreamedBody(io.BytesIO):
    """A URL body as the decoder sees it (like fetch.Fetched): its reads waited ``waited`` s."""

    waited = 0.25

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.received = len(data)


def test_time_the_decoder_waited_for_the_network_is_logged_as_fetch(classifier, cat_jpeg, capsys):
    capsys.readouterr()
    bodies = []

    def fetch(url, deadline):
        bodies.append(_StreamedBody(cat_jpeg))
        return bodies[-1]

    make_handler(Settings.from_env({}), classifier, fetch, telemetry())({"url": "https://img.example/c.jpg"}, Context())
    (log,), _ = split(lines(capsys))
    assert bodies[0].closed  # released once decoded
    assert log["image_bytes"] == len(cat_jpeg)
    assert log["timings_ms"]["fetch"] >= 250.0  # the 0.25 s of waiting moved from decode to fetch
    assert 0.0 <= log["timings_ms"]["decode"] < log["timings_ms"]["total"]


def test_move_time_keeps_stage_times_non_negative():
    record = RequestRecord(timings_ms={"fetch": 1.0, "decode": 3.0})
    record.move_time(0.002, "decode", "fetch")
    assert record.timings_ms == {"fetch": 3.0, "decode": 1.0}
    record.move_time(0.005, "decode", "fetch")
    assert record.timings_ms == {"fetch": 8.0, "decode": 0.0}


def test_an_internal_error_a_stage_translated_still_logs_what_caused_it(classifier, capsys):
    from classifier.errors import InternalError

    capsys.readouterr()

    def translated(url, deadline):  # what fetch's boundary does with an exception it does not know
        try:
            raise ValueError("the real cause")
        except ValueError as exc:
            raise InternalError() from exc

    handle = make_handler(Settings.from_env({}), classifier, translated, telemetry())
    assert handle({"url": "https://img.example/a.jpg"}, Context())["error"]["code"] == "internal_error"
    logs, _ = split(lines(capsys))
    assert logs[0]["level"] == "ERROR" and "the real cause" in logs[0]["exception"]


def test_an_unparsable_url_is_a_bad_request_not_a_logging_crash(classifier, capsys):
    from classifier.fetch import FetchPolicy, fetch_url

    capsys.readouterr()
    policy = FetchPolicy.from_settings(Settings.from_env({}))
    handle = make_handler(Settings.from_env({}), classifier, lambda u, d: fetch_url(u, policy, d), telemetry())
    response = handle({"url": "http://[::1/SECRETPATH?token=QSECRET"}, Context())
    assert response["error"]["status"] == 400, response
    logs, _ = split(lines(capsys))
    assert logs[0]["status"] == 400 and "SECRET" not in json.dumps(logs)


def test_empty_service_or_namespace_fall_back_to_the_defaults(classifier, cat_jpeg, capsys, monkeypatch):
    # An empty service name made Powertools filter out every log line; an empty namespace is invalid EMF.
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "")
    assert Telemetry("m", "1").logger.service == "image-classifier"
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", " ")
    capsys.readouterr()
    handle = make_handler(Settings.from_env({}), classifier, lambda u, d: cat_jpeg, telemetry())
    handle({"url": "https://img.example/cat.jpg"}, Context())
    logs, metrics = split(lines(capsys))
    assert [log["message"] for log in logs] == ["request served"]
    assert metrics and all(record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ImageClassifier" for record in metrics)


def test_the_modules_own_warnings_are_json_lines(classifier, capsys):
    import logging

    capsys.readouterr()
    make_handler(Settings.from_env({}), classifier, lambda u, d: b"", telemetry())
    logging.getLogger("classifier.fetch").warning("blocked URL literal %s (%s)", "169.254.169.254", "link-local")
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "blocked URL" in line]
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["message"] == "blocked URL literal 169.254.169.254 (link-local)"


@pytest.mark.parametrize("url, logged", [
    ("https://img.example/cat.jpg", "https://img.example"),
    ("HTTPS://IMG.Example:8443/x", "https://img.example"),
    ("https://bücher.de/x", "https://xn--bcher-kva.de"),  # the host the fetcher asks DNS for
    ("http://[::1]:8080/x", "http://[::1]"),
    ("http://127.0.0.1/x", "http://127.0.0.1"),
    # what urlsplit would call the host, but the URL's authority is not well formed: a user name
    # or token (the port is not a number), an escape, a lone surrogate, a line separator, megabytes
    ("https://user:pa/ss@host.example/x", None),
    ("https://ex%61mple.com/x", None),
    ("https://\ud800.example/x", None),
    ("https://a\u2028b.example/x", None),
    ("https://" + "a" * 300_000 + "/x", None),
    ("http://[::1/x", None),
])
def test_a_url_is_logged_as_scheme_and_host_only_when_it_has_a_well_formed_host(url, logged):
    record = RequestRecord()
    record.set_url(url)
    assert record.url_host == logged


def test_a_request_whose_url_logging_could_not_encode_still_logs_its_line(classifier, capsys):
    capsys.readouterr()
    handle = make_handler(Settings.from_env({}), classifier, lambda u, d: b"", telemetry())
    handle({"url": "https://\ud800.example/x"}, Context())
    handle({"url": "https://" + "a" * 300_000 + "/x"}, Context())
    out = capsys.readouterr()
    logs, _ = split([json.loads(line) for line in out.out.splitlines() if line.startswith("{")])
    assert len(logs) == 2 and "Logging error" not in out.err
    assert max(len(line) for line in out.out.splitlines()) < 2_000


def test_metrics_carry_the_service_name_the_logs_carry(classifier, capsys, monkeypatch):
    unique = f"svc-{uuid.uuid4().hex}"  # a logger of its own: Powertools binds a service's handler to the stdout it first saw
    for value, service in ((None, "image-classifier"), (" ", "image-classifier"), (unique, unique)):
        if value is None:
            monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
        else:
            monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", value)
        capsys.readouterr()
        telemetry_ = Telemetry("m", "1")
        assert telemetry_.service == telemetry_.logger.service == service
        handle = make_handler(Settings.from_env({}), classifier, lambda u, d: b"not an image", telemetry_)
        handle({"url": "https://img.example/x"}, Context())  # a refused request: Latency, Requests and Errors
        logs, metrics = split(lines(capsys))
        assert len(metrics) == 2 and all(record.get("service") == service for record in metrics)
        dimensions = [record["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0] for record in metrics]
        assert all("service" in dims and "model" in dims for dims in dimensions), dimensions
    assert logs[0]["service"] == unique


def test_the_modules_warnings_during_a_request_carry_its_id(classifier, capsys):
    import logging

    class Other(Context):
        aws_request_id = "req-456"

    def fetch(url, deadline):
        logging.getLogger("classifier.fetch").warning("blocked URL host %s", "evil.example")
        raise UpstreamError("no")

    capsys.readouterr()
    handle = make_handler(Settings.from_env({}), classifier, fetch, telemetry())
    handle({"url": "https://evil.example/x"}, Other())
    (warning,) = [r for r in lines(capsys) if r.get("message", "").startswith("blocked URL")]
    assert warning["request_id"] == "req-456"


def test_an_invocation_ended_by_a_base_exception_is_not_logged_as_served(classifier, capsys):
    def fetch(url, deadline):
        raise KeyboardInterrupt

    capsys.readouterr()
    handle = make_handler(Settings.from_env({}), classifier, fetch, telemetry())
    with pytest.raises(KeyboardInterrupt):
        handle({"url": "https://img.example/x"}, Context())
    (log,), _ = split(lines(capsys))
    assert (log["message"], log["status"], log["error_code"]) == ("request failed", 500, "internal_error")


def test_requests_without_an_image_are_counted_but_stay_out_of_the_latency_metric(classifier, cat_jpeg, capsys):
    capsys.readouterr()
    handle = make_handler(Settings.from_env({}), classifier, lambda u, d: cat_jpeg, telemetry())
    model_info = json.loads((EVENTS / "rest-model.json").read_text())
    handle(model_info, Context())
    handle(model_info | {"path": "/nope"}, Context())  # 404
    handle(model_info | {"httpMethod": "POST"}, Context())  # 405
    handle({"image": base64.b64encode(cat_jpeg).decode()}, Context())
    logs, metrics = split(lines(capsys))
    assert [log["input_kind"] for log in logs] == ["model_info", "unknown", "unknown", "base64"]
    names = [m["Name"] for record in metrics for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names.count("Requests") == 4 and names.count("Latency") == 1
    [latency] = [record["Latency"] for record in metrics if "Latency" in record]
    assert latency == [pytest.approx(logs[3]["timings_ms"]["total"], abs=0.01)]  # the classification's
