"""gerador_eventos in a real Airflow: `airflow dags test` posts through the local stack's API Gateway
(scripts/up) as the gerador user (producer only, as airflow/connection sets it), and the events are
then read back through the REST API as the demo user (a producer may not read them)."""

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from conftest import DAGS
from eventstream_client import generate_events

pytestmark = pytest.mark.stack

AIRFLOW = Path(sys.executable).with_name("airflow")
EVENTS_PER_RUN = 10


@pytest.fixture(scope="module")
def airflow_env(stack, tmp_path_factory):
    """A fresh Airflow home with a migrated database, and the connection set as a deployment would:
    the gerador user, a producer."""
    connection = {"conn_type": "http", "host": stack["API_URL"], "login": stack["GERADOR_USERNAME"],
                  "password": stack["GERADOR_PASSWORD"]}
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow-home")),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_EVENTSTREAM_API": json.dumps(connection),
    }
    airflow(env, "db", "migrate")
    return env


def airflow(env, *args) -> str:
    result = subprocess.run([str(AIRFLOW), *args], env=env, capture_output=True, text=True, timeout=150)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"airflow {' '.join(args)} exited with {result.returncode}:\n{output[-6000:]}"
    return output


def signed_in(stack, user) -> requests.Session:
    session = requests.Session()
    reply = session.post(f"{stack['API_URL']}/api/token", timeout=30,
                         json={"username": stack[f"{user}_USERNAME"], "password": stack[f"{user}_PASSWORD"]})
    reply.raise_for_status()
    session.headers["Authorization"] = f"Bearer {reply.json()['access']}"
    return session


@pytest.fixture(scope="module")
def api(stack):
    """The demo user, who may read events (the analyst role); the DAG's gerador may not."""
    return signed_in(stack, "DEMO")


def events_with_source(api, stack, source) -> list[dict]:
    reply = api.get(f"{stack['API_URL']}/api/events", params={"source": source, "limit": 500}, timeout=30)
    reply.raise_for_status()
    return reply.json()["events"]


def comparable(event) -> tuple:
    return event["title"], event["status"], event["description"], event["source"], event["attributes"]["sequence"]


def test_a_run_posts_its_batch_and_a_rerun_of_it_posts_nothing(airflow_env, api, stack):
    source = f"airflow-test-{uuid.uuid4().hex[:12]}"
    # A fresh logical date: the API remembers Idempotency-Keys (derived from the run id) across runs of
    # this suite against the same database.
    logical_date = datetime.now(timezone.utc).isoformat()
    conf = json.dumps({"source": source})

    first = airflow(airflow_env, "dags", "test", "gerador_eventos", logical_date, "-c", conf)

    assert f"stored {EVENTS_PER_RUN} events" in first
    events = events_with_source(api, stack, source)
    assert len(events) == EVENTS_PER_RUN
    assert {event["source"] for event in events} == {source}
    assert set(Counter(event["status"] for event in events)) <= {"success", "warning", "error"}
    seed = events[0]["attributes"]["run"]
    assert seed == f"gerador_eventos/{logical_date}"
    expected = generate_events(seed=seed, count=EVENTS_PER_RUN, source=source,
                               weights={"success": 70, "warning": 20, "error": 10},
                               reference_time=datetime.fromisoformat(logical_date))
    assert sorted(map(comparable, events)) == sorted(map(comparable, expected))

    second = airflow(airflow_env, "dags", "test", "gerador_eventos", logical_date, "-c", conf)

    assert f"already stored {EVENTS_PER_RUN} events" in second
    # The token pair the first run kept in the Airflow Variable was reused, not a new login.
    assert "logged in to" in first and "logged in to" not in second
    again = events_with_source(api, stack, source)
    assert sorted(event["id"] for event in again) == sorted(event["id"] for event in events)


def test_the_dags_user_may_post_but_not_read(stack):
    gerador = signed_in(stack, "GERADOR")

    reply = gerador.get(f"{stack['API_URL']}/api/events", params={"limit": 1}, timeout=30)

    assert reply.status_code == 403, reply.text
    assert reply.json()["error"]["code"] == "forbidden"
