//! The pipeline's drain without LocalStack's Lambda emulation and SQS poller, on the real services:
//! a backlog in RabbitMQ's `dispatch` queue goes through the real bridge, the dispatch handler and
//! the SQS handlers (run in-process as Lambda runs them), PostgreSQL, LocalStack's SQS API and the
//! SMTP sink, and each service's own rate is measured in the same run beside the pipeline's.
//!
//! `cargo run --release -p bench --bin bench-drain -- --help` lists the options; BENCHMARKS.md
//! holds the figures.

mod baselines;
mod cpu;
mod drained;
mod functions;
mod maildev;
mod pollers;
mod resources;
mod seed;

use anyhow::{anyhow, bail, ensure};
use aws_config::{BehaviorVersion, SdkConfig};
use bench::{
    database,
    machine::{self, LoadAvg},
};
use bridge::sqs::MAX_BATCH_ENTRIES;
use clap::{Parser, ValueEnum};
use eventstream::bus::Topology;
use sqlx::PgPool;
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

use crate::{
    baselines::{rabbitmq_baseline, smtp_baseline, sqs_baseline},
    drained::drain,
    functions::bridge_config,
    maildev::check_emails,
    resources::Resources,
    seed::seed,
};

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
/// (AWS_ENDPOINT_URL and LocalStack's test credentials, as scripts/lib.sh's use_localstack sets
/// them). The functions' logs are off unless RUST_LOG asks for them. Exits non-zero when the drain does not finish
/// within --timeout, a stage lost or doubled something, or the email check fails.
#[derive(Debug, Parser)]
#[command(name = "bench-drain", verbatim_doc_comment)]
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
/// The drain's target, and what the original Celery pipeline drained (a published figure).
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

    println!("{}", machine::summary());
    let admin = database::prepare(&args.database_url, "it is emptied before the run").await?;
    let user = database::bench_user(&admin, BENCH_USER).await?;
    database::reset(&admin).await?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let mut resources = Resources::new(&aws, &args);
    let outcome = tokio::select! {
        outcome = bench(&args, &aws, &admin, user, &mut resources) => outcome,
        () = bridge::shutdown_signal() => Err(anyhow!("interrupted")),
    };
    resources.clean_up().await;
    match outcome {
        Ok(Verdict::Passed) => {
            database::reset(&admin).await?;
            Ok(())
        }
        // The tables stay as the run left them, for a person to look at.
        Ok(Verdict::Failed(why)) => bail!("{why}; the benchmark database keeps what the run left"),
        Err(error) => Err(error),
    }
}

/// Whether the run passed its checks; a failure says why.
enum Verdict {
    Passed,
    Failed(String),
}

/// Seeds the backlog, drains it, checks the emails, then measures the baselines.
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

/// A service's own rate beside the pipeline's rate through it.
fn print_baseline(name: &str, unit: &str, baseline: f64, pipeline: f64, load: LoadAvg) {
    println!("  {name:<90} {baseline:>7.0} {unit}/s   load {load:.2}");
    println!("      the pipeline's {pipeline:.0} {unit}/s through it is {:.1}% of that", 100.0 * pipeline / baseline);
}
