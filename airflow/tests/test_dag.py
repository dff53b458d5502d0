"""The DAG as Airflow loads it, and its tasks' code with the connection, the Variable and the HTTP
faked."""

import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import gerador_eventos
import pytest
import responses
from airflow.dag_processing.dagbag import BundleDagBag
from airflow.sdk.exceptions import AirflowFailException, ParamValidationError
from conftest import DAGS, jwt
from eventstream_client import ApiError

BASE = "http://api.test/live"
DEFAULTS = {
    "events_per_run": 10,
    "status_weights": {"success": 70, "warning": 20, "error": 10},
    "source": "airflow-gerador-eventos",
}
RUN = SimpleNamespace(
    dag_id="gerador_eventos",
    run_id="scheduled__2026-11-29T12:00:00+00:00",
    logical_date=datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc),
    run_after=datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc),
)


@pytest.fixture(scope="module")
def dag():
    # How Airflow 3's DAG processor and task runner load the folder (it is put on sys.path).
    bag = BundleDagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    assert bag.import_errors == {}
    assert list(bag.dags) == ["gerador_eventos"]
    return bag.dags["gerador_eventos"]


def test_the_dag_has_its_tasks_in_order(dag):
    assert sorted(dag.task_ids) == ["generate_events", "post_events"]
    assert dag.get_task("post_events").upstream_task_ids == {"generate_events"}


def test_the_dag_runs_every_two_minutes_without_catching_up(dag):
    assert dag.schedule == "*/2 * * * *"
    assert dag.timetable.__class__.__name__ == "CronTriggerTimetable"
    assert dag.catchup is False
    assert dag.max_active_runs == 1


def test_the_dag_params_default_to_the_original_generator(dag):
    assert dag.params.dump() == DEFAULTS


@pytest.mark.parametrize(
    "name,value",
    [
        ("events_per_run", 0),
        ("events_per_run", 501),
        ("status_weights", {"fatal": 1}),
        ("status_weights", {"error": -1}),
        ("source", ""),
        ("source", "x" * 101),
    ],
)
def test_the_params_refuse_values_the_api_would(dag, name, value):
    with pytest.raises(ParamValidationError):
        dag.params.get_param(name).resolve(value)


def test_tasks_retry_and_are_bounded_in_time(dag):
    for task in dag.tasks:
        assert task.retries == 2
        assert task.execution_timeout == timedelta(minutes=5)


def test_generate_events_draws_the_runs_batch():
    events = gerador_eventos.generate_events.function(params=DEFAULTS, dag_run=RUN)

    assert len(events) == 10
    assert {event["source"] for event in events} == {"airflow-gerador-eventos"}
    assert events == gerador_eventos.generate_events.function(params=DEFAULTS, dag_run=RUN)
    assert events[0]["attributes"]["run"] == "gerador_eventos/2026-11-29T12:00:00+00:00"


def test_a_run_recreated_for_the_same_logical_date_draws_the_same_batch():
    # `airflow dags test` and a cleared run get a new run id for the same logical date.
    recreated = SimpleNamespace(**{**vars(RUN), "run_id": "manual__2026-11-29T12:05:31.123456+00:00"})
    assert gerador_eventos.generate_events.function(params=DEFAULTS, dag_run=recreated) == \
        gerador_eventos.generate_events.function(params=DEFAULTS, dag_run=RUN)


def test_a_run_without_logical_date_is_known_by_its_run_id():
    manual = SimpleNamespace(**{**vars(RUN), "logical_date": None, "run_id": "manual__2026-11-29T12:00:00+00:00_x1"})
    events = gerador_eventos.generate_events.function(params=DEFAULTS, dag_run=manual)

    assert events[0]["attributes"]["run"] == "gerador_eventos/manual__2026-11-29T12:00:00+00:00_x1"
    assert all(event["occurred_at"] <= "2026-11-29T12:00:00.000Z" for event in events)


def test_generate_events_fails_the_task_for_bad_params():
    with pytest.raises(AirflowFailException, match="at least one status"):
        gerador_eventos.generate_events.function(params={**DEFAULTS, "status_weights": {"error": 0}}, dag_run=RUN)


@pytest.fixture
def airflow_fakes(monkeypatch):
    """The eventstream_api connection, Airflow Variables in a dict, no real sleeping, fake HTTP."""
    variables = {}
    conn = SimpleNamespace(conn_id="eventstream_api", conn_type="http", host=BASE, port=None, schema=None,
                           login="demo", password="secret")
    monkeypatch.setattr(gerador_eventos.BaseHook, "get_connection", lambda conn_id: conn)
    monkeypatch.setattr(gerador_eventos.Variable, "get", lambda key, default: variables.get(key, default))
    monkeypatch.setattr(gerador_eventos.Variable, "set", lambda key, value: variables.__setitem__(key, value))
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        yield SimpleNamespace(http=http, variables=variables)


def test_post_events_posts_once_per_run_and_keeps_the_token(airflow_fakes):
    http = airflow_fakes.http
    login = http.post(f"{BASE}/api/token", json={"access": jwt(time.time() + 300), "refresh": jwt(time.time() + 86400)})
    batch = http.post(f"{BASE}/api/events/batch", status=201, json={"events": [{"id": "e1"}, {"id": "e2"}]})

    result = gerador_eventos.post_events.function([{"title": "t", "status": "success"}], dag_run=RUN)
    gerador_eventos.post_events.function([{"title": "t", "status": "success"}], dag_run=RUN)

    assert result == {"status": 201, "event_ids": ["e1", "e2"]}
    assert batch.calls[0].request.headers["Idempotency-Key"] == "gerador_eventos:2026-11-29T12:00:00+00:00"
    assert login.call_count == 1
    assert "refresh" in airflow_fakes.variables[gerador_eventos.TOKEN_VARIABLE]


@pytest.mark.parametrize("status,code", [(409, "idempotency_conflict"), (400, "invalid_field")])
def test_post_events_fails_without_retries_when_the_api_refuses_the_batch(airflow_fakes, status, code):
    airflow_fakes.http.post(f"{BASE}/api/token", json={"access": jwt(time.time() + 300), "refresh": "r"})
    airflow_fakes.http.post(f"{BASE}/api/events/batch", status=status, json={"error": {"code": code}})

    with pytest.raises(AirflowFailException, match=code):
        gerador_eventos.post_events.function([{"title": "t", "status": "success"}], dag_run=RUN)


def test_post_events_leaves_an_unavailable_api_to_the_tasks_retries(airflow_fakes):
    airflow_fakes.http.post(f"{BASE}/api/token", json={"access": jwt(time.time() + 300), "refresh": "r"})
    airflow_fakes.http.post(f"{BASE}/api/events/batch", status=503, json={"error": {"code": "unavailable"}})

    with pytest.raises(ApiError) as raised:
        gerador_eventos.post_events.function([{"title": "t", "status": "success"}], dag_run=RUN)

    assert not isinstance(raised.value, AirflowFailException)
    assert len(airflow_fakes.http.calls) == 1 + 5
