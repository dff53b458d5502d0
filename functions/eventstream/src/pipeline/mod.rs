//! The use cases: what happens to an event, from the request that brings it to the email about it.
//!
//! [`Intake`] stores an event and publishes it for dispatch; [`Dispatcher`] routes it by the
//! routing rules to a handler queue (and sweeps up events whose publish was lost);
//! [`WarningHandling`] records a warning; [`Alerting`] records an error and emails about it
//! exactly once. They work over the stores, the bus and the mailer, and know nothing of HTTP,
//! GraphQL, Lambda or SQS: the handlers translate those into these calls.

mod alerting;
mod dispatch;
mod intake;
mod warnings;

use std::error::Error as StdError;

pub use alerting::{AlertError, Alerting};
pub use dispatch::{DispatchError, DispatchReport, Dispatcher};
pub use intake::{Intake, MAX_IDEMPOTENCY_KEY_CHARS, idempotency_claim};
pub use warnings::WarningHandling;

use chrono::{DateTime, Utc};

use crate::{
    bus::EventMessage,
    store::{PgDeadLetterStore, StoreError},
};

/// What handling one delivery did, for the handler's metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Handled by this delivery: the warning recorded, or the error's email sent, now.
    Now {
        /// When the API received the event.
        received_at: DateTime<Utc>,
        /// When the relay accepted the error's email, if this delivery sent it.
        email_sent_at: Option<DateTime<Utc>>,
    },
    /// An earlier delivery handled it; nothing was done again.
    Before,
    /// Not an event message, or it names no event: kept in `dead_letters`.
    Parked,
}

/// A message as a queue handed it over, before anything read it.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    /// Where it came from, as `dead_letters.origin` names it: `rabbitmq:dispatch`, `sqs:error-events`.
    pub origin: &'a str,
    pub body: &'a str,
}

/// The event message of a handler queue's delivery, or `None` once an unreadable one is parked.
/// Its event and correlation ids are recorded on the current span (the handler's record span).
async fn read_message(
    dead_letters: &PgDeadLetterStore,
    delivery: Delivery<'_>,
) -> Result<Option<EventMessage>, StoreError> {
    match EventMessage::parse(delivery.body.as_bytes()) {
        Ok(message) => {
            let span = tracing::Span::current();
            span.record("event_id", tracing::field::display(message.event_id));
            if let Some(correlation_id) = &message.correlation_id {
                span.record("correlation_id", correlation_id.as_str());
            }
            Ok(Some(message))
        }
        Err(error) => {
            park(dead_letters, delivery, &error.to_string()).await?;
            Ok(None)
        }
    }
}

/// Keeps a message no retry can fix in `dead_letters`, under where it came from.
async fn park(dead_letters: &PgDeadLetterStore, delivery: Delivery<'_>, reason: &str) -> Result<(), StoreError> {
    dead_letters.park(delivery.origin, delivery.body, reason).await?;
    tracing::warn!(origin = delivery.origin, reason, "message parked in dead_letters instead of being retried");
    Ok(())
}

/// An error and its causes on one line, for logs and for `notifications.last_error`.
pub fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
