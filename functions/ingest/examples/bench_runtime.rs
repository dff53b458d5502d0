//! Ingest through a real Lambda Runtime API and through LocalStack, side by side: the same API
//! Gateway events at the same concurrency, handed to release `ingest` bootstraps polling a Runtime
//! API served here, posted to LocalStack's API Gateway, and sent to LocalStack's Lambda Invoke API,
//! so the emulator's share of a request is visible.
//!
//! `cargo run --release -p ingest --example bench_runtime -- --help` lists the options;
//! BENCHMARKS.md holds the figures.

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail, ensure};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_lambda::{config::Credentials, primitives::Blob};
use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use clap::Parser;
use eventstream::{
    MIGRATOR,
    bus::{Queue, Topology},
};
use lapin::{
    Connection, ConnectionProperties,
    options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::{FieldTable, ShortString},
};
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, migrate::MigrateDatabase, postgres::PgConnectOptions};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

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
#[command(name = "bench_runtime", verbatim_doc_comment)]
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

const REST_FIXTURE: &str = include_str!("../../../events/ingest-create-event-rest.json");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.seconds > 0.0 && args.drain_seconds >= 0.0,
        "--seconds must be positive, --drain-seconds not negative"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let stack = Stack::read(&args.stack_env.clone().unwrap_or_else(|| root.join(".local/stack.env")))?;
    let bootstrap = find_bootstrap(args.bootstrap.clone(), &root)?;
    let lambda = lambda_client(&stack).await;
    let function = Function::describe(&lambda, &stack.ingest_function).await?;
    let mut environment = function.environment.clone();
    let stack_database_url =
        environment.get("DATABASE_URL").context("the function's environment has no DATABASE_URL")?.clone();
    // Names this run's topology and its events' sources.
    let run = format!("bench-runtime-{}", Uuid::now_v7().simple());
    let own_prefix = format!("{run}-");
    prepare_own_database(&args.database_url, &stack_database_url, &stack.username).await?;
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

    println!("{}", machine());
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
        std::fs::create_dir_all(&logs)?;
        let mut processes = Processes(Vec::new());
        let mut runtimes = Vec::new();
        for instance in 0..args.instances as usize {
            let runtime = Runtime::serve(&function, logs.join(format!("instance-{instance}.log"))).await?;
            let mut variables = lambda_variables(&function, runtime.address, &bootstrap, &stack.aws_region);
            variables.extend(environment.iter().map(|(name, value)| (name.clone(), value.clone())));
            let log = File::create(&runtime.log)?;
            let child = Command::new(&bootstrap)
                .env_clear()
                .envs(&variables)
                .current_dir(bootstrap.parent().unwrap_or(Path::new(".")))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", bootstrap.display()))?;
            processes.0.push(child);
            runtimes.push(runtime);
        }
        wait_for_init(&runtimes, &mut processes).await?;
        let runtimes = Arc::new(runtimes);

        let mut refresh = log_in(&stack)?;
        let single_body = json!(single_input(&run)).to_string();
        let batch_body = json!({ "events": batch_inputs(args.batch_size as usize, &run) }).to_string();
        let workers = args.instances as usize;
        let mut phases = Vec::new();
        for via in [Via::RuntimeApi, Via::ApiGateway, Via::LambdaInvoke] {
            for kind in [Kind::Single, Kind::Batch] {
                wait_for_drain(&amqp_url, &dispatch_queue, drain).await?;
                let token = refreshed_access(&stack, &mut refresh)?;
                let body = match kind {
                    Kind::Single => &single_body,
                    Kind::Batch => &batch_body,
                };
                let event = Bytes::from(rest_event(kind.route(), Some(&token), body));
                let load = LoadAvg::read();
                let run = match via {
                    Via::RuntimeApi => runtime_phase(runtimes.clone(), event, duration).await,
                    Via::ApiGateway => {
                        gateway_phase(&stack.api_url, kind.route(), &token, body.clone().into(), workers, duration)
                            .await
                    }
                    Via::LambdaInvoke => invoke_phase(&lambda, &function.name, event, workers, duration).await,
                }
                .with_context(|| format!("{}, {}", via.name(), kind.name()))?;
                let events_per_request = match kind {
                    Kind::Single => 1,
                    Kind::Batch => args.batch_size,
                };
                phases.push(Phase { via, kind, run, events_per_request, load });
            }
        }
        wait_for_drain(&amqp_url, &dispatch_queue, drain).await?;
        Ok(phases)
    }
    .await;
    delete_topology(&amqp_url, &Topology::with_prefix(&own_prefix)).await;
    delete_stack_events(&stack_database_url, &run, Duration::from_secs_f64(args.drain_seconds)).await;
    print_report(&outcome?, &args);
    Ok(())
}

/// What scripts/up wrote about the running stack.
struct Stack {
    api_url: String,
    ingest_function: String,
    username: String,
    password: String,
    aws_endpoint_url: String,
    aws_region: String,
}

impl Stack {
    fn read(path: &Path) -> anyhow::Result<Self> {
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

fn find_bootstrap(chosen: Option<PathBuf>, root: &Path) -> anyhow::Result<PathBuf> {
    let candidates = match chosen {
        Some(path) => vec![path],
        None => vec![root.join(".aws-sam/build/IngestFunction/bootstrap"), root.join("target/release/ingest")],
    };
    match candidates.iter().find(|path| path.is_file()) {
        Some(path) => Ok(path.canonicalize()?),
        None => bail!(
            "no ingest bootstrap at {}: run sam build (scripts/up) or cargo build --release -p ingest",
            candidates.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(" or ")
        ),
    }
}

async fn lambda_client(stack: &Stack) -> aws_sdk_lambda::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&stack.aws_endpoint_url)
        .region(Region::new(stack.aws_region.clone()))
        // LocalStack's fixed test credentials, as scripts/lib.sh sets them: its account follows the key.
        .credentials_provider(Credentials::new("test", "test", None, None, "localstack"))
        .load()
        .await;
    aws_sdk_lambda::Client::new(&config)
}

/// The deployed ingest function's configuration, as Lambda would start an environment with it.
struct Function {
    name: String,
    arn: String,
    memory_mb: i32,
    timeout: Duration,
    version: String,
    log_format: String,
    environment: BTreeMap<String, String>,
}

impl Function {
    async fn describe(client: &aws_sdk_lambda::Client, name: &str) -> anyhow::Result<Self> {
        let config = client
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .with_context(|| format!("GetFunctionConfiguration of {name} from LocalStack"))?;
        // Where LocalStack leaves a field out, Lambda's own default.
        Ok(Self {
            name: config.function_name().unwrap_or(name).to_string(),
            arn: config.function_arn().context("the function has no ARN")?.to_string(),
            memory_mb: config.memory_size().unwrap_or(128),
            timeout: Duration::from_secs(config.timeout().unwrap_or(3).try_into()?),
            version: config.version().unwrap_or("$LATEST").to_string(),
            log_format: config
                .logging_config()
                .and_then(|logging| logging.log_format())
                .map_or("Text", |format| format.as_str())
                .to_string(),
            environment: config
                .environment()
                .and_then(|environment| environment.variables())
                .map(|variables| variables.clone().into_iter().collect())
                .unwrap_or_default(),
        })
    }
}

/// The variables Lambda sets in every execution environment, the ones the runtime reads among them.
fn lambda_variables(
    function: &Function,
    runtime_api: SocketAddr,
    bootstrap: &Path,
    region: &str,
) -> BTreeMap<String, String> {
    let task_root = bootstrap.parent().unwrap_or(Path::new(".")).display().to_string();
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", function.memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", function.version.clone()),
        ("AWS_LAMBDA_LOG_FORMAT", function.log_format.clone()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", function.name)),
        ("AWS_REGION", region.to_string()),
        ("AWS_DEFAULT_REGION", region.to_string()),
        ("LAMBDA_TASK_ROOT", task_root),
        ("_HANDLER", "bootstrap".to_string()),
        ("TZ", ":UTC".to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// Children killed when the benchmark ends, finished or not.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the function answers an invocation: its response, or the error it reported.
type Outcome = Result<Bytes, Bytes>;

/// One invocation, queued for an execution environment.
struct Invocation {
    id: String,
    event: Bytes,
    deadline_ms: u128,
    arn: String,
    trace_id: String,
    reply: oneshot::Sender<Outcome>,
}

/// One execution environment's side of the Runtime API: its queue and the invocation it runs.
struct Environment {
    queue: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    running: std::sync::Mutex<Option<(String, oneshot::Sender<Outcome>)>>,
    /// Set by the first `/invocation/next`: the function finished its init.
    polling: AtomicBool,
    init_error: std::sync::Mutex<Option<String>>,
}

/// The benchmark's side of one execution environment.
struct Runtime {
    address: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    environment: Arc<Environment>,
    arn: String,
    timeout: Duration,
    log: PathBuf,
}

impl Runtime {
    /// Serves a Runtime API of its own on a free port of 127.0.0.1.
    async fn serve(function: &Function, log: PathBuf) -> anyhow::Result<Self> {
        let (queue, receiver) = mpsc::unbounded_channel();
        let environment = Arc::new(Environment {
            queue: Mutex::new(receiver),
            running: std::sync::Mutex::new(None),
            polling: AtomicBool::new(false),
            init_error: std::sync::Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(invocation_response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(environment.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { address, queue, environment, arn: function.arn.clone(), timeout: function.timeout, log })
    }

    /// Hands `event` to the environment; returns its response and the time from hand-off to response.
    async fn invoke(&self, event: Bytes) -> anyhow::Result<(Duration, Bytes)> {
        let (reply, response) = oneshot::channel();
        let started = Instant::now();
        let invocation = Invocation {
            id: Uuid::now_v7().to_string(),
            event,
            deadline_ms: (SystemTime::now() + self.timeout).duration_since(UNIX_EPOCH)?.as_millis(),
            arn: self.arn.clone(),
            trace_id: trace_id(),
            reply,
        };
        self.queue.send(invocation).ok().context("the Runtime API stopped")?;
        let outcome = tokio::time::timeout(self.timeout, response)
            .await
            .with_context(|| {
                format!("no response within the function's {:?} timeout; see {}", self.timeout, self.log.display())
            })?
            .context("the Runtime API stopped")?;
        let elapsed = started.elapsed();
        match outcome {
            Ok(response) => Ok((elapsed, response)),
            Err(error) => bail!("the function reported an error: {}", String::from_utf8_lossy(&error)),
        }
    }
}

/// An X-Ray trace header shaped as Lambda passes it: `Root=1-<epoch seconds>-<24 hex digits>;Parent=...`.
fn trace_id() -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let root = Uuid::now_v7().simple().to_string();
    let parent = Uuid::now_v7().simple().to_string();
    format!("Root=1-{seconds:08x}-{};Parent={};Sampled=0", &root[8..], &parent[16..])
}

async fn next_invocation(State(environment): State<Arc<Environment>>) -> Response {
    environment.polling.store(true, Ordering::Release);
    let Some(invocation) = environment.queue.lock().await.recv().await else {
        // The benchmark is ending and kills the process: its poll stays open, as in an idle environment.
        return std::future::pending().await;
    };
    let headers = [
        ("content-type", "application/json".to_string()),
        ("lambda-runtime-aws-request-id", invocation.id.clone()),
        ("lambda-runtime-deadline-ms", invocation.deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", invocation.arn),
        ("lambda-runtime-trace-id", invocation.trace_id),
    ];
    *environment.running.lock().expect("not poisoned") = Some((invocation.id, invocation.reply));
    (headers, invocation.event).into_response()
}

async fn invocation_response(
    State(environment): State<Arc<Environment>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    complete(&environment, &id, Ok(body))
}

async fn invocation_error(
    State(environment): State<Arc<Environment>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    complete(&environment, &id, Err(body))
}

fn complete(environment: &Environment, id: &str, outcome: Outcome) -> Response {
    let mut running = environment.running.lock().expect("not poisoned");
    match running.take() {
        Some((running_id, reply)) if running_id == id => {
            // The benchmark may have given up on it (the deadline): nobody to tell.
            let _ = reply.send(outcome);
            accepted()
        }
        other => {
            *running = other;
            let body = json!({ "errorMessage": "Invalid request ID", "errorType": "InvalidRequestID" });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
    }
}

async fn init_error(State(environment): State<Arc<Environment>>, body: Bytes) -> Response {
    *environment.init_error.lock().expect("not poisoned") = Some(String::from_utf8_lossy(&body).into_owned());
    accepted()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, Json(json!({ "status": "OK" }))).into_response()
}

/// Waits for every instance's first `/invocation/next`, within Lambda's 10 s init limit.
async fn wait_for_init(runtimes: &[Runtime], processes: &mut Processes) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for (instance, (runtime, child)) in runtimes.iter().zip(&mut processes.0).enumerate() {
        while !runtime.environment.polling.load(Ordering::Acquire) {
            if let Some(error) = runtime.environment.init_error.lock().expect("not poisoned").as_ref() {
                bail!("instance {instance} reported an init error: {error}\n{}", tail(&runtime.log));
            }
            if let Some(status) = child.try_wait()? {
                bail!("instance {instance} exited during init ({status}):\n{}", tail(&runtime.log));
            }
            ensure!(Instant::now() < deadline, "instance {instance} did not poll within 10 s:\n{}", tail(&runtime.log));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The REST (v1) proxy event API Gateway sends, as JSON text: the runtime hands the function text.
fn rest_event(path: &str, token: Option<&str>, body: &str) -> String {
    let mut event: Value = serde_json::from_str(REST_FIXTURE).expect("the fixture is JSON");
    let mut headers = json!({
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "Content-Type": "application/json",
    });
    if let Some(token) = token {
        headers["Authorization"] = json!(format!("Bearer {token}"));
    }
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

/// Only the status is read on success: a batch's answer lists every event.
fn expect_created(answer: &[u8]) -> anyhow::Result<()> {
    let reply: Value = serde_json::from_slice(answer).context("the function's answer is not JSON")?;
    ensure!(reply["statusCode"] == 201, "the function answered {}: {}", reply["statusCode"], reply["body"]);
    Ok(())
}

/// `POST /api/token` as the demo user, through the stack's login function; returns the refresh
/// token. The instances accept the stack's tokens: same key, and the same user copied in.
fn log_in(stack: &Stack) -> anyhow::Result<String> {
    let credentials = json!({ "username": stack.username, "password": stack.password });
    let body = post_json(&format!("{}/api/token", stack.api_url), &credentials)?;
    Ok(body["refresh"].as_str().context("no refresh token")?.to_string())
}

/// A fresh access token, so that none expires within a phase. Refresh tokens work once: `refresh`
/// becomes the one issued with it.
fn refreshed_access(stack: &Stack, refresh: &mut String) -> anyhow::Result<String> {
    let body = post_json(&format!("{}/api/token/refresh", stack.api_url), &json!({ "refresh": refresh }))?;
    *refresh = body["refresh"].as_str().context("no refresh token")?.to_string();
    Ok(body["access"].as_str().context("no access token")?.to_string())
}

fn post_json(url: &str, body: &Value) -> anyhow::Result<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent.post(url).header("Content-Type", "application/json").send(body.to_string())?;
    let text = response.body_mut().read_to_string()?;
    ensure!(response.status() == 200, "{url} answered {}: {text}", response.status());
    serde_json::from_str(&text).with_context(|| format!("{url} answered with something other than JSON: {text}"))
}

/// Waits until the bridge has taken every message off the stack's dispatch queue, or `limit` passed.
async fn wait_for_drain(amqp_url: &str, queue: &str, limit: Duration) -> anyhow::Result<()> {
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

/// Events shaped like the Airflow DAG's, but info and success only: warning and error events would
/// go on to SQS, the handlers and email, and keep the stack busy during the following phases.
fn batch_inputs(count: usize, run: &str) -> Vec<Value> {
    (0..count)
        .map(|i| {
            let status = if i % 10 == 9 { "info" } else { "success" };
            json!({
                "title": format!("Job {} finished with {status}", i % 97),
                "description": format!("Run {i} of the nightly export on host-{}", i % 8),
                "status": status,
                "source": format!("{run}-{}", i % 10),
                "attributes": { "host": format!("host-{}", i % 8), "sequence": i },
            })
        })
        .collect()
}

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

/// Requests done in a phase, with each one's latency.
struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
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

/// Runs `work` on `workers` tasks until `duration` passes; each call returns its request's latency.
async fn timed<F, Fut>(workers: usize, duration: Duration, work: F) -> anyhow::Result<Run>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<Duration>> + Send + 'static,
{
    // One untimed request per worker, all at once: at the same time, LocalStack has to start an
    // environment for each, as it would within the timed requests otherwise.
    let warm_ups: Vec<_> = (0..workers).map(|worker| tokio::spawn(work.clone()(worker))).collect();
    for warm_up in warm_ups {
        warm_up.await??;
    }
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let work = work.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    latencies.push(work(worker).await?);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await??);
    }
    latencies.sort();
    Ok(Run { elapsed: started.elapsed(), latencies })
}

async fn runtime_phase(runtimes: Arc<Vec<Runtime>>, event: Bytes, duration: Duration) -> anyhow::Result<Run> {
    timed(runtimes.len(), duration, move |worker| {
        let runtimes = runtimes.clone();
        let event = event.clone();
        async move {
            let (latency, answer) = runtimes[worker].invoke(event).await?;
            expect_created(&answer)?;
            Ok(latency)
        }
    })
    .await
}

/// HTTP POSTs to the stack's API, one keep-alive connection per worker.
async fn gateway_phase(
    api_url: &str,
    route: &str,
    token: &str,
    body: Bytes,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    let agents: Arc<Vec<ureq::Agent>> = Arc::new(
        (0..workers)
            .map(|_| {
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into()
            })
            .collect(),
    );
    let url: Arc<str> = format!("{api_url}{route}").into();
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
                let latency = started.elapsed();
                ensure!(response.status() == 201, "API Gateway answered {}: {text}", response.status());
                Ok(latency)
            })
            .await?
        }
    })
    .await
}

async fn invoke_phase(
    client: &aws_sdk_lambda::Client,
    function: &str,
    event: Bytes,
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
            let latency = started.elapsed();
            if let Some(error) = output.function_error() {
                bail!(
                    "the function failed ({error}): {:?}",
                    output.payload().map(|p| String::from_utf8_lossy(p.as_ref()))
                );
            }
            expect_created(output.payload().map(|payload| payload.as_ref()).unwrap_or_default())?;
            Ok(latency)
        }
    })
    .await
}

struct Phase {
    via: Via,
    kind: Kind,
    run: Run,
    events_per_request: u32,
    load: LoadAvg,
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

fn print_report(phases: &[Phase], args: &Args) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
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
        let rate = phase.run.per_second();
        let baseline = phases.iter().find(|p| p.via == Via::RuntimeApi && p.kind == phase.kind);
        let (rate_ratio, p50_ratio) = match baseline {
            Some(baseline) if phase.via != Via::RuntimeApi => (
                format!("{:.3}×", rate / baseline.run.per_second()),
                format!("{:.1}×", ms(phase.run.percentile(0.5)) / ms(baseline.run.percentile(0.5))),
            ),
            _ => (String::new(), String::new()),
        };
        println!(
            "{:<30} {:<7} {:>10.1} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>11} {:>10} {:>6.2}",
            phase.via.name(),
            phase.kind.name(),
            rate,
            rate * f64::from(phase.events_per_request),
            ms(phase.run.percentile(0.5)),
            ms(phase.run.percentile(0.95)),
            ms(phase.run.percentile(0.99)),
            rate_ratio,
            p50_ratio,
            phase.load.0
        );
    }
    if let Some(single) = phases.iter().find(|p| p.via == Via::RuntimeApi && p.kind == Kind::Single) {
        let (rate, p99) = (single.run.per_second(), single.run.percentile(0.99));
        let met = rate >= 700.0 && p99 < Duration::from_millis(20);
        println!(
            "\nRuntime API, single events, {} instances: {rate:.0} requests/s, p99 {:.2} ms; \
             target >= 700 requests/s with p99 < 20 ms: {}",
            args.instances,
            ms(p99),
            if met { "met" } else { "MISSED" }
        );
    }
}

/// Creates and migrates the instances' database when missing, empties it, and copies the stack's
/// `username` into it with the same id and password hash, so that a token issued by either the
/// instances or the stack is good for both.
async fn prepare_own_database(url: &str, stack_url: &str, username: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(url).context("--database-url is not a PostgreSQL URL")?;
    ensure!(
        options.get_database().is_some_and(|name| name.contains("bench")),
        "the database's name must contain \"bench\": it is emptied before the run"
    );
    let stack_options = PgConnectOptions::from_str(stack_url).context("the function's DATABASE_URL")?;
    ensure!(
        options.get_database() != stack_options.get_database(),
        "--database-url must not be the stack's own database"
    );
    let stack = PgPool::connect_with(stack_options).await.context("connecting to the stack's database")?;
    let (id, password_hash, roles, token_version): (Uuid, String, Vec<String>, i32) =
        sqlx::query_as("SELECT id, password_hash, roles, token_version FROM users WHERE username = $1 AND is_active")
            .bind(username)
            .fetch_optional(&stack)
            .await?
            .with_context(|| format!("the stack has no active user {username}: run scripts/up again"))?;
    stack.close().await;

    if !Postgres::database_exists(url).await.context("cannot reach PostgreSQL")? {
        Postgres::create_database(url).await.context("cannot create the benchmark database")?;
    }
    let pool = PgPool::connect(url).await?;
    MIGRATOR.run(&pool).await.context("migrating the benchmark database")?;
    // Users go too: everything else hangs off them.
    sqlx::query("TRUNCATE users, idempotency_keys, dead_letters CASCADE").execute(&pool).await?;
    sqlx::query("INSERT INTO users (id, username, password_hash, roles, token_version) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(username)
        .bind(password_hash)
        .bind(roles)
        .bind(token_version)
        .execute(&pool)
        .await?;
    // No phase inherits the previous run's dirty buffers.
    sqlx::query("CHECKPOINT").execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Deletes the events the LocalStack phases stored in the stack's database (hundreds of thousands
/// a run), once the stack has routed them or `limit` passed: left there, they would slow every later
/// query of the stack and every later benchmark's.
async fn delete_stack_events(stack_url: &str, run: &str, limit: Duration) {
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

/// Deletes the instances' exchange and queues; what they held was never meant to be routed.
async fn delete_topology(amqp_url: &str, topology: &Topology) {
    let Ok(connection) = Connection::connect(amqp_url, ConnectionProperties::default()).await else {
        eprintln!("could not reach RabbitMQ to delete the exchange {}", topology.exchange);
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for queue in Queue::ALL {
            channel.queue_delete(topology.queue_name(queue).as_str().into(), QueueDeleteOptions::default()).await.ok();
        }
        channel.exchange_delete(topology.exchange.as_str().into(), ExchangeDeleteOptions::default()).await.ok();
        channel.close(200, "done".into()).await.ok();
    }
    connection.close(200, "done".into()).await.ok();
}
