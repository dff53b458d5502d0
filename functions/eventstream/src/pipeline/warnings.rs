//! Warning handling: each warning event is recorded once and marked processed.

use sqlx::PgPool;

use super::{Delivery, park, read_message};
use crate::store::{PgDeadLetterStore, PgHandlingStore, Recorded, StoreError};

/// What recording warnings needs, built once per cold start.
#[derive(Clone, Debug)]
pub struct WarningHandling {
    handling: PgHandlingStore,
    dead_letters: PgDeadLetterStore,
}

impl WarningHandling {
    pub fn new(pool: PgPool) -> Self {
        Self { handling: PgHandlingStore::new(pool.clone()), dead_letters: PgDeadLetterStore::new(pool) }
    }

    /// Records the warning a delivery names; a repeat changes nothing. A delivery that is not an
    /// event message, or names no event, is parked and counts as handled.
    pub async fn handle(&self, delivery: Delivery<'_>) -> Result<(), StoreError> {
        let Some(message) = read_message(&self.dead_letters, delivery).await? else { return Ok(()) };
        match self.handling.record_warning(message.event_id).await? {
            Recorded::Done { first_time } => tracing::info!(first_time, "warning recorded"),
            Recorded::UnknownEvent => park(&self.dead_letters, delivery, "no event has this event_id").await?,
        }
        Ok(())
    }
}
