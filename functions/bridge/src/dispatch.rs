//! Playing Amazon MQ's event source where there is none (LocalStack): a batch of `dispatch`
//! deliveries becomes the [`RabbitMqEvent`] Amazon MQ would send, and the dispatch function is
//! invoked with it: through Lambda's `Invoke` ([`LambdaFunction`]), or any other
//! [`DispatchFunction`] (a benchmark runs the handler in-process).

use std::sync::Arc;

use aws_lambda_events::rabbitmq::{RabbitMqBasicProperties, RabbitMqEvent, RabbitMqMessage};
use aws_sdk_lambda::{
    error::{DisplayErrorContext, SdkError},
    operation::invoke::InvokeError,
    primitives::Blob,
    types::InvocationType,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use eventstream::bus::Queue;
use futures_util::future::BoxFuture;
use lapin::{
    BasicProperties,
    message::Delivery,
    types::{AMQPValue, FieldTable},
};
use serde_json::{Value, json};

use crate::{Retry, ack_all};

/// Amazon MQ's event source invokes with at most this many messages by default.
pub const MAX_BATCH_MESSAGES: usize = 100;

/// Runs the dispatch function on one payload: a [`RabbitMqEvent`] as JSON, as Lambda would
/// receive it.
pub trait DispatchFunction: Send + Sync {
    /// What logs call the function.
    fn name(&self) -> &str;

    /// Completes once the function succeeded; an error leaves the batch to be delivered again.
    fn invoke(&self, payload: Vec<u8>) -> BoxFuture<'_, Result<(), InvokeFailure>>;
}

/// The dispatch function deployed in Lambda, invoked synchronously as Amazon MQ's event source does.
pub struct LambdaFunction {
    pub client: aws_sdk_lambda::Client,
    pub function: String,
}

/// Invokes the dispatch function with batches of `dispatch` deliveries.
pub struct DispatchInvoker {
    pub function: Arc<dyn DispatchFunction>,
    /// `<queue>::<vhost>`, the key Amazon MQ files a queue's messages under.
    pub queue_key: String,
    pub event_source_arn: String,
}

/// Why an invocation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeFailure {
    #[error("Invoke failed: {}", DisplayErrorContext(.0.as_ref()))]
    Call(#[source] Box<SdkError<InvokeError>>),
    /// The function ran and returned an error: its type (Lambda's `FunctionError`) and what it said.
    #[error("the function failed ({kind}): {payload}")]
    Function { kind: String, payload: String },
}

/// Lambda refuses a synchronous invocation whose payload passes 6 MB, and Amazon MQ's event source
/// ends a batch before it; so does the bridge. `dispatch` messages carry whole requests' events
/// (a 500-event message is ~130 KB in base64), so 100 of them would pass it.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// The event's JSON around its messages, with room to spare.
const ENVELOPE_BYTES: usize = 1024;

impl DispatchInvoker {
    /// Invokes the function with the deliveries, in as few invocations as the payload limit
    /// allows, and acknowledges each invocation's deliveries once the function succeeded; retries
    /// with backoff until then or until `retry` gives up, in which case the deliveries not yet
    /// acknowledged stay with RabbitMQ, which delivers them again.
    #[tracing::instrument(skip_all, fields(function = self.function.name(), messages = deliveries.len()))]
    pub async fn dispatch(&self, deliveries: Vec<Delivery>, retry: &mut Retry) {
        let messages: Vec<RabbitMqMessage> = deliveries
            .iter()
            .map(|delivery| rabbitmq_message(&delivery.properties, delivery.redelivered, &delivery.data))
            .collect();
        let mut rest = &deliveries[..];
        for group in payload_sized(messages, MAX_PAYLOAD_BYTES) {
            let (invoked, later) = rest.split_at(group.len());
            rest = later;
            let event = rabbitmq_event(&self.queue_key, &self.event_source_arn, group);
            let payload = serde_json::to_vec(&event).expect("a RabbitMQ event always serializes");
            if !self.invoke_until_done(payload, invoked, retry).await {
                return;
            }
        }
    }

    /// Whether the function succeeded; false once `retry` gave up.
    async fn invoke_until_done(&self, payload: Vec<u8>, deliveries: &[Delivery], retry: &mut Retry) -> bool {
        loop {
            match self.function.invoke(payload.clone()).await {
                Ok(()) => {
                    retry.succeeded();
                    retry.stats.forwarded(Queue::Dispatch, deliveries.len());
                    ack_all(deliveries).await;
                    return true;
                }
                Err(error) => tracing::warn!(%error, "dispatch invocation failed; retrying"),
            }
            if !retry.wait().await {
                tracing::warn!("stopping: leaving messages for RabbitMQ to deliver again");
                return false;
            }
        }
    }
}

/// Splits `messages`, in order, into groups whose event stays within `limit` bytes of JSON. A
/// message too large on its own still goes alone: Lambda's refusal then names the problem.
fn payload_sized(messages: Vec<RabbitMqMessage>, limit: usize) -> Vec<Vec<RabbitMqMessage>> {
    let mut groups: Vec<Vec<RabbitMqMessage>> = Vec::new();
    let mut size = ENVELOPE_BYTES;
    for message in messages {
        // The comma between messages included.
        let bytes = serde_json::to_vec(&message).expect("a RabbitMQ message always serializes").len() + 1;
        match groups.last_mut() {
            Some(group) if size + bytes <= limit => {
                group.push(message);
                size += bytes;
            }
            _ => {
                groups.push(vec![message]);
                size = ENVELOPE_BYTES + bytes;
            }
        }
    }
    groups
}

impl DispatchFunction for LambdaFunction {
    fn name(&self) -> &str {
        &self.function
    }

    fn invoke(&self, payload: Vec<u8>) -> BoxFuture<'_, Result<(), InvokeFailure>> {
        Box::pin(async move {
            let output = self
                .client
                .invoke()
                .function_name(&self.function)
                .invocation_type(InvocationType::RequestResponse)
                .payload(Blob::new(payload))
                .send()
                .await
                .map_err(|error| InvokeFailure::Call(Box::new(error)))?;
            match output.function_error {
                None => Ok(()),
                Some(kind) => Err(InvokeFailure::Function {
                    kind,
                    payload: output
                        .payload
                        .map(|payload| String::from_utf8_lossy(payload.as_ref()).into_owned())
                        .unwrap_or_default(),
                }),
            }
        })
    }
}

/// The event Amazon MQ's event source sends for `messages` taken from the queue `queue_key`.
pub fn rabbitmq_event(
    queue_key: &str,
    event_source_arn: &str,
    messages: impl IntoIterator<Item = RabbitMqMessage>,
) -> RabbitMqEvent {
    let mut event = RabbitMqEvent::default();
    event.event_source = Some("aws:rmq".into());
    event.event_source_arn = Some(event_source_arn.into());
    event.messages_by_queue.insert(queue_key.into(), messages.into_iter().collect());
    event
}

/// One message as Amazon MQ presents it: its AMQP properties and its body in base64.
pub fn rabbitmq_message(properties: &BasicProperties, redelivered: bool, body: &[u8]) -> RabbitMqMessage {
    let text = |value: &Option<lapin::types::ShortString>| value.as_ref().map(|value| value.as_str().to_string());
    let mut basic = RabbitMqBasicProperties::<Value>::default();
    basic.content_type = text(properties.content_type());
    basic.content_encoding = text(properties.content_encoding());
    basic.headers = properties.headers().as_ref().map(headers).unwrap_or_default();
    basic.delivery_mode = properties.delivery_mode().unwrap_or(1);
    basic.priority = properties.priority().unwrap_or(0);
    basic.correlation_id = text(properties.correlation_id());
    basic.reply_to = text(properties.reply_to());
    basic.expiration = text(properties.expiration());
    basic.message_id = text(properties.message_id());
    basic.timestamp = properties.timestamp().and_then(amazon_mq_timestamp);
    basic.type_ = text(properties.kind());
    basic.user_id = text(properties.user_id());
    basic.app_id = text(properties.app_id());
    basic.cluster_id = text(properties.cluster_id());
    basic.body_size = body.len() as u64;
    let mut message = RabbitMqMessage::default();
    message.basic_properties = basic;
    message.redelivered = redelivered;
    message.data = Some(STANDARD.encode(body));
    message
}

/// Amazon MQ writes timestamps as Java's default date format does: `Jan 1, 1970, 12:33:41 AM`.
fn amazon_mq_timestamp(seconds: u64) -> Option<String> {
    let time = chrono::DateTime::from_timestamp(i64::try_from(seconds).ok()?, 0)?;
    Some(time.format("%b %-d, %Y, %-I:%M:%S %p").to_string())
}

fn headers(table: &FieldTable) -> std::collections::HashMap<String, Value> {
    table.inner().iter().map(|(name, value)| (name.as_str().to_string(), header_value(value))).collect()
}

/// Amazon MQ gives string headers as `{"bytes": [...]}` and numbers and booleans as JSON.
fn header_value(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(value) => json!(value),
        AMQPValue::ShortShortInt(value) => json!(value),
        AMQPValue::ShortShortUInt(value) => json!(value),
        AMQPValue::ShortInt(value) => json!(value),
        AMQPValue::ShortUInt(value) => json!(value),
        AMQPValue::LongInt(value) => json!(value),
        AMQPValue::LongUInt(value) => json!(value),
        AMQPValue::LongLongInt(value) => json!(value),
        AMQPValue::Timestamp(value) => json!(value),
        AMQPValue::Float(value) => json!(value),
        AMQPValue::Double(value) => json!(value),
        AMQPValue::ShortString(value) => json!({ "bytes": value.as_str().as_bytes() }),
        AMQPValue::LongString(value) => json!({ "bytes": value.as_bytes() }),
        AMQPValue::ByteArray(value) => json!({ "bytes": value.as_slice() }),
        AMQPValue::FieldArray(values) => Value::Array(values.as_slice().iter().map(header_value).collect()),
        AMQPValue::FieldTable(table) => json!(headers(table)),
        AMQPValue::DecimalValue(value) => json!(format!("{value:?}")),
        AMQPValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_has_amazon_mq_shape_and_carries_the_body_in_base64() {
        let mut table = FieldTable::default();
        table.insert("origin".into(), AMQPValue::LongString("ingest".into()));
        table.insert("attempt".into(), AMQPValue::LongInt(2));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id("0190b2a4".into())
            .with_timestamp(2021)
            .with_headers(table);
        let body = br#"{"event_id":"0190b2a4"}"#;
        let event = rabbitmq_event(
            "dispatch::/",
            "arn:aws:mq:us-east-1:000000000000:broker:local:b-1",
            [rabbitmq_message(&properties, true, body)],
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["eventSource"], "aws:rmq");
        assert_eq!(json["eventSourceArn"], "arn:aws:mq:us-east-1:000000000000:broker:local:b-1");
        let message = &json["rmqMessagesByQueue"]["dispatch::/"][0];
        assert_eq!(message["redelivered"], true);
        assert_eq!(STANDARD.decode(message["data"].as_str().unwrap()).unwrap(), body);
        let basic = &message["basicProperties"];
        assert_eq!(basic["deliveryMode"], 2);
        assert_eq!(basic["contentType"], "application/json");
        assert_eq!(basic["messageId"], "0190b2a4");
        assert_eq!(basic["bodySize"], body.len());
        assert_eq!(basic["timestamp"], "Jan 1, 1970, 12:33:41 AM");
        assert_eq!(basic["headers"]["origin"], json!({ "bytes": b"ingest" }));
        assert_eq!(basic["headers"]["attempt"], 2);
        let parsed: RabbitMqEvent = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, event);
    }

    #[test]
    fn batches_are_split_in_order_to_stay_within_the_payload_limit() {
        let properties = BasicProperties::default().with_delivery_mode(2);
        let bodies: Vec<Vec<u8>> = (0..30u8).map(|i| vec![b'a' + i % 26; 100_000]).collect();
        let messages: Vec<RabbitMqMessage> =
            bodies.iter().map(|body| rabbitmq_message(&properties, false, body)).collect();

        let groups = payload_sized(messages.clone(), 1024 * 1024);

        assert!(groups.len() > 1);
        assert_eq!(groups.concat(), messages, "every message once, in order");
        for group in &groups {
            let event =
                rabbitmq_event("dispatch::/", "arn:aws:mq:us-east-1:000000000000:broker:local:b-1", group.clone());
            assert!(serde_json::to_vec(&event).unwrap().len() <= 1024 * 1024);
        }
        assert_eq!(payload_sized(messages[..3].to_vec(), MAX_PAYLOAD_BYTES).len(), 1);
        assert_eq!(payload_sized(messages[..2].to_vec(), 1000), [vec![messages[0].clone()], vec![messages[1].clone()]]);
    }
}
