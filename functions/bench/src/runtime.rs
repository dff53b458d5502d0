//! Lambda as the benchmarks play it: a function's configuration (the deployed one's, or one made
//! here), and the Runtime API (2018-06-01) served to bootstraps started here, one invocation at a
//! time per environment, timing each environment's init as Lambda's `Init Duration` does: from
//! the process's start to its first `/invocation/next`.

use std::{
    collections::BTreeMap,
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, OnceLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail, ensure};
use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

/// The release ingest bootstrap: `chosen`, or the one `sam build` made, or cargo's.
pub fn find_bootstrap(chosen: Option<PathBuf>, root: &Path) -> anyhow::Result<PathBuf> {
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

/// The deployed ingest function's configuration, as Lambda would start an environment with it.
pub struct Function {
    pub name: String,
    arn: String,
    pub memory_mb: i32,
    pub timeout: Duration,
    version: String,
    pub log_format: String,
    pub environment: BTreeMap<String, String>,
}

impl Function {
    /// The function `name`'s configuration, from GetFunctionConfiguration.
    pub async fn describe(client: &aws_sdk_lambda::Client, name: &str) -> anyhow::Result<Self> {
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

impl Function {
    /// A function that is not deployed: `name` with Lambda's defaults, text logs and no environment.
    pub fn local(name: &str, memory_mb: i32, timeout: Duration) -> Self {
        Self {
            name: name.to_string(),
            arn: format!("arn:aws:lambda:us-east-1:000000000000:function:{name}"),
            memory_mb,
            timeout,
            version: "$LATEST".into(),
            log_format: "Text".into(),
            environment: BTreeMap::new(),
        }
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
pub struct Processes(Vec<Child>);

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
    first_poll: OnceLock<Instant>,
    init_error: std::sync::Mutex<Option<String>>,
}

/// The benchmark's side of one execution environment.
pub struct Runtime {
    address: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    environment: Arc<Environment>,
    arn: String,
    timeout: Duration,
    log: PathBuf,
    /// When its process was started.
    started: Option<Instant>,
}

impl Runtime {
    /// Serves a Runtime API of its own on a free port of 127.0.0.1.
    async fn serve(function: &Function, log: PathBuf) -> anyhow::Result<Self> {
        let (queue, receiver) = mpsc::unbounded_channel();
        let environment = Arc::new(Environment {
            queue: Mutex::new(receiver),
            running: std::sync::Mutex::new(None),
            first_poll: OnceLock::new(),
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
        Ok(Self {
            address,
            queue,
            environment,
            arn: function.arn.clone(),
            timeout: function.timeout,
            log,
            started: None,
        })
    }

    /// From the process's start to its first `/invocation/next`, as Lambda's `Init Duration`;
    /// None before that poll.
    pub fn init_duration(&self) -> Option<Duration> {
        Some(self.environment.first_poll.get()?.duration_since(self.started?))
    }

    /// Hands `event` to the environment; returns its response and the time from hand-off to response.
    pub async fn invoke(&self, event: Bytes) -> anyhow::Result<(Duration, Bytes)> {
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
    environment.first_poll.get_or_init(Instant::now);
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

/// Starts `count` processes of `bootstrap`, each polling a Runtime API of its own with Lambda's
/// variables and `environment`, logging to `logs/instance-<n>.log`; returns once every one has
/// finished its init. The processes are killed when the returned [`Processes`] is dropped.
pub async fn start(
    function: &Function,
    bootstrap: &Path,
    environment: &BTreeMap<String, String>,
    region: &str,
    count: u32,
    logs: &Path,
) -> anyhow::Result<(Vec<Runtime>, Processes)> {
    std::fs::create_dir_all(logs)?;
    let mut processes = Processes(Vec::new());
    let mut runtimes = Vec::new();
    for instance in 0..count {
        let mut runtime = Runtime::serve(function, logs.join(format!("instance-{instance}.log"))).await?;
        let mut variables = lambda_variables(function, runtime.address, bootstrap, region);
        variables.extend(environment.iter().map(|(name, value)| (name.clone(), value.clone())));
        let log = File::create(&runtime.log)?;
        runtime.started = Some(Instant::now());
        let child = Command::new(bootstrap)
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
    Ok((runtimes, processes))
}

/// Waits for every instance's first `/invocation/next`, within Lambda's 10 s init limit.
async fn wait_for_init(runtimes: &[Runtime], processes: &mut Processes) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for (instance, (runtime, child)) in runtimes.iter().zip(&mut processes.0).enumerate() {
        while runtime.environment.first_poll.get().is_none() {
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
