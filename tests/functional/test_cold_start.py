"""Cold start: the model loads on a background thread when there is a second CPU, and still fails loudly."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from classifier.model import Classifier, ModelLoadError
from classifier.spec import preprocess
from support import DEFAULT_MODEL


@pytest.mark.parametrize("background", [True, False])
def test_started_load_gives_the_same_scores_as_a_plain_load(background):
    plain = Classifier.load(str(DEFAULT_MODEL), intra_op_threads=1)
    loading = Classifier.start_loading(str(DEFAULT_MODEL), 1, background)
    started = loading.result()
    assert started.card == plain.card
    tensor = preprocess(Image.radial_gradient("L").convert("RGB"), plain.card.preprocessing)
    np.testing.assert_allclose(started.scores(tensor), plain.scores(tensor), rtol=0, atol=1e-6)
    assert loading.result() is started  # result() can be asked again


def _recording(release: threading.Event | None = None):
    seen = {"started": threading.Event()}

    class Recording(Classifier):
        @classmethod
        def load(cls, path, intra_op_threads=0, allow_spinning=False):
            seen["thread"] = threading.current_thread().name
            seen["started"].set()
            if release is not None:
                release.wait(10)
            return super().load(path, intra_op_threads, allow_spinning)

    return Recording, seen


def test_background_load_returns_to_the_caller_while_the_session_builds():
    release = threading.Event()
    recording, seen = _recording(release)
    loading = recording.start_loading(str(DEFAULT_MODEL), 1, background=True)
    assert seen["started"].wait(10)  # the caller has control back while the load is still going
    release.set()
    assert isinstance(loading.result(), recording)
    assert seen["thread"] == "model-load"


def test_without_a_second_cpu_the_load_runs_on_the_callers_thread():
    recording, seen = _recording()
    recording.start_loading(str(DEFAULT_MODEL), 1, background=False)
    assert seen["started"].is_set()  # done before start_loading returned
    assert seen["thread"] == threading.current_thread().name


@pytest.mark.parametrize("background", [True, False])
def test_load_errors_reach_the_cold_start(tmp_path, background):
    loading = Classifier.start_loading(str(tmp_path / "missing.onnx"), background=background)
    with pytest.raises(ModelLoadError, match="not found"):
        loading.result()


def test_decoders_are_registered_at_import_so_no_request_imports_a_plugin(tmp_path):
    """Left to Image.open, the first WebP/GIF/BMP/TIFF request would import every Pillow plugin."""
    import io
    import subprocess
    import sys

    from classifier.decode import ALLOWED_FORMATS

    for fmt in ALLOWED_FORMATS:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format=fmt)
        (tmp_path / fmt).write_bytes(buffer.getvalue())
    code = f"""
import pathlib, sys
import classifier.decode as decode
before = set(sys.modules)
for fmt in decode.ALLOWED_FORMATS:
    assert decode.decode_image(pathlib.Path({str(tmp_path)!r}, fmt).read_bytes(), 10**6).size == (8, 8)
print(sorted(m for m in set(sys.modules) - before if m.startswith("PIL")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("allow_spinning, expected", [(False, "0"), (True, "1")])
def test_the_session_spins_only_when_asked(allow_spinning, expected):
    loaded = Classifier.start_loading(str(DEFAULT_MODEL), 2, background=False, allow_spinning=allow_spinning).result()
    options = loaded.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_a_bad_setting_while_the_model_loads_fails_the_cold_start_without_aborting():
    """The process must not exit while onnxruntime still builds the session on the other thread:
    it then aborts (SIGABRT, a misleading onnxruntime error) instead of exiting with the setting's
    error. Without the wait, 6 of 12 such cold starts aborted here."""
    import os
    import subprocess
    import sys

    from support import REPO

    env = {**os.environ, "ALLOWED_HOSTS": "a..b", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
           "MODEL_PATH": str(DEFAULT_MODEL), "PYTHONPATH": str(REPO / "predict_function")}
    for _ in range(6):
        result = subprocess.run([sys.executable, "-c", "import classifier.handler"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
        assert "invalid allowed_hosts entry" in result.stderr
