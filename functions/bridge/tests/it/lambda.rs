//! `bridge-lambda`'s handler fed Amazon MQ events (the `events/` fixture's shape) against
//! LocalStack's real SQS, with queues of the test's own.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use aws_lambda_events::rabbitmq::RabbitMqEvent;
use bridge::{
    dispatch::{rabbitmq_event, rabbitmq_message},
    lambda::{ForwardError, ForwardReport, LambdaBridge, LambdaConfig, handle},
};
use eventstream::{
    bus::{EventMessage, Topology},
    domain::Status,
    metrics::{CapturedLines, Metrics},
};
use lambda_runtime::{Context, LambdaEvent};
use lapin::BasicProperties;
use serde_json::Value;

use crate::helpers::{SqsQueues, aws, ids, messages};

const FIXTURE: &str = include_str!("../../../../events/bridge-rabbitmq-warning.json");
const ARN: &str = "arn:aws:mq:us-east-1:000000000000:broker:eventstream:b-1";

fn bridge(sqs: &SqsQueues, error_url: &str, budget: Duration) -> (LambdaBridge, Arc<CapturedLines>) {
    let config = LambdaConfig {
        warning_queue_url: sqs.warning_url.clone(),
        error_queue_url: error_url.into(),
        topology: Topology::default(),
        forward_budget: budget,
    };
    let lines = Arc::new(CapturedLines::default());
    (LambdaBridge::new(config, &sqs.aws).with_metrics(Metrics::new("BridgeTest", lines.clone())), lines)
}

/// The messages as Amazon MQ's event source presents them, under `<queue>::/`.
fn amazon_mq_event(queue: &str, messages: &[EventMessage]) -> RabbitMqEvent {
    let rabbitmq = messages.iter().map(|message| {
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = &message.correlation_id {
            properties = properties.with_correlation_id(id.as_str().into());
        }
        rabbitmq_message(&properties, false, &message.to_bytes())
    });
    rabbitmq_event(&format!("{queue}::/"), ARN, rabbitmq)
}

fn invocation(event: RabbitMqEvent) -> LambdaEvent<RabbitMqEvent> {
    LambdaEvent::new(event, Context::default())
}

fn line_for<'a>(lines: &'a [Value], queue: &str) -> &'a Value {
    lines.iter().find(|line| line["Queue"] == queue).unwrap_or_else(|| panic!("no {queue} line in {lines:#?}"))
}

#[tokio::test]
async fn every_message_of_the_fixture_and_a_mixed_batch_reaches_its_queue_once_with_its_attributes() {
    let sqs = SqsQueues::create(&aws().await).await;
    let (bridge, lines) = bridge(&sqs, &sqs.error_url.clone(), Duration::from_secs(20));
    let fixture: RabbitMqEvent = serde_json::from_str(FIXTURE).unwrap();
    let fixture_messages: Vec<EventMessage> = fixture.messages_by_queue["warning::/"]
        .iter()
        .map(|message| EventMessage::parse_batch_base64(message.data.as_deref().unwrap()).unwrap().remove(0))
        .collect();

    let report = handle(&bridge, invocation(fixture)).await.unwrap();
    assert_eq!(report, ForwardReport { warning: 2, error: 0 });
    assert_eq!(sqs.receive_all(&sqs.warning_url, &ids(&fixture_messages), Duration::from_secs(30)).await, 2);

    let (warnings, errors) = (messages(Status::Warning, 35), messages(Status::Error, 120));
    let mut event = amazon_mq_event("error", &errors);
    event.messages_by_queue.extend(amazon_mq_event("warning", &warnings).messages_by_queue);
    let report = handle(&bridge, invocation(event)).await.unwrap();

    assert_eq!(report, ForwardReport { warning: 35, error: 120 });
    // receive_all checks each body, its event_id and correlation_id attributes; the counts say once.
    assert_eq!(sqs.receive_all(&sqs.warning_url, &ids(&warnings), Duration::from_secs(30)).await, 35);
    assert_eq!(sqs.receive_all(&sqs.error_url, &ids(&errors), Duration::from_secs(30)).await, 120);
    let lines = lines.lines();
    assert_eq!(lines.len(), 3, "one line per queue per invocation: {lines:#?}");
    let error_line = line_for(&lines, "error");
    assert_eq!(
        (error_line["MessagesForwarded"].as_f64(), error_line["ForwardFailures"].as_f64()),
        (Some(120.0), Some(0.0))
    );
    assert_eq!(error_line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["Queue"]]));
    assert_eq!(error_line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "BridgeTest");
    sqs.delete().await;
}

#[tokio::test]
async fn a_queue_sqs_does_not_have_fails_the_invocation_within_its_budget() {
    let sqs = SqsQueues::create(&aws().await).await;
    let missing = format!("{}-missing", sqs.error_url);
    let (bridge, lines) = bridge(&sqs, &missing, Duration::from_secs(2));
    let errors = messages(Status::Error, 15);

    let started = Instant::now();
    let outcome = handle(&bridge, invocation(amazon_mq_event("error", &errors))).await;

    assert!(matches!(outcome, Err(ForwardError::NotAccepted { queue: "error", messages: 15 })), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "gave up after {:?}", started.elapsed());
    let lines = lines.lines();
    let line = line_for(&lines, "error");
    assert_eq!((line["MessagesForwarded"].as_f64(), line["ForwardFailures"].as_f64()), (Some(0.0), Some(15.0)));
    assert_eq!(sqs.visible(&sqs.warning_url).await, 0);
    sqs.delete().await;
}

#[tokio::test]
async fn messages_from_a_queue_it_does_not_serve_fail_the_invocation_before_anything_is_sent() {
    let sqs = SqsQueues::create(&aws().await).await;
    let (bridge, lines) = bridge(&sqs, &sqs.error_url.clone(), Duration::from_secs(20));
    let mut event = amazon_mq_event("warning", &messages(Status::Warning, 3));
    event.messages_by_queue.extend(amazon_mq_event("dispatch", &messages(Status::Info, 1)).messages_by_queue);

    let outcome = handle(&bridge, invocation(event)).await;

    assert!(matches!(outcome, Err(ForwardError::UnknownQueue(ref key)) if key == "dispatch::/"), "{outcome:?}");
    assert_eq!(sqs.visible(&sqs.warning_url).await, 0);
    assert!(lines.lines().is_empty());
    sqs.delete().await;
}

#[tokio::test]
async fn one_invocation_of_5000_messages_reports_the_rate() {
    let sqs = SqsQueues::create(&aws().await).await;
    let (bridge, _) = bridge(&sqs, &sqs.error_url.clone(), Duration::from_secs(25));
    let errors = messages(Status::Error, 5000);
    let event = amazon_mq_event("error", &errors);
    let payload = serde_json::to_vec(&event).unwrap().len();

    let started = Instant::now();
    let report = handle(&bridge, invocation(event)).await.unwrap();
    let elapsed = started.elapsed();

    assert_eq!(report.error, 5000);
    eprintln!(
        "bridge-lambda forwarded 5000 messages ({:.1} MB of event) to LocalStack SQS in {elapsed:.2?}: {:.0} msg/s",
        payload as f64 / 1e6,
        5000.0 / elapsed.as_secs_f64()
    );
    // Every one, and once each: the queue holds exactly as many as were sent.
    assert_eq!(sqs.visible(&sqs.error_url).await, 5000);
    sqs.delete().await;
}
