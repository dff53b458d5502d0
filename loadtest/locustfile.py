"""EventStream under load: the weighted scenarios that scripts/loadtest runs through loadtest/run.py.

Each simulated user signs in once, renews its token pair with the refresh token shortly before the
access token expires, keeping the rotated refresh token of each answer (and signs in again when that
fails, or retries once after a 401), as a real client does, and
runs the scenarios by weight. Every event it posts carries the run's source, so that the pipeline
check afterwards finds exactly this run's events; the events the API accepted with 201 are written to
--eventstream-report-dir when Locust quits. It also runs alone, with Locust's web UI:

    EVENTSTREAM_USERNAME=demo EVENTSTREAM_PASSWORD=... locust -f loadtest/locustfile.py --host "$API_URL"
"""

import csv
import json
import logging
import os
import random
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import gevent
from locust import FastHttpUser, constant, constant_throughput, events, stats
from locust.exception import RescheduleTask
from locust.stats import StatsCSV

from api import expires_at
from defaults import STATUS_MIX, WEIGHTS

STATS_QUERY = """query Stats($since: DateTime, $source: String) {
  stats(since: $since, bucket: MINUTE, source: $source) { start success info warning error total }
}"""
EVENTS_QUERY = """query Events($source: String) {
  events(filter: {source: $source}, first: 50) {
    totalCount nodes { id title status pipelineState } pageInfo { hasNextPage endCursor }
  }
}"""

# Answers that may come from API Gateway alone (throttled, integration failed or timed out): not
# counted as a function's, so that the wait for REPORT lines never waits for one that will not come.
GATEWAY_STATUSES = (429, 502, 504)

# The events the API accepted (id, status), shared by every user of this process: `get` reads them.
accepted: list[tuple[str, str]] = []
# Responses that came from a function rather than from API Gateway itself, per function: the cost
# projection waits until that many REPORT lines have reached CloudWatch Logs.
answered: Counter = Counter()


@events.init_command_line_parser.add_listener
def _(parser):
    parser.add_argument("--eventstream-username", env_var="EVENTSTREAM_USERNAME", default="demo",
                        help="user the simulated clients sign in as")
    parser.add_argument("--eventstream-password", env_var="EVENTSTREAM_PASSWORD", default="", is_secret=True,
                        help="that user's password (better passed as EVENTSTREAM_PASSWORD)")
    parser.add_argument("--eventstream-source", default=f"loadtest-{uuid.uuid4().hex[:8]}",
                        help="source of every posted event; unique per run")
    parser.add_argument("--eventstream-weights", default=json.dumps(WEIGHTS),
                        help="scenario weights, a JSON object")
    parser.add_argument("--eventstream-rate", type=float, default=1.0,
                        help="scenario runs per second per user; 0 runs them back to back")
    parser.add_argument("--eventstream-batch-size", type=int, default=50, help="events per batch post")
    parser.add_argument("--eventstream-max-requests", type=int, default=0,
                        help="stop the test after this many requests; 0 for no limit")
    parser.add_argument("--eventstream-renew-before", type=float, default=30,
                        help="renew the access token this many seconds before it expires")
    parser.add_argument("--eventstream-report-dir", default="", include_in_web_ui=False,
                        help="folder for the final stats (stats.csv, failures.csv, exceptions.csv) and, in "
                             "run.json, the accepted events and the requests each function answered")


@events.init.add_listener
def _(environment, **_):
    options = environment.parsed_options
    weights = {**WEIGHTS, **json.loads(options.eventstream_weights)}
    EventStreamUser.tasks = [SCENARIOS[name] for name, weight in weights.items() for _ in range(weight)]
    rate = options.eventstream_rate
    EventStreamUser.wait_time = constant_throughput(rate) if rate > 0 else constant(0)

    if options.eventstream_max_requests > 0:
        count = 0

        def stop_at_max(**_):
            nonlocal count
            count += 1
            if count == options.eventstream_max_requests:
                logging.info("--max-requests (%d) reached, shutting down", count)
                # From its own greenlet: quitting stops the users, and this listener runs in one of them.
                gevent.spawn(environment.runner.quit)

        environment.events.request.add_listener(stop_at_max)


@events.quitting.add_listener
def _(environment, **_):
    directory = environment.parsed_options.eventstream_report_dir
    if not directory:
        return
    # Locust's --csv files are rewritten once a second and miss the requests of the last one (those of
    # the users finishing their tasks at the stop among them); these are written once, final.
    tables = StatsCSV(environment, stats.PERCENTILES_TO_REPORT)
    for name, write in (("stats.csv", tables.requests_csv), ("failures.csv", tables.failures_csv),
                        ("exceptions.csv", tables.exceptions_csv)):
        with open(os.path.join(directory, name), "w", newline="") as file:
            write(csv.writer(file))
    with open(os.path.join(directory, "run.json"), "w") as file:
        json.dump({"events": accepted, "answered": answered}, file)


def failure_reason(response) -> str:
    """A failed request's reason, led by its HTTP status so that the summary can count them by status."""
    if not response.status_code:
        return f"no response: {response.error!r}"
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    return f"HTTP {response.status_code} {error.get('code', '')}".rstrip()


class EventStreamUser(FastHttpUser):
    """A client of the REST and GraphQL APIs; its tasks are set from the weights at init."""

    def on_start(self):
        self.access = self.refresh = ""
        self.expires = 0.0

    def sign_in(self):
        options = self.environment.parsed_options
        credentials = {"username": options.eventstream_username, "password": options.eventstream_password}
        tokens = self.expect("POST", "/api/token", "POST /api/token", 200, credentials, authorized=False)
        if tokens is None:
            raise RescheduleTask()
        self.access, self.refresh = tokens["access"], tokens["refresh"]
        self.expires = expires_at(self.access)

    def renew(self):
        # The API rotates refresh tokens: a refresh uses the one sent up (sending it again revokes the
        # whole login), and its answer carries the new pair. So the token is forgotten as it is sent,
        # and a failed refresh signs in again instead of trying it twice.
        tokens = None
        refresh, self.refresh = self.refresh, ""
        if refresh:
            tokens = self.expect("POST", "/api/token/refresh", "POST /api/token/refresh", 200,
                                 {"refresh": refresh}, authorized=False)
        if tokens is None:
            self.sign_in()
        else:
            self.access, self.refresh = tokens["access"], tokens["refresh"]
            self.expires = expires_at(self.access)

    def expect(self, method, path, name, status, body=None, authorized=True):
        """Sends one request and returns its JSON body when it has the expected status and no GraphQL
        errors, else None, recorded as a failure. With a token, it renews the token first when it is
        about to expire, and retries once after a 401."""
        if authorized and time.time() > self.expires - self.environment.parsed_options.eventstream_renew_before:
            self.renew()
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.access}"} if authorized else {}
            with self.client.request(method, path, name=name, json=body, headers=headers,
                                     catch_response=True) as response:
                if response.status_code and response.status_code not in GATEWAY_STATUSES:
                    answered["graphql" if path == "/graphql" else "ingest"] += 1
                if response.status_code != status:
                    response.failure(failure_reason(response))
                else:
                    try:
                        payload = response.json()
                    except ValueError:
                        response.failure(f"HTTP {status} body is not JSON")
                        return None
                    if not (isinstance(payload, dict) and payload.get("errors")):
                        return payload
                    codes = sorted({str(e.get("extensions", {}).get("code")) for e in payload["errors"]})
                    response.failure(f"HTTP {status} GraphQL {','.join(codes)}")
                    return None
            if not (authorized and response.status_code == 401 and attempt == 1):
                return None
            self.renew()
        return None

    def new_event(self, number: int) -> dict:
        status = random.choices(list(STATUS_MIX), weights=list(STATUS_MIX.values()))[0]
        return {
            "title": f"load test {status} {number}",
            "status": status,
            "source": self.environment.parsed_options.eventstream_source,
            "description": "posted by scripts/loadtest",
            "attributes": {"number": number},
        }

    def post_one(self):
        event = self.expect("POST", "/api/events", "POST /api/events", 201, self.new_event(0))
        if event is not None:
            accepted.append((event["id"], event["status"]))

    def post_batch(self):
        size = self.environment.parsed_options.eventstream_batch_size
        body = {"events": [self.new_event(number) for number in range(size)]}
        reply = self.expect("POST", "/api/events/batch", "POST /api/events/batch", 201, body)
        if reply is not None:
            accepted.extend((event["id"], event["status"]) for event in reply["events"])

    def list_events(self):
        source = self.environment.parsed_options.eventstream_source
        self.expect("GET", f"/api/events?source={source}&limit=50", "GET /api/events", 200)

    def get_event(self):
        if accepted:
            event_id, _ = random.choice(accepted)
            self.expect("GET", f"/api/events/{event_id}", "GET /api/events/{id}", 200)

    def query_stats(self):
        since = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat(timespec="seconds")
        variables = {"since": since, "source": self.environment.parsed_options.eventstream_source}
        self.expect("POST", "/graphql", "graphql stats", 200, {"query": STATS_QUERY, "variables": variables})

    def query_events(self):
        variables = {"source": self.environment.parsed_options.eventstream_source}
        self.expect("POST", "/graphql", "graphql events", 200, {"query": EVENTS_QUERY, "variables": variables})


SCENARIOS = {
    "single": EventStreamUser.post_one,
    "batch": EventStreamUser.post_batch,
    "list": EventStreamUser.list_events,
    "get": EventStreamUser.get_event,
    "stats": EventStreamUser.query_stats,
    "events": EventStreamUser.query_events,
}
