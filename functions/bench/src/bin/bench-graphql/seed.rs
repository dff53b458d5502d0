//! The seed: a large events table made in one statement, reused by later runs with the same
//! settings.

use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use eventstream::store::Cursor;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::{Args, rfc3339, thousands};

/// Bumped when the seed's shape changes, so an old seed is replaced.
const SEED_VERSION: &str = "bench seed v1";
/// One INSERT ... SELECT: times evenly spread (with jitter) and stored in time order, as ingest
/// appends them (generate_series feeds the rows in order); ids shaped like UUID v7 from those times; statuses, sources and pipeline states
/// drawn per row. $1 start, $2 seconds between events, $3 how many, $4 sources, $5 user.
const SEED_SQL: &str = r#"
INSERT INTO events (id, title, description, status, source, occurred_at, received_at, attributes, user_id,
                    pipeline_state, pipeline_updated_at)
SELECT (substr(ms, 1, 8) || '-' || substr(ms, 9, 4) || '-7' || substr(r, 1, 3) || '-'
        || substr('89ab', 1 + (i % 4)::int, 1) || substr(r, 4, 3) || '-' || substr(r, 7, 12))::uuid,
       CASE status WHEN 'success' THEN 'Job ' || (i % 997) || ' finished'
                   WHEN 'info' THEN 'Report ' || (i % 31) || ' published'
                   WHEN 'warning' THEN 'Disk at ' || (80 + i % 20) || '% on host-' || (i % 40)
                   ELSE 'Task ' || (i % 997) || ' failed' END,
       CASE WHEN status IN ('warning', 'error') THEN 'Seeded event ' || i || ' for the GraphQL benchmark' ELSE '' END,
       status,
       source,
       received_at - interval '250 milliseconds',
       received_at,
       jsonb_build_object('host', 'host-' || (i % 40), 'run', i),
       $5,
       CASE WHEN status IN ('warning', 'error') THEN 'processed' ELSE 'dispatched' END,
       received_at + interval '1 second'
FROM (
    SELECT i, received_at, status,
           lpad(to_hex((extract(epoch FROM received_at) * 1000)::bigint), 12, '0') AS ms,
           md5(i::text) AS r,
           CASE WHEN source_draw < 0.02 THEN NULL
                -- squared: a few sources send most events, as in a real fleet
                ELSE 'source-' || lpad((1 + floor(power((source_draw - 0.02) / 0.98, 2) * $4))::int::text, 3, '0') END
               AS source
    FROM (
        SELECT i,
               $1 + make_interval(secs => (i - 1 + random()) * $2) AS received_at,
               CASE WHEN status_draw < 0.70 THEN 'success' WHEN status_draw < 0.80 THEN 'info'
                    WHEN status_draw < 0.95 THEN 'warning' ELSE 'error' END AS status,
               source_draw
        FROM (SELECT i, random() AS status_draw, random() AS source_draw FROM generate_series(1, $3::bigint) AS i) AS d
    ) AS timed
) AS e
"#;

/// Seeds the events table unless it already holds this seed; returns when it was seeded, the end of
/// the range its events were received in. The seed is described in the table's comment.
pub async fn ensure(pool: &PgPool, args: &Args, user: Uuid) -> anyhow::Result<DateTime<Utc>> {
    let wanted = format!("{SEED_VERSION}: events={} days={} sources={}", args.events, args.days, args.sources);
    let comment: Option<String> =
        sqlx::query_scalar("SELECT obj_description('events'::regclass, 'pg_class')").fetch_one(pool).await?;
    if let Some(until) =
        comment.as_deref().and_then(|c| c.strip_prefix(&wanted)).and_then(|c| c.strip_prefix(" until="))
        && !args.reseed
    {
        let until: DateTime<Utc> = until.parse().context("the seed comment's time")?;
        // A previous run stopped during the insert measurement: drop what it left.
        sqlx::query("DELETE FROM events WHERE received_at > $1").bind(until).execute(pool).await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await?;
        if count == args.events {
            println!("seed: reusing the {} events already seeded", thousands(count));
            return Ok(until);
        }
    }

    println!("seed: inserting {} events (once; reruns reuse them)...", thousands(args.events));
    let started = Instant::now();
    // Microseconds, as PostgreSQL stores it, so a rerun reads back the same instant.
    let now = Utc::now().trunc_subsecs(6);
    let start = now - TimeDelta::days(args.days);
    let step = (now - start).as_seconds_f64() / args.events as f64;
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL maintenance_work_mem = '512MB'").execute(&mut *tx).await?;
    sqlx::query("TRUNCATE events CASCADE").execute(&mut *tx).await?;
    // Building the secondary indexes after the rows is several times faster than maintaining them.
    let indexes: Vec<(String, String)> = sqlx::query(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
         WHERE i.indrelid = 'events'::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect();
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {name}")).execute(&mut *tx).await?;
    }
    sqlx::query(SEED_SQL)
        .bind(start)
        .bind(step)
        .bind(args.events)
        .bind(args.sources)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    for (_, definition) in &indexes {
        sqlx::query(definition).execute(&mut *tx).await?;
    }
    sqlx::query(&format!("COMMENT ON TABLE events IS '{wanted} until={}'", rfc3339(now))).execute(&mut *tx).await?;
    tx.commit().await?;
    // Sets the visibility map (index-only scans) and the planner's statistics, as autovacuum would.
    sqlx::raw_sql("VACUUM (ANALYZE) events").execute(pool).await?;
    println!("seed: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(now)
}

/// The cursor of the event `offset` places into the newest-first list.
pub async fn deep_cursor(pool: &PgPool, offset: i64) -> anyhow::Result<String> {
    let row = sqlx::query("SELECT received_at, id FROM events ORDER BY received_at DESC, id DESC OFFSET $1 LIMIT 1")
        .bind(offset)
        .fetch_one(pool)
        .await?;
    Ok(Cursor { received_at: row.get(0), id: row.get(1) }.encode())
}
