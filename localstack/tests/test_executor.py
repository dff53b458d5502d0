"""The eventstream-process executor, end to end through LocalStack 4.13.1's Lambda, SQS, API Gateway and Logs."""

import json
import re
import statistics
import time
import urllib.request

import psutil
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from conftest import FIGURES, create_function, function_processes, process_gone, wait_for

REPORT = re.compile(
    r"^REPORT RequestId: (?P<id>[0-9a-f-]+)\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms"
    r"\tMemory Size: 256 MB\tMax Memory Used: \d+ MB(\tInit Duration: (?P<init>\d+\.\d\d) ms)?(\t.*)?$"
)


def invoke(ls, name, event):
    response = ls.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event).encode())
    return response, json.loads(response["Payload"].read())


def log_messages(ls, name, predicate, timeout=30):
    """CloudWatch Logs messages of the function once ``predicate(messages)`` holds (logs are shipped async)."""
    logs = ls.client("logs")

    def messages():
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            return None
        found = [event["message"].rstrip("\n") for event in events]
        return found if predicate(found) else None

    return wait_for(messages, timeout, interval=0.3, message=f"logs of {name}")


@pytest.fixture(scope="module")
def echo_function(localstack):
    return create_function(localstack, Environment={"Variables": {"GREETING": "hello"}})


def test_synchronous_invoke_returns_the_payload(localstack, echo_function):
    response, body = invoke(localstack, echo_function, {"action": "echo", "n": 1})
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert body["event"] == {"action": "echo", "n": 1}


def test_the_process_executor_runs_the_function(localstack, echo_function):
    _, body = invoke(localstack, echo_function, {"action": "echo"})
    env = body["env"]
    host, port = env["AWS_LAMBDA_RUNTIME_API"].split(":")
    assert host == "127.0.0.1" and int(port) != localstack.port
    # A child of LocalStack's own process (localstack/run execs Python), not of a container's init.
    assert body["ppid"] == localstack.proc.pid
    assert env["AWS_ENDPOINT_URL"] == localstack.url
    assert env["GREETING"] == "hello"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == echo_function
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{echo_function}"
    assert env["_HANDLER"] == "bootstrap"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    assert env["LAMBDA_TASK_ROOT"] != "/var/task" and env["LAMBDA_TASK_ROOT"].endswith("/code")
    assert env["PATH"]
    # The function reaches LocalStack through AWS_ENDPOINT_URL.
    assert invoke(localstack, echo_function, {"action": "health"})[1] == {"status": 200}


def test_localstack_listens_on_loopback_only(localstack, echo_function):
    invoke(localstack, echo_function, {"action": "echo"})  # at least one Runtime API server is up
    listening = [
        c.laddr for c in psutil.Process(localstack.proc.pid).net_connections("inet") if c.status == "LISTEN"
    ]
    assert ("127.0.0.1", localstack.port) in [(a.ip, a.port) for a in listening]
    assert len(listening) >= 2
    assert {a.ip for a in listening} <= {"127.0.0.1", "::1"}, listening
    assert 53 not in {a.port for a in listening}


def test_warm_invokes_reuse_the_process(localstack):
    name = create_function(localstack)
    _, first = invoke(localstack, name, {"action": "echo"})
    latencies = []
    for _ in range(50):
        begun = time.perf_counter()
        _, body = invoke(localstack, name, {"action": "echo"})
        latencies.append((time.perf_counter() - begun) * 1000)
        assert body["pid"] == first["pid"]
    median = statistics.median(latencies)
    FIGURES.append(f"warm invoke round trip (boto3, median of 50): {median:.1f} ms, max {max(latencies):.1f} ms")
    assert median < 500


def test_function_error_comes_back(localstack, echo_function):
    response, body = invoke(localstack, echo_function, {"action": "error", "message": "it broke"})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body == {"errorType": "BoomError", "errorMessage": "it broke"}
    # The process survives a handled error.
    assert invoke(localstack, echo_function, {"action": "echo"})[0].get("FunctionError") is None


def test_timeout_kills_the_process_group(localstack, tmp_path):
    name = create_function(localstack, timeout=1)
    pidfile = tmp_path / "pids.json"
    begun = time.monotonic()
    response, body = invoke(localstack, name, {"action": "sleep", "seconds": 30, "pidfile": str(pidfile)})
    assert time.monotonic() - begun < 15
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]
    pids = json.loads(pidfile.read_text())
    wait_for(lambda: process_gone(pids["bootstrap"]) and process_gone(pids["child"]), 5, message="the kill")
    # The next invocation gets a new process, as on Lambda.
    response, body = invoke(localstack, name, {"action": "echo"})
    assert "FunctionError" not in response and body["pid"] != pids["bootstrap"]
    messages = log_messages(localstack, name, lambda m: sum(x.startswith("REPORT") for x in m) >= 2)
    timed_out = next(m for m in messages if m.startswith("REPORT") and "Status: timeout" in m)
    assert REPORT.match(timed_out), timed_out


def test_crash_is_a_runtime_exit_error(localstack):
    name = create_function(localstack)
    _, before = invoke(localstack, name, {"action": "echo"})
    response, body = invoke(localstack, name, {"action": "exit"})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 3" in body["errorMessage"]
    assert process_gone(before["pid"])
    _, after = invoke(localstack, name, {"action": "echo"})
    assert after["pid"] != before["pid"]


def test_start_end_report_lines_reach_cloudwatch_logs(localstack):
    name = create_function(localstack)
    _, first = invoke(localstack, name, {"action": "echo"})
    _, second = invoke(localstack, name, {"action": "echo"})
    ids = [first["request_id"], second["request_id"]]
    messages = log_messages(localstack, name, lambda m: all(f"END RequestId: {i}" in m for i in ids))
    for request_id in ids:
        assert f"START RequestId: {request_id} Version: $LATEST" in messages
        assert f"echo {request_id}" in messages and f"stderr {request_id}" in messages
    reports = {m["id"]: m for m in map(REPORT.match, messages) if m}
    assert set(ids) <= set(reports), messages
    assert reports[ids[0]]["init"] is not None
    assert reports[ids[1]]["init"] is None
    FIGURES.append(f"cold start (Init Duration of the Python bootstrap): {reports[ids[0]]['init']} ms")
    # Each invocation's output sits between its START and END lines.
    start, end = messages.index(f"START RequestId: {ids[1]} Version: $LATEST"), messages.index(f"END RequestId: {ids[1]}")
    assert messages.index(f"echo {ids[1]}") in range(start, end)


def test_sqs_partial_batch_failure_retries_then_dead_letters(localstack):
    sqs, lam = localstack.client("sqs"), localstack.client("lambda")
    name = create_function(localstack)
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=f"{name}-queue",
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    assert queue.startswith(f"{localstack.url}/queue/")  # URLs that resolve offline
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(["ok-1", "fail", "ok-2"])],
    )
    lam.create_event_source_mapping(
        EventSourceArn=queue_arn,
        FunctionName=name,
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )

    def dead_lettered():
        received = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return received.get("Messages")

    dead = wait_for(dead_lettered, 90, interval=0, message="the failing message in the DLQ")
    assert [m["Body"] for m in dead] == ["fail"]

    def queue_empty():
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        return attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"

    wait_for(queue_empty, 30, message="an empty source queue")
    messages = log_messages(localstack, name, lambda m: sum(x.startswith("record fail") for x in m) >= 2)
    records = [m for m in messages if m.startswith("record ")]
    assert records.count("record ok-1 1") == 1 and records.count("record ok-2 1") == 1
    assert not [r for r in records if r.startswith("record ok") and not r.endswith(" 1")], records
    assert {"record fail 1", "record fail 2"} <= set(records)


def test_api_gateway_rest_proxy_integration(localstack):
    apigw, lam = localstack.client("apigateway"), localstack.client("lambda")
    name = create_function(localstack)
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    api = apigw.create_rest_api(name=name)["id"]
    root = next(r["id"] for r in apigw.get_resources(restApiId=api)["items"] if r["path"] == "/")
    proxy = apigw.create_resource(restApiId=api, parentId=root, pathPart="{proxy+}")["id"]
    apigw.put_method(restApiId=api, resourceId=proxy, httpMethod="ANY", authorizationType="NONE")
    apigw.put_integration(
        restApiId=api,
        resourceId=proxy,
        httpMethod="ANY",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations",
    )
    lam.add_permission(
        FunctionName=name, StatementId="apigw", Action="lambda:InvokeFunction", Principal="apigateway.amazonaws.com"
    )
    apigw.create_deployment(restApiId=api, stageName="dev")

    url = f"{localstack.url}/restapis/{api}/dev/_user_request_/orders/42?expand=items"
    with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=60) as response:
        assert response.status == 201
        assert response.headers["X-Function"] == "bootstrap.py"
        body = json.loads(response.read())
    assert body == {"method": "GET", "path": "/orders/42", "query": {"expand": "items"}}


def test_stopping_localstack_leaves_no_function_process(own_localstack):
    name = create_function(own_localstack)
    _, body = invoke(own_localstack, name, {"action": "echo"})
    assert body["pid"] in function_processes(own_localstack.url)
    assert own_localstack.stop() == 0
    assert process_gone(body["pid"])
    assert function_processes(own_localstack.url) == []


def test_a_request_during_shutdown_does_not_restart_a_stopped_service(own_localstack):
    # LocalStack stops its services in alphabetical order, Lambda's stop taking seconds (it joins its event
    # pollers' SQS long polls), and its gateway last. Meanwhile it answers 503 to clients but serves its own
    # internal calls, and a stopped service's first one started it again: CloudWatch (which run no longer
    # enables) then left a non-daemon thread behind and the process never exited; Lambda called it after every
    # invocation (PutMetricData), which is how Ctrl-C right after an invoke hung (launch.py refuses such
    # starts). EventBridge, also stopped before Lambda, stands in for any such service here.
    create_function(own_localstack)
    events = own_localstack.client("events")  # built now: the request must go out right away
    # What LocalStack's internal clients send (localstack.aws.connect.InternalClientFactory).
    events.meta.events.register(
        "before-call.*.*", lambda params, **_: params["headers"].update({"x-localstack-data": "{}"})
    )

    def events_stopped():
        with urllib.request.urlopen(f"{own_localstack.url}/_localstack/health", timeout=5) as response:
            return json.loads(response.read())["services"]["events"] == "stopped"

    own_localstack.interrupt()
    wait_for(events_stopped, 10, interval=0.005, message="EventBridge to stop")
    try:
        events.list_event_buses()
        pytest.fail("EventBridge was started again during shutdown")
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
    except EndpointConnectionError:
        pass  # the gateway was already gone: nothing could start EventBridge again
    assert own_localstack.stop() == 0
