"""End-to-end tests: a client of the deployed stack, through API Gateway.

They read the stack's coordinates from `.local/stack.env` (written by `scripts/up`), or from the
environment (`API_URL`, `DEMO_USERNAME`, `DEMO_PASSWORD`, `INGEST_FUNCTION`), so the same suite
runs against a stack deployed to AWS.
"""

import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "scripts"))
import stack_settings  # noqa: E402  (scripts/, on the path just above)


def _stack_settings() -> dict:
    settings = stack_settings.read(("API_URL", "DEMO_USERNAME", "DEMO_PASSWORD", "INGEST_FUNCTION", "AWS_ENDPOINT_URL",
                                    "AWS_REGION", "MAIL_API", "WARNING_DLQ_URL", "ERROR_DLQ_URL"))
    missing = [k for k in ("API_URL", "DEMO_USERNAME", "DEMO_PASSWORD", "INGEST_FUNCTION") if not settings.get(k)]
    if missing:
        pytest.fail(f"no stack to test: {', '.join(missing)} unset; run scripts/up first")
    return settings


@dataclass
class Reply:
    status: int
    headers: dict
    body: object

    @property
    def error(self) -> tuple:
        error = self.body.get("error", {}) if isinstance(self.body, dict) else {}
        return error.get("code"), error.get("field")


class Api:
    """A small HTTP client of the REST API."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def call(self, method, path, json_body=None, token=None, headers=None, raw=None, content_type="application/json"):
        data = raw if raw is not None else (json.dumps(json_body).encode() if json_body is not None else None)
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None and content_type:
            request.add_header("Content-Type", content_type)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, response_headers, payload = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, response_headers, payload = error.code, dict(error.headers), error.read()
        try:
            body = json.loads(payload) if payload else None
        except ValueError:
            body = payload.decode(errors="replace")
        return Reply(status, {k.lower(): v for k, v in response_headers.items()}, body)


@pytest.fixture(scope="session")
def stack() -> dict:
    return _stack_settings()


@pytest.fixture(scope="session")
def api(stack) -> Api:
    return Api(stack["API_URL"])


@pytest.fixture(scope="session")
def tokens(api, stack) -> dict:
    reply = api.call("POST", "/api/token", {"username": stack["DEMO_USERNAME"], "password": stack["DEMO_PASSWORD"]})
    assert reply.status == 200, reply
    return reply.body


@pytest.fixture(scope="session")
def logs(stack):
    """CloudWatch Logs of the stack: LocalStack's (with its test credentials) when scripts/up wrote
    an endpoint, otherwise the AWS account of the caller's usual credentials."""
    return stack_settings.aws_client("logs", stack.get("AWS_ENDPOINT_URL"), stack.get("AWS_REGION"))


def wait_until(condition, seconds: float, what: str):
    """Polls `condition` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.5)
