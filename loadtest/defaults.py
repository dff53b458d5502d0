"""What a run does unless told otherwise, shared by run.py (which must import without Locust, for
--help before the virtualenv exists) and the locustfile."""

# How often each scenario is picked, relative to the others.
WEIGHTS = {"single": 5, "batch": 2, "list": 3, "get": 1, "stats": 2, "events": 2}
SCENARIO_REQUESTS = {
    "single": "POST /api/events, one event",
    "batch": "POST /api/events/batch, --batch-size events",
    "list": "GET /api/events?source=<the run's source>&limit=50",
    "get": "GET /api/events/{id} of an event the run posted",
    "stats": "GraphQL stats(since: an hour ago, bucket: MINUTE, source)",
    "events": "GraphQL events(filter: {source}, first: 50) with totalCount",
}
# The share of each status among posted events: errors are the rarest, as in production, and each
# one sends an email.
STATUS_MIX = {"success": 40, "info": 30, "warning": 20, "error": 10}
