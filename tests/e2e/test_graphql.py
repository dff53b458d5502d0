"""The GraphQL API through API Gateway, as an analyst's client uses it."""

import uuid
from datetime import datetime, timedelta, timezone

from conftest import wait_until


def graphql(api, token, query, variables=None):
    return api.call("POST", "/graphql", {"query": query, "variables": variables or {}}, token=token)


def codes(reply):
    return [error.get("extensions", {}).get("code") for error in reply.body.get("errors", [])]


def test_analytics_count_exactly_what_was_posted(api, tokens):
    source = f"e2e-graphql-{uuid.uuid4().hex[:8]}"
    since = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    statuses = ["success"] * 3 + ["info"] * 2 + ["warning"] + ["error"] * 4
    events = [{"title": f"graphql e2e {i}", "status": s, "source": source} for i, s in enumerate(statuses)]
    posted = api.call("POST", "/api/events/batch", {"events": events}, token=tokens["access"])
    assert posted.status == 201, posted

    reply = graphql(api, tokens["access"], """
        query($source: String!, $since: DateTime!) {
          stats(since: $since, bucket: HOUR, source: $source) { success info warning error total }
          events(filter: {source: $source}, first: 4) {
            totalCount edges { cursor node { title status source } } pageInfo { hasNextPage endCursor }
          }
          topSources(limit: 100, since: $since) { source count }
        }""", {"source": source, "since": since})

    assert reply.status == 200 and "errors" not in reply.body, reply
    data = reply.body["data"]
    totals = {key: sum(bucket[key] for bucket in data["stats"]) for key in ("success", "info", "warning", "error", "total")}
    assert totals == {"success": 3, "info": 2, "warning": 1, "error": 4, "total": 10}
    assert data["events"]["totalCount"] == 10
    assert [edge["node"]["title"] for edge in data["events"]["edges"]] == [f"graphql e2e {i}" for i in (9, 8, 7, 6)]
    assert data["events"]["pageInfo"]["hasNextPage"] is True
    assert {"source": source, "count": 10} in data["topSources"]

    rest = graphql(api, tokens["access"], """
        query($source: String!, $after: String) {
          events(filter: {source: $source}, first: 500, after: $after) { nodes { title } pageInfo { hasNextPage } }
        }""", {"source": source, "after": data["events"]["pageInfo"]["endCursor"]})
    assert [node["title"] for node in rest.body["data"]["events"]["nodes"]] == [f"graphql e2e {i}" for i in range(5, -1, -1)]
    assert rest.body["data"]["events"]["pageInfo"]["hasNextPage"] is False


def test_create_event_enters_the_pipeline_and_its_history_shows_the_email(api, tokens):
    source = f"e2e-graphql-{uuid.uuid4().hex[:8]}"
    created = graphql(api, tokens["access"], """
        mutation($input: CreateEventInput!) { createEvent(input: $input) { id status pipelineState } }""",
        {"input": {"title": "created through GraphQL", "status": "ERROR", "source": source}})
    assert created.status == 200 and "errors" not in created.body, created
    event_id = created.body["data"]["createEvent"]["id"]

    # The REST API sees the same event.
    assert api.call("GET", f"/api/events/{event_id}", token=tokens["access"]).body["source"] == source

    def emailed():
        reply = graphql(api, tokens["access"], """
            query($id: UUID!) { event(id: $id) {
              pipelineState routing { handler } processing { handler } notifications { channel state } } }""",
            {"id": event_id})
        event = reply.body["data"]["event"]
        sent = [n for n in event["notifications"] if n["state"] == "SENT"]
        return event if event["pipelineState"] == "PROCESSED" and sent else None

    event = wait_until(emailed, 60, "the GraphQL-created error event to be processed and emailed")
    assert event["routing"] == {"handler": "ERROR"}
    assert event["processing"] == {"handler": "ERROR"}
    assert event["notifications"] == [{"channel": "email", "state": "SENT"}]

    pipeline = graphql(api, tokens["access"], "{ pipeline { processed emailsSent } }")
    assert pipeline.body["data"]["pipeline"]["processed"] >= 1
    assert pipeline.body["data"]["pipeline"]["emailsSent"] >= 1


def test_bad_input_and_limits_are_refused_with_a_code(api, tokens):
    invalid = graphql(api, tokens["access"], """
        mutation { createEvent(input: {title: "   ", status: INFO}) { id } }""")
    assert codes(invalid) == ["BAD_USER_INPUT"]
    assert invalid.body["errors"][0]["extensions"]["field"] == "input.title"

    too_large = graphql(api, tokens["access"], "{ events(first: 501) { totalCount } }")
    assert codes(too_large) == ["PAGE_TOO_LARGE"]
    assert too_large.body["data"] is None


def test_no_data_without_a_token_and_graphiql_on_get(api, tokens):
    anonymous = api.call("POST", "/graphql", {"query": "{ statusCounts { count } }"})
    assert anonymous.status == 401
    assert codes(anonymous) == ["UNAUTHENTICATED"]

    refresh_as_access = graphql(api, tokens["refresh"], "{ statusCounts { count } }")
    assert refresh_as_access.status == 401

    page = api.call("GET", "/graphql")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "graphiql" in page.body
