//! Ingest through a real Lambda Runtime API and through LocalStack, side by side: the same API
//! Gateway events at the same concurrency, handed to release `ingest` bootstraps polling a Runtime
//! API served here, posted to LocalStack's API Gateway, and sent to LocalStack's Lambda Invoke API,
//! so the emulator's share of a request is visible.
//!
//! `cargo run --release -p bench --bin bench-runtime -- --help` lists the options; BENCHMARKS.md
//! holds the figures.

mod stack;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use aws_sdk_lambda::primitives::Blob;
use axum::body::Bytes;
use bench::{
    machine::{self, LoadAvg},
    rabbitmq::delete_topology,
    requests::{batch_inputs, rest_event},
    runtime::{self as lambda, Function, Runtime},
    timing::{Run, Sample, millis, timed, verdict},
};
use clap::Parser;
use eventstream::bus::{Queue, Topology};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::stack::Stack;

/// Ingest through the Lambda Runtime API and through LocalStack, side by side.
///
/// Needs the local stack (scripts/up). Reads .local/stack.env, and takes the deployed ingest
/// function's configuration from LocalStack (GetFunctionConfiguration): the environment that
/// template.yaml gives it with the stack's values, its memory size, timeout and log format. Then:
///
///   - serves the Lambda Runtime API (2018-06-01) on 127.0.0.1, one server and one invocation
///     queue per instance, as Lambda hands each execution environment one request at a time;
///   - starts --instances processes of the release ingest bootstrap against it, each with that
///     environment, pointed at a database (--database-url) and a RabbitMQ topology of its own,
///     plus the variables Lambda sets (AWS_LAMBDA_RUNTIME_API, AWS_LAMBDA_FUNCTION_NAME,
///     AWS_LAMBDA_FUNCTION_MEMORY_SIZE, AWS_LAMBDA_FUNCTION_VERSION, AWS_LAMBDA_LOG_FORMAT, ...),
///     logging to .local/bench_runtime/instance-<n>.log; they are killed at the end;
///   - logs in as the stack's demo user through the stack's login function (POST /api/token),
///     and refreshes the access token before every phase (POST /api/token/refresh), as a client would.
///
/// The instances' own database (created and migrated when missing, emptied first; it holds a copy
/// of the demo user, so one token serves every path) and topology (deleted at the end) keep what
/// they store and publish out of the stack's pipeline: routing those events through LocalStack
/// would share the two cores with the phase, and it is not the function's work. Six phases
/// follow, each for --seconds with one request in flight per instance:
///
///   1-2. the Runtime API: POST /api/events with one event, then POST /api/events/batch with
///        --batch-size events, each an API Gateway REST (v1) proxy event;
///   3-4. LocalStack's API Gateway: the same bodies as HTTP POSTs to the stack's API_URL;
///   5-6. LocalStack's Lambda Invoke API: the same events to the deployed function.
///
/// A Runtime API request's latency runs from handing the event to the instance's queue to its
/// response; an HTTP or Invoke request's from sending it to the whole response. Each phase starts
/// with one untimed request per worker (connections, LocalStack's environments), and every
/// response must be 201. The LocalStack phases' events (info and success only, so nothing is
/// emailed) stay in the stack's database and go through the stack's pipeline; before each phase and at the end, the
/// stack's dispatch queue is given up to --drain-seconds to empty, so that neither the next phase
/// nor the next benchmark shares the cores with routing these events. Target: single events
/// through the Runtime API at least 700 requests/s with p99 under 20 ms.
#[derive(Debug, Parser)]
#[command(name = "bench-runtime", verbatim_doc_comment)]
struct Args {
    /// The release ingest bootstrap; by default .aws-sam/build/IngestFunction/bootstrap (sam build), else target/release/ingest.
    #[arg(long)]
    bootstrap: Option<PathBuf>,

    /// The stack's description as scripts/up writes it; by default .local/stack.env.
    #[arg(long)]
    stack_env: Option<PathBuf>,

    /// Function instances, and requests in flight on every path (at most the function's reserved concurrency).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    instances: u32,

    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,

    /// Events per batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=500))]
    batch_size: u32,

    /// The Runtime API instances' database; created and migrated when missing, emptied before the run.
    #[arg(
        long,
        env = "BENCH_RUNTIME_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/eventstream_bench_runtime",
        hide_env_values = true
    )]
    database_url: String,

    /// Longest wait for the stack's dispatch queue to empty before a phase; 0 does not wait.
    #[arg(long, default_value_t = 120.0)]
    drain_seconds: f64,

    /// Sets or replaces a variable of the instances' environment, e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/eventstream
    /// with the Docker stack, whose functions reach services by names this machine does not resolve.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    env: Vec<(String, String)>,
}

fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.into(), value.into())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// Info and success only: warning and error events would go on to SQS, the handlers and email, and
/// keep the stack busy during the following phases.
const STATUSES: [&str; 10] =
    ["success", "success", "success", "success", "success", "success", "success", "success", "success", "info"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.seconds > 0.0 && args.drain_seconds >= 0.0,
        "--seconds must be positive, --drain-seconds not negative"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let stack = Stack::read(&args.stack_env.clone().unwrap_or_else(|| root.join(".local/stack.env")))?;
    let bootstrap = lambda::find_bootstrap(args.bootstrap.clone(), &root)?;
    let lambda = stack::lambda_client(&stack).await;
    let function = Function::describe(&lambda, &stack.ingest_function).await?;
    let mut environment = function.environment.clone();
    let stack_database_url =
        environment.get("DATABASE_URL").context("the function's environment has no DATABASE_URL")?.clone();
    // Names this run's topology and its events' sources.
    let run = format!("bench-runtime-{}", Uuid::now_v7().simple());
    let own_prefix = format!("{run}-");
    stack::prepare_own_database(&args.database_url, &stack_database_url, &stack.username).await?;
    environment.insert("DATABASE_URL".into(), args.database_url.clone());
    environment.insert("AMQP_QUEUE_PREFIX".into(), own_prefix.clone());
    environment.extend(args.env.iter().cloned());
    let access_ttl: f64 = match environment.get("JWT_ACCESS_TTL_SECONDS") {
        Some(value) => value.parse().context("JWT_ACCESS_TTL_SECONDS is not a number")?,
        None => 300.0,
    };
    ensure!(
        args.seconds + 60.0 <= access_ttl,
        "--seconds must be at most {}: the access token, refreshed before each phase, lives {access_ttl} s \
         (JWT_ACCESS_TTL_SECONDS), and a minute of that goes to the warm-up",
        access_ttl - 60.0
    );
    let amqp_url = environment.get("AMQP_URL").context("the function's environment has no AMQP_URL")?.clone();
    let stack_prefix = function.environment.get("AMQP_QUEUE_PREFIX").map(String::as_str).unwrap_or_default();
    let dispatch_queue = Topology::with_prefix(stack_prefix).queue_name(Queue::Dispatch);

    println!("{}", machine::summary());
    println!(
        "bootstrap {} ({:.2} MB); function {} ({} MB, timeout {} s, log format {})",
        bootstrap.display(),
        std::fs::metadata(&bootstrap)?.len() as f64 / 1_048_576.0,
        function.name,
        function.memory_mb,
        function.timeout.as_secs(),
        function.log_format
    );

    let duration = Duration::from_secs_f64(args.seconds);
    let drain = Duration::from_secs_f64(args.drain_seconds);
    // The instances' topology goes however the phases end.
    let outcome: anyhow::Result<Vec<Phase>> = async {
        let logs = root.join(".local/bench_runtime");
        let (runtimes, _processes) =
            lambda::start(&function, &bootstrap, &environment, &stack.aws_region, args.instances, &logs).await?;
        let runtimes = Arc::new(runtimes);

        let mut refresh = stack::log_in(&stack)?;
        let single_body = json!(single_input(&run)).to_string();
        let batch_body = json!({ "events": batch_inputs(args.batch_size as usize, &STATUSES, &run) }).to_string();
        let workers = args.instances as usize;
        let mut phases = Vec::new();
        for via in [Via::RuntimeApi, Via::ApiGateway, Via::LambdaInvoke] {
            for kind in [Kind::Single, Kind::Batch] {
                stack::wait_for_drain(&amqp_url, &dispatch_queue, drain).await?;
                let token = stack::refreshed_access(&stack, &mut refresh)?;
                let (body, events) = match kind {
                    Kind::Single => (&single_body, 1),
                    Kind::Batch => (&batch_body, u64::from(args.batch_size)),
                };
                let event = Bytes::from(rest_event(kind.route(), &token, body));
                let load = LoadAvg::read();
                let run = match via {
                    Via::RuntimeApi => runtime_phase(runtimes.clone(), event, events, duration).await,
                    Via::ApiGateway => {
                        let url = format!("{}{}", stack.api_url, kind.route());
                        gateway_phase(&url, &token, body.clone().into(), events, workers, duration).await
                    }
                    Via::LambdaInvoke => invoke_phase(&lambda, &function.name, event, events, workers, duration).await,
                }
                .with_context(|| format!("{}, {}", via.name(), kind.name()))?;
                phases.push(Phase { via, kind, run, load });
            }
        }
        stack::wait_for_drain(&amqp_url, &dispatch_queue, drain).await?;
        Ok(phases)
    }
    .await;
    delete_topology(&amqp_url, &Topology::with_prefix(&own_prefix)).await;
    stack::delete_stack_events(&stack_database_url, &run, drain).await;
    print_report(&outcome?, &args);
    Ok(())
}

/// The single event: info, so that nothing is emailed.
fn single_input(run: &str) -> Value {
    json!({
        "title": "Disk usage above 80% on web-1",
        "status": "info",
        "source": format!("{run}-single"),
        "attributes": { "mount": "/var" },
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    RuntimeApi,
    ApiGateway,
    LambdaInvoke,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::RuntimeApi => "Runtime API (bootstraps here)",
            Via::ApiGateway => "LocalStack API Gateway",
            Via::LambdaInvoke => "LocalStack Lambda Invoke",
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Single,
    Batch,
}

impl Kind {
    fn route(self) -> &'static str {
        match self {
            Kind::Single => "/api/events",
            Kind::Batch => "/api/events/batch",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Single => "single",
            Kind::Batch => "batch",
        }
    }
}

/// Hands `event` to each instance's Runtime API; a request's latency runs from the hand-off to
/// the response.
async fn runtime_phase(
    runtimes: Arc<Vec<Runtime>>,
    event: Bytes,
    events: u64,
    duration: Duration,
) -> anyhow::Result<Run> {
    timed(runtimes.len(), duration, move |worker| {
        let runtimes = runtimes.clone();
        let event = event.clone();
        async move {
            let (latency, answer) = runtimes[worker].invoke(event).await?;
            expect_created(&answer)?;
            Ok(Sample { latency, rows: events })
        }
    })
    .await
}

/// HTTP POSTs of `body` to `url` on the stack's API, one keep-alive connection per worker.
async fn gateway_phase(
    url: &str,
    token: &str,
    body: Bytes,
    events: u64,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    let agents: Arc<Vec<ureq::Agent>> = Arc::new((0..workers).map(|_| stack::agent()).collect());
    let url: Arc<str> = url.into();
    let bearer: Arc<str> = format!("Bearer {token}").into();
    timed(workers, duration, move |worker| {
        let (agents, url, bearer, body) = (agents.clone(), url.clone(), bearer.clone(), body.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let mut response = agents[worker]
                    .post(&*url)
                    .header("Authorization", &*bearer)
                    .header("Content-Type", "application/json")
                    .send(&body[..])?;
                let text = response.body_mut().read_to_string()?;
                let sample = Sample::since(started, events);
                ensure!(response.status() == 201, "API Gateway answered {}: {text}", response.status());
                Ok(sample)
            })
            .await?
        }
    })
    .await
}

/// `event` sent to the deployed function through LocalStack's Invoke API.
async fn invoke_phase(
    client: &aws_sdk_lambda::Client,
    function: &str,
    event: Bytes,
    events: u64,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    let client = client.clone();
    let function: Arc<str> = function.into();
    timed(workers, duration, move |_| {
        let (client, function, event) = (client.clone(), function.clone(), event.clone());
        async move {
            let started = Instant::now();
            let output = client.invoke().function_name(&*function).payload(Blob::new(event.to_vec())).send().await?;
            let sample = Sample::since(started, events);
            if let Some(error) = output.function_error() {
                bail!(
                    "the function failed ({error}): {:?}",
                    output.payload().map(|p| String::from_utf8_lossy(p.as_ref()))
                );
            }
            expect_created(output.payload().map(|payload| payload.as_ref()).unwrap_or_default())?;
            Ok(sample)
        }
    })
    .await
}

/// One path and kind of request, timed.
struct Phase {
    via: Via,
    kind: Kind,
    run: Run,
    load: LoadAvg,
}

/// Only the status is read on success: a batch's answer lists every event.
fn expect_created(answer: &[u8]) -> anyhow::Result<()> {
    let reply: Value = serde_json::from_slice(answer).context("the function's answer is not JSON")?;
    ensure!(reply["statusCode"] == 201, "the function answered {}: {}", reply["statusCode"], reply["body"]);
    Ok(())
}

fn print_report(phases: &[Phase], args: &Args) {
    println!(
        "\n{:.0} s per phase, {} requests in flight, batches of {}; latency in ms per request; \
         LocalStack paths as a multiple of the Runtime API's",
        args.seconds, args.instances, args.batch_size
    );
    println!(
        "{:<30} {:<7} {:>10} {:>10} {:>8} {:>8} {:>8} {:>11} {:>10} {:>6}",
        "path", "", "requests/s", "events/s", "p50", "p95", "p99", "rate ×", "p50 ×", "load"
    );
    for phase in phases {
        let (rate, latencies) = (phase.run.per_second(), &phase.run.latencies);
        let baseline = phases.iter().find(|p| p.via == Via::RuntimeApi && p.kind == phase.kind);
        let (rate_ratio, p50_ratio) = match baseline {
            Some(baseline) if phase.via != Via::RuntimeApi => (
                format!("{:.3}×", rate / baseline.run.per_second()),
                format!("{:.1}×", millis(latencies.percentile(0.5)) / millis(baseline.run.latencies.percentile(0.5))),
            ),
            _ => (String::new(), String::new()),
        };
        println!(
            "{:<30} {:<7} {:>10.1} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>11} {:>10} {:>6.2}",
            phase.via.name(),
            phase.kind.name(),
            rate,
            phase.run.rows_per_second(),
            millis(latencies.percentile(0.5)),
            millis(latencies.percentile(0.95)),
            millis(latencies.percentile(0.99)),
            rate_ratio,
            p50_ratio,
            phase.load
        );
    }
    if let Some(single) = phases.iter().find(|p| p.via == Via::RuntimeApi && p.kind == Kind::Single) {
        let (rate, p99) = (single.run.per_second(), single.run.latencies.percentile(0.99));
        println!(
            "\nRuntime API, single events, {} instances: {rate:.0} requests/s, p99 {:.2} ms; \
             target >= 700 requests/s with p99 < 20 ms: {}",
            args.instances,
            millis(p99),
            verdict(rate >= 700.0 && p99 < Duration::from_millis(20))
        );
    }
}
