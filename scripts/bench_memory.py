"""Peak memory of each function over a past period, from the REPORT lines in CloudWatch Logs.

Run after a load (scripts/bench-pipeline, the load test) with the time it started: every REPORT
line since then gives `Max Memory Used` (the executor's reading of the bootstrap process's VmHWM,
its peak resident memory), so the largest is the function's peak under that load.
"""

import argparse
import re
import time

import boto3

from bench_pipeline import settings

MEMORY_TARGET_MB = 40
REPORT = re.compile(r"^REPORT .*?\tDuration: (?P<duration>[\d.]+) ms.*?\tMax Memory Used: (?P<memory>\d+) MB", re.M)
FUNCTIONS = ["INGEST_FUNCTION", "GRAPHQL_FUNCTION", "DISPATCH_FUNCTION", "WARNING_HANDLER_FUNCTION", "ERROR_HANDLER_FUNCTION"]


def reports(logs, function: str, since: float) -> list[tuple[float, int]]:
    found = []
    request = {"logGroupName": f"/aws/lambda/{function}", "startTime": int(since * 1000), "filterPattern": "REPORT"}
    while True:
        try:
            page = logs.filter_log_events(**request)
        except logs.exceptions.ResourceNotFoundException:
            return found
        for event in page["events"]:
            found += [(float(m["duration"]), int(m["memory"])) for m in REPORT.finditer(event["message"])]
        if not page.get("nextToken"):
            return found
        request["nextToken"] = page["nextToken"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", type=float, default=time.time() - 3600,
                        help="Unix time the load started (default: an hour ago)")
    parser.add_argument("--what", default="the period", help="what ran in the period, for the heading")
    args = parser.parse_args()
    stack = settings()
    logs = boto3.client("logs")
    print(f"peak memory per function over {args.what}, from its REPORT lines (target <= {MEMORY_TARGET_MB} MB)")
    for key in FUNCTIONS:
        function = stack[key]
        found = reports(logs, function, args.since)
        if not found:
            print(f"  {function:<30} no invocations")
            continue
        peak = max(memory for _, memory in found)
        verdict = "met" if peak <= MEMORY_TARGET_MB else "MISSED"
        print(f"  {function:<30} {len(found):5d} invocations   max Duration {max(d for d, _ in found):8.2f} ms   "
              f"peak Max Memory Used {peak:3d} MB   {verdict}")


if __name__ == "__main__":
    main()
