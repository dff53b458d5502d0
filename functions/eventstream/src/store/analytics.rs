//! Read-only questions about the events and their trip through the pipeline: time series, counts,
//! health, and each event's history, answered in SQL rather than by loading rows.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;
use super::parse_stored;
use crate::domain::{Handler, NotificationState, PipelineState, Status};

/// Analytics and history queries over PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgAnalyticsStore {
    pool: PgPool,
}

/// Events received in one time bucket, by status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsBucket {
    pub start: DateTime<Utc>,
    pub success: i64,
    pub info: i64,
    pub warning: i64,
    pub error: i64,
}

/// How many events one source sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceCount {
    pub source: String,
    pub count: i64,
}

/// Where the pipeline stands.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineHealth {
    pub by_state: Vec<(PipelineState, i64)>,
    /// When the oldest event still waiting for dispatch was received.
    pub oldest_undispatched_at: Option<DateTime<Utc>>,
    pub emails_sent: i64,
    pub emails_failed: i64,
    /// Claimed or waiting to be sent.
    pub emails_pending: i64,
    pub dead_letters: i64,
}

/// What dispatch decided for an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingRecord {
    pub event_id: Uuid,
    /// `None`: finished at dispatch.
    pub target: Option<Handler>,
    pub rule_id: Option<i64>,
    pub routed_at: DateTime<Utc>,
}

/// A handler's record of an event it handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessingRecord {
    pub event_id: Uuid,
    pub handler: Handler,
    pub processed_at: DateTime<Utc>,
}

/// An email about an event, and how sending it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRecord {
    pub event_id: Uuid,
    pub channel: String,
    pub recipients: Vec<String>,
    pub state: NotificationState,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl PgAnalyticsStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Events received in `[since, until)` counted per status in buckets of `bucket`, aligned to
    /// the Unix epoch in UTC; every bucket of the range is returned, empty ones with zeros.
    #[tracing::instrument(skip(self))]
    pub async fn stats(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        bucket: Duration,
        source: Option<&str>,
    ) -> Result<Vec<StatsBucket>, StoreError> {
        let rows = sqlx::query_file_as!(
            StatsBucket,
            "src/store/queries/stats_by_bucket.sql",
            since,
            until,
            bucket.as_secs_f64(),
            source,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Events received in the range, per status; every status is present, zero or not.
    #[tracing::instrument(skip(self))]
    pub async fn status_counts(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<(Status, i64)>, StoreError> {
        let rows = sqlx::query!(
            r#"
            SELECT status, count(*) AS "count!"
            FROM events
            WHERE ($1::timestamptz IS NULL OR received_at >= $1) AND ($2::timestamptz IS NULL OR received_at < $2)
            GROUP BY status
            "#,
            since,
            until,
        )
        .fetch_all(&self.pool)
        .await?;
        let counts: HashMap<String, i64> = rows.into_iter().map(|row| (row.status, row.count)).collect();
        Ok(Status::ALL.into_iter().map(|status| (status, counts.get(status.as_str()).copied().unwrap_or(0))).collect())
    }

    /// The sources that sent the most events since `since`, most first (ties by name).
    #[tracing::instrument(skip(self))]
    pub async fn top_sources(&self, limit: i64, since: Option<DateTime<Utc>>) -> Result<Vec<SourceCount>, StoreError> {
        let rows = sqlx::query_as!(
            SourceCount,
            r#"
            SELECT source AS "source!", count(*) AS "count!"
            FROM events
            WHERE source IS NOT NULL AND ($2::timestamptz IS NULL OR received_at >= $2)
            GROUP BY source
            ORDER BY 2 DESC, 1
            LIMIT $1
            "#,
            limit,
            since,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Counts per pipeline state, the oldest event waiting for dispatch, emails and parked messages.
    #[tracing::instrument(skip(self))]
    pub async fn pipeline(&self) -> Result<PipelineHealth, StoreError> {
        let row = sqlx::query!(
            r#"
            SELECT
                (SELECT count(*) FROM events WHERE pipeline_state = 'received') AS "received!",
                (SELECT count(*) FROM events WHERE pipeline_state = 'dispatched') AS "dispatched!",
                (SELECT count(*) FROM events WHERE pipeline_state = 'processed') AS "processed!",
                (SELECT min(received_at) FROM events WHERE pipeline_state = 'received') AS oldest_undispatched_at,
                (SELECT count(*) FROM notifications WHERE state = 'sent') AS "emails_sent!",
                (SELECT count(*) FROM notifications WHERE state = 'failed') AS "emails_failed!",
                (SELECT count(*) FROM notifications WHERE state IN ('pending', 'sending')) AS "emails_pending!",
                (SELECT count(*) FROM dead_letters) AS "dead_letters!"
            "#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(PipelineHealth {
            by_state: vec![
                (PipelineState::Received, row.received),
                (PipelineState::Dispatched, row.dispatched),
                (PipelineState::Processed, row.processed),
            ],
            oldest_undispatched_at: row.oldest_undispatched_at,
            emails_sent: row.emails_sent,
            emails_failed: row.emails_failed,
            emails_pending: row.emails_pending,
            dead_letters: row.dead_letters,
        })
    }

    /// The routings of these events, for those that have one.
    #[tracing::instrument(skip_all, fields(events = event_ids.len()))]
    pub async fn routings(&self, event_ids: &[Uuid]) -> Result<Vec<RoutingRecord>, StoreError> {
        let rows = sqlx::query!(
            "SELECT event_id, target_queue, rule_id, routed_at FROM event_routings WHERE event_id = ANY($1)",
            event_ids
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let target = row.target_queue.as_deref().map(parse_stored).transpose()?;
                Ok(RoutingRecord { event_id: row.event_id, target, rule_id: row.rule_id, routed_at: row.routed_at })
            })
            .collect()
    }

    /// The warning and error handlers' records of these events.
    #[tracing::instrument(skip_all, fields(events = event_ids.len()))]
    pub async fn processings(&self, event_ids: &[Uuid]) -> Result<Vec<ProcessingRecord>, StoreError> {
        let rows = sqlx::query!(
            r#"
            SELECT event_id AS "event_id!", 'warning' AS "handler!", processed_at AS "processed_at!"
            FROM processed_warnings WHERE event_id = ANY($1)
            UNION ALL
            SELECT event_id, 'error', recorded_at FROM error_records WHERE event_id = ANY($1)
            "#,
            event_ids
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let handler = parse_stored(&row.handler)?;
                Ok(ProcessingRecord { event_id: row.event_id, handler, processed_at: row.processed_at })
            })
            .collect()
    }

    /// The notifications about these events, oldest first.
    #[tracing::instrument(skip_all, fields(events = event_ids.len()))]
    pub async fn notifications(&self, event_ids: &[Uuid]) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query!(
            "SELECT event_id, channel, recipients, state, attempts, last_error, created_at, sent_at
             FROM notifications WHERE event_id = ANY($1) ORDER BY created_at, channel",
            event_ids
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(NotificationRecord {
                    event_id: row.event_id,
                    channel: row.channel,
                    recipients: row.recipients,
                    state: parse_stored(&row.state)?,
                    attempts: row.attempts,
                    last_error: row.last_error,
                    created_at: row.created_at,
                    sent_at: row.sent_at,
                })
            })
            .collect()
    }

    /// The usernames of these users.
    #[tracing::instrument(skip_all, fields(users = user_ids.len()))]
    pub async fn usernames(&self, user_ids: &[Uuid]) -> Result<HashMap<Uuid, String>, StoreError> {
        let rows =
            sqlx::query!("SELECT id, username FROM users WHERE id = ANY($1)", user_ids).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|row| (row.id, row.username)).collect())
    }
}
