//! The pipeline's drain without LocalStack's Lambda emulation and SQS poller, on the real services:
//! a backlog in RabbitMQ's `dispatch` queue goes through the real bridge, the dispatch handler and
//! the SQS handlers (run in-process as Lambda runs them), PostgreSQL, LocalStack's SQS API and the
//! SMTP sink, and each service's own rate is measured in the same run beside the pipeline's.
//!
//! `cargo run --release -p bridge --example bench_drain -- --help` lists the options;
//! BENCHMARKS.md holds the figures.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail, ensure};
use aws_config::{BehaviorVersion, SdkConfig};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use bridge::{
    BridgeConfig,
    dispatch::{DispatchFunction, InvokeFailure},
    sqs::MAX_BATCH_ENTRIES,
};
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use eventstream::{
    MIGRATOR,
    bus::{AmqpBus, EventMessage, MAX_EVENTS_PER_MESSAGE, Queue, Topology, declare_topology},
    config::{AlertConfig, DEFAULT_STATEMENT_TIMEOUT, DatabaseConfig, SmtpConfig, SmtpTls, env_lookup},
    domain::{Event, NewEvent, Status},
    handlers::{
        dispatch::{DispatchRequest, DispatchState, SweepSettings, handle as dispatch},
        sqs::{
            error::{self, ErrorHandler},
            warning::{self, WarningHandler},
        },
    },
    mail::{Email, Mailer, SmtpMailer, error_alert},
    store::{PgEventStore, PgRoutingStore, lazy_pool},
};
use futures_util::{StreamExt, future::BoxFuture, future::join_all};
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use lapin::{
    Connection, ConnectionProperties,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeleteOptions, QueueDeleteOptions},
    types::FieldTable,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, migrate::MigrateDatabase, postgres::PgConnectOptions};
use tokio::{
    sync::{Semaphore, watch},
    task::JoinSet,
};
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

/// Pipeline drain outside LocalStack's Lambda emulation: dispatch -> bridge -> handlers -> email.
///
/// Creates and migrates the benchmark database when missing (its name must contain "bench": it is
/// emptied first), makes a RabbitMQ topology and SQS queues of its own (deleted at the end), then:
///
///   1. seeds --events events (the Airflow DAG's mix: 70% success, 20% warning, 10% error; or all
///      of one --status) through PgEventStore::insert in batches of 500, each batch published to
///      dispatch as one message (AmqpBus::publish_batch), as ingest does; this is not timed;
///   2. starts, in-process, and times until every event is finished (success dispatched, warning
///      processed, error processed with its email sent, as PostgreSQL records them):
///      - the bridge (bridge::run_with_dispatch; BRIDGE_* variables apply), which drains dispatch
///        in batches of up to 100 messages into --dispatch-instances dispatch environments (each
///        its own pool of 2 and RabbitMQ connection; the Amazon MQ payload goes as JSON, parsed as
///        the Lambda runtime parses it) and forwards warning and error to their SQS queues;
///      - Lambda's SQS event source, played by --pollers pollers per queue, each with a handler
///        environment of its own: ReceiveMessage (10), the SqsEvent Lambda would send, the
///        handler, then DeleteMessageBatch of the records not reported failed; the error handler
///        mails the SMTP sink through SmtpMailer;
///   3. checks that the SMTP sink (maildev's API) received exactly one email per error event;
///   4. measures baselines with the pipeline's counts and concurrency: the SMTP sink alone
///      (--pollers SmtpMailers sending 10 at a time), LocalStack's SQS alone (SendMessageBatch
///      from 10 tasks per queue as the bridge does, ReceiveMessage and DeleteMessageBatch from
///      --pollers tasks per queue) and RabbitMQ alone (publish with confirms, consume and ack).
///
/// Target: at least 1,500 events/s end to end. The original Celery pipeline drained about 145
/// events/s (a published figure, not measured here). AWS settings come from the environment
/// (AWS_ENDPOINT_URL and LocalStack's test credentials; scripts/lib.sh sets them). The functions'
/// logs are off unless RUST_LOG asks for them. Exits non-zero when the drain does not finish
/// within --timeout, a stage lost or doubled something, or the email check fails.
#[derive(Debug, Parser)]
#[command(name = "bench_drain", verbatim_doc_comment)]
struct Args {
    /// The benchmark database; created and migrated when missing, emptied before the run.
    #[arg(
        long,
        env = "BENCH_DRAIN_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/eventstream_bench_drain",
        hide_env_values = true
    )]
    database_url: String,

    /// The RabbitMQ the pipeline runs through.
    #[arg(long, env = "AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f", hide_env_values = true)]
    amqp_url: String,

    /// Events in the backlog.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    events: u32,

    /// The events' statuses: the Airflow DAG's mix, or all of one (error is the worst case).
    #[arg(long, value_enum, default_value_t = Mix::Dag)]
    status: Mix,

    /// Dispatch function environments, each with its own pool and RabbitMQ connection.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    dispatch_instances: u32,

    /// SQS pollers per handler queue, each invoking a handler environment of its own.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pollers: u32,

    /// Seconds the drain may take before the run counts as failed.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,

    /// Seconds between progress lines.
    #[arg(long, default_value_t = 2.0)]
    progress: f64,

    /// The SMTP sink's host.
    #[arg(long, default_value = "127.0.0.1")]
    smtp_host: String,

    /// The SMTP sink's port (plain SMTP, no login).
    #[arg(long, default_value_t = 1025)]
    smtp_port: u16,

    /// maildev's web address, whose API lists what the sink received.
    #[arg(long, env = "MAIL_API", default_value = "http://127.0.0.1:1080")]
    maildev_url: String,
}

/// Which statuses the backlog holds.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mix {
    /// 70% success, 20% warning, 10% error, interleaved, as the Airflow DAG's default weights.
    Dag,
    /// All finished at dispatch.
    Success,
    /// All through SQS to the warning handler.
    Warning,
    /// All through SQS to the error handler, one email each: the worst case.
    Error,
}

const BENCH_USER: &str = "bench-drain";
/// A PHC string no password matches: the benchmark only needs the row the events point to.
const BENCH_USER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2gtdXNlcg$no-password-matches-this";
/// The functions' defaults: DATABASE_MAX_CONNECTIONS, AMQP_TIMEOUT_MS, SMTP_TIMEOUT_MS and
/// NOTIFICATION_CLAIM_TIMEOUT_SECONDS.
const POOL_CONNECTIONS: u32 = 2;
const AMQP_TIMEOUT: Duration = Duration::from_secs(3);
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
const CLAIM_TIMEOUT: Duration = Duration::from_secs(300);
/// Lambda refuses a synchronous invocation whose payload is larger.
const MAX_INVOKE_PAYLOAD_BYTES: u64 = 6 * 1024 * 1024;
/// The template's: six times the handlers' timeout.
const VISIBILITY_TIMEOUT_SECONDS: &str = "180";
/// Only the emails' links use it.
const API_BASE_URL: &str = "http://127.0.0.1:4566/restapis/bench-drain/live/_user_request_";
/// How often the drain's end is looked for in PostgreSQL; the drain's time itself comes from the
/// rows' commit times, not from this.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Short, so a stopping poller does not hold LocalStack's connection for long.
const RECEIVE_WAIT_SECONDS: i32 = 1;
/// The error handler's Message-ID is `<event-id@eventstream>`; the SMTP baseline's use this domain.
const BASELINE_MAIL_DOMAIN: &str = "eventstream-bench";
const TARGET_EVENTS_PER_SECOND: f64 = 1_500.0;
const CELERY_EVENTS_PER_SECOND: f64 = 145.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    ensure!(args.timeout > 0.0 && args.progress > 0.0, "--timeout and --progress must be positive");
    let options = PgConnectOptions::from_str(&args.database_url).context("--database-url is not a PostgreSQL URL")?;
    ensure!(
        options.get_database().is_some_and(|name| name.contains("bench")),
        "the database's name must contain \"bench\": it is emptied before the run"
    );

    println!("{}", machine());
    let admin = prepare_database(&args.database_url).await?;
    let user = bench_user(&admin).await?;
    reset(&admin).await?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let mut resources = Resources::new(&aws, &args);
    let outcome = tokio::select! {
        outcome = bench(&args, &aws, &admin, user, &mut resources) => outcome,
        () = bridge::shutdown_signal() => Err(anyhow!("interrupted")),
    };
    resources.clean_up().await;
    match outcome {
        Ok(Verdict::Passed) => {
            reset(&admin).await?;
            Ok(())
        }
        // The tables stay as the run left them, for a person to look at.
        Ok(Verdict::Failed(why)) => bail!("{why}; the benchmark database keeps what the run left"),
        Err(error) => Err(error),
    }
}

enum Verdict {
    Passed,
    Failed(String),
}

async fn bench(
    args: &Args,
    aws: &SdkConfig,
    admin: &PgPool,
    user: Uuid,
    resources: &mut Resources,
) -> anyhow::Result<Verdict> {
    let topology = Topology::ephemeral();
    resources.topologies.push(topology.clone());
    let warning_queue = resources.queue("warning").await?;
    let error_queue = resources.queue("error").await?;

    let seeded = seed(args, admin, user, &topology).await?;
    resources.error_ids = seeded.errors.iter().map(|event| event.id).collect();
    println!(
        "backlog: {} events (success {}, warning {}, error {}) in {} dispatch messages, seeded in {:.2} s",
        seeded.total,
        seeded.success,
        seeded.warnings,
        seeded.errors.len(),
        seeded.dispatch_messages,
        seeded.seconds
    );

    let bridge_config = bridge_config(args, &topology, &warning_queue.url, &error_queue.url)?;
    println!(
        "drain: bridge prefetch {}, batch window {:?}; {} dispatch environments; {} pollers per queue",
        bridge_config.prefetch, bridge_config.batch_window, args.dispatch_instances, args.pollers
    );
    let drained = drain(args, aws, admin, bridge_config, [&warning_queue, &error_queue], &seeded).await?;
    let mut failures = drained.problems(&seeded);
    if drained.seconds.is_none() {
        failures.insert(0, format!("the drain did not finish within {} s", args.timeout));
    }
    let emails = if drained.seconds.is_some() {
        let check = check_emails(&args.maildev_url, &resources.error_ids).await?;
        if let Some(problem) = check.problem() {
            failures.push(problem);
        }
        Some(check)
    } else {
        None
    };
    drained.print(&seeded, emails.as_ref());
    let Some(drain_seconds) = drained.seconds else { return Ok(Verdict::Failed(failures.join("; "))) };

    println!("\nbaselines, measured in this run with the pipeline's counts and concurrency:");
    let handler_messages = &seeded.handler_events;
    if !seeded.errors.is_empty() {
        let load = LoadAvg::read();
        let count = seeded.errors.len();
        let rate = smtp_baseline(args, &seeded.errors, &resources.run).await?;
        print_baseline(
            &format!("SMTP sink: {count} emails, {} SmtpMailers sending 10 at a time", args.pollers),
            "emails",
            rate,
            count as f64 / drain_seconds,
            load,
        );
    }
    if !handler_messages.is_empty() {
        let load = LoadAvg::read();
        let senders = usize::from(drained.prefetch) / MAX_BATCH_ENTRIES;
        let rate = sqs_baseline(args, resources, handler_messages, senders.max(1)).await?;
        print_baseline(
            &format!(
                "LocalStack SQS: {} messages, send from {senders} tasks, receive + delete from {} per queue",
                handler_messages.len(),
                args.pollers
            ),
            "messages",
            rate,
            handler_messages.len() as f64 / drain_seconds,
            load,
        );
        let load = LoadAvg::read();
        let rate = rabbitmq_baseline(args, resources, handler_messages, drained.prefetch).await?;
        print_baseline(
            &format!(
                "RabbitMQ: {} messages, publish with confirms from {}, consume + ack 1 per queue",
                handler_messages.len(),
                args.dispatch_instances
            ),
            "messages",
            rate,
            handler_messages.len() as f64 / drain_seconds,
            load,
        );
    }
    println!(
        "  (a ratio is the pipeline's rate through that service over the service's own rate: near 100% \
         means the service bounds the drain)"
    );
    Ok(if failures.is_empty() { Verdict::Passed } else { Verdict::Failed(failures.join("; ")) })
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

/// Every run starts from empty tables (the handlers' records go with their events) and a
/// checkpoint, so none inherits another's dirty buffers.
async fn reset(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE events, idempotency_keys, dead_letters CASCADE").execute(pool).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}

/// What one run made outside the process, removed however the run ends.
struct Resources {
    sqs: aws_sdk_sqs::Client,
    amqp_url: String,
    maildev_url: String,
    run: String,
    queues: Vec<String>,
    topologies: Vec<Topology>,
    error_ids: HashSet<Uuid>,
}

/// One SQS queue of this run.
struct SqsQueue {
    url: String,
    arn: String,
}

impl Resources {
    fn new(aws: &SdkConfig, args: &Args) -> Self {
        let id = Uuid::now_v7().simple().to_string();
        Self {
            sqs: aws_sdk_sqs::Client::new(aws),
            amqp_url: args.amqp_url.clone(),
            maildev_url: args.maildev_url.clone(),
            // The random tail of a v7 id: unique per run, short enough for queue names.
            run: id[id.len() - 12..].to_string(),
            queues: Vec::new(),
            topologies: Vec::new(),
            error_ids: HashSet::new(),
        }
    }

    /// A queue with the template's visibility timeout, under a name only this run uses.
    async fn queue(&mut self, role: &str) -> anyhow::Result<SqsQueue> {
        let name = format!("bench-drain-{}-{role}", self.run);
        let created = self
            .sqs
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::VisibilityTimeout, VISIBILITY_TIMEOUT_SECONDS)
            .send()
            .await
            .map_err(|error| sdk_error(&format!("CreateQueue {name}"), error))?;
        let url = created.queue_url().context("CreateQueue returned no URL")?.to_string();
        self.queues.push(url.clone());
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|error| sdk_error(&format!("GetQueueAttributes {name}"), error))?;
        let arn = attributes
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn))
            .context("GetQueueAttributes returned no QueueArn")?
            .clone();
        Ok(SqsQueue { url, arn })
    }

    async fn clean_up(&self) {
        for url in &self.queues {
            if let Err(error) = self.sqs.delete_queue().queue_url(url).send().await {
                eprintln!("could not delete the SQS queue {url}: {}", aws_sdk_sqs::error::DisplayErrorContext(error));
            }
        }
        // The per-run queues would expire by themselves; deleting them frees RabbitMQ's disk at once.
        if let Ok(connection) = Connection::connect(&self.amqp_url, ConnectionProperties::default()).await {
            if let Ok(channel) = connection.create_channel().await {
                for topology in &self.topologies {
                    for queue in Queue::ALL {
                        let name = topology.queue_name(queue);
                        channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await.ok();
                    }
                    channel
                        .exchange_delete(topology.exchange.as_str().into(), ExchangeDeleteOptions::default())
                        .await
                        .ok();
                }
                channel.close(200, "done".into()).await.ok();
            }
            connection.close(200, "done".into()).await.ok();
        }
        // Only this run's mail goes: other runs and people share the sink.
        match maildev_emails(&self.maildev_url).await {
            Ok(emails) => {
                let ours: Vec<String> = emails
                    .iter()
                    .filter(|email| match &email.sender {
                        Sender::Pipeline(id) => self.error_ids.contains(id),
                        Sender::Baseline(run) => *run == self.run,
                        Sender::Other => false,
                    })
                    .map(|email| email.id.clone())
                    .collect();
                if let Err(error) = delete_maildev_emails(&self.maildev_url, ours).await {
                    eprintln!("could not delete this run's emails from maildev: {error:#}");
                }
            }
            Err(error) => eprintln!("could not list maildev's emails to delete this run's: {error:#}"),
        }
    }
}

/// The backlog: what was stored and published, and what the checks and baselines need of it.
#[derive(Default)]
struct Seeded {
    total: usize,
    success: usize,
    warnings: usize,
    errors: Vec<Event>,
    /// The messages dispatch publishes to the handler queues, one per event.
    handler_events: Vec<(Queue, EventMessage)>,
    dispatch_messages: usize,
    seconds: f64,
}

/// Stores and publishes the backlog as ingest does for each batch request.
async fn seed(args: &Args, admin: &PgPool, user: Uuid, topology: &Topology) -> anyhow::Result<Seeded> {
    let store = PgEventStore::new(admin.clone());
    let bus = AmqpBus::new(SecretString::from(args.amqp_url.clone()), topology.clone(), AMQP_TIMEOUT);
    let started = Instant::now();
    let mut seeded = Seeded::default();
    let statuses: Vec<Status> = (0..args.events as usize).map(|n| status_of(args.status, n)).collect();
    for (batch, chunk) in statuses.chunks(MAX_EVENTS_PER_MESSAGE).enumerate() {
        let rows: Vec<NewEvent> = chunk
            .iter()
            .enumerate()
            .map(|(n, status)| new_event(batch * MAX_EVENTS_PER_MESSAGE + n, *status))
            .collect();
        let stored = store.insert(user, None, &rows).await.context("storing the backlog")?.events;
        let messages: Vec<EventMessage> = stored.iter().map(EventMessage::for_event).collect();
        bus.publish_batch(Queue::Dispatch, &messages).await.context("publishing the backlog")?;
        seeded.dispatch_messages += 1;
        for (event, message) in stored.into_iter().zip(messages) {
            seeded.total += 1;
            match event.status {
                Status::Success | Status::Info => seeded.success += 1,
                Status::Warning => {
                    seeded.warnings += 1;
                    seeded.handler_events.push((Queue::Warning, message));
                }
                Status::Error => {
                    seeded.handler_events.push((Queue::Error, message));
                    seeded.errors.push(event);
                }
            }
        }
    }
    seeded.seconds = started.elapsed().as_secs_f64();
    Ok(seeded)
}

fn status_of(mix: Mix, n: usize) -> Status {
    match mix {
        Mix::Dag => match n % 10 {
            0..7 => Status::Success,
            7 | 8 => Status::Warning,
            _ => Status::Error,
        },
        Mix::Success => Status::Success,
        Mix::Warning => Status::Warning,
        Mix::Error => Status::Error,
    }
}

/// An event as the Airflow DAG draws them: a title and description by status, a host, a run.
fn new_event(n: usize, status: Status) -> NewEvent {
    const HOSTS: [&str; 4] = ["web-1", "web-2", "worker-1", "db-1"];
    let host = HOSTS[n % HOSTS.len()];
    let (title, description) = match status {
        Status::Success | Status::Info => (format!("Backup completed on {host}"), "The nightly backup finished."),
        Status::Warning => (format!("Disk usage above 80% on {host}"), "The data volume is filling up."),
        Status::Error => (format!("Payment gateway timeout on {host}"), "Calls to the payment gateway timed out."),
    };
    NewEvent {
        title,
        description: description.into(),
        status,
        source: Some("bench-drain".into()),
        occurred_at: Some(Utc::now()),
        attributes: json!({ "host": host, "sequence": n }),
    }
}

/// The bridge's own configuration from the environment (its defaults, or BRIDGE_* when set), with
/// this run's broker, topology and SQS queues, and no Lambda function for dispatch.
fn bridge_config(args: &Args, topology: &Topology, warning_url: &str, error_url: &str) -> anyhow::Result<BridgeConfig> {
    let lookup = |name: &str| match name {
        "AMQP_URL" => Some(args.amqp_url.clone()),
        "WARNING_QUEUE_URL" => Some(warning_url.to_string()),
        "ERROR_QUEUE_URL" => Some(error_url.to_string()),
        "DISPATCH_FUNCTION" | "AMQP_QUEUE_PREFIX" => None,
        other => env_lookup(other),
    };
    let mut config =
        BridgeConfig::from_lookup(&lookup).map_err(|error| anyhow!("the bridge's configuration: {error}"))?;
    config.topology = topology.clone();
    Ok(config)
}

/// The dispatch function's environments, invoked in-process: an invocation waits for an idle
/// one, as Lambda with this much reserved concurrency would run it.
struct InProcessDispatch {
    idle: Mutex<Vec<DispatchState>>,
    available: Semaphore,
    stats: DispatchStats,
    started: Instant,
}

#[derive(Default)]
struct DispatchStats {
    invocations: Busy,
    largest_payload: AtomicU64,
    failures: AtomicU64,
    routed: AtomicU64,
    finished: AtomicU64,
    already_routed: AtomicU64,
    parked: AtomicU64,
}

impl InProcessDispatch {
    fn new(args: &Args, topology: &Topology, started: Instant) -> anyhow::Result<Self> {
        let environments = (0..args.dispatch_instances)
            .map(|_| {
                Ok(DispatchState {
                    routing: PgRoutingStore::new(lazy_pool(&database(args))?),
                    bus: AmqpBus::new(SecretString::from(args.amqp_url.clone()), topology.clone(), AMQP_TIMEOUT),
                    // The function's defaults (SWEEP_AFTER_SECONDS, SWEEP_LIMIT); a batch never sweeps.
                    sweep: SweepSettings { older_than: Duration::from_secs(60), limit: 1_000 },
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            available: Semaphore::new(environments.len()),
            idle: Mutex::new(environments),
            stats: DispatchStats::default(),
            started,
        })
    }
}

impl DispatchFunction for InProcessDispatch {
    fn name(&self) -> &str {
        "dispatch (in-process)"
    }

    fn invoke(&self, payload: Vec<u8>) -> BoxFuture<'_, Result<(), InvokeFailure>> {
        Box::pin(async move {
            self.stats.largest_payload.fetch_max(payload.len() as u64, Ordering::Relaxed);
            let _permit = self.available.acquire().await.expect("the semaphore is never closed");
            let state = self.idle.lock().expect("not poisoned").pop().expect("a permit stands for an idle environment");
            let begun = Instant::now();
            let outcome = invoke_dispatch(&state, &payload).await;
            self.idle.lock().expect("not poisoned").push(state);
            let stats = &self.stats;
            match outcome {
                Ok(report) => {
                    let events = report.routed + report.finished + report.already_routed + report.parked;
                    stats.invocations.add(self.started, begun, events as u64);
                    for (counter, value) in [
                        (&stats.routed, report.routed),
                        (&stats.finished, report.finished),
                        (&stats.already_routed, report.already_routed),
                        (&stats.parked, report.parked),
                    ] {
                        counter.fetch_add(value as u64, Ordering::Relaxed);
                    }
                    Ok(())
                }
                Err(failure) => {
                    stats.invocations.add(self.started, begun, 0);
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    Err(failure)
                }
            }
        })
    }
}

/// What the Lambda runtime does with an invocation: parse the payload as the handler's input,
/// run the handler, and turn its error into the function error the caller sees.
async fn invoke_dispatch(
    state: &DispatchState,
    payload: &[u8],
) -> Result<eventstream::handlers::dispatch::DispatchReport, InvokeFailure> {
    let request: DispatchRequest = serde_json::from_slice(payload).map_err(|error| InvokeFailure::Function {
        kind: "Runtime.UnmarshalError".into(),
        payload: error.to_string(),
    })?;
    dispatch(state, LambdaEvent::new(request, Context::default())).await.map_err(|error| {
        let diagnostic = Diagnostic::from(error);
        InvokeFailure::Function { kind: diagnostic.error_type, payload: diagnostic.error_message }
    })
}

fn database(args: &Args) -> DatabaseConfig {
    DatabaseConfig {
        url: SecretString::from(args.database_url.clone()),
        max_connections: POOL_CONNECTIONS,
        statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
    }
}

/// Calls of one kind: how many, what they carried, the time they took together, and when the
/// first began and the last ended (from the start of the drain).
#[derive(Default)]
struct Busy {
    calls: AtomicU64,
    items: AtomicU64,
    micros: AtomicU64,
    span: Mutex<Option<(Duration, Duration)>>,
}

impl Busy {
    fn add(&self, origin: Instant, begun: Instant, items: u64) {
        let now = Instant::now();
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.items.fetch_add(items, Ordering::Relaxed);
        self.micros.fetch_add(now.duration_since(begun).as_micros() as u64, Ordering::Relaxed);
        let (from, to) = (begun.duration_since(origin), now.duration_since(origin));
        let mut span = self.span.lock().expect("not poisoned");
        *span = Some(span.map_or((from, to), |(first, last)| (first.min(from), last.max(to))));
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn items(&self) -> u64 {
        self.items.load(Ordering::Relaxed)
    }

    fn seconds(&self) -> f64 {
        self.micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn span(&self) -> String {
        match *self.span.lock().expect("not poisoned") {
            Some((first, last)) => format!("{:.2}-{:.2} s", first.as_secs_f64(), last.as_secs_f64()),
            None => "never".into(),
        }
    }
}

/// A handler function's environment.
enum Handler {
    Warning(WarningHandler),
    Error(ErrorHandler<SmtpMailer>),
}

impl Handler {
    fn new(queue: Queue, args: &Args) -> anyhow::Result<Self> {
        let pool = lazy_pool(&database(args))?;
        Ok(match queue {
            Queue::Warning => Handler::Warning(WarningHandler::new(pool)),
            Queue::Error => {
                Handler::Error(ErrorHandler::new(pool, SmtpMailer::new(&smtp(args))?, alert()?, CLAIM_TIMEOUT))
            }
            Queue::Dispatch => bail!("dispatch has no SQS handler"),
        })
    }

    async fn invoke(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let event = LambdaEvent::new(event, Context::default());
        match self {
            Handler::Warning(state) => warning::handle(state, event).await,
            Handler::Error(state) => error::handle(state, event).await,
        }
    }
}

fn smtp(args: &Args) -> SmtpConfig {
    SmtpConfig {
        host: args.smtp_host.clone(),
        port: args.smtp_port,
        tls: SmtpTls::None,
        login: None,
        timeout: SMTP_TIMEOUT,
    }
}

fn alert() -> anyhow::Result<AlertConfig> {
    Ok(AlertConfig {
        from: "EventStream <eventstream@localhost.test>".parse()?,
        recipients: vec!["ops@localhost.test".parse()?],
        api_base_url: API_BASE_URL.into(),
    })
}

/// What one queue's pollers did.
#[derive(Default)]
struct PollerStats {
    receives: Busy,
    empty_receives: AtomicU64,
    receive_errors: AtomicU64,
    invocations: Busy,
    failed_records: AtomicU64,
    redelivered: AtomicU64,
    deletes: Busy,
    delete_errors: AtomicU64,
}

/// One of Lambda's SQS pollers for a queue, with the environment it invokes.
struct Poller {
    client: aws_sdk_sqs::Client,
    url: String,
    arn: String,
    region: String,
    handler: Handler,
    stats: Arc<PollerStats>,
    started: Instant,
}

impl Poller {
    /// Receives, invokes and deletes until told to stop; stopping interrupts only a receive.
    async fn run(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        loop {
            let begun = Instant::now();
            let receive = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(MAX_BATCH_ENTRIES as i32)
                .wait_time_seconds(RECEIVE_WAIT_SECONDS)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send();
            let received = tokio::select! {
                received = receive => received,
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            };
            let output = match received {
                Ok(output) => output,
                Err(error) => {
                    self.stats.receive_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(error), "ReceiveMessage failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let messages = output.messages();
            self.stats.receives.add(self.started, begun, messages.len() as u64);
            if messages.is_empty() {
                self.stats.empty_receives.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let redelivered = messages.iter().filter(|message| receive_count(message) > 1).count();
            self.stats.redelivered.fetch_add(redelivered as u64, Ordering::Relaxed);

            // The runtime hands the function the event as JSON text.
            let payload = serde_json::to_vec(&lambda_sqs_event(messages, &self.arn, &self.region))?;
            let event: SqsEvent = serde_json::from_slice(&payload).context("the SQS event Lambda would send")?;
            let begun = Instant::now();
            let failed: HashSet<String> = match self.handler.invoke(event).await {
                Ok(response) => {
                    response.batch_item_failures.into_iter().map(|failure| failure.item_identifier).collect()
                }
                // A failed invocation leaves the whole batch for SQS to deliver again.
                Err(error) => {
                    tracing::warn!(%error, "handler invocation failed");
                    messages.iter().filter_map(|message| message.message_id().map(str::to_string)).collect()
                }
            };
            self.stats.invocations.add(self.started, begun, messages.len() as u64);
            self.stats.failed_records.fetch_add(failed.len() as u64, Ordering::Relaxed);
            self.delete(messages, &failed).await?;
        }
    }

    /// Deletes the handled records, as the event source does after a partial batch response.
    async fn delete(&self, messages: &[Message], failed: &HashSet<String>) -> anyhow::Result<()> {
        let handled = messages.iter().filter(|message| message.message_id().is_none_or(|id| !failed.contains(id)));
        let entries = delete_entries(handled)?;
        if entries.is_empty() {
            return Ok(());
        }
        let count = entries.len() as u64;
        let begun = Instant::now();
        let deleted = self.client.delete_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await;
        self.stats.deletes.add(self.started, begun, count);
        match deleted {
            Ok(output) if output.failed.is_empty() => {}
            Ok(output) => {
                self.stats.delete_errors.fetch_add(output.failed.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                self.stats.delete_errors.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(error), "DeleteMessageBatch failed");
            }
        }
        Ok(())
    }
}

fn receive_count(message: &Message) -> u64 {
    message
        .attributes()
        .and_then(|attributes| attributes.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// The event Lambda's SQS event source sends for `messages`, in its JSON shape.
fn lambda_sqs_event(messages: &[Message], arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|message| {
            let attributes: serde_json::Map<String, Value> = message
                .attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_string(), json!(value)))
                .collect();
            let message_attributes: serde_json::Map<String, Value> = message
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| {
                    let encode = |blob: &aws_sdk_sqs::primitives::Blob| STANDARD.encode(blob.as_ref());
                    let attribute = json!({
                        "stringValue": value.string_value(),
                        "binaryValue": value.binary_value().map(encode),
                        "stringListValues": value.string_list_values(),
                        "binaryListValues": value.binary_list_values().iter().map(encode).collect::<Vec<_>>(),
                        "dataType": value.data_type(),
                    });
                    (name.clone(), attribute)
                })
                .collect();
            let mut record = json!({
                "messageId": message.message_id(),
                "receiptHandle": message.receipt_handle(),
                "body": message.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": message.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            });
            if let Some(md5) = message.md5_of_message_attributes() {
                record["md5OfMessageAttributes"] = json!(md5);
            }
            record
        })
        .collect();
    json!({ "Records": records })
}

/// How far the pipeline got, as PostgreSQL records it.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    dispatched: i64,
    success_done: i64,
    warnings_done: i64,
    errors_done: i64,
    last_change: Option<DateTime<Utc>>,
}

impl Progress {
    async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let (dispatched, success_done, warnings_done, errors_done, last_change): (
            i64,
            i64,
            i64,
            i64,
            Option<DateTime<Utc>>,
        ) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE pipeline_state <> 'received'),
                    count(*) FILTER (WHERE status IN ('success', 'info') AND pipeline_state = 'dispatched'),
                    count(*) FILTER (WHERE status = 'warning' AND pipeline_state = 'processed'),
                    count(*) FILTER (WHERE status = 'error' AND pipeline_state = 'processed'),
                    max(pipeline_updated_at)
             FROM events",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self { dispatched, success_done, warnings_done, errors_done, last_change })
    }

    fn finished(&self, seeded: &Seeded) -> bool {
        self.success_done as usize == seeded.success
            && self.warnings_done as usize == seeded.warnings
            && self.errors_done as usize == seeded.errors.len()
    }

    fn line(&self, seeded: &Seeded, elapsed: Duration) -> String {
        format!(
            "  {:6.1} s  dispatched {}/{}  warnings processed {}/{}  errors processed and emailed {}/{}  (load {:.2})",
            elapsed.as_secs_f64(),
            self.dispatched,
            seeded.total,
            self.warnings_done,
            seeded.warnings,
            self.errors_done,
            seeded.errors.len(),
            LoadAvg::read().0
        )
    }
}

/// What the handlers wrote, counted once the drain ended.
#[derive(Debug, Default)]
struct Records {
    routings: i64,
    warnings: i64,
    errors: i64,
    emails_sent: i64,
    dead_letters: i64,
}

impl Records {
    async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let (routings, warnings, errors, emails_sent, dead_letters): (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM event_routings),
                    (SELECT count(*) FROM processed_warnings),
                    (SELECT count(*) FROM error_records),
                    (SELECT count(*) FROM notifications WHERE state = 'sent'),
                    (SELECT count(*) FROM dead_letters)",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self { routings, warnings, errors, emails_sent, dead_letters })
    }
}

/// The drain's outcome and what each stage did.
struct Drained {
    /// From the start to the last event's final commit; `None` when it did not finish in time.
    seconds: Option<f64>,
    progress: Progress,
    records: Records,
    prefetch: u16,
    bridge: bridge::stats::Snapshot,
    dispatch: Arc<InProcessDispatch>,
    pollers: [(Queue, Arc<PollerStats>); 2],
    cpu: CpuUse,
    load: (LoadAvg, LoadAvg),
}

async fn drain(
    args: &Args,
    aws: &SdkConfig,
    admin: &PgPool,
    config: BridgeConfig,
    [warning_queue, error_queue]: [&SqsQueue; 2],
    seeded: &Seeded,
) -> anyhow::Result<Drained> {
    let region = aws.region().map_or("us-east-1", |region| region.as_ref()).to_string();
    let prefetch = config.prefetch;
    let started_at: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(admin).await?;
    let started = Instant::now();
    let load = LoadAvg::read();
    let cpu = CpuSample::take();
    let (stop, stopped) = watch::channel(false);

    let dispatch = Arc::new(InProcessDispatch::new(args, &config.topology, started)?);
    let bridge = tokio::spawn({
        let (aws, dispatch, mut stopped) = (aws.clone(), dispatch.clone(), stopped.clone());
        async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            };
            bridge::run_with_dispatch(config, &aws, Some(dispatch), shutdown).await
        }
    });
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut pollers = JoinSet::new();
    let stats = [Queue::Warning, Queue::Error].map(|queue| (queue, Arc::new(PollerStats::default())));
    for ((queue, queue_stats), sqs_queue) in stats.iter().zip([warning_queue, error_queue]) {
        for _ in 0..args.pollers {
            let poller = Poller {
                client: sqs.clone(),
                url: sqs_queue.url.clone(),
                arn: sqs_queue.arn.clone(),
                region: region.clone(),
                handler: Handler::new(*queue, args)?,
                stats: queue_stats.clone(),
                started,
            };
            pollers.spawn(poller.run(stopped.clone()));
        }
    }

    let deadline = started + Duration::from_secs_f64(args.timeout);
    let interval = Duration::from_secs_f64(args.progress);
    let mut next_line = started + interval;
    let (finished, progress) = loop {
        let progress = Progress::read(admin).await?;
        if progress.finished(seeded) {
            break (true, progress);
        }
        let now = Instant::now();
        if now >= deadline {
            break (false, progress);
        }
        if now >= next_line {
            println!("{}", progress.line(seeded, started.elapsed()));
            next_line += interval;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let cpu = cpu.since();
    let load = (load, LoadAvg::read());
    println!("{}", progress.line(seeded, started.elapsed()));

    stop.send_replace(true);
    let bridged = bridge.await.context("the bridge panicked")?;
    while let Some(joined) = pollers.join_next().await {
        joined.context("a poller panicked")??;
    }
    let seconds = match (finished, progress.last_change) {
        (true, Some(last)) => Some((last - started_at).as_seconds_f64().max(f64::EPSILON)),
        _ => None,
    };
    Ok(Drained {
        seconds,
        progress,
        records: Records::read(admin).await?,
        prefetch,
        bridge: bridged,
        dispatch,
        pollers: stats,
        cpu,
        load,
    })
}

impl Drained {
    /// Anything lost, doubled or left over, whether or not the drain finished in time.
    fn problems(&self, seeded: &Seeded) -> Vec<String> {
        let mut problems = Vec::new();
        let records = &self.records;
        let expected = [
            ("routings", records.routings, seeded.total),
            ("warnings recorded", records.warnings, seeded.warnings),
            ("errors recorded", records.errors, seeded.errors.len()),
            ("emails marked sent", records.emails_sent, seeded.errors.len()),
            ("dead letters", records.dead_letters, 0),
        ];
        for (what, got, wanted) in expected {
            if got != wanted as i64 {
                problems.push(format!("{got} {what} where {wanted} were expected"));
            }
        }
        problems
    }

    fn print(&self, seeded: &Seeded, emails: Option<&EmailCheck>) {
        let total = seeded.total as f64;
        println!();
        match self.seconds {
            Some(seconds) => {
                let rate = total / seconds;
                println!(
                    "end to end: {rate:.0} events/s, {} events drained in {seconds:.2} s (start to the last event's commit)   load {:.2} -> {:.2}",
                    seeded.total, self.load.0.0, self.load.1.0
                );
                let verdict = if rate >= TARGET_EVENTS_PER_SECOND { "met" } else { "MISSED" };
                println!(
                    "  target >= {TARGET_EVENTS_PER_SECOND:.0} events/s: {verdict} ({:.0}% of it)",
                    100.0 * rate / TARGET_EVENTS_PER_SECOND
                );
                println!(
                    "  against the original Celery pipeline, ~{CELERY_EVENTS_PER_SECOND:.0} events/s (a published figure, \
                     not measured in this run): {:.1}x",
                    rate / CELERY_EVENTS_PER_SECOND
                );
            }
            None => println!(
                "end to end: NOT FINISHED; {} of {} events dispatched, {}/{} warnings and {}/{} errors finished",
                self.progress.dispatched,
                seeded.total,
                self.progress.warnings_done,
                seeded.warnings,
                self.progress.errors_done,
                seeded.errors.len()
            ),
        }

        println!("\nstages (times from the start of the drain; busy = the calls' durations added up):");
        let dispatch = &self.dispatch.stats;
        let largest = dispatch.largest_payload.load(Ordering::Relaxed);
        println!(
            "  dispatch        {} invocations of {} events (routed {}, finished {}, already routed {}, parked {}), {} failed; \
             busy {:.2} s, active {}; largest payload {:.2} MB{}",
            dispatch.invocations.calls(),
            dispatch.invocations.items(),
            dispatch.routed.load(Ordering::Relaxed),
            dispatch.finished.load(Ordering::Relaxed),
            dispatch.already_routed.load(Ordering::Relaxed),
            dispatch.parked.load(Ordering::Relaxed),
            dispatch.failures.load(Ordering::Relaxed),
            dispatch.invocations.seconds(),
            dispatch.invocations.span(),
            largest as f64 / 1_048_576.0,
            if largest > MAX_INVOKE_PAYLOAD_BYTES { ", OVER the 6 MB Lambda would accept" } else { "" }
        );
        println!(
            "  bridge          acknowledged {} dispatch messages after their invocation; forwarded {} warning and {} error \
             messages to SQS; {} retries",
            self.bridge.dispatch, self.bridge.warning, self.bridge.error, self.bridge.retries
        );
        for (queue, stats) in &self.pollers {
            println!(
                "  {:<15} {} invocations of {} records ({} failed, {} redelivered), busy {:.2} s, active {}",
                format!("{}-handler", queue.role()),
                stats.invocations.calls(),
                stats.invocations.items(),
                stats.failed_records.load(Ordering::Relaxed),
                stats.redelivered.load(Ordering::Relaxed),
                stats.invocations.seconds(),
                stats.invocations.span(),
            );
            println!(
                "  {:<15} {} ReceiveMessage ({} messages, {} empty, {} failed), busy {:.2} s; {} DeleteMessageBatch, \
                 busy {:.2} s, {} messages not deleted",
                "",
                stats.receives.calls(),
                stats.receives.items(),
                stats.empty_receives.load(Ordering::Relaxed),
                stats.receive_errors.load(Ordering::Relaxed),
                stats.receives.seconds(),
                stats.deletes.calls(),
                stats.deletes.seconds(),
                stats.delete_errors.load(Ordering::Relaxed),
            );
        }
        let records = &self.records;
        println!(
            "  PostgreSQL      {} routings, {} warnings recorded, {} errors recorded, {} emails marked sent, {} dead letters",
            records.routings, records.warnings, records.errors, records.emails_sent, records.dead_letters
        );
        if let Some(emails) = emails {
            println!("  maildev         {}", emails.summary());
        }
        println!("\n{}", self.cpu);
    }
}

/// What the SMTP sink received for this run's error events.
struct EmailCheck {
    expected: usize,
    received: usize,
    missing: usize,
    duplicated: usize,
}

impl EmailCheck {
    fn problem(&self) -> Option<String> {
        (self.missing > 0 || self.duplicated > 0).then(|| {
            format!("maildev: {} error events without an email, {} with more than one", self.missing, self.duplicated)
        })
    }

    fn summary(&self) -> String {
        let verdict = if self.problem().is_none() { "exactly one per error event" } else { "CHECK FAILED" };
        format!(
            "{} emails for {} error events ({} missing, {} duplicated): {verdict}",
            self.received, self.expected, self.missing, self.duplicated
        )
    }
}

/// Counts the sink's emails per error event; waits a little for the last ones, which the sink
/// may still be storing when the handler has already recorded them sent.
async fn check_emails(maildev_url: &str, error_ids: &HashSet<Uuid>) -> anyhow::Result<EmailCheck> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut per_event: HashMap<Uuid, usize> = HashMap::new();
        for email in maildev_emails(maildev_url).await? {
            if let Sender::Pipeline(id) = email.sender
                && error_ids.contains(&id)
            {
                *per_event.entry(id).or_default() += 1;
            }
        }
        let check = EmailCheck {
            expected: error_ids.len(),
            received: per_event.values().sum(),
            missing: error_ids.len() - per_event.len(),
            duplicated: per_event.values().filter(|count| **count > 1).count(),
        };
        if check.missing == 0 || Instant::now() >= deadline {
            return Ok(check);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One email in maildev and who sent it, by its Message-ID.
struct SinkEmail {
    id: String,
    sender: Sender,
}

enum Sender {
    /// The error handler, about this event.
    Pipeline(Uuid),
    /// The SMTP baseline of the run with this id.
    Baseline(String),
    Other,
}

async fn maildev_emails(maildev_url: &str) -> anyhow::Result<Vec<SinkEmail>> {
    let url = format!("{}/api/email", maildev_url.trim_end_matches('/'));
    let body = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        Ok(ureq::get(&url).call().with_context(|| format!("GET {url}"))?.body_mut().read_to_string()?)
    })
    .await??;
    let emails: Vec<Value> = serde_json::from_str(&body).context("maildev's email list")?;
    Ok(emails
        .iter()
        .filter_map(|email| {
            let id = email["id"].as_str()?.to_string();
            // maildev 3.0 gives no top-level messageId: the header is the one place it is kept.
            let message_id = email["headers"]["message-id"].as_str().unwrap_or_default().trim_matches(['<', '>']);
            let (local, domain) = message_id.split_once('@').unwrap_or_default();
            let sender = match (domain, Uuid::parse_str(local)) {
                ("eventstream", Ok(event_id)) => Sender::Pipeline(event_id),
                (BASELINE_MAIL_DOMAIN, _) => Sender::Baseline(local.rsplit('.').next().unwrap_or_default().to_string()),
                _ => Sender::Other,
            };
            Some(SinkEmail { id, sender })
        })
        .collect())
}

async fn delete_maildev_emails(maildev_url: &str, ids: Vec<String>) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let url = format!("{}/api/email/delete", maildev_url.trim_end_matches('/'));
    let body = json!({ "ids": ids }).to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        ureq::post(&url)
            .header("Content-Type", "application/json")
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        Ok(())
    })
    .await?
}

/// The SMTP sink alone: the error events' alerts sent straight through SmtpMailer, each of
/// --pollers mailers (one per error poller's environment) sending 10 at a time, as a handler
/// sends a batch's emails together.
async fn smtp_baseline(args: &Args, errors: &[Event], run: &str) -> anyhow::Result<f64> {
    let alert = alert()?;
    let emails: Arc<Vec<Email>> = Arc::new(
        errors
            .iter()
            .enumerate()
            .map(|(n, event)| Email {
                message_id: format!("<{n}.{run}@{BASELINE_MAIL_DOMAIN}>"),
                ..error_alert(event, &alert)
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let mut mailers = JoinSet::new();
    let started = Instant::now();
    for _ in 0..args.pollers {
        let mailer = SmtpMailer::new(&smtp(args))?;
        let (emails, next) = (emails.clone(), next.clone());
        mailers.spawn(async move {
            loop {
                let first = next.fetch_add(MAX_BATCH_ENTRIES, Ordering::Relaxed);
                if first >= emails.len() {
                    return anyhow::Ok(());
                }
                let batch = &emails[first..(first + MAX_BATCH_ENTRIES).min(emails.len())];
                for sent in join_all(batch.iter().map(|email| mailer.send(email))).await {
                    sent.context("the SMTP baseline's email")?;
                }
            }
        });
    }
    while let Some(joined) = mailers.join_next().await {
        joined??;
    }
    Ok(emails.len() as f64 / started.elapsed().as_secs_f64())
}

/// LocalStack's SQS alone: the handler messages sent as the bridge sends them (its entries, 10
/// per SendMessageBatch, from as many tasks per queue as it has batches in flight), received and
/// deleted as the pollers do, in queues of their own.
async fn sqs_baseline(
    args: &Args,
    resources: &mut Resources,
    messages: &[(Queue, EventMessage)],
    senders: usize,
) -> anyhow::Result<f64> {
    let mut queues = Vec::new();
    for queue in [Queue::Warning, Queue::Error] {
        let bodies: Vec<Vec<u8>> =
            messages.iter().filter(|(q, _)| *q == queue).map(|(_, message)| message.to_bytes()).collect();
        if !bodies.is_empty() {
            queues.push((resources.queue(&format!("sqs-{}", queue.role())).await?.url, bodies));
        }
    }
    let client = resources.sqs.clone();
    let finished_at = Arc::new(Mutex::new(None::<Instant>));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for (url, bodies) in queues {
        let url = Arc::new(url);
        let expected = bodies.len();
        let batches: Vec<Vec<SendMessageBatchRequestEntry>> = bodies
            .chunks(MAX_BATCH_ENTRIES)
            .map(|chunk| chunk.iter().enumerate().map(|(n, body)| bridge::sqs::entry(&n.to_string(), body)).collect())
            .collect();
        let batches = Arc::new(Mutex::new(batches));
        for _ in 0..senders {
            let (client, url, batches) = (client.clone(), url.clone(), batches.clone());
            tasks.spawn(async move {
                loop {
                    let Some(entries) = batches.lock().expect("not poisoned").pop() else { return anyhow::Ok(()) };
                    let sent = client.send_message_batch().queue_url(url.as_str()).set_entries(Some(entries)).send();
                    let sent = sent.await.map_err(|error| sdk_error("SendMessageBatch", error))?;
                    ensure!(sent.failed.is_empty(), "SQS refused {} baseline messages", sent.failed.len());
                }
            });
        }
        let deleted = Arc::new(AtomicUsize::new(0));
        for _ in 0..args.pollers {
            let (client, url, deleted, finished_at) =
                (client.clone(), url.clone(), deleted.clone(), finished_at.clone());
            tasks.spawn(async move {
                // A poller still waiting when its queue is done returns within the receive's wait.
                while deleted.load(Ordering::Relaxed) < expected {
                    let received = client
                        .receive_message()
                        .queue_url(url.as_str())
                        .max_number_of_messages(MAX_BATCH_ENTRIES as i32)
                        .wait_time_seconds(RECEIVE_WAIT_SECONDS)
                        .message_system_attribute_names(MessageSystemAttributeName::All)
                        .message_attribute_names("All")
                        .send()
                        .await
                        .map_err(|error| sdk_error("ReceiveMessage", error))?;
                    let entries = delete_entries(received.messages().iter())?;
                    if entries.is_empty() {
                        continue;
                    }
                    let count = entries.len();
                    client
                        .delete_message_batch()
                        .queue_url(url.as_str())
                        .set_entries(Some(entries))
                        .send()
                        .await
                        .map_err(|error| sdk_error("DeleteMessageBatch", error))?;
                    if deleted.fetch_add(count, Ordering::Relaxed) + count >= expected {
                        let mut at = finished_at.lock().expect("not poisoned");
                        *at = Some(at.map_or_else(Instant::now, |at| at.max(Instant::now())));
                    }
                }
                Ok(())
            });
        }
    }
    let count = messages.len();
    within(args, "the SQS baseline", async move {
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        Ok(())
    })
    .await?;
    let finished_at = finished_at.lock().expect("not poisoned").context("the SQS baseline never finished")?;
    Ok(count as f64 / finished_at.duration_since(started).as_secs_f64())
}

/// RabbitMQ alone: the handler messages published as dispatch publishes them (AmqpBus::publish,
/// one persistent message per event with a confirm) from as many publishers as dispatch has
/// environments, and consumed as the bridge consumes them (one consumer per queue with its
/// prefetch, each message acknowledged), in a topology of its own.
async fn rabbitmq_baseline(
    args: &Args,
    resources: &mut Resources,
    messages: &[(Queue, EventMessage)],
    prefetch: u16,
) -> anyhow::Result<f64> {
    let topology = Topology::ephemeral();
    resources.topologies.push(topology.clone());
    let connection = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    declare_topology(&connection.create_channel().await?, &topology).await?;
    let (mut consumers, mut channels) = (JoinSet::new(), Vec::new());
    for queue in [Queue::Warning, Queue::Error] {
        let expected = messages.iter().filter(|(q, _)| *q == queue).count();
        if expected == 0 {
            continue;
        }
        let channel = connection.create_channel().await?;
        channels.push(channel.clone());
        channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let mut consumer = channel
            .basic_consume(
                topology.queue_name(queue).as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        consumers.spawn(async move {
            for _ in 0..expected {
                let delivery = consumer.next().await.context("the baseline's consumer was cancelled")??;
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            anyhow::Ok(Instant::now())
        });
    }
    let started = Instant::now();
    let mut publishers = JoinSet::new();
    let publisher_count = args.dispatch_instances as usize;
    for publisher in 0..publisher_count {
        let bus = AmqpBus::new(SecretString::from(args.amqp_url.clone()), topology.clone(), AMQP_TIMEOUT);
        let share: Vec<(Queue, EventMessage)> =
            messages.iter().skip(publisher).step_by(publisher_count).cloned().collect();
        publishers.spawn(async move {
            for queue in [Queue::Warning, Queue::Error] {
                let outgoing: Vec<EventMessage> =
                    share.iter().filter(|(q, _)| *q == queue).map(|(_, message)| message.clone()).collect();
                for chunk in outgoing.chunks(MAX_EVENTS_PER_MESSAGE) {
                    bus.publish(queue, chunk).await?;
                }
            }
            anyhow::Ok(())
        });
    }
    let finished_at = within(args, "the RabbitMQ baseline", async move {
        while let Some(joined) = publishers.join_next().await {
            joined??;
        }
        let mut last = started;
        while let Some(joined) = consumers.join_next().await {
            last = last.max(joined??);
        }
        Ok(last)
    })
    .await?;
    // Channels closed before their connection, which lapin otherwise reports as an error.
    for channel in channels {
        channel.close(200, "done".into()).await.ok();
    }
    connection.close(200, "done".into()).await.ok();
    Ok(messages.len() as f64 / finished_at.duration_since(started).as_secs_f64())
}

/// Runs a baseline, failing it after --timeout rather than waiting for ever.
async fn within<T>(args: &Args, what: &str, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs_f64(args.timeout), work)
        .await
        .map_err(|_| anyhow!("{what} did not finish within {} s", args.timeout))?
}

fn delete_entries<'a>(
    messages: impl Iterator<Item = &'a Message>,
) -> Result<Vec<DeleteMessageBatchRequestEntry>, aws_sdk_sqs::error::BuildError> {
    messages
        .enumerate()
        .map(|(index, message)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .build()
        })
        .collect()
}

fn sdk_error<E: std::error::Error + 'static>(call: &str, error: E) -> anyhow::Error {
    anyhow!("{call}: {}", aws_sdk_sqs::error::DisplayErrorContext(error))
}

fn print_baseline(name: &str, unit: &str, baseline: f64, pipeline: f64, load: LoadAvg) {
    println!("  {name:<90} {baseline:>7.0} {unit}/s   load {:.2}", load.0);
    println!("      the pipeline's {pipeline:.0} {unit}/s through it is {:.1}% of that", 100.0 * pipeline / baseline);
}

/// CPU time per service, from /proc: which process used the machine during the drain.
struct CpuSample {
    at: Instant,
    /// Jiffies per process, with the service it belongs to.
    processes: HashMap<u32, (Service, u64)>,
    /// The machine's busy and total jiffies, all cores together.
    machine: (u64, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Service {
    Benchmark,
    PostgreSql,
    RabbitMq,
    LocalStack,
    Maildev,
    Other,
}

impl Service {
    const ALL: [Service; 6] = [
        Service::Benchmark,
        Service::PostgreSql,
        Service::RabbitMq,
        Service::LocalStack,
        Service::Maildev,
        Service::Other,
    ];

    fn of(pid: u32, comm: &str, cmdline: &str) -> Self {
        if pid == std::process::id() {
            Service::Benchmark
        } else if comm == "postgres" {
            Service::PostgreSql
        } else if comm == "beam.smp" || cmdline.contains("rabbitmq") {
            Service::RabbitMq
        } else if cmdline.contains("localstack") {
            Service::LocalStack
        } else if cmdline.contains("maildev") {
            Service::Maildev
        } else {
            Service::Other
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::Benchmark => "this benchmark (bridge, functions, SDK clients)",
            Service::PostgreSql => "PostgreSQL",
            Service::RabbitMq => "RabbitMQ",
            Service::LocalStack => "LocalStack",
            Service::Maildev => "maildev",
            Service::Other => "everything else",
        }
    }
}

/// /proc counts CPU time in USER_HZ ticks, 100 a second on Linux's common architectures.
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuSample {
    fn take() -> Self {
        let mut processes = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // The command name, in parentheses, may itself hold spaces and parentheses.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            // utime and stime are the stat file's 14th and 15th fields; `fields` starts at the 3rd.
            let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let service = Service::of(pid, &stat[open + 1..close], &String::from_utf8_lossy(&cmdline));
            processes.insert(pid, (service, ticks(11) + ticks(12)));
        }
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let ticks: Vec<u64> =
                    stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal: guest time is already in user.
                let total: u64 = ticks.iter().take(8).sum();
                let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
                Some((total - idle, total))
            })
            .unwrap_or_default();
        Self { at: Instant::now(), processes, machine }
    }

    /// What each service used since this sample; a process started since counts from zero, one
    /// that ended since is missing (its time is lost).
    fn since(self) -> CpuUse {
        let now = CpuSample::take();
        let mut seconds: HashMap<Service, f64> = HashMap::new();
        for (pid, (service, ticks)) in &now.processes {
            let before = self.processes.get(pid).map_or(0, |(_, ticks)| *ticks);
            *seconds.entry(*service).or_default() += ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND;
        }
        let busy = now.machine.0.saturating_sub(self.machine.0) as f64;
        let total = now.machine.1.saturating_sub(self.machine.1) as f64;
        CpuUse {
            wall: now.at.duration_since(self.at).as_secs_f64(),
            busy: if total > 0.0 { busy / total } else { 0.0 },
            seconds,
        }
    }
}

/// CPU time used during the drain.
struct CpuUse {
    wall: f64,
    /// The machine's cores' busy share.
    busy: f64,
    seconds: HashMap<Service, f64>,
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        writeln!(
            f,
            "CPU during the drain ({cores} cores x {:.2} s = {:.2} core-seconds; the cores were {:.0}% busy):",
            self.wall,
            cores as f64 * self.wall,
            100.0 * self.busy
        )?;
        let parts: Vec<String> = Service::ALL
            .iter()
            .map(|service| format!("{} {:.2} s", service.name(), self.seconds.get(service).copied().unwrap_or(0.0)))
            .collect();
        write!(f, "  {}", parts.join(", "))
    }
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
