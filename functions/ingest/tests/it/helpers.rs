//! What the ingest function's tests share: the `ingest` binary started as Lambda starts it, polling
//! a real Lambda Runtime API (cargo-lambda's emulator), over the real PostgreSQL and RabbitMQ; the
//! API Gateway events kept in `events/`; a user and a token the function accepts.

use std::{
    io::Read,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use eventstream::{
    auth::{TokenCodec, TokenKind, TokenSubject, hash_password},
    config::JwtConfig,
    domain::Role,
    store::PgUserStore,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// The key the function is given; the tests sign their tokens with it.
const JWT_SECRET: &str = "runtime-api-test-secret-of-32-bytes-plus";
const PASSWORD: &str = "runtime api password";
pub const USERNAME: &str = "demo";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An API Gateway event kept in `events/`.
pub fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("events").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A login request for [`USERNAME`]: `fixture` carrying the right credentials.
pub fn with_credentials(mut fixture: Value) -> Value {
    fixture["body"] = json!(json!({ "username": USERNAME, "password": PASSWORD }).to_string());
    fixture
}

pub fn with_bearer(mut event: Value, token: &str) -> Value {
    let bearer = format!("Bearer {token}");
    if event["version"] == "2.0" {
        event["headers"]["authorization"] = json!(bearer);
    } else {
        event["headers"]["Authorization"] = json!(bearer);
        event["multiValueHeaders"]["Authorization"] = json!([bearer]);
    }
    event
}

/// [`USERNAME`] with every role.
pub async fn create_user(pool: &PgPool) -> Uuid {
    PgUserStore::new(pool.clone()).create(USERNAME, &hash_password(PASSWORD).unwrap(), &Role::ALL).await.unwrap()
}

/// An access token for `user` signed with the function's key, as the login function would issue it.
pub fn access_token(user: Uuid) -> String {
    let jwt = JwtConfig {
        secret: SecretString::from(JWT_SECRET),
        issuer: "eventstream".into(),
        audience: "eventstream-api".into(),
        access_ttl: Duration::from_secs(300),
        refresh_ttl: Duration::from_secs(3_600),
    };
    let subject = TokenSubject { user_id: user, username: USERNAME, roles: &Role::ALL, token_version: 1 };
    TokenCodec::new(&jwt).issue(subject, TokenKind::Access, Uuid::now_v7())
}

/// The RabbitMQ the tests use: the machine's, unless `AMQP_URL` names another.
fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// cargo-lambda from the project's virtualenv (scripts/setup installs it), or from `CARGO_LAMBDA`.
fn cargo_lambda() -> PathBuf {
    let path = std::env::var_os("CARGO_LAMBDA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/cargo-lambda"));
    assert!(path.exists(), "{} is missing: run scripts/setup", path.display());
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("tests run with DATABASE_URL set");
    let (server, _) = base.rsplit_once('/').expect("DATABASE_URL names a database");
    format!("{server}/{}", pool.connect_options().get_database().unwrap())
}

/// The Runtime API emulator and the function polling it; both are killed when the test ends, passed
/// or not.
pub struct RunningFunction {
    invoke_url: String,
    queue_prefix: String,
    processes: Vec<Child>,
}

impl RunningFunction {
    /// Starts the emulator and the function against it, with the database `#[sqlx::test]` made.
    pub fn start(pool: &PgPool) -> Self {
        let port = free_port();
        let mut function = Self {
            invoke_url: format!("http://127.0.0.1:{port}/2015-03-31/functions/_/invocations"),
            queue_prefix: format!("tmp-runtime-{port}-"),
            processes: Vec::new(),
        };
        function.processes.push(
            Command::new(cargo_lambda())
                .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the Runtime API did not open port {port}");
            thread::sleep(Duration::from_millis(50));
        }
        function.processes.push(
            Command::new(env!("CARGO_BIN_EXE_ingest"))
                .env_clear()
                .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
                .env("AWS_LAMBDA_FUNCTION_NAME", "_")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                .env("DATABASE_URL", database_url(pool))
                .env("JWT_SECRET", JWT_SECRET)
                .env("AMQP_URL", amqp_url())
                .env("AMQP_QUEUE_PREFIX", &function.queue_prefix)
                .spawn()
                .unwrap(),
        );
        function
    }

    /// Invokes the function with an API Gateway event and returns (statusCode, parsed body).
    pub fn invoke(&self, event: &Value) -> (u64, Value) {
        let mut response = ureq::post(&self.invoke_url).send(event.to_string()).expect("the invoke API answers");
        let mut text = String::new();
        response.body_mut().as_reader().read_to_string(&mut text).unwrap();
        let reply: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not a proxy response: {text}"));
        let body = reply["body"].as_str().map(|b| serde_json::from_str(b).unwrap()).unwrap_or(Value::Null);
        (reply["statusCode"].as_u64().unwrap_or_else(|| panic!("no statusCode: {reply}")), body)
    }

    /// The function declared durable queues under the test's prefix; leave the broker as it was.
    pub async fn delete_topology(&self) {
        use lapin::{Connection, ConnectionProperties, options::*};
        let prefix = &self.queue_prefix;
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        for queue in ["dispatch", "warning", "error"] {
            let name = format!("{prefix}{queue}");
            channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
        }
        channel
            .exchange_delete(format!("{prefix}eventstream").as_str().into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
    }
}

impl Drop for RunningFunction {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
