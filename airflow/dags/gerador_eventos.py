"""gerador_eventos: feeds EventStream with synthetic events.

Every two minutes it draws `events_per_run` statuses by `status_weights` and posts them to the
API's batch endpoint with the `source` param. The API's base URL and credentials come from the
Airflow Connection `eventstream_api` (host = base URL, login, password), e.g. set as
`AIRFLOW_CONN_EVENTSTREAM_API='{"conn_type": "http", "host": "http://...", "login": "gerador",
"password": "..."}'`: a user with the `producer` role, all the DAG needs. The batch is derived
from the run (its logical date, or its run id) and posted with an Idempotency-Key derived from it
too, so a retried task or a re-run of the same run stores nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta, timezone

# The DAG folder is on sys.path wherever Airflow parses or runs this file.
import eventstream_client as es

try:  # Airflow 3
    from airflow.sdk import BaseHook, Param, Variable, dag, task
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2.10
    from airflow.decorators import dag, task
    from airflow.exceptions import AirflowFailException
    from airflow.hooks.base import BaseHook
    from airflow.models import Param, Variable

log = logging.getLogger(__name__)

CONN_ID = "eventstream_api"
# "token" in the name makes Airflow mask the value in logs and the UI.
TOKEN_VARIABLE = "eventstream_api_token"
# A schedule cannot be a run's param; the environment of the DAG processor can change it.
SCHEDULE = os.environ.get("GERADOR_EVENTOS_SCHEDULE", "*/2 * * * *")


class VariableTokenStore:
    """Keeps the JWT pair in an Airflow Variable, so that runs reuse it until it expires."""

    def load(self) -> dict | None:
        value = Variable.get(TOKEN_VARIABLE, None)
        try:
            return json.loads(value) if value else None
        except ValueError:
            return None

    def save(self, tokens: dict) -> None:
        Variable.set(TOKEN_VARIABLE, json.dumps(tokens))


def run_key(dag_run) -> str:
    """What identifies a run across its tries and re-runs: its logical date, unique per DAG (`airflow
    dags test` re-creates a run under a new run id for the same date), or its run id when it has none
    (Airflow 3 runs triggered without a logical date)."""
    if dag_run.logical_date is None:
        return dag_run.run_id
    return dag_run.logical_date.astimezone(timezone.utc).isoformat()


@task
def generate_events(params=None, dag_run=None) -> list[dict]:
    """Draws this run's batch, derived from the run alone so that every try draws the same."""
    try:
        return es.generate_events(
            seed=f"{dag_run.dag_id}/{run_key(dag_run)}",
            count=params["events_per_run"],
            weights=params["status_weights"],
            source=params["source"],
            reference_time=dag_run.logical_date or dag_run.run_after,
        )
    except ValueError as error:
        raise AirflowFailException(str(error)) from error


@task
def post_events(events: list[dict], dag_run=None) -> dict:
    """Posts the batch once per run: a retry sends the same key and body, and the API replays."""
    conn = BaseHook.get_connection(CONN_ID)
    client = es.EventStreamClient(
        es.connection_base_url(conn), conn.login, conn.password, token_store=VariableTokenStore()
    )
    key = es.idempotency_key(dag_run.dag_id, run_key(dag_run))
    try:
        status, stored = client.post_batch(events, key)
    except es.ApiError as error:
        if error.status in es.TRANSIENT_STATUSES:
            raise  # the task's own retries try again later
        # Bad credentials, a rejected batch or a key reused with another body: retrying cannot help.
        raise AirflowFailException(f"the API refused the batch: {error}") from error
    log.info(
        "%s %d events (Idempotency-Key %s)", "stored" if status == 201 else "already stored", len(stored), key
    )
    return {"status": status, "event_ids": [event["id"] for event in stored]}


@dag(
    dag_id="gerador_eventos",
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=5),
    },
    params={
        "events_per_run": Param(10, type="integer", minimum=1, maximum=es.MAX_BATCH,
                                description="How many events each run posts, in one batch."),
        "status_weights": Param(
            {"success": 70, "warning": 20, "error": 10},
            type="object",
            propertyNames={"enum": list(es.STATUSES)},
            additionalProperties={"type": "number", "minimum": 0},
            description="Relative weight of each status in the draw.",
        ),
        "source": Param("airflow-gerador-eventos", type="string", minLength=1, maxLength=100,
                        description="The events' source."),
    },
    tags=["eventstream"],
    doc_md=__doc__,
)
def gerador_eventos():
    post_events(generate_events())


gerador_eventos()
