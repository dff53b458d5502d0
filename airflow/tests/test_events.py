"""The DAG's batch: drawn by the status weights, and the same for every try of one run."""

import math
from datetime import datetime, timedelta, timezone

import pytest
from eventstream_client import STATUSES, generate_events, idempotency_key

WEIGHTS = {"success": 70, "warning": 20, "error": 10}
AT = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def batch(seed="gerador_eventos/scheduled__2026-11-29T12:00:00+00:00", count=10, weights=WEIGHTS,
          source="airflow-gerador-eventos", at=AT):
    return generate_events(seed=seed, count=count, weights=weights, source=source, reference_time=at)


def test_the_same_run_draws_the_same_batch():
    assert batch() == batch()
    assert batch(weights={"error": 10, "warning": 20, "success": 70}) == batch()


def test_other_runs_draw_other_batches():
    assert batch(seed="gerador_eventos/scheduled__2026-11-29T12:02:00+00:00") != batch()


def test_events_are_valid_for_the_api():
    events = batch(count=50, source="billing")

    assert len(events) == 50
    for sequence, event in enumerate(events, start=1):
        assert event["status"] in WEIGHTS
        assert event["source"] == "billing"
        assert 1 <= len(event["title"]) <= 200
        assert event["attributes"]["sequence"] == sequence
        occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        assert event["occurred_at"].endswith("Z")
        assert AT - timedelta(minutes=2) < occurred <= AT


def test_a_reference_time_in_another_zone_gives_utc_timestamps():
    brasilia = timezone(timedelta(hours=-3))
    assert batch(at=AT.astimezone(brasilia)) == batch()


def test_statuses_follow_the_weights():
    # 40 runs of 500 events: each status's share stays within 5 standard deviations of its weight
    # (a fair draw strays further less than once in a million), and a zero weight never shows.
    weights = {**WEIGHTS, "info": 0}
    draws = [e["status"] for run in range(40) for e in batch(seed=f"run-{run}", count=500, weights=weights)]
    n = len(draws)
    for status, weight in WEIGHTS.items():
        p = weight / 100
        assert abs(draws.count(status) / n - p) < 5 * math.sqrt(p * (1 - p) / n), status
    assert "info" not in draws


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"count": 0}, "between 1 and 500"),
        ({"count": 501}, "between 1 and 500"),
        ({"weights": {"success": 1, "fatal": 1}}, "unknown statuses"),
        ({"weights": {"success": -1, "error": 2}}, "must be a number >= 0"),
        ({"weights": {"success": "70"}}, "must be a number >= 0"),
        ({"weights": {"success": 0, "error": 0}}, "at least one status"),
        ({"weights": {}}, "at least one status"),
    ],
)
def test_invalid_params_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        batch(**kwargs)


def test_every_status_the_api_knows_can_be_drawn():
    drawn = {e["status"] for e in batch(count=200, weights=dict.fromkeys(STATUSES, 1))}
    assert drawn == set(STATUSES)


def test_the_idempotency_key_is_the_run_and_fits_the_header():
    assert idempotency_key("gerador_eventos", "scheduled__2026-11-29T12:00:00+00:00") == \
        "gerador_eventos:scheduled__2026-11-29T12:00:00+00:00"
    assert idempotency_key("gerador_eventos", "a") != idempotency_key("gerador_eventos", "b")
    for run_id in ("manual run with spaces", "é" * 10, "x" * 300):
        key = idempotency_key("gerador_eventos", run_id)
        assert 1 <= len(key) <= 255 and all(33 <= ord(c) <= 126 for c in key)
        assert key == idempotency_key("gerador_eventos", run_id)
