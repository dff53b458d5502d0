//! Warning handling: each warning event is recorded once and marked processed.

use sqlx::PgPool;

use super::{Delivery, Handled, park, read_message};
use crate::{
    metrics::Metrics,
    store::{PgDeadLetterStore, PgHandlingStore, Recorded, StoreError},
};

/// What recording warnings needs, built once per cold start.
#[derive(Clone, Debug)]
pub struct WarningHandling {
    handling: PgHandlingStore,
    dead_letters: PgDeadLetterStore,
    metrics: Metrics,
}

impl WarningHandling {
    /// Its handler emits metrics to stdout ([`Metrics::from_env`]); see [`WarningHandling::with_metrics`].
    pub fn new(pool: PgPool) -> Self {
        Self {
            handling: PgHandlingStore::new(pool.clone()),
            dead_letters: PgDeadLetterStore::new(pool),
            metrics: Metrics::from_env(),
        }
    }

    /// The same, its handler emitting metrics to `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Where the warning handler's metrics go.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records the warning a delivery names; a repeat changes nothing. A delivery that is not an
    /// event message, or names no event, is parked and counts as handled.
    pub async fn handle(&self, delivery: Delivery<'_>) -> Result<Handled, StoreError> {
        let Some(message) = read_message(&self.dead_letters, delivery).await? else { return Ok(Handled::Parked) };
        match self.handling.record_warning(message.event_id).await? {
            Recorded::Done { first_time } => {
                tracing::info!(first_time, "warning recorded");
                Ok(if first_time {
                    Handled::Now { received_at: message.received_at, email_sent_at: None }
                } else {
                    Handled::Before
                })
            }
            Recorded::UnknownEvent => {
                park(&self.dead_letters, delivery, "no event has this event_id").await?;
                Ok(Handled::Parked)
            }
        }
    }
}
