"""The ingest REST API through API Gateway, as a client sees it."""

import base64
import json
import uuid

from conftest import wait_until


def test_health_answers_without_a_token(api):
    reply = api.call("GET", "/api/health")
    assert (reply.status, reply.body) == (200, {"status": "ok", "database": "ok"})


def test_a_token_pair_is_issued_and_the_refresh_token_renews_access(api, tokens):
    assert set(tokens) == {"access", "refresh"}
    reply = api.call("POST", "/api/token/refresh", {"refresh": tokens["refresh"]})
    assert reply.status == 200, reply
    assert api.call("GET", "/api/events?limit=1", token=reply.body["access"]).status == 200


def test_wrong_credentials_are_refused(api, stack):
    reply = api.call("POST", "/api/token", {"username": stack["DEMO_USERNAME"], "password": "not the password"})
    assert (reply.status, reply.error) == (401, ("invalid_credentials", None))


def test_an_event_is_stored_listed_and_read_back(api, tokens):
    source = f"e2e-{uuid.uuid4().hex[:12]}"
    event = {"title": "Disk 93% full", "status": "warning", "source": source, "attributes": {"mount": "/var"}}
    created = api.call("POST", "/api/events", event, token=tokens["access"])
    assert created.status == 201, created
    assert created.body["pipeline_state"] == "received"

    read = api.call("GET", f"/api/events/{created.body['id']}", token=tokens["access"])
    assert read.status == 200
    # The pipeline may already have moved it on (tens of milliseconds); what was posted stays as it was.
    assert without_pipeline([read.body]) == without_pipeline([created.body])
    assert read.body["pipeline_state"] in ("received", "dispatched", "processed")

    listed = api.call("GET", f"/api/events?source={source}&status=warning", token=tokens["access"])
    assert listed.status == 200
    assert [e["id"] for e in listed.body["events"]] == [created.body["id"]]


def without_pipeline(events: list[dict]) -> list[dict]:
    """The events as they were posted: the pipeline moves them on within milliseconds of the post."""
    return [{k: v for k, v in e.items() if not k.startswith("pipeline_")} for e in events]


def test_a_batch_is_stored_in_order_and_replayed_by_its_idempotency_key(api, tokens):
    source = f"e2e-{uuid.uuid4().hex[:12]}"
    events = [{"title": f"event {i}", "status": s, "source": source} for i, s in enumerate(["success", "info", "error"])]
    key = {"Idempotency-Key": f"e2e-{uuid.uuid4()}"}

    first = api.call("POST", "/api/events/batch", {"events": events}, token=tokens["access"], headers=key)
    retry = api.call("POST", "/api/events/batch", {"events": events}, token=tokens["access"], headers=key)
    conflicting = api.call("POST", "/api/events/batch", {"events": events[:1]}, token=tokens["access"], headers=key)

    assert first.status == 201, first
    assert [e["title"] for e in first.body["events"]] == ["event 0", "event 1", "event 2"]
    assert retry.status == 200, retry
    assert without_pipeline(retry.body["events"]) == without_pipeline(first.body["events"])
    assert (conflicting.status, conflicting.error) == (409, ("idempotency_conflict", None))
    listed = api.call("GET", f"/api/events?source={source}", token=tokens["access"])
    assert len(listed.body["events"]) == 3


def test_bad_input_and_bad_tokens_get_json_errors_and_store_nothing(api, tokens):
    source = f"e2e-{uuid.uuid4().hex[:12]}"
    access = tokens["access"]
    header, payload, signature = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(uuid.uuid4())
    forged = ".".join([header, base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("="), signature])
    ok = {"title": "t", "status": "info", "source": source}

    cases = [
        ("no token", dict(json_body=ok), 401, ("missing_token", None)),
        ("forged token", dict(json_body=ok, token=forged), 401, ("invalid_token", None)),
        ("refresh as access", dict(json_body=ok, token=tokens["refresh"]), 401, ("invalid_token", None)),
        ("unknown status", dict(json_body={**ok, "status": "fatal"}, token=access), 400, ("invalid_field", "status")),
        ("malformed JSON", dict(raw=b'{"title": ', token=access), 400, ("malformed_json", "title")),
        ("wrong content type", dict(raw=json.dumps(ok).encode(), content_type="text/plain", token=access), 415,
         ("unsupported_media_type", None)),
        ("body over 256 KiB", dict(json_body={**ok, "description": "x" * (300 * 1024)}, token=access), 413,
         ("payload_too_large", None)),
    ]
    for name, kwargs, status, error in cases:
        reply = api.call("POST", "/api/events", **kwargs)
        assert (reply.status, reply.error) == (status, error), f"{name}: {reply}"
        assert reply.headers["content-type"] == "application/json", name

    listed = api.call("GET", f"/api/events?source={source}", token=access)
    assert listed.body["events"] == []


def test_unknown_routes_and_methods_are_json_404_and_405(api, tokens):
    assert api.call("GET", "/api/nothing", token=tokens["access"]).error == ("not_found", None)
    reply = api.call("DELETE", "/api/events", token=tokens["access"])
    assert (reply.status, reply.error) == (405, ("method_not_allowed", None))


def test_the_function_logs_reach_cloudwatch_with_report_lines(api, tokens, logs, stack):
    api.call("GET", "/api/health")
    group = f"/aws/lambda/{stack['INGEST_FUNCTION']}"

    def report_lines():
        events = logs.filter_log_events(logGroupName=group, filterPattern="REPORT").get("events", [])
        return [e["message"] for e in events if e["message"].startswith("REPORT RequestId:")]

    reports = wait_until(report_lines, 30, f"REPORT lines in {group}")
    assert any("Init Duration:" in line for line in reports), reports[:3]
    assert all("Duration:" in line and "Memory Size: 512 MB" in line for line in reports), reports[:3]
