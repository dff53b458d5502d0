//! The bridge forwards RabbitMQ `warning`/`error` to their SQS queues and acknowledges them.

use std::time::{Duration, Instant};

use eventstream::{
    bus::{Queue, Topology},
    domain::Status,
};

use crate::helpers::{RunningBridge, SqsQueues, aws, config, ids, messages, publish, ready_messages, wait_until};

#[tokio::test]
async fn every_warning_and_error_reaches_its_sqs_queue_and_rabbitmq_ends_empty() {
    let aws = aws().await;
    let sqs = SqsQueues::create(&aws).await;
    let topology = Topology::ephemeral();
    let (warnings, errors) = (messages(Status::Warning, 200), messages(Status::Error, 200));
    let running = RunningBridge::start(config(&topology, &sqs.warning_url, &sqs.error_url), aws);
    // Published once the bridge may already be consuming, and the topology exists either way.
    publish(&topology, Queue::Warning, &warnings).await;
    publish(&topology, Queue::Error, &errors).await;

    sqs.receive_all(&sqs.warning_url, &ids(&warnings), Duration::from_secs(60)).await;
    sqs.receive_all(&sqs.error_url, &ids(&errors), Duration::from_secs(60)).await;
    running.stop().await;

    assert_eq!(ready_messages(&topology, Queue::Warning).await, 0);
    assert_eq!(ready_messages(&topology, Queue::Error).await, 0);
    sqs.delete().await;
}

#[tokio::test]
async fn forwarding_5000_messages_reports_the_rate() {
    let aws = aws().await;
    let sqs = SqsQueues::create(&aws).await;
    let topology = Topology::ephemeral();
    let (warnings, errors) = (messages(Status::Warning, 2500), messages(Status::Error, 2500));
    publish(&topology, Queue::Warning, &warnings).await;
    publish(&topology, Queue::Error, &errors).await;

    let started = Instant::now();
    let running = RunningBridge::start(config(&topology, &sqs.warning_url, &sqs.error_url), aws);
    wait_until("5000 messages in SQS", Duration::from_secs(120), || async {
        sqs.visible(&sqs.warning_url).await + sqs.visible(&sqs.error_url).await >= 5000
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!("forwarded 5000 messages RabbitMQ -> SQS in {elapsed:.2?}: {:.0} msg/s", 5000.0 / elapsed.as_secs_f64());
    running.stop().await;

    assert_eq!(ready_messages(&topology, Queue::Warning).await, 0);
    assert_eq!(ready_messages(&topology, Queue::Error).await, 0);
    sqs.receive_all(&sqs.warning_url, &ids(&warnings), Duration::from_secs(120)).await;
    sqs.receive_all(&sqs.error_url, &ids(&errors), Duration::from_secs(120)).await;
    sqs.delete().await;
}
