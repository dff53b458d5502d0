"""Single events through the local stack's API Gateway with wrk, beside a baseline in the same minute.

Each round runs, for every concurrency in turn: POST /api/events through the stack's API Gateway
(API_URL in .local/stack.env, a fresh token from its login route before each phase), then, when
given, the baseline (--baseline-url with its own wrk script, e.g. the original Django application:
it is not ours, so its URL and script come from the caller), then the same events straight into
the ingest function through LocalStack's Lambda Invoke API (the emulator's Lambda path without its
API Gateway). The ratio of each round pairs phases measured within a minute of each other.

The events are success and info only (no emails); before each phase the stack's `dispatch` queue
is given up to --drain-seconds to empty (RabbitMQ's management API), so that routing the previous
phase's events does not share the cores with the next; at the end the run's events are deleted
from the stack's database.
"""

import argparse
import base64
import json
import os
import re
import shlex
import statistics
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import stack_settings
from bench_pipeline import call

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_gateway.lua"
TARGET_RATIO = 2.0  # the issue: at 16 in flight, at least twice the Django application's rate
STRETCH_RATE = 300.0
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
GATEWAY, BASELINE, INVOKE = "stack API Gateway", "baseline", "stack Lambda Invoke"


def login(api_url: str, username: str, password: str) -> str:
    return call(f"{api_url}/api/token", {"username": username, "password": password})["access"]


def event_bodies(source: str) -> list[str]:
    """Nine success and one info event: the ingest path is the same for every status, and warning
    and error events would go on to SQS, the handlers and email during the next phases."""
    statuses = ["success"] * 9 + ["info"]
    return [
        json.dumps({
            "title": f"Evento gerado - {status}",
            "description": f"Simulação automática de evento com status: {status}",
            "status": status,
            "source": source,
        }, ensure_ascii=False)
        for status in statuses
    ]


def invoke_bodies(bodies: list[str], token: str) -> list[str]:
    """The same events as API Gateway REST proxy events, as the ingest function receives them."""
    template = json.loads((ROOT / "events" / "ingest-create-event-rest.json").read_text())
    events = []
    for body in bodies:
        event = json.loads(json.dumps(template).replace("REPLACE_WITH_ACCESS_TOKEN", token))
        event["body"] = body
        events.append(json.dumps(event, ensure_ascii=False))
    return events


def parse_wrk(output: str) -> dict:
    """Rate, p50 and p99 from wrk's --latency report, and the responses that were not as expected."""
    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
        return float(match[1]) * UNITS_MS[match[2]] if match else float("nan")

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not rate:
        raise SystemExit(f"wrk printed no rate:\n{output}")
    bad = sum(int(n) for n in re.findall(r"^\s+Non-2xx or 3xx responses: (\d+)", output, re.M))
    bad += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    result = {"rate": float(rate[1]), "p50": latency("50"), "p99": latency("99"), "bad": bad}
    if (last := output.strip().splitlines()[-1]).startswith("{"):  # bench_gateway.lua's own summary
        summary = json.loads(last)
        result["bad"] = summary["unexpected"] + summary["socket_errors"]
    return result


def run_wrk(url: str, connections: int, seconds: int, script: Path, env: dict[str, str]) -> dict:
    load = Path("/proc/loadavg").read_text().split()[0]
    started = time.strftime("%H:%M:%S", time.gmtime())
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
               "--latency", "-s", str(script), url]
    completed = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True,
                               timeout=seconds + 60, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"wrk failed ({completed.returncode}): {completed.stderr or completed.stdout}")
    return {**parse_wrk(completed.stdout), "load": load, "at": started}


def dispatch_backlog(queue: str) -> int | None:
    """Messages in the stack's dispatch queue, from RabbitMQ's management API; None without it."""
    request = urllib.request.Request(f"http://127.0.0.1:15672/api/queues/%2F/{urllib.parse.quote(queue)}")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(json.loads(response.read()).get("messages") or 0)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def wait_for_drain(queue: str, limit: float) -> None:
    if limit <= 0:
        return
    deadline = time.monotonic() + limit
    while (backlog := dispatch_backlog(queue)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if backlog:
        print(f"    {backlog} messages still in {queue} after {limit:.0f} s; going on")


def delete_events(function_database_url: str, source: str, limit: float) -> None:
    """Deletes the run's events once the stack has routed them (or `limit` passed): success and
    info events, so a routing is all the pipeline recorded of them. The connection settings go to
    psql through its environment, not its command line."""
    url = urllib.parse.urlsplit(function_database_url)
    env = {**os.environ, "PGHOST": url.hostname or "127.0.0.1", "PGPORT": str(url.port or 5432),
           "PGUSER": urllib.parse.unquote(url.username or ""), "PGPASSWORD": urllib.parse.unquote(url.password or ""),
           "PGDATABASE": url.path.lstrip("/")}
    psql = ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-v", f"source={source}"]
    waiting = "SELECT count(*) FROM events WHERE source = :'source' AND pipeline_state = 'received'"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        left = subprocess.run(psql, input=waiting, env=env, capture_output=True, text=True, timeout=30, check=True)
        if left.stdout.strip() == "0":
            break
        time.sleep(0.5)
    delete = """WITH doomed AS (SELECT id FROM events WHERE source = :'source'),
         routings AS (DELETE FROM event_routings WHERE event_id IN (SELECT id FROM doomed))
       DELETE FROM events WHERE id IN (SELECT id FROM doomed)"""
    subprocess.run(psql, input=delete, env=env, capture_output=True, text=True, timeout=60, check=True)
    print(f"deleted the run's events (source {source}) from the stack's database")


def run_baseline(args: argparse.Namespace, connections: int) -> dict:
    if args.baseline_prepare:
        subprocess.run(shlex.split(args.baseline_prepare), capture_output=True, timeout=120, check=True)
    return run_wrk(args.baseline_url, connections, args.seconds, args.baseline_script.resolve(), {})


def line(name: str, connections: int, phase: dict) -> str:
    bad = f"   {phase['bad']} unexpected responses: NOT VALID" if phase["bad"] else ""
    return (f"  {phase['at']}  {name:<26} c{connections:<3} {phase['rate']:8.1f} req/s   p50 {phase['p50']:8.1f} ms"
            f"   p99 {phase['p99']:8.1f} ms   load {phase['load']}{bad}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="seconds per phase (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of alternating phases (default 2)")
    parser.add_argument("--connections", default="16,2", help="requests in flight, in turn (default 16,2)")
    parser.add_argument("--baseline-url", help="the baseline's URL, e.g. http://127.0.0.1:8000/api/eventos/")
    parser.add_argument("--baseline-script", type=Path, help="the baseline's wrk script (its own body and token)")
    parser.add_argument("--baseline-prepare", metavar="COMMAND",
                        help="run before each baseline phase, e.g. to renew the token its script reads")
    parser.add_argument("--no-invoke", action="store_true", help="skip the Lambda Invoke API phases")
    parser.add_argument("--drain-seconds", type=float, default=60,
                        help="longest wait for the dispatch queue before a phase, 0 for none (default 60)")
    parser.add_argument("--settings", type=Path, default=stack_settings.STACK_ENV,
                        help="the stack's settings file (default .local/stack.env)")
    args = parser.parse_args()
    if bool(args.baseline_url) != bool(args.baseline_script):
        parser.error("--baseline-url and --baseline-script go together")
    settings = stack_settings.read(path=args.settings)
    if not settings:
        raise SystemExit(f"error: {args.settings} is missing; run scripts/up")
    api_url, endpoint = settings["API_URL"], settings["AWS_ENDPOINT_URL"]
    function, region = settings["INGEST_FUNCTION"], settings.get("AWS_REGION") or "us-east-1"
    lam = stack_settings.aws_client("lambda", endpoint, region)
    variables = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    dispatch_queue = variables.get("AMQP_QUEUE_PREFIX", "") + "dispatch"
    source = f"bench-gateway-{uuid.uuid4().hex[:8]}"
    bodies = event_bodies(source)
    invoke_url = f"{endpoint}/2015-03-31/functions/{function}/invocations"
    # LocalStack reads the account and region from the credential scope; it checks no signature.
    invoke_authorization = (f"AWS4-HMAC-SHA256 Credential=test/20260101/{region}/lambda/aws4_request, "
                            "SignedHeaders=host, Signature=0")
    concurrencies = [int(c) for c in args.connections.split(",")]

    def phases(connections: int) -> list[tuple[str, Callable[[], dict]]]:
        """This concurrency's phases, in turn, with a token fresh for all of them (tokens live 5 minutes)."""
        token = login(api_url, settings["DEMO_USERNAME"], settings["DEMO_PASSWORD"])
        gateway_env = {"BENCH_BODIES": "\n".join(bodies), "BENCH_AUTHORIZATION": f"Bearer {token}",
                       "BENCH_STATUS": "201"}
        chosen = [(GATEWAY, lambda: run_wrk(f"{api_url}/api/events", connections, args.seconds, SCRIPT, gateway_env))]
        if args.baseline_url:
            chosen.append((BASELINE, lambda: run_baseline(args, connections)))
        if not args.no_invoke:
            invoke_env = {"BENCH_BODIES": "\n".join(invoke_bodies(bodies, token)),
                          "BENCH_AUTHORIZATION": invoke_authorization, "BENCH_STATUS": "200",
                          "BENCH_BODY_MATCH": '"statusCode":%s*201[,}]'}
            chosen.append((INVOKE, lambda: run_wrk(invoke_url, connections, args.seconds, SCRIPT, invoke_env)))
        return chosen

    print(f"POST {api_url}/api/events, {args.seconds} s per phase, {args.rounds} rounds, events tagged {source}")
    results: dict[tuple[str, int], list[dict]] = {}
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}")
        for connections in concurrencies:
            for name, run in phases(connections):
                wait_for_drain(dispatch_queue, args.drain_seconds)
                phase = run()
                results.setdefault((name, connections), []).append(phase)
                print(line(name, connections, phase), flush=True)
            if args.baseline_url:
                gateway, baseline = results[(GATEWAY, connections)][-1], results[(BASELINE, connections)][-1]
                print(f"    ratio, gateway / baseline: {gateway['rate'] / baseline['rate']:.2f}x the rate, "
                      f"{gateway['p50'] / baseline['p50']:.2f}x the p50")

    print("summary (median of the rounds)")
    for (name, connections), phases in results.items():
        median = {key: statistics.median(p[key] for p in phases) for key in ("rate", "p50", "p99")}
        print(f"  {name:<26} c{connections:<3} {median['rate']:8.1f} req/s   p50 {median['p50']:8.1f} ms   "
              f"p99 {median['p99']:8.1f} ms")
    if args.baseline_url and 16 in concurrencies:
        ratios = [g["rate"] / b["rate"] for g, b in zip(results[(GATEWAY, 16)], results[(BASELINE, 16)])]
        rate = statistics.median(g["rate"] for g in results[(GATEWAY, 16)])
        verdict = "met" if min(ratios) >= TARGET_RATIO else "MISSED"
        print(f"target, 16 in flight: >= {TARGET_RATIO:.0f}x the baseline's rate in the same minute: "
              f"{', '.join(f'{r:.2f}x' for r in ratios)}: {verdict}; stretch {STRETCH_RATE:.0f} req/s: "
              f"{rate:.1f} ({'met' if rate >= STRETCH_RATE else 'not met'})")
    delete_events(variables["DATABASE_URL"], source, args.drain_seconds)
    if any(p["bad"] for phases in results.values() for p in phases):
        raise SystemExit("some phases had unexpected responses: their figures are not valid")


if __name__ == "__main__":
    main()
