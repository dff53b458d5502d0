//! Ingest throughput straight into the ingest function's handler (no API Gateway, no Lambda
//! runtime), each figure beside a baseline measured in the same run on the same database:
//!
//! - batches of 500 events through `POST /api/events/batch` against a raw one-statement INSERT of
//!   the same rows with the same number of connections;
//! - single events through `POST /api/events` (store, then publish with a confirm to the real
//!   RabbitMQ) against `pgbench` running a single-row INSERT of the same columns.
//!
//! `cargo run --release -p eventstream --example bench_ingest -- --help` lists the options;
//! BENCHMARKS.md holds the figures.

use std::{
    path::{Path, PathBuf},
    process::Command,
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use clap::Parser;
use eventstream::{
    MIGRATOR,
    auth::{TokenCodec, TokenKind, TokenSubject},
    bus::{AmqpBus, EventMessage, Queue, SCHEMA_VERSION, Topology},
    config::{DEFAULT_STATEMENT_TIMEOUT, DatabaseConfig, JwtConfig},
    domain::{EventInput, NewEvent, Role},
    handlers::http::{AppState, service},
    store::{PgEventStore, lazy_pool},
};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool, Postgres, migrate::MigrateDatabase, postgres::PgConnectOptions};
use tower::ServiceExt;
use uuid::Uuid;

/// Ingest throughput through the real handler, against raw PostgreSQL baselines.
///
/// Creates and migrates the benchmark database when missing (its name must contain "bench": its
/// events are deleted before every phase), then runs, each for --seconds:
///
///   1. baseline: one multi-row INSERT (UNNEST of arrays, the columns ingest writes) of
///      --batch-size rows per statement, on --connections connections;
///   2. the ingest handler: POST /api/events/batch with --batch-size events and a real bearer
///      token, from --connections function instances (each its own pool, RabbitMQ connection and
///      router, one request at a time, as Lambda runs them); the request's events are published
///      to dispatch in one message with a confirm, as in production;
///   3. where the handler's time goes: the store alone (PgEventStore::insert, no HTTP, no
///      publish), then the publish alone (AmqpBus::publish_batch, one message with a confirm),
///      and for comparison one confirmed message per event (AmqpBus::publish);
///   4. the ingest handler: POST /api/events with one event from --instances instances;
///   5. baseline: pgbench -n -c <instances> -j <instances> -T <seconds> running a single-row
///      INSERT of the same columns; then the publish alone of one message, for the split.
///
/// A request's time runs from the API Gateway event's JSON (parsed by lambda_http, as the
/// runtime does) to the whole response body. RabbitMQ queues are per run (Topology::ephemeral)
/// and deleted at the end. Targets: batch at least 50% of the raw rate; single events at least
/// 700 requests/s with p99 under 20 ms.
#[derive(Debug, Parser)]
#[command(name = "bench_ingest", verbatim_doc_comment)]
struct Args {
    /// The benchmark database; created and migrated when missing, its events deleted per phase.
    #[arg(
        long,
        env = "BENCH_INGEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/eventstream_bench_ingest",
        hide_env_values = true
    )]
    database_url: String,

    /// The RabbitMQ the handler publishes to.
    #[arg(long, env = "AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f", hide_env_values = true)]
    amqp_url: String,

    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,

    /// Connections of the raw baseline and function instances of the batch phase.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    connections: u32,

    /// Events per batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=500))]
    batch_size: u32,

    /// Function instances of the single-event phase, and pgbench's clients.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    instances: u32,

    /// The pgbench binary; by default the newest /usr/lib/postgresql/*/bin/pgbench, else PATH's.
    #[arg(long)]
    pgbench: Option<PathBuf>,

    /// Only the batch phases (1-3), only the handler's batch phase (2, for a profiler), or only
    /// the single-event phases (4-5).
    #[arg(long, value_parser = ["batch", "batch-handler", "single"])]
    only: Option<String>,
}

const JWT_SECRET: &str = "bench-ingest-secret-of-32-bytes-or-more";
const BENCH_USER: &str = "bench-ingest";
/// A PHC string no password matches: the benchmark only needs the row the events point to.
const BENCH_USER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2gtdXNlcg$no-password-matches-this";
const REST_FIXTURE: &str = include_str!("../../../events/ingest-create-event-rest.json");

/// The columns `PgEventStore::insert` writes, without its idempotency-key claim and RETURNING.
const RAW_BATCH_SQL: &str = r#"
INSERT INTO events (id, title, description, status, source, occurred_at, attributes, user_id)
SELECT e.id, e.title, e.description, e.status, e.source, e.occurred_at, e.attributes, $1
FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::jsonb[])
    AS e (id, title, description, status, source, occurred_at, attributes)
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.seconds > 0.0, "--seconds must be positive");
    let options = PgConnectOptions::from_str(&args.database_url).context("--database-url is not a PostgreSQL URL")?;
    ensure!(
        options.get_database().is_some_and(|name| name.contains("bench")),
        "the database's name must contain \"bench\": its events are deleted before every phase"
    );
    let duration = Duration::from_secs_f64(args.seconds);
    let pgbench = match &args.pgbench {
        Some(path) => path.clone(),
        None => find_pgbench(),
    };

    println!("{}", machine());
    let admin = prepare_database(&args.database_url).await?;
    let user = bench_user(&admin).await?;
    let jwt = jwt_config();
    let subject = TokenSubject { user_id: user, username: BENCH_USER, roles: &Role::ALL, token_version: 1 };
    let token = TokenCodec::new(&jwt).issue(subject, TokenKind::Access, Uuid::now_v7());
    let topology = Topology::ephemeral();
    let inputs = batch_inputs(args.batch_size as usize);
    let rows: Vec<NewEvent> =
        inputs.iter().cloned().map(EventInput::validate).collect::<Result<_, _>>().context("the bench events")?;
    let mut report = Vec::new();

    if args.only.as_deref() != Some("single") {
        let handler_only = args.only.as_deref() == Some("batch-handler");
        let batch_body = json!({ "events": inputs }).to_string();
        let batch_event = rest_event("/api/events/batch", &token, &batch_body);

        let raw = if handler_only {
            None
        } else {
            reset(&admin).await?;
            let load = LoadAvg::read();
            let raw = raw_batches(&args.database_url, args.connections, user, &rows, duration).await?;
            report.push(Line::throughput(
                format!("raw INSERT, {} rows/statement, {} connections", args.batch_size, args.connections),
                &raw,
                load,
            ));
            Some(raw)
        };

        reset(&admin).await?;
        let load = LoadAvg::read();
        let instances = instances(&args, &jwt, &topology, args.connections)?;
        let handler = drive(&instances, &batch_event, StatusCode::CREATED, args.batch_size as u64, duration).await?;
        report.push(Line::throughput(
            format!("handler POST /api/events/batch, {} instances", args.connections),
            &handler,
            load,
        ));

        if let Some(raw) = raw {
            report.push(Line::ratio(
                "batch: handler / raw INSERT",
                handler.rows_per_second() / raw.rows_per_second(),
                0.5,
            ));

            reset(&admin).await?;
            let load = LoadAvg::read();
            let store = store_batches(&instances, user, &rows, duration).await?;
            report.push(Line::throughput(
                format!("PgEventStore::insert only, {} instances", args.connections),
                &store,
                load,
            ));

            let load = LoadAvg::read();
            let publish = publish_only(&args, &topology, &rows, Packing::Together, args.connections, duration).await?;
            report.push(Line::throughput(
                format!("AmqpBus::publish_batch only (1 message, as ingest), {} instances", args.connections),
                &publish,
                load,
            ));

            let load = LoadAvg::read();
            let publish = publish_only(&args, &topology, &rows, Packing::Each, args.connections, duration).await?;
            report.push(Line::throughput(
                format!("AmqpBus::publish only ({} messages), {} instances", args.batch_size, args.connections),
                &publish,
                load,
            ));
        }
    }

    if !matches!(args.only.as_deref(), Some("batch" | "batch-handler")) {
        let single_body = json!(single_input()).to_string();
        let single_event = rest_event("/api/events", &token, &single_body);

        reset(&admin).await?;
        let load = LoadAvg::read();
        let instances = instances(&args, &jwt, &topology, args.instances)?;
        let handler = drive(&instances, &single_event, StatusCode::CREATED, 1, duration).await?;
        report.push(Line::requests(format!("handler POST /api/events, {} instances", args.instances), &handler, load));

        reset(&admin).await?;
        let load = LoadAvg::read();
        let baseline = run_pgbench(&pgbench, &args.database_url, args.instances, user, duration)?;
        report.push(Line::requests(format!("pgbench single-row INSERT, {} clients", args.instances), &baseline, load));
        report.push(Line::ratio("single: handler / pgbench", handler.per_second() / baseline.per_second(), 0.0));

        let load = LoadAvg::read();
        let single_row = [single_input().validate().context("the single bench event")?];
        let publish = publish_only(&args, &topology, &single_row, Packing::Together, args.instances, duration).await?;
        report.push(Line::requests(
            format!("AmqpBus::publish only, 1 message, {} instances", args.instances),
            &publish,
            load,
        ));
        report.push(Line::verdict(
            "single: target >= 700 requests/s, p99 < 20 ms",
            handler.per_second() >= 700.0 && handler.percentile(0.99) < Duration::from_millis(20),
        ));
    }

    delete_topology(&args.amqp_url, &topology).await;
    reset(&admin).await?;
    print_report(&report, duration);
    Ok(())
}

fn jwt_config() -> JwtConfig {
    JwtConfig {
        secret: SecretString::from(JWT_SECRET),
        issuer: "eventstream".into(),
        audience: "eventstream-api".into(),
        access_ttl: Duration::from_secs(3600),
        refresh_ttl: Duration::from_secs(86_400),
    }
}

/// Creates and migrates the database when needed; returns a pool for the benchmark's own queries.
async fn prepare_database(url: &str) -> anyhow::Result<PgPool> {
    if !Postgres::database_exists(url).await.context("cannot reach PostgreSQL")? {
        Postgres::create_database(url).await.context("cannot create the benchmark database")?;
    }
    let pool = PgPool::connect(url).await?;
    MIGRATOR.run(&pool).await.context("migrating the benchmark database")?;
    Ok(pool)
}

async fn bench_user(pool: &PgPool) -> anyhow::Result<Uuid> {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT (username) DO UPDATE SET username = EXCLUDED.username RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(BENCH_USER)
    .bind(BENCH_USER_HASH)
    .fetch_one(pool)
    .await?;
    Ok(id)
}

/// Every phase starts from an empty table and a checkpoint, so none inherits another's index
/// growth or dirty buffers.
async fn reset(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE events, idempotency_keys CASCADE").execute(pool).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}

/// Events shaped like the Airflow DAG's: mostly successes, a description on the others, a
/// handful of sources and small attributes.
fn batch_inputs(count: usize) -> Vec<EventInput> {
    const STATUSES: [&str; 10] =
        ["success", "success", "success", "success", "success", "success", "success", "info", "warning", "error"];
    (0..count)
        .map(|i| {
            let status = STATUSES[i % STATUSES.len()];
            EventInput {
                title: Some(format!("Job {} finished with {status}", i % 97)),
                description: (status != "success").then(|| format!("Run {i} of the nightly export on host-{}", i % 8)),
                status: Some(status.into()),
                source: Some(format!("bench-{}", i % 10)),
                occurred_at: None,
                attributes: Some(json!({ "host": format!("host-{}", i % 8), "sequence": i })),
            }
        })
        .collect()
}

fn single_input() -> EventInput {
    EventInput {
        title: Some("Disk full on web-1".into()),
        description: None,
        status: Some("error".into()),
        source: Some("web-1".into()),
        occurred_at: None,
        attributes: Some(json!({ "mount": "/var" })),
    }
}

/// The REST (v1) proxy event API Gateway sends, as JSON text: the runtime hands the function text.
fn rest_event(path: &str, token: &str, body: &str) -> String {
    let mut event: Value = serde_json::from_str(REST_FIXTURE).expect("the fixture is JSON");
    let headers = json!({
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "Authorization": format!("Bearer {token}"),
        "Content-Type": "application/json",
    });
    let multi: serde_json::Map<String, Value> =
        headers.as_object().expect("an object").iter().map(|(name, value)| (name.clone(), json!([value]))).collect();
    event["httpMethod"] = json!("POST");
    event["requestContext"]["httpMethod"] = json!("POST");
    event["path"] = json!(path);
    event["requestContext"]["path"] = json!(format!("/Prod{path}"));
    event["pathParameters"] = json!({ "proxy": path.trim_start_matches('/') });
    event["headers"] = headers;
    event["multiValueHeaders"] = Value::Object(multi);
    event["body"] = json!(body);
    event["isBase64Encoded"] = json!(false);
    event.to_string()
}

/// What one function instance holds: built once, as at a cold start.
struct Instance {
    state: AppState,
    pool: PgPool,
}

fn instances(args: &Args, jwt: &JwtConfig, topology: &Topology, count: u32) -> anyhow::Result<Vec<Instance>> {
    (0..count)
        .map(|_| {
            // The function's own defaults: a lazy pool of DATABASE_MAX_CONNECTIONS=2, a 3 s bus timeout.
            let database = DatabaseConfig {
                url: SecretString::from(args.database_url.clone()),
                max_connections: 2,
                statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            };
            let pool = lazy_pool(&database)?;
            let bus = AmqpBus::new(SecretString::from(args.amqp_url.clone()), topology.clone(), Duration::from_secs(3));
            Ok(Instance { state: AppState::new(pool.clone(), jwt, bus), pool })
        })
        .collect()
}

/// Requests (or statements) done in a phase, with each one's latency.
struct Run {
    elapsed: Duration,
    rows: u64,
    latencies: Vec<Duration>,
}

impl Run {
    fn merge(runs: Vec<Run>, elapsed: Duration) -> Self {
        let mut merged = Run { elapsed, rows: 0, latencies: Vec::new() };
        for run in runs {
            merged.rows += run.rows;
            merged.latencies.extend(run.latencies);
        }
        merged.latencies.sort();
        merged
    }

    fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest rank; `latencies` is sorted.
    fn percentile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((fraction * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1]
    }
}

/// Runs `work` on `tasks` tasks until `duration` passes; each call returns the rows it stored.
async fn timed<F, Fut>(tasks: usize, duration: Duration, work: F) -> anyhow::Result<Run>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send,
{
    // One untimed call per task first: connections, prepared statements and the RabbitMQ channel
    // are made once per instance in production too.
    for task in 0..tasks {
        work.clone()(task).await?;
    }
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let work = work.clone();
            tokio::spawn(async move {
                let mut run = Run { elapsed: Duration::ZERO, rows: 0, latencies: Vec::new() };
                while Instant::now() < deadline {
                    let begun = Instant::now();
                    run.rows += work(task).await?;
                    run.latencies.push(begun.elapsed());
                }
                anyhow::Ok(run)
            })
        })
        .collect();
    let mut runs = Vec::new();
    for handle in handles {
        runs.push(handle.await??);
    }
    Ok(Run::merge(runs, started.elapsed()))
}

async fn raw_batches(
    url: &str,
    connections: u32,
    user: Uuid,
    rows: &[NewEvent],
    duration: Duration,
) -> anyhow::Result<Run> {
    let mut slots = Vec::new();
    for _ in 0..connections {
        slots.push(std::sync::Arc::new(tokio::sync::Mutex::new(PgConnection::connect(url).await?)));
    }
    let rows = std::sync::Arc::new(rows.to_vec());
    timed(connections as usize, duration, move |task| {
        let connection = slots[task].clone();
        let rows = rows.clone();
        async move {
            let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
            let titles: Vec<&str> = rows.iter().map(|e| e.title.as_str()).collect();
            let descriptions: Vec<&str> = rows.iter().map(|e| e.description.as_str()).collect();
            let statuses: Vec<&str> = rows.iter().map(|e| e.status.as_str()).collect();
            let sources: Vec<Option<&str>> = rows.iter().map(|e| e.source.as_deref()).collect();
            let occurred: Vec<Option<DateTime<Utc>>> = rows.iter().map(|e| e.occurred_at).collect();
            let attributes: Vec<Value> = rows.iter().map(|e| e.attributes.clone()).collect();
            let mut connection = connection.lock().await;
            let done = sqlx::query(RAW_BATCH_SQL)
                .bind(user)
                .bind(&ids)
                .bind(&titles)
                .bind(&descriptions)
                .bind(&statuses)
                .bind(&sources)
                .bind(&occurred)
                .bind(&attributes)
                .execute(&mut *connection)
                .await?;
            Ok(done.rows_affected())
        }
    })
    .await
}

async fn store_batches(
    instances: &[Instance],
    user: Uuid,
    rows: &[NewEvent],
    duration: Duration,
) -> anyhow::Result<Run> {
    let stores: std::sync::Arc<Vec<PgEventStore>> =
        std::sync::Arc::new(instances.iter().map(|instance| PgEventStore::new(instance.pool.clone())).collect());
    let rows = std::sync::Arc::new(rows.to_vec());
    timed(instances.len(), duration, move |task| {
        let stores = stores.clone();
        let rows = rows.clone();
        async move { Ok(stores[task].insert(user, None, &rows).await?.events.len() as u64) }
    })
    .await
}

/// Sends `event` to each instance's service, one request at a time per instance.
async fn drive(
    instances: &[Instance],
    event: &str,
    expected: StatusCode,
    rows_per_request: u64,
    duration: Duration,
) -> anyhow::Result<Run> {
    let services: std::sync::Arc<Vec<_>> =
        std::sync::Arc::new(instances.iter().map(|instance| service(instance.state.clone())).collect());
    let event = std::sync::Arc::new(event.to_string());
    timed(instances.len(), duration, move |task| {
        let services = services.clone();
        let event = event.clone();
        async move {
            let request = lambda_http::request::from_str(&event).context("the API Gateway event")?;
            let response = services[task].clone().oneshot(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if status != expected {
                bail!("the handler answered {status}: {}", String::from_utf8_lossy(&body));
            }
            Ok(rows_per_request)
        }
    })
    .await
}

/// How a request's events go to the broker.
#[derive(Clone, Copy)]
enum Packing {
    /// In one message, as ingest publishes them to dispatch.
    Together,
    /// One message per event, as ingest published them before.
    Each,
}

/// Publishes a message for the rows, with confirms, as the handler does after its insert.
async fn publish_only(
    args: &Args,
    topology: &Topology,
    rows: &[NewEvent],
    packing: Packing,
    tasks: u32,
    duration: Duration,
) -> anyhow::Result<Run> {
    let buses: std::sync::Arc<Vec<AmqpBus>> = std::sync::Arc::new(
        (0..tasks)
            .map(|_| AmqpBus::new(SecretString::from(args.amqp_url.clone()), topology.clone(), Duration::from_secs(3)))
            .collect(),
    );
    let now = Utc::now();
    let messages: std::sync::Arc<Vec<EventMessage>> = std::sync::Arc::new(
        rows.iter()
            .map(|row| EventMessage {
                schema: SCHEMA_VERSION,
                event_id: Uuid::now_v7(),
                status: row.status,
                source: row.source.clone(),
                title: row.title.clone(),
                received_at: now,
            })
            .collect(),
    );
    timed(tasks as usize, duration, move |task| {
        let buses = buses.clone();
        let messages = messages.clone();
        async move {
            match packing {
                Packing::Together => buses[task].publish_batch(Queue::Dispatch, &messages).await?,
                Packing::Each => buses[task].publish(Queue::Dispatch, &messages).await?,
            }
            Ok(messages.len() as u64)
        }
    })
    .await
}

fn find_pgbench() -> PathBuf {
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin/pgbench"))
        .filter(|path| path.exists())
        .collect();
    installed.sort_by_key(|path| {
        path.components().nth(4).and_then(|c| c.as_os_str().to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    installed.pop().unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// pgbench with a single-row INSERT of the columns ingest writes, returning what the store returns;
/// latencies from its per-transaction log.
fn run_pgbench(pgbench: &Path, url: &str, clients: u32, user: Uuid, duration: Duration) -> anyhow::Result<Run> {
    let dir = std::env::temp_dir().join(format!("bench_ingest-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("insert.sql");
    std::fs::write(
        &script,
        format!(
            "INSERT INTO events (id, title, description, status, source, occurred_at, attributes, user_id) \
             VALUES (gen_random_uuid(), 'Disk full on web-1', '', 'error', 'web-1', NULL, '{{\"mount\": \"/var\"}}', '{user}') \
             RETURNING id, title, description, status, source, occurred_at, received_at, attributes, \
             pipeline_state, pipeline_updated_at, user_id;\n"
        ),
    )?;
    let seconds = duration.as_secs_f64().ceil().max(1.0) as u64;
    let output = Command::new(pgbench)
        .args(["-n", "-c", &clients.to_string(), "-j", &clients.to_string(), "-T", &seconds.to_string()])
        .arg("-f")
        .arg(&script)
        .arg("-l")
        .arg(format!("--log-prefix={}", dir.join("log").display()))
        .arg(url)
        .output()
        .with_context(|| format!("cannot run {}", pgbench.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "pgbench failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));

    // Each log line: client transaction latency_us script epoch_s epoch_us.
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("log")) {
            for line in std::fs::read_to_string(&path)?.lines() {
                if let Some(micros) = line.split_whitespace().nth(2).and_then(|v| v.parse::<u64>().ok()) {
                    latencies.push(Duration::from_micros(micros));
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    latencies.sort();
    let rows = latencies.len() as u64;
    Ok(Run { elapsed: Duration::from_secs(seconds), rows, latencies })
}

/// The per-run queues would expire by themselves; deleting them frees RabbitMQ's disk at once.
async fn delete_topology(url: &str, topology: &Topology) {
    use lapin::{
        Connection as AmqpConnection, ConnectionProperties,
        options::{ExchangeDeleteOptions, QueueDeleteOptions},
    };
    let Ok(connection) = AmqpConnection::connect(url, ConnectionProperties::default()).await else { return };
    if let Ok(channel) = connection.create_channel().await {
        for queue in Queue::ALL {
            let name = topology.queue_name(queue);
            channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await.ok();
        }
        channel.exchange_delete(topology.exchange.as_str().into(), ExchangeDeleteOptions::default()).await.ok();
    }
    connection.close(0, "done".into()).await.ok();
}

#[derive(Clone, Copy)]
struct LoadAvg(f64);

impl LoadAvg {
    fn read() -> Self {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Self(text.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    format!(
        "machine: {cores} cores, {:.1} GiB memory; load average {} at start (shared with other work)",
        memory_kib / 1024.0 / 1024.0,
        load.join(" ")
    )
}

/// One row of the printed table.
struct Line {
    name: String,
    figure: String,
    latency: String,
    load: Option<LoadAvg>,
}

impl Line {
    fn throughput(name: String, run: &Run, load: LoadAvg) -> Self {
        Self {
            name,
            figure: format!("{:>9.0} rows/s ({} statements)", run.rows_per_second(), run.latencies.len()),
            latency: latencies(run),
            load: Some(load),
        }
    }

    fn requests(name: String, run: &Run, load: LoadAvg) -> Self {
        Self {
            name,
            figure: format!("{:>9.0} requests/s ({} requests)", run.per_second(), run.latencies.len()),
            latency: latencies(run),
            load: Some(load),
        }
    }

    fn ratio(name: &str, ratio: f64, target: f64) -> Self {
        let verdict = match target {
            t if t > 0.0 && ratio >= t => format!("   target >= {:.0}%: met", t * 100.0),
            t if t > 0.0 => format!("   target >= {:.0}%: MISSED", t * 100.0),
            _ => String::new(),
        };
        Self {
            name: name.into(),
            figure: format!("{:>9.1}%{verdict}", ratio * 100.0),
            latency: String::new(),
            load: None,
        }
    }

    fn verdict(name: &str, met: bool) -> Self {
        let figure = if met { "met" } else { "MISSED" };
        Self { name: name.into(), figure: format!("{figure:>9}"), latency: String::new(), load: None }
    }
}

fn latencies(run: &Run) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:6.2} ms  p99 {:6.2} ms  max {:7.2} ms",
        ms(run.percentile(0.5)),
        ms(run.percentile(0.99)),
        ms(run.percentile(1.0))
    )
}

fn print_report(lines: &[Line], duration: Duration) {
    println!("\n{:.0} s per phase; latency is per request (or statement)", duration.as_secs_f64());
    for line in lines {
        let load = line.load.map(|l| format!("load {:.2}", l.0)).unwrap_or_default();
        println!("{:<52} {:<40} {:<44} {}", line.name, line.figure, line.latency, load);
    }
}
