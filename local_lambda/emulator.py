"""Run a staged task root under the real AWS Lambda Runtime Interface Emulator (RIE).

What the AWS base image does (and ``sam local invoke`` reproduces inside a container)::

    /var/rapid/aws-lambda-rie --log-level error /lambda-entrypoint.sh <handler>
      -> /var/runtime/bootstrap -> /var/lang/bin/python3.12 -m awslambdaric <handler>   (cwd /var/task)

What :class:`Emulator` runs, with no container::

    samcli/local/rapid/aws-lambda-rie-<arch> --log-level error
        --runtime-interface-emulator-address 127.0.0.1:<free port>
        --runtime-api-address 127.0.0.1:<free port>
        <runtime venv>/bin/python -m awslambdaric <handler>                          (cwd <task root>)

The RIE binary is the one shipped in the aws-sam-cli wheel; the runtime venv holds the image's
Python minor with only awslambdaric; the task root is first on ``sys.path`` like ``/var/task``.
The environment is built from scratch (not inherited from the caller's shell): the base image's
variables, the Dockerfile's ``ENV``, the AWS_* variables SAM sets, then the function's variables.
"""

from __future__ import annotations

import atexit
import collections
import importlib.util
import json
import os
import platform
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Union

if TYPE_CHECKING:
    from .cpu_quota import CpuQuota
    from .memory_limit import MemoryLimit

INVOKE_PATH = "/2015-03-31/functions/function/invocations"

# Lambda's synchronous invocation payload limit ("6 MB"): Lambda refuses a larger request with
# RequestEntityTooLargeException ("Request must be smaller than 6291556 bytes for the InvokeFunction
# operation") before the function runs. The RIE reads at most this many bytes and hands the runtime a
# truncated event instead, so the limit is enforced here.
MAX_SYNC_PAYLOAD_BYTES = 6_291_556


class EmulatorError(RuntimeError):
    pass


class PayloadTooLarge(EmulatorError):
    """An event over Lambda's synchronous payload limit: Lambda refuses it and the function never runs."""

    def __init__(self, size: int, source: str = "the event"):
        super().__init__(
            f"{source} is {size:,} bytes, over Lambda's synchronous invocation payload limit "
            f"({MAX_SYNC_PAYLOAD_BYTES:,} bytes, \"6 MB\"): Lambda refuses it with RequestEntityTooLargeException "
            "before the function runs (send a large image by URL)")
        self.size = size


def check_payload_size(data: bytes, source: str = "the event") -> bytes:
    """``data`` if Lambda would accept it as a synchronous invocation payload, else :class:`PayloadTooLarge`."""
    if len(data) > MAX_SYNC_PAYLOAD_BYTES:
        raise PayloadTooLarge(len(data), source)
    return data


class _PortTaken(Exception):
    """Another process bound a port between choosing it and the RIE binding it."""


def rie_path(machine: Optional[str] = None) -> Path:
    """The RIE binary inside the installed aws-sam-cli, for this machine's architecture."""
    machine = (machine or platform.machine()).lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise EmulatorError(f"no Lambda RIE for machine {machine!r} (only x86_64 and arm64 exist)")
    spec = importlib.util.find_spec("samcli")
    if spec is None or not spec.submodule_search_locations:
        raise EmulatorError("aws-sam-cli is not installed; it ships the Lambda RIE (pip install aws-sam-cli)")
    path = Path(list(spec.submodule_search_locations)[0]) / "local" / "rapid" / f"aws-lambda-rie-{arch}"
    if not path.is_file():
        raise EmulatorError(f"{path} is missing from the aws-sam-cli install")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_variables(function_name: str, handler: str, memory_mb: int, timeout_s: int) -> Dict[str, str]:
    """The AWS_* variables ``sam local`` gives a function (samcli.local.lambdafn.env_vars), fake credentials."""
    return {
        "AWS_SAM_LOCAL": "true",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s),
        "AWS_LAMBDA_FUNCTION_HANDLER": handler,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "defaultkey",
        "AWS_SECRET_ACCESS_KEY": "defaultsecret",
        "AWS_ACCOUNT_ID": "123456789012",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    }


@dataclass
class InvokeResult:
    payload: bytes
    status: int
    seconds: float

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.payload)

    @property
    def timed_out(self) -> bool:
        return self.text.startswith("Task timed out after")

    @property
    def error(self) -> Optional[Dict[str, Any]]:
        """The Lambda error document (``errorMessage``/``errorType``...) if the function failed."""
        try:
            doc = self.json()
        except ValueError:
            return {"errorMessage": self.text, "errorType": "Sandbox.Timedout" if self.timed_out else "Unknown"}
        if isinstance(doc, dict) and "errorMessage" in doc and set(doc) <= {"errorMessage", "errorType", "requestId", "stackTrace"}:
            return doc
        return None


def _children(pid: int) -> List[int]:
    kids: List[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            try:
                kids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


class Emulator:
    """A warm Lambda execution environment: RIE + awslambdaric + the staged task root.

    >>> with Emulator(".build/local_lambda/PredictFunction/task", env={...}, memory_mb=1024, timeout_s=15) as fn:
    ...     fn.invoke({"url": "..."})

    ``handler``, ``runtime_python`` and the Dockerfile's ``ENV`` default to what ``stage`` recorded in
    ``<task_root>/../stage.json``. ``cpu_quota`` (``local_lambda.cpu_quota.CpuQuota``) puts the RIE
    and the runtime it starts under the CPU time Lambda gives the memory size; ``memory_limit``
    (``local_lambda.memory_limit.MemoryLimit``) under the memory size itself: a runtime that needs more
    is killed, that invoke fails and the next one starts a fresh runtime, as on Lambda.
    """

    def __init__(
        self,
        task_root: Union[str, Path],
        handler: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        memory_mb: int = 128,
        timeout_s: int = 3,
        runtime_python: Optional[Union[str, Path]] = None,
        function_name: str = "function",
        image_env: Optional[Dict[str, str]] = None,
        rie: Optional[Union[str, Path]] = None,
        rie_log_level: str = "error",
        log_sink: Optional[Callable[[str], None]] = None,
        startup_timeout_s: float = 30.0,
        cpu_quota: Optional["CpuQuota"] = None,
        memory_limit: Optional["MemoryLimit"] = None,
    ):
        self.task_root = Path(task_root).resolve()
        if not self.task_root.is_dir():
            raise EmulatorError(f"task root {self.task_root} does not exist; stage it first")
        manifest = self.task_root.parent / "stage.json"
        recorded: Dict[str, Any] = json.loads(manifest.read_text()) if manifest.is_file() else {}
        self.handler = handler or recorded.get("handler")
        if not self.handler:
            raise EmulatorError("no handler: pass handler= or stage the task root from a Dockerfile with CMD")
        python = runtime_python or recorded.get("runtime_python")
        if not python:
            raise EmulatorError("no runtime_python: pass it or stage the task root with local_lambda.stage")
        self.runtime_python = Path(python)
        self.python_version = recorded.get("python_version")
        self.function_name = function_name
        self.memory_mb = int(memory_mb)
        self.timeout_s = int(timeout_s)
        self.image_env = dict(recorded.get("image_env", {}) if image_env is None else image_env)
        self.user_env = dict(env or {})
        self.rie = Path(rie) if rie else rie_path()
        self.rie_log_level = rie_log_level
        self.log_sink = log_sink
        self.cpu_quota = cpu_quota  # Lambda's CPU time for the memory size (local_lambda.cpu_quota), if given
        self.memory_limit = memory_limit  # Lambda's memory limit (local_lambda.memory_limit), if given
        self.startup_timeout_s = startup_timeout_s
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self.runtime_api_port: Optional[int] = None
        self.cold_start_s: Optional[float] = None
        self.invocations = 0
        self._started_at: Optional[float] = None
        self._lines: Deque[str] = collections.deque(maxlen=50_000)  # a long start-api keeps the tail
        self._lines_lock = threading.Lock()
        self._invoke_lock = threading.Lock()
        self._reader: Optional[threading.Thread] = None

    # environment ----------------------------------------------------------------------------
    def environment(self) -> Dict[str, str]:
        root = str(self.task_root)
        venv = self.runtime_python.parent.parent
        env = {
            # public.ecr.aws/lambda/python base image
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "LD_LIBRARY_PATH": f"{root}:{root}/lib",
            "LAMBDA_TASK_ROOT": root,
            "LAMBDA_RUNTIME_DIR": str(venv),
            # /var/runtime/bootstrap of the python3.x images
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{self._python_minor()}",
            # /var/task first on sys.path; the task root is read-only on Lambda, so never write .pyc there
            "PYTHONPATH": root,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
        }
        env.update(self._translate(self.image_env))
        env.update(aws_variables(self.function_name, self.handler, self.memory_mb, self.timeout_s))
        env.update(self._translate(self.user_env))
        # The RIE enforces the timeout from this variable: it must agree with timeout_s.
        env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = str(self.timeout_s)
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(self.memory_mb)
        env.pop("AWS_LAMBDA_RUNTIME_API", None)
        return env

    def _translate(self, variables: Dict[str, str]) -> Dict[str, str]:
        """Point image paths at the staged copies: ``/var/task/x`` -> ``<task root>/x``.

        The image's file system cannot be recreated at ``/var/task`` without a container, so a value
        such as ``MODEL_PATH=/var/task/model/model.onnx`` is rewritten (also inside ``:``/``,`` lists).
        """
        root, runtime = str(self.task_root), str(self.runtime_python.parent.parent)
        out = {}
        for name, value in variables.items():
            value = _IMAGE_TASK_ROOT.sub(lambda m: root, str(value))
            out[name] = _IMAGE_RUNTIME_DIR.sub(lambda m: runtime, value)
        return out

    def _python_minor(self) -> str:
        if self.python_version:
            return self.python_version
        name = self.runtime_python.name
        for candidate in sorted(self.runtime_python.parent.glob("python3.*")):
            name = candidate.name
        return name.replace("python", "") or "3"

    # lifecycle ------------------------------------------------------------------------------
    def command(self) -> List[str]:
        return [
            str(self.rie),
            "--log-level", self.rie_log_level,
            "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
            "--runtime-api-address", f"127.0.0.1:{self.runtime_api_port}",
            str(self.runtime_python), "-m", "awslambdaric", self.handler,
        ]

    def start(self) -> "Emulator":
        if self.proc is not None:
            return self
        for attempt in range(3):
            try:
                return self._start()
            except _PortTaken:
                if attempt == 2:
                    raise EmulatorError(f"could not bind free loopback ports:\n{self.logs}")
        return self

    def _start(self) -> "Emulator":
        self.port, self.runtime_api_port = free_port(), free_port()
        while self.runtime_api_port == self.port:
            self.runtime_api_port = free_port()
        with self._lines_lock:
            self._lines.clear()
        self._started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=str(self.task_root),
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE.add(self)  # stopped at exit even if joining a cgroup fails
        self._join_cgroups(self.proc.pid)  # before the first invoke starts the runtime, which inherits them
        self._reader = threading.Thread(target=self._read_logs, name="rie-logs", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                code, self.proc = self.proc.returncode, None
                if "address already in use" in self.logs:
                    raise _PortTaken()
                raise EmulatorError(f"the RIE exited with {code}:\n{self.logs}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmulatorError(f"the RIE did not listen on 127.0.0.1:{self.port}:\n{self.logs}")
                time.sleep(0.002)  # finely: a cold start is timed from here, 20 ms steps were 0-20 ms of noise
        return self

    def _join_cgroups(self, pid: int) -> None:
        """Put process ``pid`` under every limit given (CPU quota, memory limit)."""
        for group in (self.cpu_quota, self.memory_limit):
            if group is not None:
                group.add(pid)

    def _read_logs(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            with self._lines_lock:
                self._lines.append(line)
            if self.log_sink is not None:
                try:
                    self.log_sink(line)
                except Exception:  # a broken sink must not kill the reader
                    pass

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=2)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # invoking -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{INVOKE_PATH}"

    def invoke_raw(self, payload: Union[bytes, str, Any]) -> InvokeResult:
        """POST one event to the RIE (one at a time, like one Lambda execution environment).

        An event over Lambda's synchronous payload limit raises :class:`PayloadTooLarge` without reaching
        the function, as Lambda refuses it."""
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, bytes):
            data = payload
        else:
            data = json.dumps(payload).encode()
        check_payload_size(data)
        if self.proc is None:
            self.start()
        request = urllib.request.Request(self.url, data=data, method="POST")
        with self._invoke_lock:
            started = time.perf_counter()
            try:
                with _NO_PROXY.open(request, timeout=self.timeout_s + 30) as response:
                    body, status = response.read(), response.status
            except urllib.error.HTTPError as exc:
                body, status = exc.read(), exc.code
            except OSError as exc:
                raise EmulatorError(f"invoke failed: {exc}\n{self.logs}") from exc
            finished = time.perf_counter()
            self.invocations += 1
            if self.cold_start_s is None and self._started_at is not None:
                self.cold_start_s = finished - self._started_at
        return InvokeResult(body, status, finished - started)

    def invoke(self, event: Any = None) -> Any:
        """Invoke with ``event`` (JSON-serialisable) and return the decoded response.

        A function error comes back as Lambda's error document (``errorMessage``, ``errorType``,
        ``stackTrace``), a timeout as ``{"errorMessage": "Task timed out after ...", ...}``.
        """
        result = self.invoke_raw({} if event is None else event)
        try:
            return result.json()
        except ValueError:
            return result.error

    # observability --------------------------------------------------------------------------
    @property
    def pid(self) -> Optional[int]:
        """The RIE process id."""
        return self.proc.pid if self.proc else None

    @property
    def runtime_pid(self) -> Optional[int]:
        """The Python runtime process (awslambdaric + the function); started by the RIE on first invoke."""
        if self.proc is None:
            return None
        kids = _children(self.proc.pid)
        return kids[-1] if kids else None

    def runtime_memory_mb(self) -> Dict[str, float]:
        """Current (VmRSS) and peak (VmHWM) resident memory of the runtime process, in MiB."""
        pid = self.runtime_pid
        out: Dict[str, float] = {}
        if pid is None:
            return out
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out["rss" if key == "VmRSS" else "peak_rss"] = int(value.split()[0]) / 1024
        except OSError:
            pass
        return out

    def runtime_cpu_ms(self) -> Optional[float]:
        """CPU time (user + system, every thread, finished ones included) the runtime process has used."""
        pid = self.runtime_pid
        if pid is None:
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; utime, stime are fields 14, 15
        return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")

    @property
    def logs(self) -> str:
        with self._lines_lock:
            return "".join(self._lines)


# Emulators still running when the interpreter exits are stopped (the RIE runs in its own session).
_LIVE: "weakref.WeakSet[Emulator]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for emulator in list(_LIVE):
        emulator.stop()


_IMAGE_TASK_ROOT = re.compile(r"(?<![^:,=\s])/var/task(?=/|$|[:,\s])")
_IMAGE_RUNTIME_DIR = re.compile(r"(?<![^:,=\s])/var/runtime(?=/|$|[:,\s])")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
