//! Messages no consumer can read, kept for a person to look at rather than retried forever.

use sqlx::PgPool;

use super::StoreError;

/// The `dead_letters` table: where dispatch and the handlers park what they cannot read.
#[derive(Clone, Debug)]
pub struct PgDeadLetterStore {
    pool: PgPool,
}

impl PgDeadLetterStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Keeps an unreadable message with where it came from (`rabbitmq:dispatch`,
    /// `sqs:error-events`) and why it could not be handled.
    #[tracing::instrument(skip(self, body))]
    pub async fn park(&self, origin: &str, body: &str, error: &str) -> Result<(), StoreError> {
        sqlx::query!("INSERT INTO dead_letters (origin, body, error) VALUES ($1, $2, $3)", origin, body, error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
