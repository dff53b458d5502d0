//! What the bridge's integration tests share: RabbitMQ topologies, SQS queues of their own on
//! LocalStack (`AWS_ENDPOINT_URL`, default http://127.0.0.1:4566), and waiting with deadlines.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::types::QueueAttributeName;
use bridge::BridgeConfig;
use eventstream::{
    bus::{AmqpBus, EventMessage, Queue, SCHEMA_VERSION, Topology},
    domain::Status,
};
use lapin::{
    Connection, ConnectionProperties,
    options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use secrecy::SecretString;
use uuid::Uuid;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// The SDK configuration for LocalStack, whatever AWS settings the environment lacks.
pub async fn aws() -> SdkConfig {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new(region))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

/// A unique name for this test's resources.
pub fn unique(what: &str) -> String {
    format!("bridge-test-{what}-{}", Uuid::now_v7().simple())
}

pub fn messages(status: Status, count: usize) -> Vec<EventMessage> {
    (0..count)
        .map(|n| EventMessage {
            schema: SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            status,
            source: Some("bridge-test".into()),
            title: format!("{} {n}", status.as_str()),
            received_at: chrono::Utc::now(),
            correlation_id: Some(format!("bridge-test-{n}")),
        })
        .collect()
}

pub fn ids(messages: &[EventMessage]) -> HashSet<Uuid> {
    messages.iter().map(|message| message.event_id).collect()
}

pub async fn publish(topology: &Topology, queue: Queue, messages: &[EventMessage]) {
    let bus = AmqpBus::new(SecretString::from(AMQP_URL), topology.clone(), Duration::from_secs(10));
    for chunk in messages.chunks(500) {
        bus.publish(queue, chunk).await.expect("test messages are published");
    }
}

/// Messages ready in a queue (unacknowledged ones count once their consumer is gone).
pub async fn ready_messages(topology: &Topology, queue: Queue) -> u32 {
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            topology.queue_name(queue).as_str().into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
    declared.message_count()
}

/// Removes a durable topology (the binary declares topologies without expiry).
pub async fn delete_topology(topology: &Topology) {
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in Queue::ALL {
        channel.queue_delete(topology.queue_name(queue).as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    }
    channel.exchange_delete(topology.exchange.as_str().into(), ExchangeDeleteOptions::default()).await.unwrap();
    connection.close(200, "done".into()).await.unwrap();
}

/// The two SQS queues of one test.
pub struct SqsQueues {
    pub aws: SdkConfig,
    pub client: aws_sdk_sqs::Client,
    pub warning_url: String,
    pub error_url: String,
}

impl SqsQueues {
    pub async fn create(aws: &SdkConfig) -> Self {
        let client = aws_sdk_sqs::Client::new(aws);
        let warning_url = create_queue(&client, &unique("warning")).await;
        let error_url = create_queue(&client, &unique("error")).await;
        Self { aws: aws.clone(), client, warning_url, error_url }
    }

    pub async fn delete(&self) {
        for url in [&self.warning_url, &self.error_url] {
            self.client.delete_queue().queue_url(url).send().await.unwrap();
        }
    }

    /// Receives (and deletes) from `url` until every id in `expected` arrived; duplicates are
    /// allowed. Fails on a message that is not expected or after `timeout`.
    pub async fn receive_all(&self, url: &str, expected: &HashSet<Uuid>, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let (mut seen, mut received) = (HashSet::new(), 0);
        while !expected.is_subset(&seen) {
            assert!(
                Instant::now() < deadline,
                "{} of {} messages arrived in {url} within {timeout:?}",
                seen.len(),
                expected.len()
            );
            let output = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            for message in output.messages() {
                let parsed = EventMessage::parse(message.body().unwrap().as_bytes()).expect("the body is unchanged");
                assert!(expected.contains(&parsed.event_id), "{} arrived in the wrong queue {url}", parsed.event_id);
                let attributes = message.message_attributes().unwrap();
                assert_eq!(attributes["event_id"].string_value(), Some(parsed.event_id.to_string().as_str()));
                assert_eq!(
                    attributes.get("correlation_id").and_then(|a| a.string_value()),
                    parsed.correlation_id.as_deref()
                );
                seen.insert(parsed.event_id);
                received += 1;
                self.client
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        received
    }

    /// Messages visible in `url`, as SQS approximates them.
    pub async fn visible(&self, url: &str) -> usize {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap();
        output.attributes().unwrap()[&QueueAttributeName::ApproximateNumberOfMessages].parse().unwrap()
    }
}

pub async fn create_queue(client: &aws_sdk_sqs::Client, name: &str) -> String {
    client.create_queue().queue_name(name).send().await.unwrap().queue_url().unwrap().to_string()
}

/// A configuration for an in-process bridge.
pub fn config(topology: &Topology, warning_url: &str, error_url: &str) -> BridgeConfig {
    BridgeConfig {
        amqp_url: SecretString::from(AMQP_URL),
        amqp_vhost: "/".into(),
        topology: topology.clone(),
        warning_queue_url: warning_url.into(),
        error_queue_url: error_url.into(),
        dispatch_function: None,
        prefetch: 100,
        batch_window: Duration::from_millis(20),
        summary_interval: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(10),
    }
}

/// Polls `condition` until it holds; fails with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An in-process bridge, stopped (and drained) by [`RunningBridge::stop`].
pub struct RunningBridge {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBridge {
    pub fn start(config: BridgeConfig, aws: SdkConfig) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            bridge::run(config, &aws, async {
                let _ = stopped.await;
            })
            .await
        });
        Self { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("the bridge drains in time").unwrap();
    }
}
