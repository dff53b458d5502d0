"""Fixtures: a LocalStack of the tests' own (localstack/run on a free port, temporary data dir) and Lambda
functions whose ``bootstrap`` is a small Python script speaking the Runtime API (tests/bootstrap.py), so the
executor is tested without Rust."""

import io
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

HERE = Path(__file__).resolve().parent
RUN = HERE.parent / "run"
REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"

FIGURES: list[str] = []  # measurements printed at the end of the run


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("measured")
        for line in FIGURES:
            terminalreporter.write_line(line)


def wait_for(condition, timeout: float, interval: float = 0.2, message: str = "condition"):
    """Polls ``condition`` until it returns a truthy value, which is returned; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def function_processes(gateway_url: str) -> list[int]:
    """Pids of the live processes whose environment points AWS_ENDPOINT_URL at that LocalStack: its functions'
    bootstraps and their children."""
    marker = f"\0AWS_ENDPOINT_URL={gateway_url}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = b"\0" + (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ and not process_gone(int(entry.name)):
                pids.append(int(entry.name))
    return pids


class LocalStack:
    def __init__(self, data_dir: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "localstack.log"
        env = dict(os.environ, LOCALSTACK_PORT=str(self.port), LOCALSTACK_DATA_DIR=str(data_dir))
        env.pop("LAMBDA_RUNTIME_EXECUTOR", None)
        self.started = time.monotonic()
        self.interrupted: float | None = None
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(RUN)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self._healthy, timeout=120, message=f"LocalStack health on {self.url}")
        self.startup_seconds = time.monotonic() - self.started

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"LocalStack exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/_localstack/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1}, read_timeout=120, connect_timeout=5),
        )

    def interrupt(self) -> None:
        """Ctrl-C: starts LocalStack's shutdown; ``stop()`` then waits for it."""
        if self.interrupted is None:
            self.interrupted = time.monotonic()
            self.proc.send_signal(signal.SIGINT)

    def stop(self, timeout: float = 60) -> int:
        """Stops LocalStack as a developer's Ctrl-C would; kills it if it does not stop within ``timeout``."""
        if self.proc.poll() is None:
            self.interrupt()
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Every thread's stack (launch.py's SIGUSR2 handler) into the log, to see what holds it up.
                self.proc.send_signal(signal.SIGUSR2)
                time.sleep(3)
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                pytest.fail(
                    f"LocalStack did not stop within {timeout}s; the end of its log, with its threads' stacks:\n"
                    f"{self.log()[-30000:]}"
                )
            FIGURES.append(f"LocalStack stop (SIGINT -> exit): {time.monotonic() - self.interrupted:.2f} s")
            return code
        return self.proc.returncode


def function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        archive.writestr(info, (HERE / "bootstrap.py").read_bytes())
    return buffer.getvalue()


def create_function(ls: LocalStack, timeout: int = 10, **kwargs) -> str:
    """Creates a provided.al2023 function running tests/bootstrap.py and waits until it is Active."""
    name = f"fn-{uuid.uuid4().hex[:10]}"
    lam = ls.client("lambda")
    lam.create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Handler="bootstrap",
        Role=ROLE,
        Code={"ZipFile": function_zip()},
        Timeout=timeout,
        MemorySize=kwargs.pop("MemorySize", 256),
        **kwargs,
    )
    lam.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 120}
    )
    return name


@pytest.fixture(scope="session")
def localstack(tmp_path_factory):
    ls = LocalStack(tmp_path_factory.mktemp("localstack"))
    FIGURES.append(f"LocalStack startup (run -> healthy): {ls.startup_seconds:.2f} s")
    yield ls
    ls.stop()


@pytest.fixture
def own_localstack(tmp_path):
    """A LocalStack for one test only, for tests that stop it."""
    ls = LocalStack(tmp_path)
    yield ls
    ls.stop()
