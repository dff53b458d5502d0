"""Shared by the DAG's tests: the DAG folder on sys.path (as Airflow puts it), fake JWTs, and the
local stack's coordinates for the real runs."""

import base64
import json
import os
import sys
from pathlib import Path

import pytest

AIRFLOW_DIR = Path(__file__).resolve().parents[1]
DAGS = AIRFLOW_DIR / "dags"
ROOT = AIRFLOW_DIR.parent
sys.path.insert(0, str(DAGS))
sys.path.append(str(ROOT / "scripts"))
import stack_settings  # noqa: E402  (scripts/, on the path just above)

# Airflow reads its settings when first imported: never the developer's ~/airflow.
os.environ["AIRFLOW_HOME"] = str(ROOT / ".local" / "airflow-tests")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)


def jwt(exp: float) -> str:
    """An unsigned token with an `exp`: the client reads it, only the API verifies it."""

    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': 'demo', 'exp': exp})}.c2lnbmF0dXJl"


@pytest.fixture(scope="session")
def stack() -> dict:
    """API_URL, the demo user (every role: it reads the events back) and the gerador user (producer
    only: the DAG's connection) from the environment or `.local/stack.env`."""
    keys = ("API_URL", "DEMO_USERNAME", "DEMO_PASSWORD", "GERADOR_USERNAME", "GERADOR_PASSWORD")
    settings = stack_settings.read(keys)
    missing = [key for key in keys if not settings.get(key)]
    if missing:
        pytest.fail(f"no stack to run the DAG against: {', '.join(missing)} unset; run scripts/up first")
    return settings
