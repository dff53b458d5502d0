"""scripts/invoke: every fixture in events/ invoked on the deployed function its name starts with, as
`sam local invoke -e` would run it, answering what that request or batch should get, with the
invocation's log (START to REPORT) on stderr."""

import json
import re
import subprocess

import pytest

from conftest import ROOT

# The bridge function is deployed only where Amazon MQ feeds it (AWS); locally the bridge process does
# its work, and functions/bridge/tests/it/lambda.rs drives its binary with bridge-*.json against
# LocalStack's SQS instead.
EVENTS = sorted(path for path in (ROOT / "events").glob("*.json") if not path.name.startswith("bridge-"))
# Longest first: a fixture's name starts with its function's short name and a dash.
FUNCTIONS = sorted(["ingest", "login", "graphql", "dispatch", "warning-handler", "error-handler", "admin"], key=len,
                   reverse=True)
# A cold start, a sign-in, the events an SQS fixture needs created, the function's own timeout (30 s at most).
INVOKE_TIMEOUT_SECONDS = 120
REPORT = re.compile(r"^REPORT RequestId: (\S+)\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms", re.M)


@pytest.fixture(scope="module")
def local_stack(stack):
    # scripts/invoke drives the stack scripts/up deployed to LocalStack, not one in AWS.
    if not stack.get("AWS_ENDPOINT_URL"):
        pytest.skip("scripts/invoke needs the local stack (AWS_ENDPOINT_URL in .local/stack.env)")
    return stack


def function_of(fixture) -> str:
    function = next((f for f in FUNCTIONS if fixture.name.startswith(f + "-")), None)
    if function is None:
        pytest.fail(f"{fixture.name} does not start with a function's name ({', '.join(FUNCTIONS)}) and a dash")
    return function


def run_invoke(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / "invoke"), *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=INVOKE_TIMEOUT_SECONDS)


def assert_logged_invocation(stderr: str) -> str:
    """The log of one whole invocation, START to REPORT; returns its request id."""
    report = REPORT.search(stderr)
    assert report, f"no REPORT line on stderr:\n{stderr}"
    request_id = report[1]
    assert f"START RequestId: {request_id}" in stderr[:report.start()], f"no START before the REPORT:\n{stderr}"
    assert f"END RequestId: {request_id}" in stderr, stderr
    return request_id


def assert_http_answer(fixture: dict, function: str, response: dict, name: str) -> None:
    method = fixture.get("httpMethod") or fixture["requestContext"]["http"]["method"]
    expected = 201 if (function, method) == ("ingest", "POST") else 200
    assert response.get("statusCode") == expected, f"{name}: {response}"
    body = json.loads(response["body"])
    if function == "login":
        assert body.keys() >= {"access", "refresh"}, body
    elif function == "graphql":
        assert "errors" not in body and body.get("data"), body
    elif method == "GET":
        assert isinstance(body.get("events"), list), body
    else:
        created = body.get("events") or [body]
        assert all(event.get("id") and event.get("pipeline_state") for event in created), body


def messages_in(fixture: dict) -> int:
    return sum(len(deliveries) for deliveries in fixture["rmqMessagesByQueue"].values())


@pytest.mark.parametrize("fixture", EVENTS, ids=[path.name for path in EVENTS])
def test_each_fixture_invokes_its_function_cleanly(local_stack, fixture):
    function = function_of(fixture)
    event = json.loads(fixture.read_text())

    result = run_invoke(function, str(fixture.relative_to(ROOT)))

    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert_logged_invocation(result.stderr)
    response = json.loads(result.stdout)
    if "httpMethod" in event or "routeKey" in event:
        assert_http_answer(event, function, response, fixture.name)
    elif function in ("warning-handler", "error-handler"):
        assert response == {"batchItemFailures": []}, response
        # Handled, not parked as a message about an unknown event: the script gave it a real one.
        assert "parked" not in result.stderr, result.stderr
        assert "recorded" in result.stderr, result.stderr
    elif function == "dispatch" and "rmqMessagesByQueue" in event:
        assert response["parked"] == 0, response
        assert response["routed"] + response["finished"] + response["already_routed"] == messages_in(event), response
    elif function == "dispatch":
        assert response.get("parked") == 0 and isinstance(response.get("republished"), int), response
    elif function == "admin" and "RequestType" in event:
        # The migrations custom resource: already migrated, it succeeds and tells CloudFormation so.
        assert '"Status":"SUCCESS"' in result.stderr.replace(" ", ""), result.stderr
        assert '"PhysicalResourceId":"eventstream-migrations"' in result.stderr.replace(" ", ""), result.stderr
    elif function == "admin":
        assert response["username"].startswith("invoke-") and len(response["password"]) >= 16, response
        assert response["password"] not in result.stderr, "the generated password is in the log"
    else:
        pytest.fail(f"{fixture.name}: no expectation for a {function} event of this shape; add one here")


def test_an_event_from_stdin_is_invoked(local_stack):
    result = run_invoke("dispatch", "-", stdin='{"action": "sweep"}')

    assert result.returncode == 0, result.stderr
    assert "republished" in json.loads(result.stdout)
    assert_logged_invocation(result.stderr)


def test_a_function_error_is_a_failed_exit_with_the_error_and_its_log(local_stack):
    # Neither a sweep nor a RabbitMQ batch (its messages are not a map): the runtime cannot read it.
    result = run_invoke("dispatch", "-", stdin='{"rmqMessagesByQueue": "not a map"}')

    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "errorType" in json.loads(result.stdout), result.stdout
    assert "reported an error" in result.stderr
    assert_logged_invocation(result.stderr)


def test_an_unknown_function_is_a_usage_error():
    result = run_invoke("ingestion", "events/dispatch-sweep.json")

    assert result.returncode == 2
    assert "unknown function: ingestion" in result.stderr
