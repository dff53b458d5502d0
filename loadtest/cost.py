"""The AWS cost of a million events at the measured mix, from the functions' own REPORT lines.

Each function's REPORT lines in its CloudWatch Logs group (`/aws/lambda/<name>`) give its invocations,
billed milliseconds and memory size over the run's window; divided by the events the run posted,
they project requests and GB-seconds per million events, priced at the published rates below.
"""

import json
import re
import time
from dataclasses import dataclass

# AWS price list as of 2026-11, us-east-1, on-demand, first pricing tier, no free tier. Update all of
# them together, with the date, from https://aws.amazon.com/lambda/pricing/,
# https://aws.amazon.com/api-gateway/pricing/ and https://aws.amazon.com/sqs/pricing/.
PRICES_AS_OF = "2026-11"
LAMBDA_PER_REQUEST = 0.20 / 1e6
LAMBDA_PER_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
API_GATEWAY_REST_PER_REQUEST = 3.50 / 1e6
SQS_STANDARD_PER_REQUEST = 0.40 / 1e6

# The longest the projection waits for CloudWatch Logs to show the REPORT lines of the requests the
# functions answered: in AWS they arrive seconds after the invocation.
LOG_DELIVERY_SECONDS = 60

# Text logs write `REPORT RequestId: ...`; with LogFormat JSON, Lambda writes a `platform.report`
# record instead. The filter pattern asks for either; LocalStack ignores it and returns every line,
# so the parser still picks the REPORT lines out.
FILTER_PATTERN = '?"REPORT RequestId" ?"platform.report"'
TEXT_REPORT = re.compile(r"REPORT RequestId: .*?Billed Duration: (?P<billed>\d+) ms\s+Memory Size: (?P<memory>\d+) MB"
                         r"\s+Max Memory Used: (?P<used>\d+) MB")


@dataclass
class Usage:
    """One function's REPORT lines over the window, added up."""
    name: str
    invocations: int = 0
    billed_ms: int = 0
    memory_mb: int = 0
    max_used_mb: int = 0

    def add(self, billed_ms: int, memory_mb: int, used_mb: int) -> None:
        self.invocations += 1
        self.billed_ms += billed_ms
        self.memory_mb = max(self.memory_mb, memory_mb)
        self.max_used_mb = max(self.max_used_mb, used_mb)

    @property
    def gb_seconds(self) -> float:
        return self.billed_ms / 1000 * self.memory_mb / 1024


def parse_report(message: str) -> tuple[int, int, int] | None:
    """(billed ms, memory size MB, max memory used MB) of a REPORT line, text or JSON; None for other lines."""
    if match := TEXT_REPORT.search(message):
        return int(match["billed"]), int(match["memory"]), int(match["used"])
    if '"platform.report"' in message:
        metrics = json.loads(message)["record"]["metrics"]
        return metrics["billedDurationMs"], metrics["memorySizeMB"], metrics["maxMemoryUsedMB"]
    return None


def read_usage(logs, function: str, start: float, end: float) -> Usage:
    """The REPORT lines a function logged between `start` and `end` (Unix seconds)."""
    usage = Usage(function)
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=f"/aws/lambda/{function}", startTime=int(start * 1000), endTime=int(end * 1000),
        filterPattern=FILTER_PATTERN)
    try:
        for page in pages:
            for event in page["events"]:
                if report := parse_report(event["message"]):
                    usage.add(*report)
    except logs.exceptions.ResourceNotFoundException:
        pass  # a function never invoked has no log group yet
    return usage


def measure(logs, functions: dict[str, str], api_window: tuple[float, float],
            pipeline_window: tuple[float, float], answered: dict[str, int]) -> tuple[dict[str, Usage], dict[str, int]]:
    """Every function's usage: the API's functions over the load's window, once CloudWatch Logs holds
    a REPORT line for each request they answered (or LOG_DELIVERY_SECONDS passed), the pipeline's
    over the window that includes the pipeline check. Also returns the REPORT lines still missing."""
    deadline = time.monotonic() + LOG_DELIVERY_SECONDS
    while True:
        usages = {role: read_usage(logs, functions[role], *api_window) for role in answered}
        missing = {role: count - usages[role].invocations for role, count in answered.items()
                   if usages[role].invocations < count}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2)
    for role in functions.keys() - answered.keys():
        usages[role] = read_usage(logs, functions[role], *pipeline_window)
    return usages, missing


def projection(usages: dict[str, Usage], events: int, api_requests: int, handled_events: int) -> list[str]:
    """The cost table, per million events at the run's mix of writes and reads."""
    scale = 1e6 / events
    lines = [f"{'':<36}{'invocations':>12}{'per 1M events':>15}{'mean billed':>13}{'memory':>8}{'max used':>10}"
             f"{'GB-s per':>11}{'$ per 1M events':>22}",
             f"{'':<36}{'':>12}{'':>15}{'ms':>13}{'MB':>8}{'MB':>10}{'1M events':>11}{'x86_64':>11}{'arm64':>11}"]
    totals = {"x86_64": 0.0, "arm64": 0.0}
    for usage in usages.values():
        cost = {arch: scale * (usage.invocations * LAMBDA_PER_REQUEST + usage.gb_seconds * price)
                for arch, price in LAMBDA_PER_GB_SECOND.items()}
        for arch in totals:
            totals[arch] += cost[arch]
        mean = usage.billed_ms / usage.invocations if usage.invocations else 0
        lines.append(f"Lambda {usage.name:<29}{usage.invocations:>12,}{usage.invocations * scale:>15,.0f}{mean:>13.1f}"
                     f"{usage.memory_mb:>8}{usage.max_used_mb:>10}{usage.gb_seconds * scale:>11,.1f}"
                     f"{cost['x86_64']:>11.3f}{cost['arm64']:>11.3f}")
    # Sends: one per warning or error event (the bridge batches up to 10 when they come fast). Receives
    # and deletes: one of each per batch a handler was invoked with. Empty polls are a fixed cost per
    # poller, not per event.
    handler_batches = sum(usages[role].invocations for role in ("warning-handler", "error-handler"))
    sqs_requests = handled_events + 2 * handler_batches
    for name, requests, price in (("API Gateway REST requests", api_requests, API_GATEWAY_REST_PER_REQUEST),
                                  ("SQS requests (estimate)", sqs_requests, SQS_STANDARD_PER_REQUEST)):
        cost = scale * requests * price
        for arch in totals:
            totals[arch] += cost
        lines.append(f"{name:<36}{requests:>12,}{requests * scale:>15,.0f}{'':>42}{cost:>11.3f}{cost:>11.3f}")
    lines.append(f"{'total':<105}{totals['x86_64']:>11.3f}{totals['arm64']:>11.3f}")
    return lines
