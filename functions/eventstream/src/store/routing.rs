//! Dispatch's side of the database: the routing rules and the routings it recorded.

use sqlx::PgPool;
use uuid::Uuid;

use super::{StoreError, parse_stored};
use crate::domain::Handler;

/// What dispatch decided, or found already decided, for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingDecision {
    pub event_id: Uuid,
    /// False when no stored event has this id: the message cannot be routed.
    pub known: bool,
    /// True when an earlier delivery already routed it: nothing is to be done again.
    pub already_routed: bool,
    /// The rule that matched, if any.
    pub rule_id: Option<i64>,
    /// Where the event goes; `None` finishes it at dispatch.
    pub target: Option<Handler>,
}

/// One routing to record.
#[derive(Clone, Debug)]
pub struct Routing {
    pub event_id: Uuid,
    pub rule_id: Option<i64>,
    pub target: Option<Handler>,
}

/// Routing rules and routings, in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgRoutingStore {
    pool: PgPool,
}

impl PgRoutingStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Decides every event of a batch in one round trip: the stored event's status and source
    /// against the enabled rules (lowest priority first), and whether it was routed before.
    #[tracing::instrument(skip_all, fields(events = event_ids.len()))]
    pub async fn decide(&self, event_ids: &[Uuid]) -> Result<Vec<RoutingDecision>, StoreError> {
        let rows = sqlx::query!(
            r#"
            SELECT m.event_id AS "event_id!",
                   e.id IS NOT NULL AS "known!",
                   er.event_id IS NOT NULL AS "already_routed!",
                   r.id AS "rule_id?",
                   r.target_queue AS "target_queue?"
            FROM UNNEST($1::uuid[]) WITH ORDINALITY AS m (event_id, position)
            LEFT JOIN events e ON e.id = m.event_id
            LEFT JOIN event_routings er ON er.event_id = m.event_id
            LEFT JOIN LATERAL (
                SELECT rule.id, rule.target_queue
                FROM routing_rules rule
                WHERE rule.enabled
                  AND rule.status = e.status
                  AND (rule.source_pattern IS NULL OR e.source LIKE rule.source_pattern)
                ORDER BY rule.priority, rule.id
                LIMIT 1
            ) r ON true
            ORDER BY m.position
            "#,
            event_ids
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let target = row.target_queue.as_deref().map(parse_stored).transpose()?;
                Ok(RoutingDecision {
                    event_id: row.event_id,
                    known: row.known,
                    already_routed: row.already_routed,
                    rule_id: row.rule_id,
                    target,
                })
            })
            .collect()
    }

    /// Records routings and marks their events `dispatched`, in one statement. An event a
    /// handler already marked `processed` keeps that state; a routing recorded before is kept.
    #[tracing::instrument(skip_all, fields(events = routings.len()))]
    pub async fn record(&self, routings: &[Routing]) -> Result<(), StoreError> {
        let ids: Vec<Uuid> = routings.iter().map(|r| r.event_id).collect();
        let rules: Vec<Option<i64>> = routings.iter().map(|r| r.rule_id).collect();
        let targets: Vec<Option<&str>> = routings.iter().map(|r| r.target.map(Handler::as_str)).collect();
        sqlx::query!(
            r#"
            WITH recorded AS (
                INSERT INTO event_routings (event_id, rule_id, target_queue)
                SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[])
                ON CONFLICT (event_id) DO NOTHING
            )
            UPDATE events SET pipeline_state = 'dispatched', pipeline_updated_at = now()
            WHERE id = ANY($1) AND pipeline_state = 'received'
            "#,
            &ids,
            &rules as &[Option<i64>],
            &targets as &[Option<&str>],
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
