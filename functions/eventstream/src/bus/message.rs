use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Event, Status};

/// The version of [`EventMessage`] this code writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// What travels through RabbitMQ and SQS for each event: enough to route it and name it; the
/// handlers read the rest from PostgreSQL by `event_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    pub schema: u32,
    pub event_id: Uuid,
    pub status: Status,
    pub source: Option<String>,
    pub title: String,
    pub received_at: DateTime<Utc>,
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

    /// Parses a base64 body, as Amazon MQ's event source delivers RabbitMQ messages.
    pub fn parse_base64(body: &str) -> Result<Self, MessageError> {
        use base64::{Engine, engine::general_purpose::STANDARD};
        let bytes = STANDARD.decode(body).map_err(|_| MessageError::NotBase64)?;
        Self::parse(&bytes)
    }
}

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
        }
    }

    #[test]
    fn a_message_round_trips_through_bytes_and_base64() {
        let original = message();
        assert_eq!(EventMessage::parse(&original.to_bytes()).unwrap(), original);
        assert_eq!(EventMessage::parse_base64(&STANDARD.encode(original.to_bytes())).unwrap(), original);
    }

    #[test]
    fn other_schema_versions_and_garbage_are_refused() {
        let mut future = serde_json::to_value(message()).unwrap();
        future["schema"] = 2.into();
        assert!(matches!(EventMessage::parse(future.to_string().as_bytes()), Err(MessageError::UnknownSchema(2))));
        assert!(matches!(EventMessage::parse(b"{\"hello\":1}"), Err(MessageError::Malformed(_))));
        assert!(matches!(EventMessage::parse_base64("***"), Err(MessageError::NotBase64)));
    }
}
