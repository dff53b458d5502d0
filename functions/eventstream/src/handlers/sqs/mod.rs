//! The SQS handlers behind `warning-events` and `error-events`.
//!
//! Each record of a batch is handled on its own, in its own span, and the response lists only the
//! records SQS should deliver again (`ReportBatchItemFailures`). A message no retry can fix (not
//! an event message, or naming no event) is parked in `dead_letters` and counts as handled.

pub mod error;
pub mod warning;

use std::error::Error as StdError;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use futures_util::future::join_all;
use tracing::{Instrument, field};

use crate::{
    bus::EventMessage,
    store::{PgHandlingStore, StoreError},
};

/// Handles one record of a batch.
trait RecordHandler {
    type Error: StdError;

    fn handle(&self, record: &SqsMessage) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Runs `handler` over the records and reports those to deliver again. The records are
/// independent, so they are handled together: one slow email does not hold up the batch.
async fn handle_batch<H: RecordHandler>(handler: &H, records: &[SqsMessage]) -> SqsBatchResponse {
    let outcomes = join_all(records.iter().map(|record| async move {
        let span = tracing::info_span!(
            "sqs_record",
            message_id = record.message_id.as_deref().unwrap_or_default(),
            receive_count = record.attributes.get("ApproximateReceiveCount").map(String::as_str).unwrap_or_default(),
            event_id = field::Empty,
        );
        let outcome = handler.handle(record).instrument(span.clone()).await;
        if let Err(error) = &outcome {
            span.in_scope(|| tracing::warn!(error = %error_chain(error), "record failed; SQS will deliver it again"));
        }
        (record, outcome.is_ok())
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (record, handled) in outcomes {
        if !handled {
            // SQS always sets the id; an empty one would make Lambda retry the whole batch.
            response.add_failure(record.message_id.clone().unwrap_or_default());
        }
    }
    response
}

/// The record's event message, or `None` once an unreadable body is parked in `dead_letters`.
async fn read_message(store: &PgHandlingStore, record: &SqsMessage) -> Result<Option<EventMessage>, StoreError> {
    let body = record.body.as_deref().unwrap_or_default();
    match EventMessage::parse(body.as_bytes()) {
        Ok(message) => {
            tracing::Span::current().record("event_id", field::display(message.event_id));
            Ok(Some(message))
        }
        Err(error) => {
            park(store, record, &error.to_string()).await?;
            Ok(None)
        }
    }
}

/// Keeps a message no retry can fix in `dead_letters`, under the queue it came from.
async fn park(store: &PgHandlingStore, record: &SqsMessage, reason: &str) -> Result<(), StoreError> {
    let queue = record.event_source_arn.as_deref().and_then(|arn| arn.rsplit(':').next()).unwrap_or("unknown");
    store.dead_letter(&format!("sqs:{queue}"), record.body.as_deref().unwrap_or_default(), reason).await?;
    tracing::warn!(reason, "message parked in dead_letters instead of being retried");
    Ok(())
}

/// An error and its causes on one line, for logs and for `notifications.last_error`.
fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
