//! Latency of the GraphQL analytics API over a large events table: seeds a benchmark database once,
//! then runs each query through the real schema (`schema.execute`, the same stores, pool and SQL the
//! graphql function uses) many times and prints p50, p95, p99 and max per query, with the
//! PostgreSQL plan of the `stats` query for reference. Then the costliest queries the limits still
//! accept, against a target of 1 s, and hostile queries the limits refuse, against a target of 20 ms.
//!
//! `scripts/bench-graphql --help` lists the options; BENCHMARKS.md holds the figures.

mod cases;
mod plans;
mod seed;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure};
use async_graphql::{Request, Variables};
use bench::{
    database::{self, function_pool},
    machine,
    rabbitmq::function_bus,
    requests::{access_token, jwt_config},
    timing::{Latencies, millis, verdict},
};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use clap::Parser;
use eventstream::{
    auth::{Claims, TokenCodec, TokenKind},
    bus::Topology,
    domain::{NewEvent, Status},
    graphql::{EventStreamSchema, Services, code},
    pipeline::Intake,
    store::{PgAnalyticsStore, PgEventStore},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::cases::{Case, Refusal};

/// Seed and time the GraphQL analytics queries over a large events table.
///
/// Creates the database when it is missing, applies the migrations, and seeds `--events` events
/// spread over the last `--days` days (status weights success 70%, info 10%, warning 15%, error 5%;
/// `--sources` sources, a few busy and many quiet, 2% of events without one) in one INSERT ... SELECT,
/// unless the table already holds exactly that seed. Then runs each query through the real schema,
/// one at a time on a pool of 2 connections as the graphql function has, and prints its latency:
/// `schema.execute` plus serialising the response to JSON, as the function does before answering.
///
/// Then the costliest queries the limits accept (every aggregate once over the widest range, 500-event
/// pages with every field, searches that read every event), each `--costly-iterations` times, against
/// a target of 1 s; and hostile queries (a fragment bomb, a document over 16 KiB, aliased aggregates,
/// ...), each `--iterations` times, against a target of 20 ms to be refused. The schema's pool has the
/// graphql function's defaults, its statement timeout included; seeding has none.
///
/// The time windows end when the events were seeded, so a rerun days later asks the same questions.
/// Seeding empties the events table and the tables that refer to it: the database's name must
/// contain "bench".
#[derive(Debug, Parser)]
#[command(name = "bench-graphql", verbatim_doc_comment)]
struct Args {
    /// The benchmark database; created when missing, its events table replaced when reseeded.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/eventstream_bench",
        hide_env_values = true
    )]
    database_url: String,

    /// How many events the table holds.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1..))]
    events: i64,

    /// Over how many days, ending now, the seeded events were received.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3650))]
    days: i64,

    /// How many distinct sources send them.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=999))]
    sources: i64,

    /// Timed runs of each query.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,

    /// Timed runs of each of the costliest queries the limits accept; two untimed runs come first.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    costly_iterations: u32,

    /// Untimed runs of each query first (warm caches, prepared statements, plan choice).
    #[arg(long, default_value_t = 20)]
    warmup: u32,

    /// How far into the newest-first list the deep page starts, in events.
    #[arg(long, default_value_t = 100_000)]
    deep_offset: i64,

    /// Only the queries whose name contains this text (e.g. "stats", "events(", "insert").
    #[arg(long)]
    only: Option<String>,

    /// Seed again even when the table already holds this seed.
    #[arg(long)]
    reseed: bool,

    /// Events per batch in the insert measurement (the ingest path's one-statement insert).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=500))]
    insert_batch: u32,

    /// Timed batches in the insert measurement; 0 skips it. The inserted events are deleted after.
    #[arg(long, default_value_t = 20)]
    insert_iterations: u32,

    /// Print the whole EXPLAIN (ANALYZE, BUFFERS) plans, not only their scans and times.
    #[arg(long)]
    plans: bool,
}

/// The seed's events are posted by this user.
const BENCH_USER: &str = "bench";
/// Only `createEvent` publishes, and it is not benchmarked: the bus never connects.
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The slowest an accepted query may answer (p99), and the slowest a hostile one may be refused.
const ACCEPTED_TARGET: Duration = Duration::from_secs(1);
const REFUSAL_TARGET: Duration = Duration::from_millis(20);
/// Untimed runs of each costliest query: each reads every event, so a few warm the caches.
const COSTLY_WARMUP: u32 = 2;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("{}", machine::summary());
    let admin = database::prepare(&args.database_url, "its events are replaced when seeded").await?;
    // The schema gets the graphql function's pool; seeding and its index builds use `admin`.
    let pool = function_pool(&args.database_url)?;
    plans::print_server(&pool).await?;

    let user = database::bench_user(&admin, BENCH_USER).await?;
    let until = seed::ensure(&admin, &args, user).await?;
    let since_all = until - TimeDelta::days(args.days);
    println!(
        "data: {} events over {} days from {} sources, seeded at {}; the queries' windows end there",
        thousands(args.events),
        args.days,
        args.sources,
        rfc3339(until)
    );

    let events = PgEventStore::new(pool.clone());
    let services = Services {
        events: events.clone(),
        analytics: PgAnalyticsStore::new(pool.clone()),
        intake: Intake::new(events.clone(), Arc::new(function_bus(AMQP_URL, &Topology::ephemeral()))),
    };
    let schema = services.clone().schema();
    // As the graphql function gets them: a token issued and verified by the same codec.
    let jwt = jwt_config();
    let claims = TokenCodec::new(&jwt).verify(&access_token(&jwt, user, BENCH_USER), TokenKind::Access)?;

    let selected = |name: &str| args.only.as_deref().is_none_or(|only| name.contains(only));
    let deep_offset = args.deep_offset.min(args.events - 1);
    let deep_cursor = seed::deep_cursor(&admin, deep_offset).await?;
    let cases: Vec<Case> = cases::cases(until, since_all, &deep_cursor, deep_offset)
        .into_iter()
        .filter(|case| selected(&case.name))
        .collect();

    if !cases.is_empty() {
        println!(
            "\nGraphQL queries: {} warm-up then {} timed runs each, one at a time; schema.execute + JSON\n",
            args.warmup, args.iterations
        );
        print_header();
    }
    for case in &cases {
        let (timings, answer, timeouts) =
            run_case(&schema, &services, &claims, case, args.warmup, args.iterations).await?;
        print_row(&case.name, &timings, &with_timeouts((case.describe)(&answer), timeouts));
    }

    let costly: Vec<Case> = cases::costliest(until).into_iter().filter(|case| selected(&case.name)).collect();
    if !costly.is_empty() {
        println!(
            "\nThe costliest queries the limits accept: {COSTLY_WARMUP} warm-up then {} timed runs each; \
             target p99 <= {} ms\n",
            args.costly_iterations,
            ACCEPTED_TARGET.as_millis()
        );
        print_header();
        let mut worst: Option<(&str, Duration)> = None;
        for case in &costly {
            let (timings, answer, timeouts) =
                run_case(&schema, &services, &claims, case, COSTLY_WARMUP, args.costly_iterations).await?;
            print_row(&case.name, &timings, &with_timeouts((case.describe)(&answer), timeouts));
            let p99 = timings.percentile(0.99);
            if worst.is_none_or(|(_, slowest)| p99 > slowest) {
                worst = Some((&case.name, p99));
            }
        }
        if let Some((name, p99)) = worst {
            println!(
                "worst accepted: {name}, p99 {:.2} ms; target <= {} ms: {}",
                millis(p99),
                ACCEPTED_TARGET.as_millis(),
                verdict(p99 <= ACCEPTED_TARGET)
            );
        }
    }

    let refusals: Vec<Refusal> = cases::refusals().into_iter().filter(|refusal| selected(&refusal.name)).collect();
    if !refusals.is_empty() {
        println!(
            "\nHostile queries, each refused: {} warm-up then {} timed runs each; target p99 < {} ms\n",
            args.warmup,
            args.iterations,
            REFUSAL_TARGET.as_millis()
        );
        print_header();
        let mut met = true;
        for refusal in &refusals {
            let timings = run_refusal(&schema, &services, &claims, refusal, args.warmup, args.iterations).await?;
            let p99 = timings.percentile(0.99);
            met &= p99 < REFUSAL_TARGET;
            print_row(
                &refusal.name,
                &timings,
                &format!(
                    "{}, target < {} ms: {}",
                    refusal.code,
                    REFUSAL_TARGET.as_millis(),
                    verdict(p99 < REFUSAL_TARGET)
                ),
            );
        }
        println!("every refusal under {} ms at p99: {}", REFUSAL_TARGET.as_millis(), verdict(met));
    }

    let insert = format!("insert {} events (ingest statement)", args.insert_batch);
    if args.insert_iterations > 0 && selected(&insert) {
        println!();
        let timings = time_inserts(&admin, &events, user, args.insert_batch, args.insert_iterations).await?;
        print_row(&insert, &timings, "rows deleted after");
    }

    if cases.iter().any(|case| case.name.starts_with("stats")) {
        plans::print_plan_choices(&pool).await?;
        plans::explain_stats(&args, until, since_all).await?;
    }
    Ok(())
}

/// Runs a case `warmup` times, then `iterations` timed times; returns the timings, the last
/// answer and how many timed runs the statement timeout cut short.
async fn run_case(
    schema: &EventStreamSchema,
    services: &Services,
    claims: &Claims,
    case: &Case,
    warmup: u32,
    iterations: u32,
) -> anyhow::Result<(Latencies, Value, u32)> {
    let variables = Variables::from_json(case.variables.clone());
    let mut samples = Vec::with_capacity(iterations as usize);
    let mut timeouts = 0;
    let mut body = Vec::new();
    for run in 0..warmup + iterations {
        let request = services.request(Request::new(case.query.as_str()).variables(variables.clone()), claims.clone());
        let started = Instant::now();
        let response = schema.execute(request).await;
        body = serde_json::to_vec(&response)?;
        let elapsed = started.elapsed();
        // A statement canceled by the pool's statement_timeout is a figure to report, not a failure.
        let timed_out = |error: &async_graphql::ServerError| {
            error.extensions.as_ref().and_then(|extensions| extensions.get("code"))
                == Some(&async_graphql::Value::from(code::TIMEOUT))
        };
        if !response.errors.iter().all(timed_out) {
            bail!("{} failed: {}", case.name, String::from_utf8_lossy(&body));
        }
        if run >= warmup {
            samples.push(elapsed);
            timeouts += u32::from(!response.errors.is_empty());
        }
    }
    let answer: Value = serde_json::from_slice(&body)?;
    Ok((Latencies::new(samples), answer["data"].clone(), timeouts))
}

/// The answer in a few words, and how many runs the statement timeout cut short.
fn with_timeouts(answer: String, timeouts: u32) -> String {
    if timeouts == 0 { answer } else { format!("{answer}; TIMEOUT in {timeouts} runs") }
}

/// Times a query the limits must refuse; fails when it is answered, or refused with another code.
async fn run_refusal(
    schema: &EventStreamSchema,
    services: &Services,
    claims: &Claims,
    refusal: &Refusal,
    warmup: u32,
    iterations: u32,
) -> anyhow::Result<Latencies> {
    let mut samples = Vec::with_capacity(iterations as usize);
    for run in 0..warmup + iterations {
        let request = services.request(Request::new(refusal.query.as_str()), claims.clone());
        let started = Instant::now();
        let response = schema.execute(request).await;
        let body = serde_json::to_vec(&response)?;
        let elapsed = started.elapsed();
        let answer: Value = serde_json::from_slice(&body)?;
        let codes: Vec<&str> = answer["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|error| error["extensions"]["code"].as_str()).collect())
            .unwrap_or_default();
        ensure!(
            !codes.is_empty() && codes.iter().all(|code| *code == refusal.code) && answer["data"].is_null(),
            "{} was not refused with {}: {}",
            refusal.name,
            refusal.code,
            String::from_utf8_lossy(&body)
        );
        if run >= warmup {
            samples.push(elapsed);
        }
    }
    Ok(Latencies::new(samples))
}

/// Times the ingest path's insert (`PgEventStore::insert`, one statement per batch, every index
/// maintained); each batch is deleted after it is timed, and the table vacuumed at the end.
async fn time_inserts(
    pool: &PgPool,
    events: &PgEventStore,
    user: Uuid,
    batch: u32,
    iterations: u32,
) -> anyhow::Result<Latencies> {
    let statuses = [Status::Success, Status::Success, Status::Info, Status::Warning, Status::Error];
    let batch: Vec<NewEvent> = (0..batch as usize)
        .map(|i| NewEvent {
            title: format!("Bench insert {i}"),
            description: String::new(),
            status: statuses[i % statuses.len()],
            source: Some(format!("source-{:03}", 1 + i % 50)),
            occurred_at: None,
            attributes: json!({ "batch": "bench", "n": i }),
        })
        .collect();
    let warmup = 2;
    let mut samples = Vec::new();
    for run in 0..warmup + iterations {
        let started = Instant::now();
        let inserted = events.insert(user, None, None, &batch).await?;
        let elapsed = started.elapsed();
        let ids: Vec<Uuid> = inserted.events.iter().map(|event| event.id).collect();
        sqlx::query("DELETE FROM events WHERE id = ANY($1)").bind(&ids).execute(pool).await?;
        if run >= warmup {
            samples.push(elapsed);
        }
    }
    sqlx::raw_sql("VACUUM events").execute(pool).await?;
    Ok(Latencies::new(samples))
}

fn print_header() {
    println!("{:<48} {:>5} {:>9} {:>9} {:>9} {:>9}  answer", "query", "n", "p50 ms", "p95 ms", "p99 ms", "max ms");
}

fn print_row(name: &str, timings: &Latencies, answer: &str) {
    println!(
        "{:<48} {:>5} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {answer}",
        name,
        timings.count(),
        millis(timings.percentile(0.5)),
        millis(timings.percentile(0.95)),
        millis(timings.percentile(0.99)),
        millis(timings.max()),
    );
}

/// A time as the queries and the seed's comment write it.
fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `1234567` as `1,234,567`.
fn thousands(n: impl Into<i64>) -> String {
    let digits = n.into().unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
