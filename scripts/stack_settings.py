"""The local stack's settings: the KEY=value lines that scripts/up writes to .local/stack.env (mode
0600), read by every Python client of the stack (the end-to-end and Airflow tests, the benchmarks, the
load test), and the one way they make an AWS client for the stack. Standard library only at import
time. The shell's reader is load_stack_settings in scripts/lib.sh.
"""

import os
from collections.abc import Iterable
from pathlib import Path

STACK_ENV = Path(__file__).resolve().parents[1] / ".local" / "stack.env"


def read(from_environment: Iterable[str] = (), path: Path = STACK_ENV) -> dict[str, str]:
    """The settings in `path` ({} when it is missing: no stack was brought up), with the environment's
    non-empty values of the names in `from_environment` in their place (a stack elsewhere, AWS for one)."""
    settings = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, found, value = line.partition("=")
            if found:
                settings[key.strip()] = value
    settings.update((name, os.environ[name]) for name in from_environment if os.environ.get(name))
    return settings


def aws_client(service: str, endpoint: str | None = None, region: str | None = None):
    """A boto3 client for `service`: at `endpoint` (LocalStack) with its fixed test credentials unless
    the environment sets AWS_ACCESS_KEY_ID; without an endpoint, AWS with the caller's usual credentials."""
    import boto3  # only in the virtualenvs of the clients that talk to AWS

    options = {"endpoint_url": endpoint or None, "region_name": region or ("us-east-1" if endpoint else None)}
    if endpoint and not os.environ.get("AWS_ACCESS_KEY_ID"):
        options.update(aws_access_key_id="test", aws_secret_access_key="test")
    return boto3.client(service, **options)
