//! What the warning and error handlers record: the events they handled and the email each error
//! event gets.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::{StoreError, parse_stored};
use crate::domain::NotificationState;

/// The handlers' records in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgHandlingStore {
    pool: PgPool,
}

/// What recording a handled event found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded; `first_time` is false when an earlier delivery had already recorded it.
    Done { first_time: bool },
    /// No event has this id, so nothing was recorded.
    UnknownEvent,
}

/// Who may send an event's email now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This caller: it is attempt number `attempt` (from 1).
    Claimed { attempt: i32 },
    /// Nobody: the email was sent.
    AlreadySent,
    /// Another invocation claimed it recently and may still be sending.
    HeldElsewhere,
}

impl PgHandlingStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Records a warning and marks its event processed, in one statement; a repeat changes nothing.
    #[tracing::instrument(skip(self))]
    pub async fn record_warning(&self, event_id: Uuid) -> Result<Recorded, StoreError> {
        let row = sqlx::query!(
            r#"
            WITH event AS (
                SELECT id FROM events WHERE id = $1
            ), recorded AS (
                INSERT INTO processed_warnings (event_id) SELECT id FROM event
                ON CONFLICT (event_id) DO NOTHING
                RETURNING event_id
            ), processed AS (
                UPDATE events SET pipeline_state = 'processed', pipeline_updated_at = now()
                WHERE id IN (SELECT id FROM event) AND pipeline_state <> 'processed'
                RETURNING id
            )
            SELECT EXISTS (SELECT 1 FROM event) AS "known!", EXISTS (SELECT 1 FROM recorded) AS "first_time!"
            "#,
            event_id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(if row.known { Recorded::Done { first_time: row.first_time } } else { Recorded::UnknownEvent })
    }

    /// Records an error event and the email it is owed (pending, to `recipients`), in one
    /// statement; a repeat changes nothing. The event must exist.
    #[tracing::instrument(skip(self, recipients))]
    pub async fn record_error(&self, event_id: Uuid, recipients: &[String]) -> Result<(), StoreError> {
        sqlx::query!(
            r#"
            WITH recorded AS (
                INSERT INTO error_records (event_id) VALUES ($1)
                ON CONFLICT (event_id) DO NOTHING
            )
            INSERT INTO notifications (event_id, channel, recipients) VALUES ($1, 'email', $2)
            ON CONFLICT (event_id, channel) DO NOTHING
            "#,
            event_id,
            recipients
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes the right to send the event's email: granted when it is pending, failed, or claimed
    /// longer than `stale_after` ago (its sender died); the claim records the recipients.
    #[tracing::instrument(skip(self, recipients))]
    pub async fn claim_email(
        &self,
        event_id: Uuid,
        recipients: &[String],
        stale_after: Duration,
    ) -> Result<Claim, StoreError> {
        // The outer SELECT reads the snapshot from before the UPDATE, so `state` is what stopped a
        // claim when `attempt` is NULL.
        let row = sqlx::query!(
            r#"
            WITH claimed AS (
                UPDATE notifications
                SET state = 'sending', attempts = attempts + 1, claimed_at = now(), recipients = $2
                WHERE event_id = $1 AND channel = 'email'
                  AND (state IN ('pending', 'failed')
                       OR (state = 'sending' AND claimed_at < now() - $3::float8 * interval '1 second'))
                RETURNING attempts
            )
            SELECT (SELECT attempts FROM claimed) AS attempt, state
            FROM notifications WHERE event_id = $1 AND channel = 'email'
            "#,
            event_id,
            recipients,
            stale_after.as_secs_f64()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(match (row.attempt, parse_stored(&row.state)?) {
            (Some(attempt), _) => Claim::Claimed { attempt },
            (None, NotificationState::Sent) => Claim::AlreadySent,
            (None, _) => Claim::HeldElsewhere,
        })
    }

    /// Notes that the event's email was sent and marks the event processed, in one statement.
    #[tracing::instrument(skip(self))]
    pub async fn email_sent(&self, event_id: Uuid) -> Result<(), StoreError> {
        sqlx::query!(
            r#"
            WITH sent AS (
                UPDATE notifications SET state = 'sent', sent_at = now(), last_error = NULL
                WHERE event_id = $1 AND channel = 'email'
            )
            UPDATE events SET pipeline_state = 'processed', pipeline_updated_at = now()
            WHERE id = $1 AND pipeline_state <> 'processed'
            "#,
            event_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notes why sending the event's email failed and frees it for the next delivery.
    #[tracing::instrument(skip(self))]
    pub async fn email_failed(&self, event_id: Uuid, reason: &str) -> Result<(), StoreError> {
        sqlx::query!(
            r#"
            UPDATE notifications SET state = 'failed', last_error = $2
            WHERE event_id = $1 AND channel = 'email' AND state = 'sending'
            "#,
            event_id,
            reason
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks an event processed; a no-op when it already is.
    #[tracing::instrument(skip(self))]
    pub async fn mark_processed(&self, event_id: Uuid) -> Result<(), StoreError> {
        sqlx::query!(
            r#"
            UPDATE events SET pipeline_state = 'processed', pipeline_updated_at = now()
            WHERE id = $1 AND pipeline_state <> 'processed'
            "#,
            event_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
