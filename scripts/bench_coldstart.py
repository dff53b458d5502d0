"""Cold starts and peak memory of every function of the stack, from Lambda's own REPORT lines.

Each cold start is forced the way a deploy forces one (a configuration change; see bench_lambda.py)
and timed by the REPORT line's `Init Duration`. Then each function's warm environment takes a few
heavy but valid invocations, and its `Max Memory Used` (the executor reads the bootstrap process's
VmHWM, its peak resident memory, as Lambda reports the sandbox's) is the peak under load.

The payloads are the fixtures in events/, made valid for this stack and harmless to it: a real
access token for the HTTP functions, a sweep for dispatch, and for the RabbitMQ batch and the SQS
handlers the ids of events the pipeline already finished, so nothing is parked, routed or emailed
again.
"""

import argparse
import base64
import json
import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone

import boto3

from bench_lambda import REPORT, ROOT, force_cold_start, percentile
from bench_pipeline import call, settings

INIT_TARGET_MS = 20.0
MEMORY_TARGET_MB = 40
MEMORY = "Max Memory Used: "
# A fresh stack's first events pass through the whole pipeline within seconds.
SEED_DEADLINE_SECONDS = 120


def fixture(name: str) -> dict:
    return json.loads((ROOT / "events" / name).read_text())


def rest(name: str, token: str, **changes) -> dict:
    """A REST (v1) proxy fixture with the token in both header maps."""
    event = fixture(name)
    for headers, value in ((event["headers"], f"Bearer {token}"), (event["multiValueHeaders"], [f"Bearer {token}"])):
        headers["Authorization"] = value
    if "body" in changes:
        for headers, value in ((event["headers"], "application/json"), (event["multiValueHeaders"], ["application/json"])):
            headers["Content-Type"] = value
    event.update(changes)
    return event


def finished_events(api: str, token: str, status: str, count: int) -> list[dict]:
    """Events of `status` the pipeline already processed: redelivering them changes nothing. A
    stack that has processed none yet (a fresh one) is given ten and waited for."""
    done = processed(api, token, status)
    if not done:
        seeded = [{"title": f"bench cold start {status} {i}", "status": status, "source": "bench-coldstart"} for i in range(10)]
        ids = {event["id"] for event in call(f"{api}/events/batch", {"events": seeded}, token)["events"]}
        deadline = time.time() + SEED_DEADLINE_SECONDS
        while not ids <= {event["id"] for event in done}:
            if time.time() > deadline:
                raise SystemExit(f"the stack did not process 10 {status} events within {SEED_DEADLINE_SECONDS} s")
            time.sleep(0.5)
            done = processed(api, token, status)
    return (done * count)[:count]


def processed(api: str, token: str, status: str) -> list[dict]:
    page = call(f"{api}/events?status={status}&limit=500", token=token)["events"]
    return [event for event in page if event["pipeline_state"] == "processed"]


def message(event: dict) -> str:
    return json.dumps({"schema": 1, "event_id": event["id"], "status": event["status"], "source": event["source"],
                       "title": event["title"], "received_at": event["received_at"]})


def sqs_event(name: str, events: list[dict]) -> dict:
    payload = fixture(name)
    template = payload["Records"][0]
    payload["Records"] = [dict(template, messageId=str(uuid.uuid4()), body=message(event)) for event in events]
    return payload


def rabbitmq_event(events: list[dict]) -> dict:
    payload = fixture("dispatch-rabbitmq.json")
    (queue, deliveries), = payload["rmqMessagesByQueue"].items()
    template = deliveries[0]
    payload["rmqMessagesByQueue"] = {queue: [
        dict(template, data=base64.b64encode(message(event).encode()).decode(),
             basicProperties=dict(template["basicProperties"], messageId=event["id"]))
        for event in events
    ]}
    return payload


def payloads(stack: dict) -> dict[str, tuple[dict, list[tuple[str, dict]]]]:
    """Per function: the cold-start payload, and the load payloads (name, payload)."""
    api = stack["API_URL"] + "/api"
    token = call(f"{api}/token", {"username": stack["DEMO_USERNAME"], "password": stack["DEMO_PASSWORD"]})["access"]
    errors = finished_events(api, token, "error", 10)
    warnings = finished_events(api, token, "warning", 10)
    any_finished = finished_events(api, token, "error", 100)
    since = (datetime.now(timezone.utc) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Info events: dispatch finishes them without a handler, so they load ingest and nothing else.
    batch = {"events": [{"title": f"bench memory {i}", "status": "info", "source": "bench-coldstart",
                         "attributes": {"sequence": i}} for i in range(500)]}
    heavy_query = {"query": """query Heavy($since: DateTime!) {
        stats(since: $since, bucket: HOUR) { start success info warning error total }
        statusCounts(since: $since) { status count }
        topSources(limit: 20) { source count }
        pipeline { received dispatched processed oldestUndispatchedAgeSeconds emailsSent emailsFailed deadLetters }
        events(first: 500) { totalCount nodes { id title description status source attributes receivedAt pipelineState
                             routing { handler } processing { processedAt } notifications { state sentAt } } }
    }""", "variables": {"since": since}}
    token_request = fixture("login-obtain-token-rest.json")
    token_request["body"] = json.dumps({"username": stack["DEMO_USERNAME"], "password": stack["DEMO_PASSWORD"]})
    return {
        "INGEST_FUNCTION": (
            rest("ingest-list-events-rest.json", token),
            [("POST /api/events/batch, 500 info events", rest("ingest-create-batch-rest.json", token, body=json.dumps(batch))),
             ("GET /api/events?limit=500", rest("ingest-list-events-rest.json", token,
                                                queryStringParameters={"limit": "500"},
                                                multiValueQueryStringParameters={"limit": ["500"]}))],
        ),
        "LOGIN_FUNCTION": (
            token_request,
            [("POST /api/token (argon2id password check)", token_request)],
        ),
        "GRAPHQL_FUNCTION": (
            rest("graphql-query-rest.json", token, body=json.dumps(
                dict(json.loads(fixture("graphql-query-rest.json")["body"]), variables={"since": since}))),
            [("stats, counts, sources, pipeline and a 500-event page", rest("graphql-query-rest.json", token,
                                                                            body=json.dumps(heavy_query)))],
        ),
        "DISPATCH_FUNCTION": (
            fixture("dispatch-sweep.json"),
            [("RabbitMQ batch of 100 already-routed events", rabbitmq_event(any_finished))],
        ),
        "WARNING_HANDLER_FUNCTION": (
            sqs_event("warning-handler-sqs.json", warnings[:1]),
            [("SQS batch of 10 recorded warnings", sqs_event("warning-handler-sqs.json", warnings))],
        ),
        "ERROR_HANDLER_FUNCTION": (
            sqs_event("error-handler-sqs.json", errors[:1]),
            [("SQS batch of 10 emailed errors", sqs_event("error-handler-sqs.json", errors))],
        ),
    }


def invoke(client, function: str, payload: dict) -> dict:
    """Invokes and checks the answer; returns the REPORT line's figures."""
    response = client.invoke(FunctionName=function, Payload=json.dumps(payload), LogType="Tail")
    body = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        raise SystemExit(f"{function} failed: {body}")
    if isinstance(body, dict) and "statusCode" in body and body["statusCode"] >= 300:
        raise SystemExit(f"{function} answered {body['statusCode']}: {body.get('body', '')[:300]}")
    if isinstance(body, dict) and "statusCode" in body and '"errors"' in (body.get("body") or ""):
        raise SystemExit(f"{function} answered GraphQL errors: {body['body'][:300]}")
    if isinstance(body, dict) and body.get("batchItemFailures"):
        raise SystemExit(f"{function} reported failed records: {body['batchItemFailures']}")
    logs = base64.b64decode(response["LogResult"]).decode(errors="replace")
    report = REPORT.search(logs)
    if not report:
        raise SystemExit(f"{function}: no REPORT line in the log tail")
    memory = logs[logs.index(MEMORY) + len(MEMORY):].split(" ", 1)[0] if MEMORY in logs else None
    return {"init": float(report["init"]) if report["init"] else None, "duration": float(report["duration"]),
            "memory": int(memory) if memory else None}


def line(name: str, values: list[float], unit: str = "ms") -> str:
    return (f"  {name:<26} n={len(values):<3} median {statistics.median(values):7.2f} {unit}   "
            f"p90 {percentile(values, 0.9):7.2f} {unit}   max {max(values):7.2f} {unit}")


def load() -> str:
    return open("/proc/loadavg").read().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=20, help="cold starts per function (default 20)")
    parser.add_argument("--load", type=int, default=5,
                        help="invocations of each load payload (default 5; ingest's stores 500 info events each)")
    parser.add_argument("--only", help="only the functions whose name contains this text (e.g. ingest)")
    args = parser.parse_args()
    stack = settings()
    client = boto3.client("lambda")
    cases = payloads(stack)

    summary = []
    for key, (cold_payload, load_payloads) in cases.items():
        function = stack[key]
        if args.only and args.only not in function:
            continue
        started_load = load()
        inits, firsts, cold_memory = [], [], []
        for _ in range(args.cold):
            force_cold_start(client, function)
            report = invoke(client, function, cold_payload)
            if report["init"] is None:
                raise SystemExit(f"{function}: a forced cold start reported no Init Duration")
            inits.append(report["init"])
            firsts.append(report["duration"])
            if report["memory"]:
                cold_memory.append(report["memory"])
        print(f"{function}: {args.cold} cold starts (load average {started_load} -> {load()})", flush=True)
        print(line("Init Duration", inits))
        print(line("first invocation Duration", firsts))
        peak = max(cold_memory, default=0)
        for name, payload in load_payloads:
            durations = []
            for _ in range(args.load):
                report = invoke(client, function, payload)
                durations.append(report["duration"])
                peak = max(peak, report["memory"] or 0)
            print(f"  warm, {name}:")
            print(line("Duration", durations))
        init_ok = statistics.median(inits) <= INIT_TARGET_MS
        memory_ok = 0 < peak <= MEMORY_TARGET_MB
        print(f"  Max Memory Used after the cold starts {max(cold_memory, default=0)} MB, after the load {peak} MB")
        summary.append((function, statistics.median(inits), percentile(inits, 0.9), peak, init_ok, memory_ok))

    print(f"\nsummary (targets: median Init Duration <= {INIT_TARGET_MS:.0f} ms, peak memory <= {MEMORY_TARGET_MB} MB)")
    print(f"  {'function':<30} {'init median':>12} {'init p90':>10} {'peak memory':>12}")
    for function, median, p90, peak, init_ok, memory_ok in summary:
        print(f"  {function:<30} {median:9.2f} ms {p90:7.2f} ms {peak:9d} MB   "
              f"init {'met' if init_ok else 'MISSED'}, memory {'met' if memory_ok else 'MISSED'}")


if __name__ == "__main__":
    main()
