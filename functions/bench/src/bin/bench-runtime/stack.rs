//! The running local stack: what scripts/up wrote about it, its login function, its dispatch
//! queue and its database, which the LocalStack phases fill and the benchmark empties again.

use std::{
    collections::HashMap,
    path::Path,
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_lambda::config::Credentials;
use bench::database;
use lapin::{
    Connection, ConnectionProperties,
    options::QueueDeclareOptions,
    types::{FieldTable, ShortString},
};
use serde_json::{Value, json};
use sqlx::{PgPool, postgres::PgConnectOptions};
use uuid::Uuid;

/// What scripts/up wrote about the running stack.
pub struct Stack {
    pub api_url: String,
    pub ingest_function: String,
    pub username: String,
    password: String,
    aws_endpoint_url: String,
    pub aws_region: String,
}

impl Stack {
    /// Reads `path`, as scripts/up writes it (NAME=value lines).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}: bring the local stack up with scripts/up", path.display()))?;
        let values: HashMap<&str, &str> = text.lines().filter_map(|line| line.split_once('=')).collect();
        let value = |name: &str| {
            values
                .get(name)
                .map(|value| value.to_string())
                .with_context(|| format!("{} has no {name}: run scripts/up again", path.display()))
        };
        Ok(Self {
            api_url: value("API_URL")?,
            ingest_function: value("INGEST_FUNCTION")?,
            username: value("DEMO_USERNAME")?,
            password: value("DEMO_PASSWORD")?,
            aws_endpoint_url: value("AWS_ENDPOINT_URL")?,
            aws_region: value("AWS_REGION")?,
        })
    }
}

/// A Lambda client for LocalStack.
pub async fn lambda_client(stack: &Stack) -> aws_sdk_lambda::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&stack.aws_endpoint_url)
        .region(Region::new(stack.aws_region.clone()))
        // LocalStack's fixed test credentials, as scripts/lib.sh's use_localstack sets them: its
        // account follows the key.
        .credentials_provider(Credentials::new("test", "test", None, None, "localstack"))
        .load()
        .await;
    aws_sdk_lambda::Client::new(&config)
}

/// `POST /api/token` as the demo user, through the stack's login function; returns the refresh
/// token. The instances accept the stack's tokens: same key, and the same user copied in.
pub fn log_in(stack: &Stack) -> anyhow::Result<String> {
    let credentials = json!({ "username": stack.username, "password": stack.password });
    let body = post_json(&format!("{}/api/token", stack.api_url), &credentials)?;
    Ok(body["refresh"].as_str().context("no refresh token")?.to_string())
}

/// A fresh access token, so that none expires within a phase. Refresh tokens work once: `refresh`
/// becomes the one issued with it.
pub fn refreshed_access(stack: &Stack, refresh: &mut String) -> anyhow::Result<String> {
    let body = post_json(&format!("{}/api/token/refresh", stack.api_url), &json!({ "refresh": refresh }))?;
    *refresh = body["refresh"].as_str().context("no refresh token")?.to_string();
    Ok(body["access"].as_str().context("no access token")?.to_string())
}

/// An HTTP client for the stack's API, which reads every answer itself.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn post_json(url: &str, body: &Value) -> anyhow::Result<Value> {
    let mut response = agent().post(url).header("Content-Type", "application/json").send(body.to_string())?;
    let text = response.body_mut().read_to_string()?;
    ensure!(response.status() == 200, "{url} answered {}: {text}", response.status());
    serde_json::from_str(&text).with_context(|| format!("{url} answered with something other than JSON: {text}"))
}

/// Waits until the bridge has taken every message off the stack's dispatch queue, or `limit` passed.
pub async fn wait_for_drain(amqp_url: &str, queue: &str, limit: Duration) -> anyhow::Result<()> {
    if limit.is_zero() {
        return Ok(());
    }
    let connection =
        Connection::connect(amqp_url, ConnectionProperties::default()).await.context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    let started = Instant::now();
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    loop {
        let ready = channel
            .queue_declare(ShortString::from(queue), passive, FieldTable::default())
            .await
            .with_context(|| format!("the stack's queue {queue}"))?
            .message_count();
        if ready == 0 {
            break;
        }
        if started.elapsed() >= limit {
            println!("  {ready} messages still in {queue} after {} s; going on", limit.as_secs());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if started.elapsed() >= Duration::from_secs(1) {
        println!("  waited {:.0} s for {queue} to drain", started.elapsed().as_secs_f64());
    }
    connection.close(0, "done".into()).await.ok();
    Ok(())
}

/// Creates and migrates the instances' database when missing, empties it, and copies the stack's
/// `username` into it with the same id and password hash, so that a token issued by either the
/// instances or the stack is good for both.
pub async fn prepare_own_database(url: &str, stack_url: &str, username: &str) -> anyhow::Result<()> {
    let own = PgConnectOptions::from_str(url).context("--database-url is not a PostgreSQL URL")?;
    let stack_options = PgConnectOptions::from_str(stack_url).context("the function's DATABASE_URL")?;
    ensure!(own.get_database() != stack_options.get_database(), "--database-url must not be the stack's own database");
    let stack = PgPool::connect_with(stack_options).await.context("connecting to the stack's database")?;
    let (id, password_hash, roles, token_version): (Uuid, String, Vec<String>, i32) =
        sqlx::query_as("SELECT id, password_hash, roles, token_version FROM users WHERE username = $1 AND is_active")
            .bind(username)
            .fetch_optional(&stack)
            .await?
            .with_context(|| format!("the stack has no active user {username}: run scripts/up again"))?;
    stack.close().await;

    let pool = database::prepare(url, "it is emptied before the run").await?;
    // Users go too: everything else hangs off them.
    sqlx::query("TRUNCATE users CASCADE").execute(&pool).await?;
    sqlx::query("INSERT INTO users (id, username, password_hash, roles, token_version) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(username)
        .bind(password_hash)
        .bind(roles)
        .bind(token_version)
        .execute(&pool)
        .await?;
    database::reset(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Deletes the events the LocalStack phases stored in the stack's database (hundreds of thousands
/// a run), once the stack has routed them or `limit` passed: left there, they would slow every later
/// query of the stack and every later benchmark's.
pub async fn delete_stack_events(stack_url: &str, run: &str, limit: Duration) {
    let deleted = async {
        let pool = PgPool::connect(stack_url).await?;
        // An empty dispatch queue is not enough: the bridge may still hold deliveries in flight,
        // and a routing written during the delete would break its foreign key.
        let started = Instant::now();
        while sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT FROM events WHERE source LIKE $1 || '-%' AND pipeline_state = 'received')",
        )
        .bind(run)
        .fetch_one(&pool)
        .await?
            && started.elapsed() < limit
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Info and success events, so a routing is all the pipeline recorded of them; one
        // statement, so the foreign key is checked once both are gone.
        let deleted = sqlx::query(
            "WITH doomed AS (SELECT id FROM events WHERE source LIKE $1 || '-%'),
                  routings AS (DELETE FROM event_routings WHERE event_id IN (SELECT id FROM doomed))
             DELETE FROM events WHERE id IN (SELECT id FROM doomed)",
        )
        .bind(run)
        .execute(&pool)
        .await?;
        pool.close().await;
        Ok::<_, sqlx::Error>(deleted.rows_affected())
    }
    .await;
    match deleted {
        Ok(count) => println!("deleted the run's {count} events from the stack's database"),
        Err(error) => {
            eprintln!("could not delete the run's events (source {run}-*) from the stack's database: {error}")
        }
    }
}
