"""Measures a function's cold starts and warm invokes through the Lambda Invoke API.

Each cold start is forced the way a deploy forces one: a configuration change, after which Lambda
(and LocalStack's executor) starts a new execution environment. The figures are Lambda's own, read
from the REPORT line of each invocation's log tail (`Init Duration`, `Duration`), beside the
round trip the client measured.
"""

import argparse
import base64
import json
import re
import statistics
import time
import uuid
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
REPORT = re.compile(r"REPORT RequestId: \S+\tDuration: (?P<duration>[\d.]+) ms.*?(Init Duration: (?P<init>[\d.]+) ms)?$", re.M)


def health_event() -> str:
    """The REST (v1) sample event, aimed at the health route: one database round trip."""
    event = json.loads((ROOT / "events" / "ingest-list-events-rest.json").read_text())
    event.update(path="/api/health", queryStringParameters=None, multiValueQueryStringParameters=None)
    return json.dumps(event)


def invoke(client, function: str, payload: str) -> tuple[float, float, float | None]:
    started = time.perf_counter()
    response = client.invoke(FunctionName=function, Payload=payload, LogType="Tail")
    round_trip = (time.perf_counter() - started) * 1000
    body = json.loads(response["Payload"].read())
    if response.get("FunctionError") or body.get("statusCode") != 200:
        raise SystemExit(f"invoke failed: {body}")
    report = REPORT.search(base64.b64decode(response["LogResult"]).decode())
    if not report:
        raise SystemExit("no REPORT line in the log tail")
    init = float(report["init"]) if report["init"] else None
    return round_trip, float(report["duration"]), init


def force_cold_start(client, function: str) -> None:
    config = client.get_function_configuration(FunctionName=function)
    variables = config.get("Environment", {}).get("Variables", {})
    variables["BENCHMARK_COLD_START"] = uuid.uuid4().hex
    client.update_function_configuration(FunctionName=function, Environment={"Variables": variables})
    client.get_waiter("function_updated_v2").wait(FunctionName=function)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<28} n={len(values):<4} median {statistics.median(values):7.2f} ms   "
            f"p90 {percentile(values, 0.9):7.2f} ms   p99 {percentile(values, 0.99):7.2f} ms   max {max(values):7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", default="eventstream-ingest")
    parser.add_argument("--cold", type=int, default=20, help="cold starts to measure")
    parser.add_argument("--warm", type=int, default=200, help="warm invokes to measure")
    args = parser.parse_args()
    client = boto3.client("lambda")
    payload = health_event()

    inits, cold_durations, cold_round_trips = [], [], []
    for _ in range(args.cold):
        force_cold_start(client, args.function)
        round_trip, duration, init = invoke(client, args.function, payload)
        if init is None:
            raise SystemExit("a forced cold start reported no Init Duration")
        inits.append(init)
        cold_durations.append(duration)
        cold_round_trips.append(round_trip)

    invoke(client, args.function, payload)  # the environment the last cold start left is now warm
    warm = [invoke(client, args.function, payload) for _ in range(args.warm)]

    print(f"function {args.function}, route GET /api/health (one SELECT 1), REPORT lines of each invocation")
    print(summary("cold start: Init Duration", inits))
    print(summary("cold start: first Duration", cold_durations))
    print(summary("cold start: client round trip", cold_round_trips))
    print(summary("warm: Duration", [d for _, d, _ in warm]))
    print(summary("warm: client round trip", [r for r, _, _ in warm]))


if __name__ == "__main__":
    main()
