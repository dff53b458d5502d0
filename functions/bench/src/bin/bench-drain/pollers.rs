//! Lambda's SQS event source, played by pollers: receive, hand the handler the event Lambda would
//! send, delete what it did not report failed.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::{
    operation::receive_message::builders::ReceiveMessageFluentBuilder,
    types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use bridge::sqs::MAX_BATCH_ENTRIES;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::functions::{Busy, HandlerFunction};

/// Short, so a stopping poller does not hold LocalStack's connection for long.
const RECEIVE_WAIT_SECONDS: i32 = 1;

/// What one queue's pollers did.
#[derive(Default)]
pub struct PollerStats {
    pub receives: Busy,
    pub empty_receives: AtomicU64,
    pub receive_errors: AtomicU64,
    pub invocations: Busy,
    pub failed_records: AtomicU64,
    pub redelivered: AtomicU64,
    pub deletes: Busy,
    pub delete_errors: AtomicU64,
}

/// One of Lambda's SQS pollers for a queue, with the environment it invokes.
pub struct Poller {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    pub arn: String,
    pub region: String,
    pub handler: HandlerFunction,
    pub stats: Arc<PollerStats>,
    pub started: Instant,
}

impl Poller {
    /// Receives, invokes and deletes until told to stop; stopping interrupts only a receive.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        loop {
            let begun = Instant::now();
            let receive = receive(&self.client, &self.url).send();
            let received = tokio::select! {
                received = receive => received,
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            };
            let output = match received {
                Ok(output) => output,
                Err(error) => {
                    self.stats.receive_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(error), "ReceiveMessage failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let messages = output.messages();
            self.stats.receives.add(self.started, begun, messages.len() as u64);
            if messages.is_empty() {
                self.stats.empty_receives.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let redelivered = messages.iter().filter(|message| receive_count(message) > 1).count();
            self.stats.redelivered.fetch_add(redelivered as u64, Ordering::Relaxed);

            // The runtime hands the function the event as JSON text.
            let payload = serde_json::to_vec(&lambda_sqs_event(messages, &self.arn, &self.region))?;
            let event: SqsEvent = serde_json::from_slice(&payload).context("the SQS event Lambda would send")?;
            let begun = Instant::now();
            let failed: HashSet<String> = match self.handler.invoke(event).await {
                Ok(response) => {
                    response.batch_item_failures.into_iter().map(|failure| failure.item_identifier).collect()
                }
                // A failed invocation leaves the whole batch for SQS to deliver again.
                Err(error) => {
                    tracing::warn!(%error, "handler invocation failed");
                    messages.iter().filter_map(|message| message.message_id().map(str::to_string)).collect()
                }
            };
            self.stats.invocations.add(self.started, begun, messages.len() as u64);
            self.stats.failed_records.fetch_add(failed.len() as u64, Ordering::Relaxed);
            self.delete(messages, &failed).await?;
        }
    }

    /// Deletes the handled records, as the event source does after a partial batch response.
    async fn delete(&self, messages: &[Message], failed: &HashSet<String>) -> anyhow::Result<()> {
        let handled = messages.iter().filter(|message| message.message_id().is_none_or(|id| !failed.contains(id)));
        let entries = delete_entries(handled)?;
        if entries.is_empty() {
            return Ok(());
        }
        let count = entries.len() as u64;
        let begun = Instant::now();
        let deleted = self.client.delete_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await;
        self.stats.deletes.add(self.started, begun, count);
        match deleted {
            Ok(output) if output.failed.is_empty() => {}
            Ok(output) => {
                self.stats.delete_errors.fetch_add(output.failed.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                self.stats.delete_errors.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(error), "DeleteMessageBatch failed");
            }
        }
        Ok(())
    }
}

fn receive_count(message: &Message) -> u64 {
    message
        .attributes()
        .and_then(|attributes| attributes.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// The event Lambda's SQS event source sends for `messages`, in its JSON shape.
fn lambda_sqs_event(messages: &[Message], arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|message| {
            let attributes: serde_json::Map<String, Value> = message
                .attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_string(), json!(value)))
                .collect();
            let message_attributes: serde_json::Map<String, Value> = message
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| {
                    let encode = |blob: &aws_sdk_sqs::primitives::Blob| STANDARD.encode(blob.as_ref());
                    let attribute = json!({
                        "stringValue": value.string_value(),
                        "binaryValue": value.binary_value().map(encode),
                        "stringListValues": value.string_list_values(),
                        "binaryListValues": value.binary_list_values().iter().map(encode).collect::<Vec<_>>(),
                        "dataType": value.data_type(),
                    });
                    (name.clone(), attribute)
                })
                .collect();
            let mut record = json!({
                "messageId": message.message_id(),
                "receiptHandle": message.receipt_handle(),
                "body": message.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": message.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            });
            if let Some(md5) = message.md5_of_message_attributes() {
                record["md5OfMessageAttributes"] = json!(md5);
            }
            record
        })
        .collect();
    json!({ "Records": records })
}

/// Entries deleting `messages`.
pub fn delete_entries<'a>(
    messages: impl Iterator<Item = &'a Message>,
) -> Result<Vec<DeleteMessageBatchRequestEntry>, aws_sdk_sqs::error::BuildError> {
    messages
        .enumerate()
        .map(|(index, message)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .build()
        })
        .collect()
}

/// A ReceiveMessage as Lambda's SQS event source makes it: up to 10 messages with every attribute.
pub fn receive(client: &aws_sdk_sqs::Client, url: &str) -> ReceiveMessageFluentBuilder {
    client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(MAX_BATCH_ENTRIES as i32)
        .wait_time_seconds(RECEIVE_WAIT_SECONDS)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
}
