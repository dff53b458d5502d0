#!/usr/bin/env python3
"""A provided.al2023 ``bootstrap`` in Python: the Lambda Runtime API loop with urllib, for the executor tests.

What it does depends on the event: ``{"action": ...}`` (echo, error, sleep, exit), an SQS batch (fails the
records whose body is "fail") or an API Gateway proxy event.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime"
STARTED = time.time()


def post(path, body, headers=None):
    request = urllib.request.Request(f"{API}/{path}", data=json.dumps(body).encode(), method="POST")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    urllib.request.urlopen(request).read()


def handle(event, request_id):
    if "Records" in event:  # SQS with ReportBatchItemFailures
        failures = []
        for record in event["Records"]:
            print(f"record {record['body']} {record['attributes']['ApproximateReceiveCount']}", flush=True)
            if record["body"] == "fail":
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}
    if "httpMethod" in event:  # API Gateway REST proxy integration
        body = {"method": event["httpMethod"], "path": event["path"], "query": event["queryStringParameters"]}
        return {"statusCode": 201, "headers": {"X-Function": "bootstrap.py"}, "body": json.dumps(body)}
    action = event.get("action")
    if action == "sleep":
        child = subprocess.Popen(["sleep", "300"])
        with open(event["pidfile"], "w") as pidfile:
            json.dump({"bootstrap": os.getpid(), "child": child.pid}, pidfile)
        time.sleep(event["seconds"])
    elif action == "exit":
        print("exiting with 3", flush=True)
        os._exit(3)
    elif action == "health":
        with urllib.request.urlopen(f"{os.environ['AWS_ENDPOINT_URL']}/_localstack/health") as response:
            return {"status": response.status}
    print(f"echo {request_id}", flush=True)
    print(f"stderr {request_id}", file=sys.stderr, flush=True)
    return {"event": event, "request_id": request_id, "pid": os.getpid(), "ppid": os.getppid(),
            "started": STARTED, "env": dict(os.environ)}


while True:
    with urllib.request.urlopen(f"{API}/invocation/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(response.read() or b"{}")
    if isinstance(event, dict) and event.get("action") == "error":
        post(
            f"invocation/{request_id}/error",
            {"errorType": "BoomError", "errorMessage": event["message"]},
            {"Lambda-Runtime-Function-Error-Type": "BoomError"},
        )
        continue
    post(f"invocation/{request_id}/response", handle(event, request_id))
