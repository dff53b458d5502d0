"""SQS inspection and dead-letter re-drive for scripts/queues and scripts/redrive.

Talks to AWS_ENDPOINT_URL when set (LocalStack), to AWS otherwise.
"""

import sys

import boto3


def client():
    return boto3.client("sqs")


def show_queues(sqs):
    """Prints each queue's depth (visible, in flight), then the bodies in every *-dlq queue, peeked
    with VisibilityTimeout=0 so they stay where they are."""
    urls = sorted(sqs.list_queues().get("QueueUrls", []))
    if not urls:
        print("no SQS queues")
        return
    width = max(len(url.rsplit("/", 1)[1]) for url in urls)
    print(f"{'queue':<{width}}  visible  in flight")
    depths = {}
    for url in urls:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depths[url] = int(attributes["ApproximateNumberOfMessages"])
        print(
            f"{url.rsplit('/', 1)[1]:<{width}}  {attributes['ApproximateNumberOfMessages']:>7}"
            f"  {attributes['ApproximateNumberOfMessagesNotVisible']:>9}"
        )
    for url in urls:
        name = url.rsplit("/", 1)[1]
        if name.endswith("-dlq"):
            bodies = peek(sqs, url)
            # A receive that hides nothing (VisibilityTimeout=0) may keep answering with the same
            # messages, so a long dead-letter queue shows only part of its bodies.
            print(f"\n{name}: {depths[url]} message(s), {len(bodies)} shown")
            for body in bodies:
                print(f"  {body}")


def peek(sqs, url):
    """Bodies of the messages in a queue, left visible (a receive sees at most 10 at a time, so
    this reads until a receive brings nothing new)."""
    seen = {}
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
        ).get("Messages", [])
        new = [message for message in messages if message["MessageId"] not in seen]
        if not new:
            return list(seen.values())
        for message in new:
            seen[message["MessageId"]] = message["Body"]


def redrive(sqs, source_name):
    """Moves every message from <source>-dlq back to <source>; returns how many moved. A message
    is deleted from the dead-letter queue only after its copy was sent."""
    try:
        source = sqs.get_queue_url(QueueName=source_name)["QueueUrl"]
        dlq = sqs.get_queue_url(QueueName=f"{source_name}-dlq")["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        sys.exit(f"error: {source_name} or {source_name}-dlq does not exist")
    moved = 0
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return moved
        for message in messages:
            sqs.send_message(
                QueueUrl=source, MessageBody=message["Body"], MessageAttributes=message.get("MessageAttributes", {})
            )
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
            moved += 1


def main(argv):
    if argv[1:] == ["queues"]:
        show_queues(client())
    elif len(argv) == 3 and argv[1] == "redrive":
        print(f"moved {redrive(client(), argv[2])} message(s) from {argv[2]}-dlq to {argv[2]}")
    else:
        sys.exit("usage: sqs_tools.py queues | redrive <source-queue-name>")


if __name__ == "__main__":
    main(sys.argv)
