use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Event, MAX_BATCH_EVENTS, Status};

/// The version of [`EventMessage`] this code writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// What travels through RabbitMQ and SQS for each event: enough to route it and name it; the
/// handlers read the rest from PostgreSQL by `event_id`.
///
/// The handler queues carry one per message, so SQS retries and dead-letters events one by one.
/// The `dispatch` queue carries a request's events together (see [`EventMessage::batch_to_bytes`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    pub schema: u32,
    pub event_id: Uuid,
    pub status: Status,
    pub source: Option<String>,
    pub title: String,
    pub received_at: DateTime<Utc>,
    /// The id that follows the event from its request to its email; absent from messages
    /// published before it was carried, which still parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// A message body that is not an [`EventMessage`] this code can read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message is not a JSON event message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("message schema version {0} is not {SCHEMA_VERSION}")]
    UnknownSchema(u32),
    #[error("message body is not valid base64")]
    NotBase64,
}

impl EventMessage {
    pub fn for_event(event: &Event) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            event_id: event.id,
            status: event.status,
            source: event.source.clone(),
            title: event.title.clone(),
            received_at: event.received_at,
            correlation_id: event.correlation_id.clone(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event message always serializes")
    }

    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        let message: Self = serde_json::from_slice(body)?;
        if message.schema != SCHEMA_VERSION {
            return Err(MessageError::UnknownSchema(message.schema));
        }
        Ok(message)
    }

    /// One body for the events of one request, as a JSON array of their messages: what ingest
    /// and the sweep publish to `dispatch`. A persistent, confirmed message costs the broker about
    /// as much whatever its size, so one per event made publishing a 500-event batch take twice as
    /// long as storing it.
    pub fn batch_to_bytes(messages: &[EventMessage]) -> Vec<u8> {
        debug_assert!(messages.len() <= MAX_EVENTS_PER_MESSAGE);
        serde_json::to_vec(messages).expect("event messages always serialize")
    }

    /// The events of a `dispatch` body: an array from [`EventMessage::batch_to_bytes`], or a
    /// single event's object, as earlier versions published.
    pub fn parse_batch(body: &[u8]) -> Result<Vec<Self>, MessageError> {
        let messages: Vec<Self> = if body.trim_ascii_start().starts_with(b"[") {
            serde_json::from_slice(body)?
        } else {
            vec![serde_json::from_slice(body)?]
        };
        match messages.iter().find(|message| message.schema != SCHEMA_VERSION) {
            Some(message) => Err(MessageError::UnknownSchema(message.schema)),
            None => Ok(messages),
        }
    }

    /// Parses a base64 `dispatch` body, as Amazon MQ's event source delivers RabbitMQ messages.
    pub fn parse_batch_base64(body: &str) -> Result<Vec<Self>, MessageError> {
        use base64::{Engine, engine::general_purpose::STANDARD};
        let bytes = STANDARD.decode(body).map_err(|_| MessageError::NotBase64)?;
        Self::parse_batch(&bytes)
    }
}

/// The most events one `dispatch` message carries: a whole batch request.
pub const MAX_EVENTS_PER_MESSAGE: usize = MAX_BATCH_EVENTS;

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;

    fn message() -> EventMessage {
        EventMessage {
            schema: SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            status: Status::Error,
            source: Some("billing".into()),
            title: "Payment failed".into(),
            received_at: Utc::now(),
            correlation_id: Some("req-42".into()),
        }
    }

    #[test]
    fn a_message_round_trips_through_bytes_and_base64() {
        let original = message();
        assert_eq!(EventMessage::parse(&original.to_bytes()).unwrap(), original);
        assert_eq!(EventMessage::parse_batch_base64(&STANDARD.encode(original.to_bytes())).unwrap(), [original]);
    }

    #[test]
    fn a_batch_round_trips_and_a_single_message_reads_as_a_batch_of_one() {
        let batch = vec![message(), message(), message()];
        assert_eq!(EventMessage::parse_batch(&EventMessage::batch_to_bytes(&batch)).unwrap(), batch);
        let encoded = STANDARD.encode(EventMessage::batch_to_bytes(&batch));
        assert_eq!(EventMessage::parse_batch_base64(&encoded).unwrap(), batch);
        assert_eq!(EventMessage::parse_batch(&batch[1].to_bytes()).unwrap(), [batch[1].clone()]);
        assert!(EventMessage::parse_batch(b"[]").unwrap().is_empty());
    }

    #[test]
    fn a_message_without_a_correlation_id_still_parses_and_none_is_not_written() {
        let old = br#"{"schema":1,"event_id":"0190b2a4-4c3e-7a9e-8f00-000000000001","status":"error","source":null,"title":"t","received_at":"2026-11-29T10:00:00Z"}"#;
        let parsed = EventMessage::parse(old).unwrap();
        assert_eq!(parsed.correlation_id, None);
        assert_eq!(parsed.to_bytes(), old, "a message without an id is written as before");
        let carried = message();
        let json: serde_json::Value = serde_json::from_slice(&carried.to_bytes()).unwrap();
        assert_eq!(json["correlation_id"], "req-42");
    }

    #[test]
    fn other_schema_versions_and_garbage_are_refused() {
        let mut future = serde_json::to_value(message()).unwrap();
        future["schema"] = 2.into();
        assert!(matches!(EventMessage::parse(future.to_string().as_bytes()), Err(MessageError::UnknownSchema(2))));
        let mixed = serde_json::to_vec(&[serde_json::to_value(message()).unwrap(), future.clone()]).unwrap();
        assert!(matches!(EventMessage::parse_batch(&mixed), Err(MessageError::UnknownSchema(2))));
        assert!(matches!(
            EventMessage::parse_batch(future.to_string().as_bytes()),
            Err(MessageError::UnknownSchema(2))
        ));
        assert!(matches!(EventMessage::parse(b"{\"hello\":1}"), Err(MessageError::Malformed(_))));
        assert!(matches!(EventMessage::parse_batch(b"[{\"hello\":1}]"), Err(MessageError::Malformed(_))));
        assert!(matches!(EventMessage::parse_batch_base64("***"), Err(MessageError::NotBase64)));
    }
}
