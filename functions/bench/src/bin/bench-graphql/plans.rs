//! What PostgreSQL makes of the stats query: its settings, the plans it picks, and how often the
//! pool's prepared statement ran with each.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::{Args, rfc3339};

/// The library's own stats SQL, run here under EXPLAIN; the timed runs go through the library.
const STATS_SQL: &str = include_str!("../../../../eventstream/src/store/queries/stats_by_bucket.sql");

/// PostgreSQL's version and the settings that decide the plans, and the schema pool's statement timeout.
pub async fn print_server(pool: &PgPool) -> anyhow::Result<()> {
    let row = sqlx::query(
        "SELECT current_setting('server_version'), current_setting('shared_buffers'), current_setting('work_mem'),
                current_setting('max_parallel_workers_per_gather'), current_setting('jit'),
                current_setting('statement_timeout')",
    )
    .fetch_one(pool)
    .await?;
    println!(
        "PostgreSQL {}: shared_buffers {}, work_mem {}, max_parallel_workers_per_gather {}, jit {}; \
         the schema's pool: statement_timeout {}",
        row.get::<String, _>(0),
        row.get::<String, _>(1),
        row.get::<String, _>(2),
        row.get::<String, _>(3),
        row.get::<String, _>(4),
        row.get::<String, _>(5),
    );
    Ok(())
}

/// How often the pool's connections ran the stats statement with a plan for its values and with the
/// generic plan: PostgreSQL switches a prepared statement to the generic plan after five executions
/// when that plan's estimated cost is not higher.
pub async fn print_plan_choices(pool: &PgPool) -> anyhow::Result<()> {
    let mut connections = Vec::new();
    for _ in 0..pool.size() {
        connections.push(pool.acquire().await?);
    }
    let (mut custom, mut generic) = (0, 0);
    for connection in &mut connections {
        let row = sqlx::query(
            "SELECT coalesce(sum(custom_plans), 0)::bigint, coalesce(sum(generic_plans), 0)::bigint
             FROM pg_prepared_statements
             WHERE statement LIKE '%date_bin(make_interval%' AND statement NOT LIKE '%pg_prepared_statements%'",
        )
        .persistent(false)
        .fetch_one(&mut **connection)
        .await?;
        custom += row.get::<i64, _>(0);
        generic += row.get::<i64, _>(1);
    }
    println!(
        "\nthe stats statement on the pool's connections ran {custom} times with a custom plan, {generic} generic"
    );
    Ok(())
}

/// The plans PostgreSQL picks for the stats SQL: with the values known (a custom plan, what the first
/// executions of a prepared statement get) and as the generic plan a prepared statement may switch to.
pub async fn explain_stats(args: &Args, until: DateTime<Utc>, since_all: DateTime<Utc>) -> anyhow::Result<()> {
    let mut connection = PgConnection::connect(&args.database_url).await?;
    let ranges =
        [("stats 24 h by HOUR", until - TimeDelta::hours(24), 3_600.0), ("stats 30 days by DAY", since_all, 86_400.0)];
    println!("\nEXPLAIN (ANALYZE, BUFFERS) of the stats SQL");
    for (name, since, bucket) in ranges {
        let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {STATS_SQL}"))
            .bind(since)
            .bind(until)
            .bind(bucket)
            .bind(None::<&str>)
            .persistent(false)
            .fetch_all(&mut connection)
            .await?;
        print_plan(&format!("{name}, custom plan"), &lines, args.plans);
    }
    sqlx::raw_sql(&format!(
        "SET plan_cache_mode = force_generic_plan;
         PREPARE bench_stats (timestamptz, timestamptz, float8, text) AS {STATS_SQL}"
    ))
    .execute(&mut connection)
    .await?;
    for (name, since, bucket) in ranges {
        let lines: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_stats('{}', '{}', {bucket}, NULL)",
            rfc3339(since),
            rfc3339(until)
        ))
        .persistent(false)
        .fetch_all(&mut connection)
        .await?;
        print_plan(&format!("{name}, generic plan"), &lines, args.plans);
    }
    connection.close().await?;
    Ok(())
}

/// The plan's scans and times, or all of it.
fn print_plan(title: &str, lines: &[String], full: bool) {
    println!("  {title}:");
    for line in lines {
        let keep = full
            || line.contains("Scan")
            || line.contains("Workers Launched")
            || line.contains("JIT:")
            || line.contains("Planning Time")
            || line.contains("Execution Time");
        if keep {
            println!("    {}", line.trim_end());
        }
    }
}
