//! The warning handler: records each warning event once and marks it processed.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use sqlx::PgPool;

use super::{RecordHandler, handle_batch, park, read_message};
use crate::store::{PgHandlingStore, Recorded, StoreError};

/// What the warning handler keeps across invocations.
#[derive(Clone, Debug)]
pub struct WarningHandler {
    store: PgHandlingStore,
}

impl WarningHandler {
    pub fn new(pool: PgPool) -> Self {
        Self { store: PgHandlingStore::new(pool) }
    }
}

/// Handles a batch from `warning-events`; the response names the messages to deliver again.
pub async fn handle(state: &WarningHandler, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    Ok(handle_batch(state, &event.payload.records).await)
}

impl RecordHandler for WarningHandler {
    type Error = StoreError;

    async fn handle(&self, record: &SqsMessage) -> Result<(), StoreError> {
        let Some(message) = read_message(&self.store, record).await? else { return Ok(()) };
        match self.store.record_warning(message.event_id).await? {
            Recorded::Done { first_time } => tracing::info!(first_time, "warning recorded"),
            Recorded::UnknownEvent => park(&self.store, record, "no event has this event_id").await?,
        }
        Ok(())
    }
}
