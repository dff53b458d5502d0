"""The whole pipeline, as a client sees it: events posted through API Gateway travel through
RabbitMQ, dispatch, the bridge, SQS and the handlers; every error event produces one email."""

import json
import urllib.request
import uuid

import pytest
import stack_settings  # scripts/, which conftest puts on the path

from conftest import wait_until

STATUSES = ["success", "info", "warning", "error"]


def emails(stack) -> list[str]:
    """The text of every email the local SMTP sink (maildev, natively and in the compose stack) holds."""
    with urllib.request.urlopen(f"{stack['MAIL_API'].rstrip('/')}/api/email", timeout=10) as response:
        return [json.dumps(mail) for mail in json.loads(response.read())]


@pytest.fixture(scope="module")
def sqs(stack):
    return stack_settings.aws_client("sqs", stack.get("AWS_ENDPOINT_URL"), stack.get("AWS_REGION"))


def test_every_event_is_routed_and_handled_and_each_error_emails_once(api, tokens, stack, sqs):
    if "MAIL_API" not in stack:
        pytest.fail("no mail API in .local/stack.env; run scripts/up")
    source = f"e2e-pipeline-{uuid.uuid4().hex[:8]}"
    events = [{"title": f"{status} {i}", "status": status, "source": source, "description": f"event {i} of the e2e run"}
              for i, status in enumerate(STATUSES * 10)]
    created = api.call("POST", "/api/events/batch", {"events": events}, token=tokens["access"])
    assert created.status == 201, created
    stored = created.body["events"]

    def states():
        listed = api.call("GET", f"/api/events?source={source}&limit=500", token=tokens["access"])
        return {e["id"]: (e["status"], e["pipeline_state"]) for e in listed.body["events"]}

    def settled():
        current = states()
        done = all(
            state == ("processed" if status in ("warning", "error") else "dispatched")
            for status, state in current.values()
        )
        return current if done and len(current) == len(stored) else None

    final = wait_until(settled, 90, "every warning and error processed and the rest dispatched")
    assert len(final) == 40

    error_ids = [e["id"] for e in stored if e["status"] == "error"]
    other_ids = [e["id"] for e in stored if e["status"] != "error"]

    def one_email_per_error():
        texts = emails(stack)
        counts = {event_id: sum(event_id in text for text in texts) for event_id in error_ids}
        return counts if all(n >= 1 for n in counts.values()) else None

    counts = wait_until(one_email_per_error, 60, "an email for every error event")
    assert set(counts.values()) == {1}, counts
    texts = emails(stack)
    assert not [event_id for event_id in other_ids if any(event_id in text for text in texts)], "only errors email"
    # Each email links to its event at the API the stack serves (the URL scripts/up printed), not at
    # an AWS host name that does not resolve here.
    links = {f"{stack['API_URL'].rstrip('/')}/api/events/{event_id}" for event_id in error_ids}
    assert {link for link in links if any(link in text for text in texts)} == links

    for dlq in ("WARNING_DLQ_URL", "ERROR_DLQ_URL"):
        attributes = sqs.get_queue_attributes(QueueUrl=stack[dlq], AttributeNames=["ApproximateNumberOfMessages"])
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0", dlq
