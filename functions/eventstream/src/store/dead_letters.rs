//! Messages no consumer can read, kept for a person to look at rather than retried forever.

use sqlx::PgPool;

use super::StoreError;

/// Keeps an unreadable message with where it came from (`rabbitmq:dispatch`, `sqs:error-events`)
/// and why it could not be handled.
#[tracing::instrument(skip(pool, body))]
pub(crate) async fn park(pool: &PgPool, origin: &str, body: &str, error: &str) -> Result<(), StoreError> {
    sqlx::query!("INSERT INTO dead_letters (origin, body, error) VALUES ($1, $2, $3)", origin, body, error)
        .execute(pool)
        .await?;
    Ok(())
}
