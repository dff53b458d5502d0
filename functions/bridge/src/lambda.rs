//! The bridge as a Lambda function (`bridge-lambda`): in AWS nothing runs the long-lived process,
//! so Amazon MQ's event source mapping (one per RabbitMQ queue, `warning` and `error`) invokes this
//! function with batches of messages, and it sends each to the SQS queue of its RabbitMQ queue
//! with the process's own entries, size limits and backoff ([`crate::sqs`]).
//!
//! The same guarantee as the process: a message counts as handled only once SQS accepted it.
//! Refused entries and failed calls are retried with backoff until a deadline well inside the
//! function's timeout; if any message is still not accepted then, the invocation fails and the
//! event source delivers the whole batch again (the handlers downstream are idempotent by event
//! id, so the messages already sent cost a duplicate, never a second effect).
//!
//! Why the whole invocation fails rather than reporting the failed messages: a partial batch
//! response (`FunctionResponseTypes: ReportBatchItemFailures`) exists only for SQS, Kinesis,
//! DynamoDB Streams and Kafka (MSK, self-managed) event sources. Amazon MQ's mapping takes no
//! `FunctionResponseTypes` (its parameters are BatchSize, Enabled, FilterCriteria, FunctionName,
//! MaximumBatchingWindowInSeconds, Queues and SourceAccessConfigurations), and an invocation
//! either succeeds, acknowledging the batch, or fails, handing it back to the broker.
//!
//! What it will not guess at:
//! - A queue key that is not `<prefix>warning::<vhost>` or `<prefix>error::<vhost>` fails the
//!   invocation before anything is sent: the mapping points at a queue this function has no SQS
//!   queue for (or `AMQP_QUEUE_PREFIX` disagrees with it). Sending elsewhere would misroute and
//!   acknowledging would lose; failing keeps the messages in RabbitMQ and shows up in the
//!   function's `Errors` metric and the log, where an operator fixes the wiring.
//! - A message whose `data` is not base64 (or is missing) is forwarded as its text, flagged with
//!   the `data_encoding` attribute: the handlers already park a body they cannot read in
//!   `dead_letters`, with the reason, where it can be seen and re-driven. Failing instead would
//!   block the queue: RabbitMQ puts a rejected message back at its head and the mapping has one
//!   poller, so one bad message would stop every message behind it.
//!
//! Throughput: Amazon MQ's event source gives a RabbitMQ queue ONE concurrent poller per mapping
//! (Lambda will not scale it out; AWS Support can raise it per mapping), so each queue's
//! invocations run one after another. Each takes up to `BatchSize` messages (default 100, at most
//! 10,000), gathered for up to `MaximumBatchingWindowInSeconds` (default 0.5 s, at most 300 s),
//! within Lambda's 6 MB payload (each message arrives as base64 inside JSON with its
//! properties, ~0.6 KB for an event message: 5,000 made a 2.9 MB event, so the 6 MB cap and the
//! 10,000 cap meet). Inside an invocation the messages are sent [`FORWARD_CONCURRENCY`]
//! `SendMessageBatch` calls (10 each) at a time. So one queue moves at most about
//! `BatchSize / (window + invocation time)`: with batch 10,000 and a 1–2 s invocation (SQS in the
//! region answers in ~10–20 ms), several thousand messages a second; with the defaults (100,
//! 0.5 s), about 150–200 a second. Measured locally (2 cores, LocalStack SQS): 5,000 messages in
//! one invocation in 3.8 s, 1,300 a second.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_config::SdkConfig;
use aws_lambda_events::rabbitmq::{RabbitMqEvent, RabbitMqMessage};
use base64::{Engine, engine::general_purpose::STANDARD};
use eventstream::{
    bus::{EventMessage, Queue, Topology},
    config::{ConfigError, env_lookup, optional, required},
    metrics::Metrics,
};
use futures_util::future::join_all;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use tokio::time::Instant;

use crate::{
    Retry,
    sqs::{Outgoing, SqsForwarder},
};

/// `SendMessageBatch` calls in flight at once within an invocation.
pub const FORWARD_CONCURRENCY: usize = 16;
/// Time kept back from the function's own deadline, to answer before Lambda stops it.
const DEADLINE_MARGIN: Duration = Duration::from_secs(3);
/// The longest wait between two attempts: several attempts fit in the forwarding budget.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// Set, to `not-base64`, on a message whose `data` the event source sent not in base64: its body
/// is then that text as it came.
pub const DATA_ENCODING_ATTRIBUTE: &str = "data_encoding";

/// What `bridge-lambda` reads from its environment.
#[derive(Clone, Debug)]
pub struct LambdaConfig {
    /// `WARNING_QUEUE_URL`: the SQS queue for RabbitMQ's `warning` queue.
    pub warning_queue_url: String,
    /// `ERROR_QUEUE_URL`: the SQS queue for RabbitMQ's `error` queue.
    pub error_queue_url: String,
    /// Queue names, from `AMQP_QUEUE_PREFIX`, as the process's.
    pub topology: Topology,
    /// `BRIDGE_FORWARD_SECONDS` (default 20): how long an invocation keeps retrying before it
    /// fails; it also stops [`DEADLINE_MARGIN`] before the function's own deadline.
    pub forward_budget: Duration,
}

impl LambdaConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let forward_seconds: u64 = optional(lookup, "BRIDGE_FORWARD_SECONDS", 20)?;
        if forward_seconds == 0 {
            return Err(ConfigError::Invalid { name: "BRIDGE_FORWARD_SECONDS", reason: "must be at least 1".into() });
        }
        Ok(Self {
            warning_queue_url: required(lookup, "WARNING_QUEUE_URL")?,
            error_queue_url: required(lookup, "ERROR_QUEUE_URL")?,
            topology: Topology::with_prefix(&optional(lookup, "AMQP_QUEUE_PREFIX", String::new())?),
            forward_budget: Duration::from_secs(forward_seconds),
        })
    }
}

/// What the function keeps between invocations: one SQS client and forwarder per queue.
pub struct LambdaBridge {
    warning: SqsForwarder,
    error: SqsForwarder,
    topology: Topology,
    forward_budget: Duration,
    metrics: Metrics,
}

impl LambdaBridge {
    /// Emits its metrics to stdout ([`Metrics::from_env`]); see [`LambdaBridge::with_metrics`].
    pub fn new(config: LambdaConfig, aws: &SdkConfig) -> Self {
        let client = aws_sdk_sqs::Client::new(aws);
        let forwarder = |queue, queue_url: String| SqsForwarder { client: client.clone(), queue_url, queue };
        Self {
            warning: forwarder(Queue::Warning, config.warning_queue_url),
            error: forwarder(Queue::Error, config.error_queue_url),
            topology: config.topology,
            forward_budget: config.forward_budget,
            metrics: Metrics::from_env(),
        }
    }

    /// The same, emitting its metrics to `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    fn forwarder(&self, queue: Queue) -> &SqsForwarder {
        match queue {
            Queue::Warning => &self.warning,
            _ => &self.error,
        }
    }

    /// When to stop retrying: after the budget, and never later than the margin before the
    /// function's deadline (`deadline_ms`, milliseconds since the epoch; 0 when unknown).
    fn give_up_at(&self, deadline_ms: u64) -> Instant {
        let now = Instant::now();
        let budget = now + self.forward_budget;
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        match Duration::from_millis(deadline_ms).checked_sub(since_epoch) {
            Some(left) if deadline_ms > 0 => budget.min(now + left.saturating_sub(DEADLINE_MARGIN)),
            _ if deadline_ms > 0 => now,
            _ => budget,
        }
    }
}

/// One message on its way to SQS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub body: Vec<u8>,
    /// The AMQP `correlation_id` property.
    pub correlation_id: Option<String>,
    /// False when the event source's `data` was not base64 and `body` is that text.
    pub decoded: bool,
}

/// Why an invocation failed; the event source delivers its batch again.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(
        "messages came from {0:?}, which is not this stack's warning or error queue (check AMQP_QUEUE_PREFIX and the event source mapping)"
    )]
    UnknownQueue(String),
    #[error("SQS did not accept {messages} of the {queue} queue's messages in time; the batch will be delivered again")]
    NotAccepted { queue: &'static str, messages: usize },
}

impl From<ForwardError> for Diagnostic {
    fn from(error: ForwardError) -> Self {
        let error_type = match error {
            ForwardError::UnknownQueue(_) => "Bridge.UnknownQueue",
            ForwardError::NotAccepted { .. } => "Bridge.NotAccepted",
        };
        Diagnostic { error_type: error_type.into(), error_message: error.to_string() }
    }
}

/// What a successful invocation did, returned as its result.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct ForwardReport {
    pub warning: usize,
    pub error: usize,
}

/// Groups an event's messages by the RabbitMQ queue they came from, warning first. Every key
/// must name this topology's `warning` or `error` queue, or nothing is forwarded.
pub fn group(event: RabbitMqEvent, topology: &Topology) -> Result<BTreeMap<QueueKey, Vec<Message>>, ForwardError> {
    let mut groups: BTreeMap<QueueKey, Vec<Message>> = BTreeMap::new();
    for (key, messages) in event.messages_by_queue {
        // Amazon MQ files a queue's messages under `<queue>::<vhost>`.
        let name = key.split_once("::").map_or(key.as_str(), |(name, _)| name);
        let queue = match topology.queue_named(name) {
            Some(Queue::Warning) => QueueKey::Warning,
            Some(Queue::Error) => QueueKey::Error,
            Some(Queue::Dispatch) | None => return Err(ForwardError::UnknownQueue(key)),
        };
        groups.entry(queue).or_default().extend(messages.into_iter().map(message));
    }
    Ok(groups)
}

/// The queues the function forwards, in the order it forwards them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueueKey {
    Warning,
    Error,
}

impl QueueKey {
    pub fn queue(self) -> Queue {
        match self {
            QueueKey::Warning => Queue::Warning,
            QueueKey::Error => Queue::Error,
        }
    }
}

fn message(message: RabbitMqMessage) -> Message {
    let correlation_id = message.basic_properties.correlation_id.filter(|id| !id.is_empty());
    let data = message.data.unwrap_or_default();
    match STANDARD.decode(&data) {
        Ok(body) => Message { body, correlation_id, decoded: true },
        Err(_) => Message { body: data.into_bytes(), correlation_id, decoded: false },
    }
}

/// Forwards every message of the invocation to its SQS queue; fails, for the event source to
/// deliver the batch again, unless SQS accepted them all. Emits `MessagesForwarded` and
/// `ForwardFailures` by `Queue`, one line per queue.
pub async fn handle(bridge: &LambdaBridge, event: LambdaEvent<RabbitMqEvent>) -> Result<ForwardReport, ForwardError> {
    let give_up_at = bridge.give_up_at(event.context.deadline);
    let groups = group(event.payload, &bridge.topology)?;
    let mut report = ForwardReport::default();
    let mut failure = None;
    for (key, messages) in groups {
        let queue = key.queue();
        let undecoded = messages.iter().filter(|message| !message.decoded).count();
        if undecoded > 0 {
            tracing::warn!(
                queue = queue.role(),
                messages = undecoded,
                "messages whose data is not base64: forwarded as their text, for the handler to park"
            );
        }
        let left = forward(bridge.forwarder(queue), &messages, give_up_at).await;
        let forwarded = messages.len() - left;
        bridge
            .metrics
            .line()
            .dimension("Queue", queue.role())
            .group(&[&["Queue"]])
            .count("MessagesForwarded", forwarded)
            .count("ForwardFailures", left)
            .emit();
        match key {
            QueueKey::Warning => report.warning = forwarded,
            QueueKey::Error => report.error = forwarded,
        }
        if left > 0 {
            tracing::error!(queue = queue.role(), messages = left, "SQS did not accept every message in time");
            failure.get_or_insert(ForwardError::NotAccepted { queue: queue.role(), messages: left });
        }
    }
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!(warning = report.warning, error = report.error, "batch forwarded");
            Ok(report)
        }
    }
}

/// Sends `messages` over [`FORWARD_CONCURRENCY`] slices at once; returns how many SQS had not
/// accepted by `give_up_at`.
async fn forward(forwarder: &SqsForwarder, messages: &[Message], give_up_at: Instant) -> usize {
    let slice = messages.len().div_ceil(FORWARD_CONCURRENCY).max(1);
    let slices = messages.chunks(slice).map(|slice| async move {
        let outgoing: Vec<Outgoing> = slice
            .iter()
            .map(|message| Outgoing {
                body: &message.body,
                correlation_id: message.correlation_id.as_deref(),
                flag: (!message.decoded).then_some((DATA_ENCODING_ATTRIBUTE, "not-base64")),
            })
            .collect();
        let mut retry = Retry::until(give_up_at, MAX_RETRY_DELAY);
        forwarder
            .send_all(&outgoing, &mut retry, |accepted| {
                for index in accepted {
                    log_forwarded(forwarder.queue, &slice[index]);
                }
                std::future::ready(())
            })
            .await
    });
    join_all(slices).await.into_iter().sum()
}

/// One line per message SQS accepted, with the ids that let a person follow its event.
fn log_forwarded(queue: Queue, message: &Message) {
    let event = EventMessage::parse(&message.body).ok();
    tracing::info!(
        queue = queue.role(),
        event_id = event.as_ref().map(|event| tracing::field::display(event.event_id)),
        correlation_id = message
            .correlation_id
            .as_deref()
            .or_else(|| event.as_ref().and_then(|event| event.correlation_id.as_deref())),
        "message forwarded to SQS"
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_lambda_events::rabbitmq::RabbitMqBasicProperties;
    use serde_json::Value;

    use super::*;

    fn rabbitmq_message(body: &[u8], correlation_id: Option<&str>) -> RabbitMqMessage {
        let mut properties = RabbitMqBasicProperties::<Value>::default();
        properties.correlation_id = correlation_id.map(str::to_string);
        let mut message = RabbitMqMessage::default();
        message.basic_properties = properties;
        message.data = Some(STANDARD.encode(body));
        message
    }

    fn event(queues: &[(&str, Vec<RabbitMqMessage>)]) -> RabbitMqEvent {
        let mut event = RabbitMqEvent::default();
        event.messages_by_queue = queues.iter().cloned().map(|(key, messages)| (key.to_string(), messages)).collect();
        event
    }

    #[test]
    fn messages_are_grouped_by_queue_decoded_with_their_correlation_id() {
        let topology = Topology::with_prefix("t1-");
        let grouped = group(
            event(&[
                ("t1-error::/", vec![rabbitmq_message(b"e1", Some("req-1")), rabbitmq_message(b"e2", None)]),
                ("t1-warning::/", vec![rabbitmq_message(b"w1", Some(""))]),
            ]),
            &topology,
        )
        .unwrap();

        let keys: Vec<QueueKey> = grouped.keys().copied().collect();
        assert_eq!(keys, [QueueKey::Warning, QueueKey::Error], "warning first, whatever the event's order");
        assert_eq!(
            grouped[&QueueKey::Error],
            [
                Message { body: b"e1".to_vec(), correlation_id: Some("req-1".into()), decoded: true },
                Message { body: b"e2".to_vec(), correlation_id: None, decoded: true },
            ]
        );
        assert_eq!(grouped[&QueueKey::Warning][0].correlation_id, None, "an empty property is no id");
    }

    #[test]
    fn the_sample_event_is_the_warning_queue_with_event_messages() {
        let event: RabbitMqEvent =
            serde_json::from_str(include_str!("../../../events/bridge-rabbitmq-warning.json")).unwrap();
        let grouped = group(event, &Topology::default()).unwrap();
        let warnings = &grouped[&QueueKey::Warning];
        assert_eq!(grouped.len(), 1);
        assert_eq!(warnings.len(), 2);
        for message in warnings {
            let parsed = EventMessage::parse(&message.body).unwrap();
            assert_eq!(parsed.correlation_id, message.correlation_id);
        }
    }

    #[test]
    fn a_queue_key_of_another_queue_or_prefix_fails_the_whole_event() {
        let topology = Topology::with_prefix("t1-");
        for key in ["t1-dispatch::/", "warning::/", "t1-other::/", "t1-warning"] {
            let outcome = group(
                event(&[
                    ("t1-error::/", vec![rabbitmq_message(b"e", None)]),
                    (key, vec![rabbitmq_message(b"x", None)]),
                ]),
                &topology,
            );
            if key == "t1-warning" {
                assert!(outcome.is_ok(), "a key without a vhost still names the queue");
            } else {
                assert!(matches!(outcome, Err(ForwardError::UnknownQueue(ref k)) if k == key), "{key}: {outcome:?}");
            }
        }
    }

    #[test]
    fn data_that_is_not_base64_is_kept_as_its_text() {
        let mut broken = rabbitmq_message(b"", None);
        broken.data = Some("{not base64}".into());
        let mut missing = rabbitmq_message(b"", None);
        missing.data = None;
        let grouped = group(event(&[("error::/", vec![broken, missing])]), &Topology::default()).unwrap();
        assert_eq!(
            grouped[&QueueKey::Error],
            [
                Message { body: b"{not base64}".to_vec(), correlation_id: None, decoded: false },
                Message { body: Vec::new(), correlation_id: None, decoded: true },
            ]
        );
    }

    #[test]
    fn configuration_is_read_with_defaults_and_named_when_missing() {
        let vars: HashMap<&str, &str> =
            HashMap::from([("WARNING_QUEUE_URL", "http://sqs/w"), ("ERROR_QUEUE_URL", "http://sqs/e")]);
        let config = LambdaConfig::from_lookup(&|name| vars.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(config.forward_budget, Duration::from_secs(20));
        assert_eq!(config.topology, Topology::default());
        let error = LambdaConfig::from_lookup(&|name| (name == "WARNING_QUEUE_URL").then(|| "x".into())).unwrap_err();
        assert_eq!(error.to_string(), "environment variable ERROR_QUEUE_URL is not set");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_within_the_budget_and_before_the_functions_deadline() {
        let aws = aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build();
        let config = LambdaConfig {
            warning_queue_url: "w".into(),
            error_queue_url: "e".into(),
            topology: Topology::default(),
            forward_budget: Duration::from_secs(20),
        };
        let bridge = LambdaBridge::new(config, &aws);
        let now = Instant::now();
        let epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert_eq!(bridge.give_up_at(0) - now, Duration::from_secs(20));
        let tight = bridge.give_up_at(epoch_ms + 10_000) - now;
        assert!(tight <= Duration::from_secs(7) && tight >= Duration::from_secs(6), "{tight:?}");
        assert!(bridge.give_up_at(epoch_ms - 1_000) <= Instant::now(), "a passed deadline gives up at once");
    }
}
