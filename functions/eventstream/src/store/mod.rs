//! Persistence ports and their PostgreSQL adapters.

mod analytics;
mod dead_letters;
mod events;
mod handling;
mod routing;
mod users;

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::{PgPool, postgres::PgPoolOptions};

pub use analytics::{
    NotificationRecord, PgAnalyticsStore, PipelineHealth, ProcessingRecord, RoutingRecord, SourceCount, StatsBucket,
};
pub use events::{Cursor, EventFilter, IdempotencyClaim, Insertion, InvalidCursor, PgEventStore};
pub use handling::{Claim, PgHandlingStore, Recorded};
pub use routing::{PgRoutingStore, Routing, RoutingDecision};
pub use users::{PgUserStore, User, UserError};

use crate::config::DatabaseConfig;

/// A failure of the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Idempotency-Key was already used for a different request.
    #[error("idempotency key was already used with a different request")]
    IdempotencyConflict,
    #[error("a stored row holds a value the domain does not know: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A handler queue as a stored row names it (`event_routings.target_queue`, the processing records).
fn stored_queue(name: &str) -> Result<crate::bus::Queue, StoreError> {
    crate::bus::Queue::from_target(name).ok_or_else(|| StoreError::Corrupt(format!("handler queue {name:?}")))
}

/// Builds the pool a process shares across invocations; connects on first use, so a cold start
/// does not wait for the database.
pub fn lazy_pool(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // A frozen Lambda environment may find its connections dead; test them before use.
        .test_before_acquire(true)
        .idle_timeout(Duration::from_secs(60))
        .connect_lazy(config.url.expose_secret())
}
