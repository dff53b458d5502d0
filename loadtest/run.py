"""Load test of an EventStream stack with Locust, then a check of the pipeline and a cost projection.

Simulated clients sign in, renew their tokens as real clients do, and run weighted scenarios against
the REST and GraphQL APIs, for a bounded time and number of requests. Locust prints live progress;
at the end come a summary per scenario, an HTML report with charts and the CSV stats (in
--report-dir). Then the pipeline check: every event the API accepted must be stored and routed, and
every error event must have produced one email. Last, the projected AWS cost per million events,
from the functions' REPORT lines and the published prices.
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import cost
import pipeline
from api import Api, ApiError
from defaults import SCENARIO_REQUESTS, STATUS_MIX, WEIGHTS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.append(str(ROOT / "scripts"))
import stack_settings  # noqa: E402  (scripts/, on the path just above)

FUNCTIONS = ("ingest", "graphql", "dispatch", "warning-handler", "error-handler")

EPILOG = f"""
scenarios (--weights NAME=WEIGHT,...; a weight of 0 leaves a scenario out):
{chr(10).join(f"  {name:<8} {WEIGHTS[name]:>2}  {request}" for name, request in SCENARIO_REQUESTS.items())}
  Posted events are {', '.join(f'{share}% {status}' for status, share in STATUS_MIX.items())}, each with
  the run's own source (loadtest-<run id>). Every response is checked: a 2xx other than the one
  expected, or a GraphQL answer with errors, counts as a failure.

tokens: each simulated user signs in (POST /api/token), renews its token pair with the refresh
  token --renew-before seconds before the access token expires, keeping the new refresh token of
  each answer (and signs in again when that fails), and after a 401 renews and retries once. These requests are part of the figures.

target and credentials, first found wins:
  URL       --url, $API_URL, API_URL in .local/stack.env (written by scripts/up)
  user      --username, $EVENTSTREAM_USERNAME, $DEMO_USERNAME, the demo user of .local/stack.env
  password  $EVENTSTREAM_PASSWORD, $DEMO_PASSWORD, the demo user of .local/stack.env (never an
            argument: every user of the machine can read a command line)
  The rest of .local/stack.env (MAIL_API, AWS_ENDPOINT_URL, the function names) applies only when
  the URL is that stack's. Elsewhere: $MAIL_API for the mail check (skipped without it),
  $INGEST_FUNCTION, $GRAPHQL_FUNCTION, $DISPATCH_FUNCTION, $WARNING_HANDLER_FUNCTION and
  $ERROR_HANDLER_FUNCTION (default <--stack-name>-ingest and so on), and the usual AWS credentials
  and region for CloudWatch Logs ($AWS_ENDPOINT_URL for LocalStack).

what it writes to --report-dir: report.html (Locust's report, with charts of requests/s, response
  times and users over the run), stats.csv, failures.csv and exceptions.csv (Locust's CSV stats,
  final), stats.json (Locust's JSON stats), run.json (the accepted events).

cost: invocations, billed duration and memory of each function come from its REPORT lines in
  /aws/lambda/<function> over the run's window (every invocation in it, other clients' too), and are
  priced at the AWS price list as of {cost.PRICES_AS_OF} (us-east-1; constants in loadtest/cost.py).
  On LocalStack the functions run as local processes: their durations are a local emulation.

exit status: 0 when the run is complete; 1 when events were lost, too many requests failed
  (--max-error-rate) or the cost could not be read; 2 when the run could not start or the load
  tool failed.

examples:
  scripts/loadtest --users 4 --spawn-rate 2 --run-time 20s
  scripts/loadtest --users 50 --spawn-rate 5 --run-time 5m --rate 2 --weights batch=5,get=0
  EVENTSTREAM_PASSWORD=... scripts/loadtest --url https://<id>.execute-api.eu-west-1.amazonaws.com/live \\
      --username loadtest --users 20 --run-time 2m --max-error-rate 1
"""


def seconds(text: str) -> int:
    """A duration like 90, 90s, 5m or 1h30m, in seconds."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not text.strip() or not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 5m, 1h30m)")
    hours, minutes, secs = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + secs


def weights(text: str) -> dict[str, int]:
    chosen = dict(WEIGHTS)
    for pair in filter(None, text.split(",")):
        name, _, weight = pair.partition("=")
        if name.strip() not in WEIGHTS or not weight.strip().isdigit():
            raise argparse.ArgumentTypeError(f"{pair!r} is not NAME=WEIGHT with NAME one of {', '.join(WEIGHTS)}")
        chosen[name.strip()] = int(weight)
    if not any(chosen.values()):
        raise argparse.ArgumentTypeError("every weight is 0")
    return chosen


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value
    return parse


def batch_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 500:
        raise argparse.ArgumentTypeError(f"{text} is not from 1 to 500")
    return int(text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    target = parser.add_argument_group("target")
    target.add_argument("--url", help="the API's base URL, without /api (default: see below)")
    target.add_argument("--username", help="user to sign in as (default: see below)")
    target.add_argument("--stack-name", default="eventstream",
                        help="CloudFormation stack, for the default function names (default: %(default)s)")

    load = parser.add_argument_group("load")
    load.add_argument("--users", type=positive(int), default=10, help="simulated clients (default: %(default)s)")
    load.add_argument("--spawn-rate", type=positive(float), default=2,
                      help="ramp-up: users started per second (default: %(default)s)")
    load.add_argument("--run-time", type=seconds, default="60s",
                      help="how long the load lasts, e.g. 30s, 5m, 1h (default: 60s)")
    load.add_argument("--max-requests", type=positive(int), default=100_000,
                      help="stop once this many requests were made (default: %(default)s)")
    load.add_argument("--rate", type=float, default=1.0,
                      help="scenario runs per second per user, whatever their latency (Locust's "
                           "constant_throughput); 0 runs them back to back (default: %(default)s)")
    load.add_argument("--weights", type=weights, default=WEIGHTS, metavar="NAME=WEIGHT,...",
                      help="scenario weights, merged into the defaults (default: "
                           + ",".join(f"{name}={weight}" for name, weight in WEIGHTS.items()) + ")")
    load.add_argument("--batch-size", type=batch_size, default=50, metavar="1..500",
                      help="events per batch post (default: %(default)s)")
    load.add_argument("--renew-before", type=float, default=30,
                      help="seconds before expiry to renew an access token (default: %(default)s)")

    after = parser.add_argument_group("report and checks")
    after.add_argument("--report-dir", type=Path,
                       help="where the HTML report and CSV stats go (default: .local/loadtest/<time of the run>)")
    after.add_argument("--max-error-rate", type=float, default=0.0, metavar="PERCENT",
                       help="fail when more than this share of requests failed (default: %(default)s)")
    after.add_argument("--no-pipeline-check", action="store_true",
                       help="skip the check that every accepted event was stored, routed and emailed")
    after.add_argument("--pipeline-timeout", type=seconds, default="120s",
                       help="how long the pipeline may take to finish with the run's events (default: 120s)")
    after.add_argument("--no-cost", action="store_true",
                       help="skip the cost projection (it reads CloudWatch Logs)")
    args = parser.parse_args()
    if args.rate < 0:
        parser.error("--rate must be 0 or more")
    if args.run_time <= 0:
        parser.error("--run-time must be above 0")
    return args


class Target:
    """Where the load goes, who signs in, and where to look afterwards."""

    def __init__(self, args: argparse.Namespace):
        stack = stack_settings.read()
        self.url = (args.url or os.environ.get("API_URL") or stack.get("API_URL", "")).rstrip("/")
        if not self.url:
            raise SystemExit("error: no target: pass --url, set API_URL, or start the local stack with scripts/up")
        # The local stack's coordinates are wrong for any other target.
        local = stack if stack.get("API_URL", "").rstrip("/") == self.url else {}

        def setting(*names: str) -> str:
            return next((value for name in names for value in (os.environ.get(name), local.get(name)) if value), "")

        self.username = args.username or setting("EVENTSTREAM_USERNAME", "DEMO_USERNAME")
        self.password = setting("EVENTSTREAM_PASSWORD", "DEMO_PASSWORD")
        if not (self.username and self.password):
            raise SystemExit("error: no credentials: pass --username and set EVENTSTREAM_PASSWORD")
        self.mail_api = setting("MAIL_API") or None
        self.functions = {role: setting(role.upper().replace("-", "_") + "_FUNCTION") or f"{args.stack_name}-{role}"
                          for role in FUNCTIONS}
        self.aws_endpoint = setting("AWS_ENDPOINT_URL") or None
        region = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", self.url)
        self.aws_region = (setting("AWS_REGION", "AWS_DEFAULT_REGION") or (region and region[1]) or "us-east-1")

    def logs_client(self):
        return stack_settings.aws_client("logs", self.aws_endpoint, self.aws_region)


def run_locust(args, target: Target, source: str, report_dir: Path) -> int:
    command = [
        str(Path(sys.executable).parent / "locust"), "-f", str(HERE / "locustfile.py"), "--headless",
        "--host", target.url, "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
        "--run-time", f"{args.run_time}s",
        # A user in the middle of a request finishes it, so that an event the API accepted is not
        # missing from the run's list of accepted events.
        "--stop-timeout", "30",
        "--html", str(report_dir / "report.html"),
        # With a JSON file Locust skips its own closing tables; the summary below replaces them.
        "--json-file", str(report_dir / "stats"),
        "--eventstream-source", source, "--eventstream-weights", json.dumps(args.weights),
        "--eventstream-rate", str(args.rate), "--eventstream-batch-size", str(args.batch_size),
        "--eventstream-max-requests", str(args.max_requests), "--eventstream-renew-before", str(args.renew_before),
        "--eventstream-report-dir", str(report_dir),
    ]
    environment = {**os.environ, "EVENTSTREAM_USERNAME": target.username, "EVENTSTREAM_PASSWORD": target.password}
    locust = subprocess.Popen(command, env=environment, cwd=report_dir)
    while True:
        try:
            return locust.wait()
        except KeyboardInterrupt:
            continue  # Locust had the Ctrl-C too: it stops the load and writes its reports, then the checks run


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def failure_status(error: str) -> str:
    """The HTTP status the locustfile put at the head of a failure, or what happened instead."""
    match = re.search(r"HTTP (\d{3})", error)
    return match[1] if match else "no response"


def summary(report_dir: Path, events: int) -> tuple[int, int]:
    """Prints the table per scenario; returns the requests and the failed requests."""
    stats = read_csv(report_dir / "stats.csv")
    errors: dict[str, Counter] = {}
    for row in read_csv(report_dir / "failures.csv"):
        errors.setdefault(row["Name"], Counter())[failure_status(row["Error"])] += int(row["Occurrences"])
    errors["Aggregated"] = sum(errors.values(), Counter())

    print(f"\n{'scenario':<26}{'requests':>9}{'failed':>8}  {'errors by status':<20}{'req/s':>8}"
          f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")
    for row in stats:
        failed = errors.get(row["Name"], Counter())
        by_status = " ".join(f"{status}x{count}" for status, count in sorted(failed.items())) or "-"
        name = "all" if row["Name"] == "Aggregated" else row["Name"]
        print(f"{name:<26}{int(row['Request Count']):>9,}{int(row['Failure Count']):>8,}  {by_status:<20}"
              f"{float(row['Requests/s']):>8.1f}{row['50%']:>8}{row['95%']:>8}{row['99%']:>8}")
    total = next((row for row in stats if row["Name"] == "Aggregated"), None)
    if total is None or not int(total["Request Count"]):
        return 0, 0
    requests, failures = int(total["Request Count"]), int(total["Failure Count"])
    duration = requests / float(total["Requests/s"])
    print(f"events accepted: {events:,} in {duration:.1f} s ({events / duration:.1f} events/s); "
          f"failed requests: {failures:,} of {requests:,} ({100 * failures / requests:.2f}%)")
    return requests, failures


def main() -> int:
    args = parse_args()
    target = Target(args)
    api = Api(target.url, target.username, target.password)
    try:
        api.token()
    except (ApiError, urllib.error.URLError, OSError) as error:
        print(f"error: cannot sign in at {target.url}: {error}", file=sys.stderr)
        return 2

    started_at = datetime.now()
    report_dir = args.report_dir or ROOT / ".local" / "loadtest" / started_at.strftime("%Y%m%d-%H%M%S")
    report_dir = report_dir.resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    source = f"loadtest-{started_at:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"

    print(f"target {target.url} as {target.username}; events with source {source}")
    pace = f"{args.rate:g} scenario/s each" if args.rate else "unpaced"
    print(f"{args.users} users ({pace}), ramp-up {args.spawn_rate:g}/s, for {args.run_time} s or "
          f"{args.max_requests:,} requests; weights " + ",".join(f"{name}={weight}" for name, weight in args.weights.items()),
          flush=True)
    started = time.time()
    code = run_locust(args, target, source, report_dir)
    finished = time.time()
    results_file = report_dir / "run.json"
    if code not in (0, 1) or not results_file.exists():
        print(f"error: Locust exited with status {code}", file=sys.stderr)
        return 2
    results = json.loads(results_file.read_text())
    accepted = dict(results["events"])

    requests, failures = summary(report_dir, len(accepted))
    print(f"report: {report_dir / 'report.html'}  (and stats.csv, failures.csv beside it)")
    exceptions = read_csv(report_dir / "exceptions.csv")
    if exceptions:
        print(f"error: the locustfile raised {len(exceptions)} kinds of exception; see above", file=sys.stderr)
        return 2

    failed = []
    if not requests:
        failed.append("no request was made")
    elif 100 * failures / requests > args.max_error_rate:
        failed.append(f"{100 * failures / requests:.2f}% of requests failed, over --max-error-rate {args.max_error_rate}%")

    if args.no_pipeline_check:
        print("\npipeline check skipped (--no-pipeline-check)")
    else:
        print(f"\npipeline check: the run's events (source {source}), within {args.pipeline_timeout} s")
        if not accepted:
            failed.append("no event was accepted")
        elif not pipeline.check(api, source, accepted, args.pipeline_timeout, target.mail_api):
            failed.append("the pipeline lost or mishandled events")

    if not args.no_cost:
        failed += project_cost(target, results["answered"], (started, finished), accepted, requests,
                               args.no_pipeline_check)

    if failed:
        print("\nFAILED: " + "; ".join(failed))
        return 1
    return 0


def project_cost(target: Target, answered: dict, window: tuple[float, float], accepted: dict[str, str],
                 requests: int, pipeline_skipped: bool) -> list[str]:
    """Prints the cost table; returns what went wrong, if anything."""
    print(f"\nprojected AWS cost per million events at this run's mix (AWS price list as of {cost.PRICES_AS_OF}, "
          "us-east-1, on-demand)")
    if not accepted:
        print("  not projected: no event was accepted")
        return []
    import botocore.exceptions  # only in .venv-loadtest, and --help runs without it

    answered = {role: answered.get(role, 0) for role in ("ingest", "graphql")}
    try:
        usages, missing = cost.measure(target.logs_client(), target.functions, window, (window[0], time.time()),
                                       answered)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        print(f"  not projected: CloudWatch Logs: {error} (--no-cost skips it)")
        return ["the cost could not be read"]
    handled = sum(status in ("warning", "error") for status in accepted.values())
    for line in cost.projection({role: usages[role] for role in FUNCTIONS}, len(accepted), requests, handled):
        print(f"  {line}")
    if missing:
        print("  note: REPORT lines not (yet) in CloudWatch Logs for "
              + ", ".join(f"{count} {role} requests" for role, count in missing.items()))
    if pipeline_skipped:
        print("  note: without the pipeline check, the pipeline's functions count only what they finished by now")
    if target.aws_endpoint:
        print(f"  note: {target.aws_endpoint} is not AWS; on LocalStack the functions run as local processes "
              "and their durations are a local emulation")
    return []


if __name__ == "__main__":
    sys.exit(main())
