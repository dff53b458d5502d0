#!/usr/bin/env python3
"""A provided.al2023 `bootstrap` for the dispatch tests: writes each event it receives to a file in
$RECORD_DIR, then succeeds, or fails as a function error when $FAIL is "1"."""

import json
import os
import time
import urllib.request

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime"


def post(path, body, headers):
    request = urllib.request.Request(f"{API}/{path}", data=json.dumps(body).encode(), method="POST", headers=headers)
    urllib.request.urlopen(request).read()


while True:
    with urllib.request.urlopen(f"{API}/invocation/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = response.read()
    with open(os.path.join(os.environ["RECORD_DIR"], f"{time.time_ns()}-{request_id}.json"), "wb") as record:
        record.write(event)
    if os.environ.get("FAIL") == "1":
        error = {"errorType": "DispatchFailed", "errorMessage": "told to fail"}
        post(f"invocation/{request_id}/error", error, {"Lambda-Runtime-Function-Error-Type": "DispatchFailed"})
    else:
        post(f"invocation/{request_id}/response", {}, {})
