"""A LocalStack runtime executor that runs a Lambda function's ``bootstrap`` as a local process.

LocalStack's own executor starts a Docker container whose init binary serves the Lambda Runtime API and
reports back to LocalStack. This machine has no Docker engine, so each execution environment here is:

* one ``bootstrap`` process from the unzipped code (``provided.*`` runtimes: the EventStream Rust functions),
  started in its own session so that a timeout or a stop can kill its whole process group;
* one Runtime API server (threaded ``http.server`` on 127.0.0.1, ephemeral port) that ``bootstrap`` reaches
  through ``AWS_LAMBDA_RUNTIME_API``, with an invocation queue of its own per process, so a long-poll left
  behind by a dead process can never take an invocation meant for its successor.

Like Lambda, a process that timed out or exited is replaced at the next invocation (a new cold start), and
the executor writes the START/END/REPORT lines itself because ``version_manager`` ships
``InvocationResult.logs`` to CloudWatch Logs as they are.
"""

import atexit
import json
import logging
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.executor_endpoint import (
    ShutdownDuringStartup,
    StatusErrorException,
)
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

LOG = logging.getLogger(__name__)

API = "/2018-06-01/runtime"
RESULT_PATH = re.compile(rf"^{API}/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$")

# Process groups still alive, killed when LocalStack's interpreter exits without stopping them.
_LIVE_GROUPS: set[int] = set()


@atexit.register
def _kill_leftover_groups() -> None:
    for pgid in list(_LIVE_GROUPS):
        _kill_group(pgid)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _LIVE_GROUPS.discard(pgid)


def _error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class _Invocation:
    """One invocation handed to the runtime; ``future`` holds ``(payload, is_error, report_status)``."""

    def __init__(self, payload: dict, timeout_s: int):
        self.request_id: str = payload["invoke-id"]
        self.arn: str = payload["invoked-function-arn"]
        self.trace_id: str = payload.get("trace-id") or ""
        self.body: bytes = (payload.get("payload") or "").encode()
        self.deadline_ms = int((time.time() + timeout_s) * 1000)
        self.future: Future = Future()


class _RuntimeApiHandler(BaseHTTPRequestHandler):
    """The Lambda Runtime API (2018-06-01) as ``bootstrap`` sees it; state lives on the executor."""

    protocol_version = "HTTP/1.1"  # keep-alive: the runtime client reuses one connection per call
    server: "_RuntimeApiServer"

    def log_message(self, fmt, *args):
        LOG.debug("runtime api %s: " + fmt, self.server.executor.id, *args)

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        if self.path != f"{API}/invocation/next":
            return self._reply(404, _error_body("NotFound", self.path))
        invocation = self.server.executor.next_invocation()
        if invocation is None:  # the process is gone or the environment stopped: nobody to answer
            self.close_connection = True
            return
        self._reply(
            200,
            invocation.body,
            {
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": invocation.arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id,
            },
        )

    def do_POST(self):
        body = self._read_body()
        executor = self.server.executor
        if self.path == f"{API}/init/error":
            executor.init_error(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
            return self._reply(202, b'{"status":"OK"}')
        match = RESULT_PATH.match(self.path)
        if not match:
            return self._reply(404, _error_body("NotFound", self.path))
        if match["kind"] == "error":
            body = _normalise_error(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
        if not executor.complete(match["id"], body, is_error=match["kind"] == "error"):
            return self._reply(400, _error_body("InvalidRequestID", "Invalid request ID"))
        self._reply(202, b'{"status":"OK"}')


def _normalise_error(body: bytes, header_type: str | None) -> bytes:
    """Returns the runtime's error document, filling in ``errorType`` from the header when missing."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return _error_body(header_type or "Unhandled", body.decode(errors="replace"))
    if header_type and not document.get("errorType"):
        document["errorType"] = header_type
    return json.dumps(document).encode()


class _RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True  # a long-poll blocked in /next must not hold up shutdown

    def __init__(self, executor: "ProcessRuntimeExecutor"):
        self.executor = executor
        super().__init__(("127.0.0.1", 0), _RuntimeApiHandler)

    def handle_error(self, request, client_address):
        """A runtime killed mid-request is routine here (timeouts, stops): no traceback on stderr."""
        LOG.debug("runtime api %s: request from %s failed", self.executor.id, client_address, exc_info=True)


class ProcessRuntimeExecutor(RuntimeExecutor):
    """Runs one execution environment as a local process group plus its own Runtime API server."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id, function_version)
        # Bound now: ExecutionEnvironment reads get_runtime_endpoint() before start().
        self._server = _RuntimeApiServer(self)
        self._lock = threading.RLock()
        self._settled = threading.Event()  # first /next, init error, exit or stop of the current process
        self._stopped = False
        self._env: dict[str, str] = {}
        self._proc: subprocess.Popen | None = None
        self._queue: queue.Queue = queue.Queue()
        self._spawned_at = 0.0
        self._init_ms: float | None = None  # reported on the first invocation of each process
        self._init_error: bytes | None = None
        self._exit_code: int | None = None
        self._current: _Invocation | None = None
        self._peak_mb = 0
        self._workdir = Path(tempfile.mkdtemp(prefix=f"lambda-{id}-"))
        self._log_path = self._workdir / "output.log"
        self._log_path.touch()

    # RuntimeExecutor contract

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        if function_version.config.package_type != PackageType.Zip:
            raise LambdaRuntimeException("eventstream-process runs zip functions only, not images")
        function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """Nothing to undo: the unzipped code is LocalStack's own cache."""

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        host = config.GATEWAY_LISTEN[0].host
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    def get_runtime_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def get_logs(self) -> str:
        return self._log_path.read_text(errors="replace")

    def start(self, env_vars: dict[str, str]) -> None:
        code_dir = str(self.function_version.config.code.get_unzipped_code_location())
        # Lambda does not pass the host's environment, but bootstrap needs a PATH (e.g. for #!/usr/bin/env).
        self._env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")}
        # ExecutionEnvironment hands over some integers (memory size, timeout): the OS wants strings.
        self._env.update({key: str(value) for key, value in env_vars.items() if value is not None})
        self._env["LAMBDA_TASK_ROOT"] = code_dir
        self._env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{self._server.server_port}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
            name=f"lambda-runtime-api-{self.id}",
        ).start()
        self._spawn_and_wait()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._settled.set()
            current, self._current = self._current, None
            proc = self._proc
        if current:
            current.future.cancel()
        if proc:
            _kill_group(proc.pid)
            proc.wait()
        self._queue.put(None)
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        invocation = _Invocation(payload, self.function_version.config.timeout)
        with self._lock:
            needs_process = self._proc is None or self._proc.poll() is not None
        if needs_process:  # the previous process timed out or exited: Lambda starts a new one
            self._spawn_and_wait()
        with self._lock:
            init_ms, self._init_ms = self._init_ms, None
            log_offset = self._log_path.stat().st_size
            self._current = invocation
            self._queue.put(invocation)
        begun = time.perf_counter()
        timeout = self.function_version.config.timeout
        try:
            body, is_error, status = invocation.future.result(timeout=timeout)
        except FutureTimeout:
            self._settle(
                invocation,
                _error_body(
                    "Sandbox.Timedout",
                    f"RequestId: {invocation.request_id} Error: Task timed out after {timeout:.2f} seconds",
                ),
                "Status: timeout",
            )
            body, is_error, status = invocation.future.result()
        duration_ms = (time.perf_counter() - begun) * 1000
        with self._lock:
            proc = self._proc
        if status and proc and proc.poll() is None:  # timed out: kill bootstrap and everything it started
            with self._lock:
                self._record_peak_memory()
            _kill_group(proc.pid)
            proc.wait()
        logs = self._invocation_logs(invocation, log_offset, body, status, duration_ms, init_ms)
        return InvocationResult(invocation.request_id, body, is_error=is_error, logs=logs)

    # Called by the Runtime API handler threads and the process watcher

    def next_invocation(self) -> _Invocation | None:
        with self._lock:
            invocations = self._queue  # the queue of the process asking, even if it is replaced meanwhile
            if not self._settled.is_set():
                self._init_ms = (time.perf_counter() - self._spawned_at) * 1000
                self._settled.set()
        return invocations.get()

    def complete(self, request_id: str, body: bytes, is_error: bool) -> bool:
        with self._lock:
            invocation = self._current
            if not invocation or invocation.request_id != request_id:
                return False
            self._record_peak_memory()
        return self._settle(invocation, body, "", is_error=is_error)

    def init_error(self, body: bytes, header_type: str | None) -> None:
        body = _normalise_error(body, header_type or "Runtime.Unknown")
        with self._lock:
            if not self._settled.is_set():
                self._init_error = body
                self._settled.set()
                return
            invocation = self._current
        if invocation:
            self._settle(invocation, body, "Status: error\tError Type: Runtime.InitError")

    # Internals

    def _spawn_and_wait(self) -> None:
        """Starts bootstrap and waits for its first /next (init done); raises what LocalStack expects if not."""
        bootstrap = Path(self._env["LAMBDA_TASK_ROOT"]) / "bootstrap"
        if not os.access(bootstrap, os.X_OK):
            raise StatusErrorException(
                "No bootstrap",
                _error_body("Runtime.InvalidEntrypoint", f"Couldn't find valid bootstrap(s): [{bootstrap}]"),
            )
        with self._lock:
            if self._stopped:
                raise ShutdownDuringStartup("Execution environment stopped before its process started")
            self._queue.put(None)  # releases a /next still held by the previous process
            self._queue = queue.Queue()
            self._settled.clear()
            self._init_error = self._exit_code = None
            self._init_ms = None
            self._spawned_at = time.perf_counter()
            with open(self._log_path, "ab") as output:
                self._proc = subprocess.Popen(
                    [str(bootstrap)],
                    cwd=self._env["LAMBDA_TASK_ROOT"],
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: killpg reaches its children too
                )
            _LIVE_GROUPS.add(self._proc.pid)
            threading.Thread(target=self._watch, args=(self._proc,), daemon=True).start()
        if not self._settled.wait(config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT):
            _kill_group(self._proc.pid)
            raise StatusErrorException("Init timeout", _error_body("Sandbox.Timedout", "Init timed out"))
        with self._lock:
            if self._stopped:
                raise ShutdownDuringStartup("Execution environment stopped during startup")
            if self._init_error is not None:
                _kill_group(self._proc.pid)
                raise StatusErrorException("Function init failed", self._init_error)
            if self._exit_code is not None:
                raise StatusErrorException(
                    "Runtime exited during init",
                    _error_body("Runtime.ExitError", f"Runtime exited with error: {_exit_text(self._exit_code)}"),
                )

    def _watch(self, proc: subprocess.Popen) -> None:
        """Turns the exit of a process into the answer Lambda gives: Runtime.ExitError."""
        code = proc.wait()
        with self._lock:
            _LIVE_GROUPS.discard(proc.pid)
            if proc is not self._proc:
                return
            self._exit_code = code
            self._settled.set()
            self._queue.put(None)
            invocation = self._current
        if invocation:
            message = f"RequestId: {invocation.request_id} Error: Runtime exited with error: {_exit_text(code)}"
            self._settle(
                invocation,
                _error_body("Runtime.ExitError", message),
                "Status: error\tError Type: Runtime.ExitError",
            )

    def _settle(self, invocation: _Invocation, body: bytes, status: str, is_error: bool = True) -> bool:
        """Resolves an invocation once; the first of response, error, exit and timeout wins."""
        with self._lock:
            if invocation.future.done():
                return False
            if self._current is invocation:
                self._current = None
            invocation.future.set_result((body, is_error, status))
            return True

    def _record_peak_memory(self) -> None:
        try:
            status = Path(f"/proc/{self._proc.pid}/status").read_text()
        except OSError:
            return
        if match := re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE):
            self._peak_mb = max(self._peak_mb, math.ceil(int(match[1]) / 1024))

    def _invocation_logs(self, invocation, log_offset, body, status, duration_ms, init_ms) -> str:
        """START, the process's output during the invocation, END and REPORT, in AWS's format."""
        with open(self._log_path, "rb") as output:
            output.seek(log_offset)
            printed = output.read().decode(errors="replace")
        rid = invocation.request_id
        lines = [f"START RequestId: {rid} Version: {self.function_version.id.qualifier}"]
        if printed:
            lines.append(printed.rstrip("\n"))
        if status:  # timeout or exit: Lambda logs the error itself
            lines.append(json.loads(body).get("errorMessage", ""))
        billed = math.ceil(duration_ms + (init_ms or 0))  # provided runtimes are billed for init too
        report = (
            f"REPORT RequestId: {rid}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed} ms"
            f"\tMemory Size: {self.function_version.config.memory_size} MB"
            f"\tMax Memory Used: {self._peak_mb or 1} MB"
        )
        if init_ms is not None:
            report += f"\tInit Duration: {init_ms:.2f} ms"
        if status:
            report += f"\t{status}"
        lines += [f"END RequestId: {rid}", report]
        return "\n".join(lines) + "\n"


def _exit_text(code: int) -> str:
    """Go's wording (Lambda's init is in Go): 'exit status 3' or 'signal: killed'."""
    if code >= 0:
        return f"exit status {code}"
    name = {signal.SIGKILL: "killed", signal.SIGTERM: "terminated", signal.SIGSEGV: "segmentation fault"}
    return f"signal: {name.get(-code, signal.Signals(-code).name)}"
