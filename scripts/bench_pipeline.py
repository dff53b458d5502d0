"""Ingest-to-email latency of the local stack, per error event, with the throughput of the run.

An event's start is its `received_at` (the server's clock at commit); its end is its email's
`sentAt`, which the error handler records once the SMTP sink accepted the email, read back through
GraphQL: both are PostgreSQL's clock, to the microsecond. maildev's own receipt time has only
one-second resolution, so it serves to check that each email arrived, once, not to time it. With --rate the events arrive
paced, as a producer sends them (the latency target's case); without, in one burst (a backlog).
"""

import argparse
import json
import statistics
import time
import urllib.request
import uuid
from datetime import datetime

import stack_settings


def settings() -> dict:
    """The local stack's settings: the benchmarks measure only that stack."""
    settings = stack_settings.read()
    if not settings:
        raise SystemExit(f"error: {stack_settings.STACK_ENV} is missing; run scripts/up")
    return settings


def call(url: str, body=None, token=None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


SENT_TIMES = """query Sent($source: String!, $after: String) {
  events(filter: {source: $source}, first: 500, after: $after) {
    nodes { id notifications { state sentAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def sent_times(graphql_url: str, token: str, source: str) -> dict[str, float]:
    """When each event's email was sent, by event id, from the events of `source`."""
    sent: dict[str, float] = {}
    after = None
    while True:
        answer = call(graphql_url, {"query": SENT_TIMES, "variables": {"source": source, "after": after}}, token)
        if answer.get("errors"):
            raise SystemExit(f"GraphQL answered {answer['errors']}")
        page = answer["data"]["events"]
        for node in page["nodes"]:
            times = [parse_time(n["sentAt"]) for n in node["notifications"] if n["state"] == "SENT" and n["sentAt"]]
            if times:
                sent[node["id"]] = min(times)
        if not page["pageInfo"]["hasNextPage"]:
            return sent
        after = page["pageInfo"]["endCursor"]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0,
                        help="events per second to post, in batches of --batch; 0 posts them all at once")
    parser.add_argument("--deadline", type=float, default=300, help="seconds to wait for the emails")
    args = parser.parse_args()
    if args.events < 1 or args.batch < 1 or args.rate < 0:
        parser.error("--events and --batch must be positive, --rate not negative")
    stack = settings()
    api = stack["API_URL"] + "/api"
    token = call(f"{api}/token", {"username": stack["DEMO_USERNAME"], "password": stack["DEMO_PASSWORD"]})["access"]

    run = uuid.uuid4().hex[:8]
    received: dict[str, float] = {}
    started = time.time()
    for first in range(0, args.events, args.batch):
        if args.rate:
            # Paced by the schedule, not by how long the previous post took.
            time.sleep(max(0.0, started + first / args.rate - time.time()))
        count = min(args.batch, args.events - first)
        events = [{"title": f"bench {run} {first + i}", "status": "error", "source": f"bench-{run}"} for i in range(count)]
        for event in call(f"{api}/events/batch", {"events": events}, token)["events"]:
            received[event["id"]] = parse_time(event["received_at"])
    posted = time.time() - started

    arrived: set[str] = set()
    deadline = time.time() + args.deadline
    while len(arrived) < len(received) and time.time() < deadline:
        with urllib.request.urlopen(stack["MAIL_API"].rstrip("/") + "/api/email", timeout=30) as response:
            for mail in json.loads(response.read()):
                # The error handler's Message-ID is <event-id@eventstream>; maildev 3 gives it among the headers.
                message_id = mail.get("messageId") or mail.get("headers", {}).get("message-id", "")
                event_id = message_id.strip("<>").partition("@")[0]
                if event_id in received:
                    arrived.add(event_id)
        time.sleep(0.5)
    if len(arrived) < len(received):
        raise SystemExit(f"only {len(arrived)} of {len(received)} emails arrived within {args.deadline}s")

    token = call(f"{api}/token", {"username": stack["DEMO_USERNAME"], "password": stack["DEMO_PASSWORD"]})["access"]
    emailed = sent_times(stack["API_URL"] + "/graphql", token, f"bench-{run}")
    if emailed.keys() != received.keys():
        raise SystemExit(f"{len(emailed)} of {len(received)} events have a sent email recorded")

    latencies = [emailed[event_id] - received[event_id] for event_id in received]
    drained = max(emailed.values()) - min(received.values())
    pace = f"at {args.rate:g} events/s" if args.rate else "at once"
    print(f"{len(received)} error events in batches of {args.batch} {pace}, posted in {posted:.2f} s through the API Gateway")
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    print(f"ingest -> email: p50 {p50:.2f} s   p99 {p99:.2f} s   max {max(latencies):.2f} s")
    if args.rate:
        verdict = "met" if p50 < 2 and p99 < 5 else "MISSED"
        print(f"target: p50 < 2 s and p99 < 5 s locally, over at least 500 events: {verdict}"
              + ("" if len(received) >= 500 else f" (only {len(received)} events)"))
    print(f"first receipt to last email: {drained:.2f} s ({len(received) / drained:.0f} events/s end to end)")


if __name__ == "__main__":
    main()
