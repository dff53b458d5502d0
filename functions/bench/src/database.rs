//! The benchmarks' databases. Every benchmark empties tables, so it only touches a database whose
//! name says it is for benchmarks, which it creates and migrates when missing.

use std::{str::FromStr, time::Duration};

use anyhow::{Context, ensure};
use eventstream::{
    MIGRATOR,
    config::{DEFAULT_STATEMENT_TIMEOUT, DatabaseConfig},
    store::lazy_pool,
};
use secrecy::SecretString;
use sqlx::{PgPool, Postgres, migrate::MigrateDatabase, postgres::PgConnectOptions};
use uuid::Uuid;

/// A PHC string no password matches: a benchmark only needs the row its events point to.
const BENCH_USER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2gtdXNlcg$no-password-matches-this";

/// Refuses a database whose name lacks "bench" (`why` says what the benchmark does to it), creates
/// it when missing and applies the migrations. Returns a pool for the benchmark's own statements,
/// with no statement timeout: seeding and index builds may take minutes.
pub async fn prepare(url: &str, why: &str) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url).context("--database-url is not a PostgreSQL URL")?;
    let name = options.get_database().unwrap_or_default();
    ensure!(name.contains("bench"), "the database's name must contain \"bench\": {why}");
    if !Postgres::database_exists(url).await.context("cannot reach PostgreSQL")? {
        Postgres::create_database(url).await.with_context(|| format!("cannot create the database {name}"))?;
        println!("created database {name}");
    }
    let pool = pool(url, Duration::ZERO)?;
    MIGRATOR.run(&pool).await.context("migrating the benchmark database")?;
    Ok(pool)
}

/// A pool as a function instance builds it: lazy, 2 connections (DATABASE_MAX_CONNECTIONS's
/// default) and the functions' statement timeout.
pub fn function_pool(url: &str) -> anyhow::Result<PgPool> {
    pool(url, DEFAULT_STATEMENT_TIMEOUT)
}

fn pool(url: &str, statement_timeout: Duration) -> anyhow::Result<PgPool> {
    let config = DatabaseConfig { url: SecretString::from(url), login: None, max_connections: 2, statement_timeout };
    Ok(lazy_pool(&config)?)
}

/// The id of the user `username`, created when missing.
pub async fn bench_user(pool: &PgPool, username: &str) -> anyhow::Result<Uuid> {
    let id = sqlx::query_scalar(
        "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT (username) DO UPDATE SET username = EXCLUDED.username RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(username)
    .bind(BENCH_USER_HASH)
    .fetch_one(pool)
    .await?;
    Ok(id)
}

/// Empties what the pipeline writes (the handlers' records go with their events) and takes a
/// checkpoint, so that no phase or run inherits another's index growth or dirty buffers.
pub async fn reset(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE events, idempotency_keys, dead_letters CASCADE").execute(pool).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}
