//! Forwarding a batch of RabbitMQ deliveries to an SQS queue with `SendMessageBatch`.

use std::{collections::HashMap, ops::Range};

use aws_sdk_sqs::{
    error::SdkError,
    operation::send_message_batch::SendMessageBatchError,
    types::{MessageAttributeValue, SendMessageBatchRequestEntry},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use eventstream::{
    bus::{EventMessage, Queue},
    domain::CorrelationId,
};
use lapin::message::Delivery;

use crate::{Retry, ack_all};

/// SQS takes at most this many entries per `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS refuses a `SendMessageBatch` whose bodies and attributes add up to more than this.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Set on a message whose body SQS could not carry as is (not UTF-8, or characters SQS
/// refuses): the body is then the base64 of the RabbitMQ body.
pub const BODY_ENCODING_ATTRIBUTE: &str = "body_encoding";
/// The event id of a body that is an [`EventMessage`].
pub const EVENT_ID_ATTRIBUTE: &str = "event_id";
/// The id that follows the event from its request to its email: what the handlers log it under.
pub use eventstream::handlers::sqs::CORRELATION_ID_ATTRIBUTE;

/// Sends to one SQS queue.
pub struct SqsForwarder {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue: Queue,
}

/// One message to send: its RabbitMQ body and AMQP `correlation_id` property.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    pub body: &'a [u8],
    pub correlation_id: Option<&'a str>,
    /// One more string attribute, name and value, when the sender has something to flag.
    pub flag: Option<(&'static str, &'static str)>,
}

impl SqsForwarder {
    /// Sends every delivery and acknowledges each once SQS accepted it. Entries SQS refused
    /// and failed calls are retried with backoff until they succeed or `retry` gives up, in
    /// which case their deliveries stay unacknowledged and RabbitMQ delivers them again.
    #[tracing::instrument(skip_all, fields(queue = self.queue.role(), messages = deliveries.len()))]
    pub async fn forward(&self, deliveries: Vec<Delivery>, retry: &mut Retry) {
        let messages: Vec<Outgoing> = deliveries
            .iter()
            .map(|delivery| Outgoing {
                body: &delivery.data,
                correlation_id: delivery.properties.correlation_id().as_ref().map(|id| id.as_str()),
                flag: None,
            })
            .collect();
        let deliveries = &deliveries;
        let left = self
            .send_all(&messages, retry, |accepted| ack_all(accepted.into_iter().map(move |index| &deliveries[index])))
            .await;
        if left > 0 {
            tracing::warn!(messages = left, "stopping: leaving messages for RabbitMQ to deliver again");
        }
    }

    /// Sends `messages` in as few `SendMessageBatch` calls as SQS's limits allow, handing
    /// `accepted` the indices of the messages each call got accepted. Refused entries and failed
    /// calls are retried with `retry`'s backoff until it gives up; returns how many messages SQS
    /// had not accepted then (0 when all were).
    pub async fn send_all<F, Fut>(&self, messages: &[Outgoing<'_>], retry: &mut Retry, mut accepted: F) -> usize
    where
        F: FnMut(Vec<usize>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let chunks = chunks_within_limits(messages.iter().map(|message| entry_size(message.body)));
        for (position, chunk) in chunks.iter().enumerate() {
            let mut pending: HashMap<String, usize> = chunk.clone().map(|index| (index.to_string(), index)).collect();
            while !pending.is_empty() {
                let entries = pending.iter().map(|(id, index)| entry(id, &messages[*index])).collect();
                match self.send(entries).await {
                    Ok(output) => {
                        let taken: Vec<usize> =
                            output.successful.iter().filter_map(|entry| pending.remove(&entry.id)).collect();
                        retry.stats.forwarded(self.queue, taken.len());
                        accepted(taken).await;
                        for refused in &output.failed {
                            let message = pending.get(&refused.id).and_then(|index| messages.get(*index));
                            let event = message.and_then(|message| EventMessage::parse(message.body).ok());
                            tracing::warn!(
                                code = %refused.code,
                                message = refused.message.as_deref().unwrap_or_default(),
                                sender_fault = refused.sender_fault,
                                event_id = event.as_ref().map(|event| tracing::field::display(event.event_id)),
                                correlation_id = message.and_then(|message| message.correlation_id),
                                "SQS refused a message; retrying it"
                            );
                        }
                        if pending.is_empty() {
                            retry.succeeded();
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "SendMessageBatch failed; retrying");
                    }
                }
                if !retry.wait().await {
                    let later: usize = chunks[position + 1..].iter().map(|range| range.len()).sum();
                    return pending.len() + later;
                }
            }
        }
        0
    }

    async fn send(
        &self,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput, SdkError<SendMessageBatchError>>
    {
        self.client.send_message_batch().queue_url(&self.queue_url).set_entries(Some(entries)).send().await
    }
}

/// The SQS entry carrying a message: its body unchanged when SQS can carry it, base64 otherwise;
/// the event id and correlation id as attributes (the AMQP property's id, else the body's).
pub fn entry(id: &str, message: &Outgoing<'_>) -> SendMessageBatchRequestEntry {
    let body = message.body;
    let mut builder = SendMessageBatchRequestEntry::builder().id(id);
    builder = match std::str::from_utf8(body) {
        Ok(text) if text.chars().all(sqs_allows) => builder.message_body(text),
        _ => builder
            .message_body(STANDARD.encode(body))
            .message_attributes(BODY_ENCODING_ATTRIBUTE, string_attribute("base64")),
    };
    let event = EventMessage::parse(body).ok();
    if let Some(event) = &event {
        builder = builder.message_attributes(EVENT_ID_ATTRIBUTE, string_attribute(&event.event_id.to_string()));
    }
    let correlation_id = message
        .correlation_id
        .or_else(|| event.as_ref().and_then(|event| event.correlation_id.as_deref()))
        .filter(|id| CorrelationId::is_valid(id));
    if let Some(correlation_id) = correlation_id {
        builder = builder.message_attributes(CORRELATION_ID_ATTRIBUTE, string_attribute(correlation_id));
    }
    if let Some((name, value)) = message.flag {
        builder = builder.message_attributes(name, string_attribute(value));
    }
    builder.build().expect("id and body are set")
}

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().expect("data type is set")
}

/// The characters SQS accepts in a message body (its documented XML subset).
fn sqs_allows(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// An upper bound of what an entry adds to a batch's size: the body, base64 at worst, and the
/// attributes.
fn entry_size(body: &[u8]) -> usize {
    body.len().div_ceil(3) * 4 + 128
}

/// Splits entries, given their sizes, into runs of indices that each fit one `SendMessageBatch`.
fn chunks_within_limits(sizes: impl IntoIterator<Item = usize>) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut end, mut bytes) = (0, 0, 0);
    for (index, size) in sizes.into_iter().enumerate() {
        if index > start && (index - start == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
            chunks.push(start..index);
            (start, bytes) = (index, 0);
        }
        bytes += size;
        end = index + 1;
    }
    if end > start {
        chunks.push(start..end);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_message_travels_unchanged_with_its_id_as_attribute() {
        let body = br#"{"schema":1,"event_id":"0190b2a4-4c3e-7a9e-8f00-000000000001","status":"error","source":null,"title":"t","received_at":"2026-11-29T10:00:00Z","correlation_id":"req-9"}"#;
        let entry = entry("3", &Outgoing { body, correlation_id: None, flag: None });
        assert_eq!(entry.id, "3");
        assert_eq!(entry.message_body.as_bytes(), body);
        let attributes = entry.message_attributes.unwrap();
        assert_eq!(attributes[EVENT_ID_ATTRIBUTE].string_value(), Some("0190b2a4-4c3e-7a9e-8f00-000000000001"));
        assert_eq!(attributes[CORRELATION_ID_ATTRIBUTE].string_value(), Some("req-9"));
        assert!(!attributes.contains_key(BODY_ENCODING_ATTRIBUTE));
    }

    #[test]
    fn the_amqp_correlation_id_is_carried_even_for_a_body_that_is_not_an_event() {
        let carried = entry("0", &Outgoing { body: b"not json", correlation_id: Some("req-1"), flag: None });
        assert_eq!(carried.message_attributes.unwrap()[CORRELATION_ID_ATTRIBUTE].string_value(), Some("req-1"));
        let invalid = entry("0", &Outgoing { body: b"not json", correlation_id: Some("two words"), flag: None });
        assert!(invalid.message_attributes.is_none(), "an id no hop could carry is dropped");
    }

    #[test]
    fn a_malformed_body_is_still_sent_and_one_sqs_cannot_carry_goes_as_base64() {
        let text = entry("0", &Outgoing { body: b"not json", correlation_id: None, flag: None });
        assert_eq!(text.message_body, "not json");
        assert!(text.message_attributes.is_none());
        for body in [&[0xff, 0xfe, 0x00][..], b"nul \x00 inside"] {
            let encoded = entry("0", &Outgoing { body, correlation_id: None, flag: None });
            assert_eq!(STANDARD.decode(&encoded.message_body).unwrap(), body);
            let attributes = encoded.message_attributes.unwrap();
            assert_eq!(attributes[BODY_ENCODING_ATTRIBUTE].string_value(), Some("base64"));
        }
    }

    #[test]
    fn batches_hold_at_most_ten_entries_and_256_kib() {
        let chunks = chunks_within_limits(std::iter::repeat_n(100, 25));
        assert_eq!(chunks, vec![0..10, 10..20, 20..25]);
        let chunks = chunks_within_limits([100_000, 100_000, 100_000, 10]);
        assert_eq!(chunks, vec![0..2, 2..4]);
        assert!(chunks_within_limits([]).is_empty());
    }
}
