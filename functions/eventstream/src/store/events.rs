use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{StoreError, parse_stored};
use crate::domain::{CorrelationId, Event, NewEvent, PipelineState, Status};

/// Events in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgEventStore {
    pool: PgPool,
}

/// An Idempotency-Key and the fingerprint of the request that sent it.
#[derive(Clone, Debug)]
pub struct IdempotencyClaim {
    pub key: String,
    pub fingerprint: Vec<u8>,
}

/// What an insert did.
#[derive(Debug)]
pub struct Insertion {
    /// The events, in the order they were sent.
    pub events: Vec<Event>,
    /// True when the key had been used for this same request before: nothing new was stored.
    pub replayed: bool,
}

/// Filters for listing events; each is optional and they combine with AND.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Any of these statuses; empty means every status.
    pub statuses: Vec<Status>,
    pub source: Option<String>,
    /// Received at or after.
    pub since: Option<DateTime<Utc>>,
    /// Received before.
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the title or the description.
    pub text: Option<String>,
    /// Any of these pipeline states; empty means every state.
    pub pipeline_states: Vec<PipelineState>,
}

impl EventFilter {
    fn statuses(&self) -> Vec<&'static str> {
        self.statuses.iter().map(|status| status.as_str()).collect()
    }

    fn pipeline_states(&self) -> Vec<&'static str> {
        self.pipeline_states.iter().map(|state| state.as_str()).collect()
    }
}

/// A position in the newest-first order: the last event of the previous page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub received_at: DateTime<Utc>,
    pub id: Uuid,
}

/// The cursor text was not one this API handed out.
#[derive(Debug, thiserror::Error)]
#[error("is not a cursor returned by this API")]
pub struct InvalidCursor;

impl Cursor {
    /// An opaque, URL-safe text form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.received_at.timestamp_micros(), self.id))
    }

    pub fn decode(text: &str) -> Result<Self, InvalidCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
        let (micros, id) = text.split_once('|').ok_or(InvalidCursor)?;
        let received_at =
            DateTime::from_timestamp_micros(micros.parse().map_err(|_| InvalidCursor)?).ok_or(InvalidCursor)?;
        Ok(Self { received_at, id: id.parse().map_err(|_| InvalidCursor)? })
    }
}

struct EventRow {
    id: Uuid,
    title: String,
    description: String,
    status: String,
    source: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    attributes: serde_json::Value,
    pipeline_state: String,
    pipeline_updated_at: DateTime<Utc>,
    user_id: Uuid,
    correlation_id: Option<String>,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, Self::Error> {
        Ok(Event {
            id: row.id,
            status: parse_stored(&row.status)?,
            pipeline_state: parse_stored(&row.pipeline_state)?,
            title: row.title,
            description: row.description,
            source: row.source,
            occurred_at: row.occurred_at,
            received_at: row.received_at,
            attributes: row.attributes,
            pipeline_updated_at: row.pipeline_updated_at,
            posted_by: row.user_id,
            correlation_id: row.correlation_id,
        })
    }
}

fn into_events(rows: Vec<EventRow>) -> Result<Vec<Event>, StoreError> {
    rows.into_iter().map(Event::try_from).collect()
}

/// `text` as a LIKE pattern that matches it anywhere, with its own wildcards taken literally.
fn contains_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

impl PgEventStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query!("SELECT 1 AS one").fetch_one(&self.pool).await.map(|_| ())
    }

    /// Stores events in one statement: all of them or none, each with the request's `correlation_id`.
    ///
    /// With a claim, the key is taken in the same statement; when it was already taken by the same
    /// request, the original events come back with `replayed`, and when by another request, the
    /// insert fails with [`StoreError::IdempotencyConflict`]. Nothing is written in either case.
    #[tracing::instrument(skip_all, fields(%user_id, events = events.len(), key = claim.as_ref().map(|c| c.key.as_str())))]
    pub async fn insert(
        &self,
        user_id: Uuid,
        claim: Option<&IdempotencyClaim>,
        correlation_id: Option<&CorrelationId>,
        events: &[NewEvent],
    ) -> Result<Insertion, StoreError> {
        // v7 ids from one process are increasing, so id order is the order the client sent.
        let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
        let titles: Vec<&str> = events.iter().map(|e| e.title.as_str()).collect();
        let descriptions: Vec<&str> = events.iter().map(|e| e.description.as_str()).collect();
        let statuses: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
        let sources: Vec<Option<&str>> = events.iter().map(|e| e.source.as_deref()).collect();
        let occurred: Vec<Option<DateTime<Utc>>> = events.iter().map(|e| e.occurred_at).collect();
        let attributes: Vec<serde_json::Value> = events.iter().map(|e| e.attributes.clone()).collect();
        let key = claim.map(|c| c.key.as_str());
        let fingerprint = claim.map(|c| c.fingerprint.as_slice());

        let rows = sqlx::query_as!(
            EventRow,
            r#"
            WITH claimed AS (
                INSERT INTO idempotency_keys (user_id, key, request_fingerprint)
                SELECT $1, $2::text, $3::bytea WHERE $2::text IS NOT NULL
                ON CONFLICT DO NOTHING
                RETURNING key
            )
            INSERT INTO events (id, title, description, status, source, occurred_at, attributes, user_id, idempotency_key,
                                correlation_id)
            SELECT e.id, e.title, e.description, e.status, e.source, e.occurred_at, e.attributes, $1, $2, $11
            FROM UNNEST($4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::jsonb[])
                AS e (id, title, description, status, source, occurred_at, attributes)
            WHERE $2::text IS NULL OR EXISTS (SELECT 1 FROM claimed)
            RETURNING id, title, description, status, source, occurred_at, received_at, attributes,
                      pipeline_state, pipeline_updated_at, user_id, correlation_id
            "#,
            user_id,
            key,
            fingerprint,
            &ids,
            &titles as &[&str],
            &descriptions as &[&str],
            &statuses as &[&str],
            &sources as &[Option<&str>],
            &occurred as &[Option<DateTime<Utc>>],
            &attributes,
            correlation_id.map(CorrelationId::as_str),
        )
        .fetch_all(&self.pool)
        .await?;

        if !rows.is_empty() {
            let mut events = into_events(rows)?;
            events.sort_by_key(|event| event.id);
            return Ok(Insertion { events, replayed: false });
        }
        let claim = claim.expect("without a claim the insert always returns its rows");
        self.replay(user_id, claim).await
    }

    async fn replay(&self, user_id: Uuid, claim: &IdempotencyClaim) -> Result<Insertion, StoreError> {
        let stored = sqlx::query_scalar!(
            "SELECT request_fingerprint FROM idempotency_keys WHERE user_id = $1 AND key = $2",
            user_id,
            claim.key
        )
        .fetch_one(&self.pool)
        .await?;
        if stored != claim.fingerprint {
            return Err(StoreError::IdempotencyConflict);
        }
        let rows = sqlx::query_as!(
            EventRow,
            "SELECT id, title, description, status, source, occurred_at, received_at, attributes,
                    pipeline_state, pipeline_updated_at, user_id, correlation_id
             FROM events WHERE user_id = $1 AND idempotency_key = $2 ORDER BY id",
            user_id,
            claim.key
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(Insertion { events: into_events(rows)?, replayed: true })
    }

    /// One event by id.
    #[tracing::instrument(skip(self))]
    pub async fn get(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        let row = sqlx::query_as!(
            EventRow,
            "SELECT id, title, description, status, source, occurred_at, received_at, attributes,
                    pipeline_state, pipeline_updated_at, user_id, correlation_id
             FROM events WHERE id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(Event::try_from).transpose()
    }

    /// Events still `received` after `older_than`, oldest first: their publish for dispatch was
    /// lost, or never happened.
    #[tracing::instrument(skip(self))]
    pub async fn undispatched(&self, older_than: Duration, limit: i64) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query_as!(
            EventRow,
            "SELECT id, title, description, status, source, occurred_at, received_at, attributes,
                    pipeline_state, pipeline_updated_at, user_id, correlation_id
             FROM events
             WHERE pipeline_state = 'received' AND received_at < now() - $1::float8 * interval '1 second'
             ORDER BY received_at
             LIMIT $2",
            older_than.as_secs_f64(),
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        into_events(rows)
    }

    /// When the oldest event still `received` (not yet routed) was received; `None` when every
    /// event was routed. One read of the partial index `events_undispatched_idx`.
    #[tracing::instrument(skip(self))]
    pub async fn oldest_undispatched(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let oldest = sqlx::query_scalar!("SELECT min(received_at) FROM events WHERE pipeline_state = 'received'")
            .fetch_one(&self.pool)
            .await?;
        Ok(oldest)
    }

    /// Up to `limit` events matching `filter`, newest first, after `cursor`.
    #[tracing::instrument(skip(self))]
    pub async fn list(
        &self,
        filter: &EventFilter,
        cursor: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query_as!(
            EventRow,
            r#"
            SELECT id, title, description, status, source, occurred_at, received_at, attributes,
                   pipeline_state, pipeline_updated_at, user_id, correlation_id
            FROM events
            WHERE (cardinality($1::text[]) = 0 OR status = ANY($1))
              AND ($2::text IS NULL OR source = $2)
              AND ($3::timestamptz IS NULL OR received_at >= $3)
              AND ($4::timestamptz IS NULL OR received_at < $4)
              AND ($5::text IS NULL OR (title || ' ' || description) ILIKE $5)
              AND (cardinality($6::text[]) = 0 OR pipeline_state = ANY($6))
              AND ($7::timestamptz IS NULL OR (received_at, id) < ($7, $8::uuid))
            ORDER BY received_at DESC, id DESC
            LIMIT $9
            "#,
            &filter.statuses() as &[&str],
            filter.source,
            filter.since,
            filter.until,
            filter.text.as_deref().map(contains_pattern),
            &filter.pipeline_states() as &[&str],
            cursor.map(|c| c.received_at),
            cursor.map(|c| c.id),
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        into_events(rows)
    }

    /// How many events match `filter`, whatever the page.
    #[tracing::instrument(skip(self))]
    pub async fn count(&self, filter: &EventFilter) -> Result<i64, StoreError> {
        let count = sqlx::query_scalar!(
            r#"
            SELECT count(*) AS "count!"
            FROM events
            WHERE (cardinality($1::text[]) = 0 OR status = ANY($1))
              AND ($2::text IS NULL OR source = $2)
              AND ($3::timestamptz IS NULL OR received_at >= $3)
              AND ($4::timestamptz IS NULL OR received_at < $4)
              AND ($5::text IS NULL OR (title || ' ' || description) ILIKE $5)
              AND (cardinality($6::text[]) = 0 OR pipeline_state = ANY($6))
            "#,
            &filter.statuses() as &[&str],
            filter.source,
            filter.since,
            filter.until,
            filter.text.as_deref().map(contains_pattern),
            &filter.pipeline_states() as &[&str],
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_text_form() {
        let cursor =
            Cursor { received_at: DateTime::from_timestamp_micros(1_764_400_000_123_456).unwrap(), id: Uuid::now_v7() };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
    }

    #[test]
    fn garbage_is_not_a_cursor() {
        for text in ["", "!!!", &URL_SAFE_NO_PAD.encode("12|not-a-uuid"), &URL_SAFE_NO_PAD.encode("x|y")] {
            assert!(Cursor::decode(text).is_err(), "{text:?} decoded");
        }
    }

    #[test]
    fn like_wildcards_in_search_text_are_literal() {
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn v7_ids_from_one_process_increase() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| Uuid::now_v7()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
