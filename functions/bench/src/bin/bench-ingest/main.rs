//! Ingest throughput straight into the ingest function's handler (no API Gateway, no Lambda
//! runtime), each figure beside a baseline measured in the same run on the same database:
//!
//! - batches of 500 events through `POST /api/events/batch` against a raw one-statement INSERT of
//!   the same rows with the same number of connections;
//! - single events through `POST /api/events` (store, then publish with a confirm to the real
//!   RabbitMQ) against `pgbench` running a single-row INSERT of the same columns.
//!
//! `cargo run --release -p bench --bin bench-ingest -- --help` lists the options; BENCHMARKS.md
//! holds the figures.

mod pgbench;
mod phases;
mod report;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, ensure};
use axum::http::StatusCode;
use bench::{
    database, machine,
    machine::LoadAvg,
    rabbitmq::delete_topology,
    requests::{access_token, batch_inputs, jwt_config, rest_event},
};
use clap::Parser;
use eventstream::{
    bus::Topology,
    domain::{EventInput, NewEvent},
};
use serde_json::json;

use crate::{
    phases::{Packing, drive, instances, publish_only, raw_batches, store_batches},
    report::Line,
};

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
#[command(name = "bench-ingest", verbatim_doc_comment)]
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

const BENCH_USER: &str = "bench-ingest";
/// Mostly successes, as the Airflow DAG sends them.
const STATUSES: [&str; 10] =
    ["success", "success", "success", "success", "success", "success", "success", "info", "warning", "error"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.seconds > 0.0, "--seconds must be positive");
    let duration = Duration::from_secs_f64(args.seconds);
    let pgbench = args.pgbench.clone().unwrap_or_else(pgbench::find);

    println!("{}", machine::summary());
    let admin = database::prepare(&args.database_url, "its events are deleted before every phase").await?;
    let user = database::bench_user(&admin, BENCH_USER).await?;
    let jwt = jwt_config();
    let token = access_token(&jwt, user, BENCH_USER);
    let topology = Topology::ephemeral();
    let inputs = batch_inputs(args.batch_size as usize, &STATUSES, "bench");
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
            database::reset(&admin).await?;
            let load = LoadAvg::read();
            let raw = raw_batches(&args.database_url, args.connections, user, &rows, duration).await?;
            report.push(Line::throughput(
                format!("raw INSERT, {} rows/statement, {} connections", args.batch_size, args.connections),
                &raw,
                load,
            ));
            Some(raw)
        };

        database::reset(&admin).await?;
        let load = LoadAvg::read();
        let instances = instances(&args.database_url, &args.amqp_url, &jwt, &topology, args.connections)?;
        let handler = drive(&instances, &batch_event, StatusCode::CREATED, args.batch_size.into(), duration).await?;
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

            database::reset(&admin).await?;
            let load = LoadAvg::read();
            let store = store_batches(&instances, user, &rows, duration).await?;
            report.push(Line::throughput(
                format!("PgEventStore::insert only, {} instances", args.connections),
                &store,
                load,
            ));

            for (packing, name) in [
                (Packing::Together, "AmqpBus::publish_batch only (1 message, as ingest)".to_string()),
                (Packing::Each, format!("AmqpBus::publish only ({} messages)", args.batch_size)),
            ] {
                let load = LoadAvg::read();
                let publish =
                    publish_only(&args.amqp_url, &topology, &rows, packing, args.connections, duration).await?;
                report.push(Line::throughput(format!("{name}, {} instances", args.connections), &publish, load));
            }
        }
    }

    if !matches!(args.only.as_deref(), Some("batch" | "batch-handler")) {
        let single_body = json!(single_input()).to_string();
        let single_event = rest_event("/api/events", &token, &single_body);

        database::reset(&admin).await?;
        let load = LoadAvg::read();
        let instances = instances(&args.database_url, &args.amqp_url, &jwt, &topology, args.instances)?;
        let handler = drive(&instances, &single_event, StatusCode::CREATED, 1, duration).await?;
        report.push(Line::requests(format!("handler POST /api/events, {} instances", args.instances), &handler, load));

        database::reset(&admin).await?;
        let load = LoadAvg::read();
        let baseline = pgbench::run(&pgbench, &args.database_url, args.instances, user, duration)?;
        report.push(Line::requests(format!("pgbench single-row INSERT, {} clients", args.instances), &baseline, load));
        report.push(Line::ratio("single: handler / pgbench", handler.per_second() / baseline.per_second(), 0.0));

        let load = LoadAvg::read();
        let single_row = [single_input().validate().context("the single bench event")?];
        let publish =
            publish_only(&args.amqp_url, &topology, &single_row, Packing::Together, args.instances, duration).await?;
        report.push(Line::requests(
            format!("AmqpBus::publish only, 1 message, {} instances", args.instances),
            &publish,
            load,
        ));
        report.push(Line::verdict(
            "single: target >= 700 requests/s, p99 < 20 ms",
            handler.per_second() >= 700.0 && handler.latencies.percentile(0.99) < Duration::from_millis(20),
        ));
    }

    delete_topology(&args.amqp_url, &topology).await;
    database::reset(&admin).await?;
    report::print(&report, duration);
    Ok(())
}

/// The single event: an error, as a monitor posts one.
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
