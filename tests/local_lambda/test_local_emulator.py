"""Round trips through the real Lambda RIE (from the aws-sam-cli wheel) with awslambdaric and a tiny handler."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_lambda import Emulator, EmulatorError, rie_path
from support import logs_once_they_hold


@pytest.fixture
def fn(tiny_task_root, runtime_python, monkeypatch):
    monkeypatch.setenv("LEAKED_FROM_SHELL", "1")
    emulator = Emulator(
        tiny_task_root,
        handler="app.handler",
        runtime_python=runtime_python,
        env={"MY_SETTING": "on", "MODEL_PATH": "/var/task/model/model.onnx"},
        memory_mb=256,
        timeout_s=2,
        function_name="TinyFunction",
    )
    with emulator:
        yield emulator


def test_rie_comes_from_the_sam_cli_wheel():
    path = rie_path()
    assert path.name in ("aws-lambda-rie-x86_64", "aws-lambda-rie-arm64")
    assert path.parent.parts[-3:] == ("samcli", "local", "rapid")


def test_event_round_trip_in_a_lambda_like_process(fn, tiny_task_root):
    event = {"hello": "world", "n": [1, 2.5, None]}
    out = fn.invoke(event)
    assert out["event"] == event
    assert out["python"] == "3.12"  # the FROM tag's Python, not the test runner's
    assert out["cwd"] == str(tiny_task_root)  # the task root is the working directory, like /var/task
    assert out["sys_path0"] == str(tiny_task_root)
    assert out["function_name"] == "TinyFunction"
    assert out["memory_limit_in_mb"] == "256"
    assert 0 < out["remaining_ms"] <= 2000
    env = out["env"]
    assert env["MY_SETTING"] == "on"
    assert env["MODEL_PATH"] == f"{tiny_task_root}/model/model.onnx"  # /var/task -> the staged root
    assert env["LAMBDA_TASK_ROOT"] == str(tiny_task_root)
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "2"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["AWS_ACCESS_KEY_ID"] == "defaultkey" and env["AWS_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert "LEAKED_FROM_SHELL" not in env  # a fresh environment, like a container
    assert out["pid"] == fn.runtime_pid != fn.pid
    assert fn.cold_start_s is not None and fn.cold_start_s > 0
    assert fn.runtime_memory_mb()["peak_rss"] > 0
    cpu = fn.runtime_cpu_ms()
    assert cpu is not None and cpu > 0  # at least the interpreter's start-up
    assert "tiny handler init" in fn.logs and 'handled {"hello": "world"' in fn.logs
    assert "REPORT RequestId" in logs_once_they_hold(fn, "REPORT RequestId")


def test_an_exception_is_lambdas_error_document_and_the_process_stays_warm(fn):
    first = fn.invoke({"action": "noop"})
    error = fn.invoke({"action": "raise", "message": "bad input"})
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "boom: bad input"
    assert isinstance(error["stackTrace"], list) and error["stackTrace"]
    after = fn.invoke({"action": "noop"})
    assert after["pid"] == first["pid"]  # same warm runtime, as on Lambda


def test_a_timeout_resets_the_runtime_and_the_next_invoke_works(fn):
    first = fn.invoke({"action": "noop"})
    result = fn.invoke_raw({"action": "sleep", "seconds": 10})
    assert result.timed_out
    assert result.error["errorMessage"].startswith("Task timed out after 2.00 seconds")
    after = fn.invoke({"action": "noop"})
    assert after["event"] == {"action": "noop"}
    assert after["pid"] != first["pid"]  # Lambda re-initialises the environment after a timeout


def test_bad_handler_is_an_import_error(tiny_task_root, runtime_python):
    with Emulator(tiny_task_root, handler="nothere.handler", runtime_python=runtime_python) as fn:
        out = fn.invoke({})
    assert out["errorType"] == "Runtime.ImportModuleError"


def test_stop_ends_both_processes(tiny_task_root, runtime_python):
    fn = Emulator(tiny_task_root, handler="app.handler", runtime_python=runtime_python).start()
    fn.invoke({})
    pids = [fn.pid, fn.runtime_pid]
    fn.stop()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_missing_task_root_or_handler(tmp_path, runtime_python):
    with pytest.raises(EmulatorError, match="stage it first"):
        Emulator(tmp_path / "nope", handler="a.b", runtime_python=runtime_python)
    with pytest.raises(EmulatorError, match="no handler"):
        Emulator(tmp_path, runtime_python=runtime_python)
