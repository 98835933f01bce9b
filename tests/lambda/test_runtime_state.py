"""The function's process after its cold start, as the image sets it up.

* No idle thread spins: numpy's OpenBLAS gets one thread from the image's ENV (an idle OpenBLAS
  worker spins ~0.1 s of CPU after numpy's import, CPU time that Lambda's allotment charges to
  init); the function does no BLAS work that would need more.
* Cyclic GC is off while init imports and loads, then back on, with what init built frozen.
* onnxruntime's workers do not spin unless ORT_ALLOW_SPINNING says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import run_in_runtime

COUNT_THREADS = "import os, numpy; print(len(os.listdir('/proc/self/task')))"


def _threads_after_numpy(staged_project, env: dict) -> int:
    return int(run_in_runtime(staged_project, COUNT_THREADS, env))


def test_the_image_limits_openblas_to_one_thread(staged_project):
    assert staged_project.image_env.get("OPENBLAS_NUM_THREADS") == "1"
    assert _threads_after_numpy(staged_project, staged_project.image_env) == 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts no worker on a single CPU")
def test_without_the_setting_numpy_starts_a_worker(staged_project):
    """What the ENV prevents (so a numpy that stops bundling OpenBLAS shows up here)."""
    assert _threads_after_numpy(staged_project, {}) > 1


def test_the_emulated_runtime_gets_the_setting(lambda_function):
    lambda_function.invoke({"ping": True})  # the RIE starts the runtime on the first invoke
    environ = Path(f"/proc/{lambda_function.runtime_pid}/environ").read_bytes().split(b"\0")
    assert b"OPENBLAS_NUM_THREADS=1" in environ


def test_gc_is_back_on_after_the_cold_start_with_init_frozen(staged_project):
    code = ("import gc; import classifier.handler as h; "
            "print(gc.isenabled(), gc.get_freeze_count(), callable(h.lambda_handler))")
    env = {**staged_project.image_env, "MODEL_PATH": f"{staged_project.task_root}/model/model.onnx"}
    enabled, frozen, handler = run_in_runtime(staged_project, code, env).split()
    assert (enabled, handler) == ("True", "True")
    assert int(frozen) > 20_000  # numpy, onnxruntime, Pillow, Powertools and ours: out of later collections


def test_gc_is_back_on_when_the_cold_start_fails(staged_project):
    code = ("import gc\ntry:\n    import classifier.handler\nexcept Exception as exc:\n"
            "    print(type(exc).__name__, gc.isenabled())")
    env = {**staged_project.image_env, "MODEL_PATH": f"{staged_project.task_root}/model/missing.onnx"}
    assert run_in_runtime(staged_project, code, env).split()[-1] == "True"


@pytest.mark.parametrize("setting, expected", [(None, "0"), ("1", "1")])
def test_the_cold_start_builds_the_session_with_the_spinning_setting(staged_project, setting, expected):
    code = ("import gc, classifier.handler\n"
            "from classifier.model import Classifier\n"
            "gc.unfreeze()  # what init built is frozen, out of gc.get_objects()\n"
            "[served] = [o for o in gc.get_objects() if isinstance(o, Classifier)]\n"
            "print(served.session.get_session_options().get_session_config_entry('session.intra_op.allow_spinning'))")
    env = {**staged_project.image_env, "MODEL_PATH": f"{staged_project.task_root}/model/model.onnx",
           **({"ORT_ALLOW_SPINNING": setting} if setting else {})}
    assert run_in_runtime(staged_project, code, env).splitlines()[-1] == expected
