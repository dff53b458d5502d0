"""One invocation of a deployed function with a fixture from events/, as `sam local invoke -e` does
with a container: the response on stdout, the invocation's log (START ... REPORT) on stderr. Run by
scripts/invoke, which names the deployed function and points AWS_ENDPOINT_URL at LocalStack.

    python scripts/invoke.py DEPLOYED_FUNCTION_NAME EVENT_FILE|- [--watch]

The fixture is made valid for this stack first, so that it does what it would do for a real caller:
  * `REPLACE_WITH_ACCESS_TOKEN` becomes a fresh access token of the stack's demo user and
    `REPLACE_WITH_PASSWORD` that user's password (both from .local/stack.env, never on a command line);
  * `REPLACE_WITH_NEW_USERNAME` (the admin function's create-user) becomes a username no one has;
  * a CloudFormation custom-resource request's `ResponseURL` becomes a presigned PUT URL of LocalStack's
    S3, and the answer the function put there (what CloudFormation would read) is shown on stderr;
  * an event message (an SQS record's body, a RabbitMQ message's base64 data) that names an event the
    stack does not have gets a new event, created through the API with the message's title, status
    and source, and names it instead: otherwise the handlers park the message in `dead_letters` and
    handle nothing. The invocation waits until the pipeline has finished those events: the pipeline
    delivers every event to its handler itself, and an invocation racing that delivery can find the
    alert email claimed by it and report the record as failed. After it, the invocation is the
    redelivery that at-least-once queues bring, which the handlers must answer cleanly.
Exits 1 when the invoke failed or the function reported an error (FunctionError), 0 otherwise.
"""

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import stack_settings

TOKEN_PLACEHOLDER = "REPLACE_WITH_ACCESS_TOKEN"
PASSWORD_PLACEHOLDER = "REPLACE_WITH_PASSWORD"
NEW_USERNAME_PLACEHOLDER = "REPLACE_WITH_NEW_USERNAME"
# Where a custom-resource request's answer goes: the bucket scripts/up deploys from.
RESPONSE_BUCKET = "eventstream-sam-artifacts"
# The executor's CloudWatch shipping follows the invocation by a moment; a log missing after this
# long is not coming.
LOG_DEADLINE_SECONDS = 15
# Beyond the function's own timeout: a cold start, LocalStack's own work.
INVOKE_MARGIN_SECONDS = 30
HTTP_TIMEOUT_SECONDS = 30
# A fresh stack's pipeline finishes an event within seconds (tests/e2e/test_pipeline.py allows 90 s
# for 40); longer means the bridge, RabbitMQ or the mail sink is not running.
PIPELINE_DEADLINE_SECONDS = 60
EVENT_STATE = "query($id: UUID!) { event(id: $id) { pipelineState routing { handler } } }"


class Failure(Exception):
    """Ends the run with a message and exit status 1."""


def say(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)


# ---------- the stack's API, as a caller uses it ----------

class Stack:
    """The demo user's view of the stack's REST API; signs in only when a fixture needs it."""

    def __init__(self, settings: dict):
        self.settings = settings
        self._token = None

    def setting(self, name: str) -> str:
        value = self.settings.get(name)
        if not value:
            raise Failure(f"{name} is not in {stack_settings.STACK_ENV}; run scripts/up")
        return value

    def call(self, method: str, path: str, body=None, token: str | None = None) -> tuple[int, object]:
        request = urllib.request.Request(self.setting("API_URL").rstrip("/") + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        except OSError as error:
            raise Failure(f"the API did not answer {method} {path}: {error}") from None
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, payload.decode(errors="replace")

    def token(self) -> str:
        if self._token is None:
            credentials = {"username": self.setting("DEMO_USERNAME"), "password": self.setting("DEMO_PASSWORD")}
            status, body = self.call("POST", "/api/token", credentials)
            if status != 200 or not isinstance(body, dict) or "access" not in body:
                raise Failure(f"the demo user could not sign in (POST /api/token answered {status}): {body}")
            self._token = body["access"]
        return self._token

    def has_event(self, event_id: str) -> bool:
        status, body = self.call("GET", f"/api/events/{urllib.parse.quote(event_id)}", token=self.token())
        if status not in (200, 404):
            raise Failure(f"GET /api/events/{event_id} answered {status}: {body}")
        return status == 200

    def create_events(self, events: list[dict]) -> list[dict]:
        status, body = self.call("POST", "/api/events/batch", {"events": events}, token=self.token())
        if status != 201:
            raise Failure(f"POST /api/events/batch answered {status}: {body}")
        return body["events"]

    def finished_by_pipeline(self, event_id: str) -> bool:
        """Whether the pipeline is done with the event: handled, or dispatched to no handler."""
        status, body = self.call("POST", "/graphql", {"query": EVENT_STATE, "variables": {"id": event_id}},
                                 token=self.token())
        if status != 200 or not isinstance(body, dict) or body.get("errors"):
            raise Failure(f"the GraphQL API answered {status}: {body}")
        event = body["data"]["event"] or {}
        return event.get("pipelineState") == "PROCESSED" or (
            event.get("pipelineState") == "DISPATCHED" and not (event.get("routing") or {}).get("handler"))

    def wait_for_pipeline(self, event_ids: list[str]) -> float:
        """Waits, bounded, until the pipeline has finished every one of the events; returns the seconds."""
        started = time.monotonic()
        pending = list(event_ids)
        while True:
            pending = [event_id for event_id in pending if not self.finished_by_pipeline(event_id)]
            if not pending:
                return time.monotonic() - started
            if time.monotonic() - started > PIPELINE_DEADLINE_SECONDS:
                raise Failure(f"the pipeline did not finish event(s) {', '.join(pending)} within "
                              f"{PIPELINE_DEADLINE_SECONDS} s: are the bridge, RabbitMQ and maildev running "
                              "(scripts/up starts them; .local/bridge.log)?")
            time.sleep(0.5)


# ---------- making the fixture valid for this stack ----------

def fill_placeholders(value, stack: Stack):
    """`value` with the placeholders in its strings filled; a string holding JSON (an API Gateway
    body) is filled inside its JSON, so that a password with a quote in it stays valid JSON."""
    if isinstance(value, dict):
        return {key: fill_placeholders(item, stack) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_placeholders(item, stack) for item in value]
    if not isinstance(value, str) or (TOKEN_PLACEHOLDER not in value and PASSWORD_PLACEHOLDER not in value):
        return value
    if value.lstrip().startswith(("{", "[")):
        try:
            return json.dumps(fill_placeholders(json.loads(value), stack))
        except ValueError:
            pass
    if TOKEN_PLACEHOLDER in value:
        value = value.replace(TOKEN_PLACEHOLDER, stack.token())
    if PASSWORD_PLACEHOLDER in value:
        value = value.replace(PASSWORD_PLACEHOLDER, stack.setting("DEMO_PASSWORD"))
    return value


def is_event_message(value) -> bool:
    """An event message that names an event by a well-formed id. One with a malformed id names no
    event in any stack: it is sent as it is, to show what the handlers do with it (they park it)."""
    if not (isinstance(value, dict) and isinstance(value.get("event_id"), str) and "status" in value and "title" in value):
        return False
    try:
        uuid.UUID(value["event_id"])
    except ValueError:
        return False
    return True


class EventMessages:
    """The event messages a fixture carries (SQS record bodies, RabbitMQ messages' base64 data),
    each a JSON object or an array of them, as the pipeline's queues carry them."""

    def __init__(self, payload: dict):
        self.places = []  # (container, key, encoding, decoded messages)
        # Any other shape is sent as it is: what the function makes of a malformed event is the point.
        records = payload.get("Records")
        for record in records if isinstance(records, list) else []:
            if isinstance(record, dict) and record.get("eventSource") == "aws:sqs":
                self._take(record, "body", "json")
        queues = payload.get("rmqMessagesByQueue")
        for deliveries in queues.values() if isinstance(queues, dict) else []:
            for delivery in deliveries if isinstance(deliveries, list) else []:
                if isinstance(delivery, dict):
                    self._take(delivery, "data", "base64")

    def _take(self, container: dict, key: str, encoding: str) -> None:
        text = container.get(key)
        if not isinstance(text, str):
            return
        try:
            decoded = json.loads(base64.b64decode(text, validate=True) if encoding == "base64" else text)
        except (ValueError, binascii.Error):
            return  # not a message of ours: sent as it is, as the fixture means it
        messages = decoded if isinstance(decoded, list) else [decoded]
        if messages and all(is_event_message(message) for message in messages):
            self.places.append((container, key, encoding, decoded))

    def all(self) -> list[dict]:
        return [message for *_, decoded in self.places
                for message in (decoded if isinstance(decoded, list) else [decoded])]

    def write_back(self) -> None:
        for container, key, encoding, decoded in self.places:
            text = json.dumps(decoded, separators=(",", ":"))
            if encoding == "base64":
                container[key] = base64.b64encode(text.encode()).decode()
                properties = container.get("basicProperties")
                if isinstance(properties, dict) and "bodySize" in properties:
                    properties["bodySize"] = len(text.encode())
            else:
                container[key] = text
                # A consumer may check the digest SQS computed.
                if "md5OfBody" in container:
                    container["md5OfBody"] = hashlib.md5(text.encode()).hexdigest()


def supply_events(payload: dict, stack: Stack, fixture_name: str) -> None:
    """Gives every event message of `payload` that names an event the stack lacks a new event of the
    stack, created through the API from the message, and names that one instead (in place)."""
    carried = EventMessages(payload)
    messages = carried.all()
    missing = {}
    for message in messages:
        event_id = str(message["event_id"])
        if event_id not in missing and not stack.has_event(event_id):
            missing[event_id] = message
    if not missing:
        return
    requested = []
    for event_id, message in missing.items():
        event = {"title": message["title"], "status": message["status"],
                 "attributes": {"created_by": "scripts/invoke", "fixture": fixture_name, "fixture_event_id": event_id}}
        if message.get("source"):
            event["source"] = message["source"]
        requested.append(event)
    created = dict(zip(missing, stack.create_events(requested)))
    for message in messages:
        event = created.get(str(message["event_id"]))
        if event:
            message.update(event_id=event["id"], status=event["status"], source=event.get("source"),
                           title=event["title"], received_at=event["received_at"])
    for container, *_ in carried.places:
        properties = container.get("basicProperties")
        if isinstance(properties, dict) and properties.get("messageId") in created:
            properties["messageId"] = created[properties["messageId"]]["id"]
    carried.write_back()
    say(f"the stack had no event with the fixture's id(s); created {len(created)} through the API: "
        + ", ".join(f"{old} -> {event['id']}" for old, event in created.items()))
    seconds = stack.wait_for_pipeline([event["id"] for event in created.values()])
    say(f"the pipeline finished them in {seconds:.1f} s: this invocation redelivers their messages")


def prepare(text: str, stack: Stack, fixture_name: str) -> bytes:
    try:
        payload = json.loads(text)
    except ValueError as error:
        raise Failure(f"{fixture_name} is not JSON: {error}") from None
    payload = fill_placeholders(payload, stack)
    if isinstance(payload, dict):
        if payload.get("username") == NEW_USERNAME_PLACEHOLDER:
            payload["username"] = f"invoke-{uuid.uuid4().hex[:12]}"
        if "ResponseURL" in payload and "RequestType" in payload:
            payload["ResponseURL"] = custom_resource_response_url()
        supply_events(payload, stack, fixture_name)
    return json.dumps(payload).encode()


def s3_client():
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(connect_timeout=5, read_timeout=HTTP_TIMEOUT_SECONDS,
                                            s3={"addressing_style": "path"}))


def custom_resource_response_url() -> str:
    """A presigned PUT URL in LocalStack's S3, as CloudFormation hands a custom resource's function one."""
    key = f"custom-resource-responses/{uuid.uuid4()}"
    return s3_client().generate_presigned_url("put_object", Params={"Bucket": RESPONSE_BUCKET, "Key": key},
                                              ExpiresIn=3600)


def show_custom_resource_response(payload: bytes) -> None:
    """What the function answered CloudFormation, read back from the presigned URL's object."""
    from botocore.exceptions import BotoCoreError, ClientError

    url = json.loads(payload).get("ResponseURL") if payload.lstrip().startswith(b"{") else None
    if not isinstance(url, str) or RESPONSE_BUCKET not in url:
        return
    key = urllib.parse.urlparse(url).path.split(f"/{RESPONSE_BUCKET}/", 1)[1]
    try:
        answer = s3_client().get_object(Bucket=RESPONSE_BUCKET, Key=key)["Body"].read().decode()
    except (BotoCoreError, ClientError) as error:
        say(f"no answer for CloudFormation at {RESPONSE_BUCKET}/{key}: {error}")
        return
    say(f"the answer CloudFormation would read: {answer}")


# ---------- invoking, and the invocation's log ----------

REPORT = re.compile(r"^REPORT RequestId: (\S+)", re.M)


def aws_clients(read_timeout: int):
    """Lambda and CloudWatch Logs clients of the endpoint, region and credentials scripts/invoke set
    (use_localstack). Nothing is sent twice: an invoke is not idempotent, and botocore would retry a
    read that timed out."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=read_timeout, retries={"total_max_attempts": 1})
    return boto3.client("lambda", config=config), boto3.client("logs", config=config)


def function_timeout(functions, function: str) -> int:
    """The deployed function's timeout in seconds; fails naming the function when it is not deployed."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return int(functions.get_function_configuration(FunctionName=function)["Timeout"])
    except ClientError as error:
        raise Failure(f"{function} is not deployed ({error.response['Error'].get('Code')}); run scripts/up") from None
    except BotoCoreError as error:
        raise Failure(f"LocalStack did not answer: {error}") from None


def lines_of(messages) -> str:
    return "".join(message if message.endswith("\n") else message + "\n" for message in messages)


def log_from_cloudwatch(logs, function: str, request_id: str, since_ms: int) -> str | None:
    """The invocation's lines, START to REPORT, from its log stream in CloudWatch Logs, where the
    executor's log arrives a moment after the response; None when it has not within the deadline."""
    from botocore.exceptions import BotoCoreError, ClientError

    group, start, report = f"/aws/lambda/{function}", f"START RequestId: {request_id}", f"REPORT RequestId: {request_id}"
    deadline = time.monotonic() + LOG_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        try:
            found = logs.filter_log_events(logGroupName=group, startTime=since_ms, limit=10_000)["events"]
            stream = next((event["logStreamName"] for event in found if event["message"].startswith(report)), None)
            if stream:
                # One environment runs one invocation at a time: its stream holds this one's lines
                # between its START and its REPORT.
                events = logs.get_log_events(logGroupName=group, logStreamName=stream, startTime=since_ms,
                                             startFromHead=True, limit=10_000)["events"]
                messages = [event["message"] for event in events]
                first = next((i for i, message in enumerate(messages) if message.startswith(start)), None)
                last = next((i for i, message in enumerate(messages) if message.startswith(report)), None)
                if first is not None and last is not None and first <= last:
                    return lines_of(messages[first:last + 1])
        except (BotoCoreError, ClientError):
            pass  # the group appears with the first invocation's log
        time.sleep(0.5)
    return None


def invoke(functions, logs, function: str, payload: bytes) -> int:
    """Invokes `function` once; the log on stderr, the response on stdout. 1 on a function error."""
    from botocore.exceptions import BotoCoreError, ClientError

    since_ms = int(time.time() * 1000) - 5_000  # LocalStack's clock is this machine's; a margin all the same
    try:
        response = functions.invoke(FunctionName=function, Payload=payload, LogType="Tail")
        body = response["Payload"].read()
    except (BotoCoreError, ClientError) as error:
        raise Failure(f"the invoke of {function} failed: {error}") from None
    tail = base64.b64decode(response.get("LogResult") or "").decode(errors="replace")
    # Lambda's request id is the Invoke call's; the REPORT line names it too.
    request_id = response["ResponseMetadata"].get("RequestId") or next(iter(REPORT.findall(tail)), "")
    if f"START RequestId: {request_id}" in tail and f"REPORT RequestId: {request_id}" in tail:
        log = tail
    else:
        # No tail, or only its last 4 KB (Lambda's limit, which LocalStack keeps): the whole log.
        log = log_from_cloudwatch(logs, function, request_id, since_ms)
        if log is None:
            log = tail + (f"(the log tail ends here; the rest was not in CloudWatch Logs /aws/lambda/{function} "
                          f"within {LOG_DEADLINE_SECONDS} s)\n")
    sys.stderr.write(log if log.endswith("\n") or not log else log + "\n")
    sys.stderr.flush()
    try:
        print(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
    except ValueError:
        sys.stdout.buffer.write(body + (b"" if body.endswith(b"\n") else b"\n"))
    sys.stdout.flush()
    if response.get("FunctionError"):
        say(f"{function} reported an error ({response['FunctionError']})")
        return 1
    return 0


# ---------- --watch ----------

def deployed_code(functions, function: str) -> tuple | None:
    """What identifies the deployed code (and configuration), once an update has finished; None
    while one is under way or LocalStack does not answer (scripts/up redeploying or restarting it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        config = functions.get_function_configuration(FunctionName=function)
    except (BotoCoreError, ClientError):
        return None
    if config.get("State") != "Active" or config.get("LastUpdateStatus", "Successful") != "Successful":
        return None
    return config.get("CodeSha256"), config.get("LastModified")


def file_version(path: Path) -> tuple | None:
    try:
        return path.stat().st_mtime_ns, path.read_bytes()
    except OSError:
        return None


def watch(functions, function: str, path: Path, run_once) -> None:
    """Invokes, then again whenever the deployed code changes (scripts/up after a rebuild) or the
    event file does, until Ctrl-C. A failed invocation is shown and watching goes on."""
    code, event = deployed_code(functions, function), file_version(path)
    run_once()
    say(f"watching {function}'s deployed code and {path} (Ctrl-C stops)")
    while True:
        time.sleep(1)
        now_code, now_event = deployed_code(functions, function), file_version(path)
        if now_code is None or now_event is None:
            continue  # mid-deploy, LocalStack restarting, or an editor replacing the file: not yet
        if (now_code, now_event) != (code, event):
            say("the deployed function changed: invoking again" if now_code != code else f"{path} changed: invoking again")
            code, event = now_code, now_event
            run_once()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("function", help="the deployed function's name")
    parser.add_argument("event", help="the event file, or - for standard input")
    parser.add_argument("--watch", action="store_true", help="invoke again after each redeploy, until Ctrl-C")
    args = parser.parse_args()
    if args.watch and args.event == "-":
        raise Failure("--watch needs an event file, not standard input")
    settings = stack_settings.read(("API_URL", "DEMO_USERNAME", "DEMO_PASSWORD"))
    lookups, logs = aws_clients(HTTP_TIMEOUT_SECONDS)
    # An invocation may take the function's whole timeout, and a cold start before it.
    functions = aws_clients(function_timeout(lookups, args.function) + INVOKE_MARGIN_SECONDS)[0]
    path = Path(args.event)

    def run_once() -> int:
        try:
            text = sys.stdin.read() if args.event == "-" else path.read_text()
        except OSError as error:
            raise Failure(f"cannot read {args.event}: {error.strerror}") from None
        name = "stdin" if args.event == "-" else path.name
        # A fresh token each time: an access token lives 5 minutes, a watch much longer.
        payload = prepare(text, Stack(settings), name)
        say(f"invoking {args.function} with {name}")
        status = invoke(functions, logs, args.function, payload)
        show_custom_resource_response(payload)
        return status

    if not args.watch:
        return run_once()

    def run_and_go_on() -> None:
        try:
            run_once()
        except Failure as error:
            print(f"error: {error}", file=sys.stderr, flush=True)

    try:
        watch(lookups, args.function, path, run_and_go_on)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as error:
        print(f"\033[31merror:\033[0m {error}", file=sys.stderr)
        sys.exit(1)
