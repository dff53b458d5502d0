//! The `ingest` binary as Lambda runs it: started with the Lambda environment, polling a real
//! Lambda Runtime API (cargo-lambda's emulator) and answering the API Gateway events kept in `events/`.

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

const JWT_SECRET: &str = "runtime-api-test-secret-of-32-bytes-plus";
const PASSWORD: &str = "runtime api password";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("events").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
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

/// Children killed when the test ends, passed or not.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("tests run with DATABASE_URL set");
    let (server, _) = base.rsplit_once('/').expect("DATABASE_URL names a database");
    format!("{server}/{}", pool.connect_options().get_database().unwrap())
}

/// Starts the Runtime API emulator and the function against it; returns the invoke URL.
fn start(pool: &PgPool, processes: &mut Processes) -> String {
    let port = free_port();
    processes.0.push(
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
    processes.0.push(
        Command::new(env!("CARGO_BIN_EXE_ingest"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("DATABASE_URL", database_url(pool))
            .env("JWT_SECRET", JWT_SECRET)
            .env(
                "AMQP_URL",
                std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            )
            .env("AMQP_QUEUE_PREFIX", format!("tmp-runtime-{port}-"))
            .spawn()
            .unwrap(),
    );
    format!("http://127.0.0.1:{port}/2015-03-31/functions/_/invocations")
}

/// Invokes the function with an API Gateway event and returns (statusCode, parsed body).
fn invoke(url: &str, event: &Value) -> (u64, Value) {
    let mut response = ureq::post(url).send(event.to_string()).expect("the invoke API answers");
    let mut text = String::new();
    response.body_mut().as_reader().read_to_string(&mut text).unwrap();
    let reply: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not a proxy response: {text}"));
    let body = reply["body"].as_str().map(|b| serde_json::from_str(b).unwrap()).unwrap_or(Value::Null);
    (reply["statusCode"].as_u64().unwrap_or_else(|| panic!("no statusCode: {reply}")), body)
}

fn with_bearer(mut event: Value, token: &str) -> Value {
    let bearer = format!("Bearer {token}");
    if event["version"] == "2.0" {
        event["headers"]["authorization"] = json!(bearer);
    } else {
        event["headers"]["Authorization"] = json!(bearer);
        event["multiValueHeaders"]["Authorization"] = json!([bearer]);
    }
    event
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_function_answers_the_sample_events_through_the_runtime_api(pool: PgPool) {
    let user =
        PgUserStore::new(pool.clone()).create("demo", &hash_password(PASSWORD).unwrap(), &Role::ALL).await.unwrap();
    let mut processes = Processes(Vec::new());
    let url = start(&pool, &mut processes);

    // Tokens come from the login function; this one is signed with the key the function was given.
    let jwt = JwtConfig {
        secret: SecretString::from(JWT_SECRET),
        issuer: "eventstream".into(),
        audience: "eventstream-api".into(),
        access_ttl: Duration::from_secs(300),
        refresh_ttl: Duration::from_secs(3_600),
    };
    let subject = TokenSubject { user_id: user, username: "demo", roles: &Role::ALL, token_version: 1 };
    let access = &TokenCodec::new(&jwt).issue(subject, TokenKind::Access, uuid::Uuid::now_v7());

    let mut login = fixture("ingest-obtain-token-rest.json");
    login["body"] = json!(json!({ "username": "demo", "password": PASSWORD }).to_string());
    let (status, not_here) = invoke(&url, &login);
    assert_eq!((status, &not_here["error"]["code"]), (404, &json!("not_found")), "login is the login function's");

    let (status, created) = invoke(&url, &with_bearer(fixture("ingest-create-event-rest.json"), access));
    assert_eq!(status, 201, "{created}");
    let (status, created_v2) = invoke(&url, &with_bearer(fixture("ingest-create-event-http.json"), access));
    assert_eq!(status, 201, "{created_v2}");
    let (status, batch) = invoke(&url, &with_bearer(fixture("ingest-create-batch-rest.json"), access));
    assert_eq!(status, 201, "{batch}");
    let (status, listed) = invoke(&url, &with_bearer(fixture("ingest-list-events-rest.json"), access));
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["events"].as_array().unwrap().len(), 1, "one warning among the five: {listed}");
    assert_eq!(listed["events"][0]["id"], created["id"]);

    let (status, refused) = invoke(&url, &fixture("ingest-create-event-rest.json"));
    assert_eq!((status, &refused["error"]["code"]), (401, &json!("invalid_token")));

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 5);
    delete_topology(&format!("tmp-runtime-{}-", url_port(&url))).await;
}

fn url_port(url: &str) -> u16 {
    url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().parse().unwrap()
}

/// The function declared durable queues under the test's prefix; leave the broker as it was.
async fn delete_topology(prefix: &str) {
    use lapin::{Connection, ConnectionProperties, options::*};
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let connection = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in ["dispatch", "warning", "error"] {
        channel.queue_delete(format!("{prefix}{queue}").as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    }
    channel
        .exchange_delete(format!("{prefix}eventstream").as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
}

#[test]
fn a_missing_variable_stops_the_function_at_start_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_ingest"))
        .env_clear()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/none")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("JWT_SECRET is not set"), "{stderr}");
}

/// lambda_http alone fails the invocation on a header the `http` crate refuses, and API Gateway
/// then answers 502 on every route, before any token is looked at.
#[sqlx::test(migrations = "../../migrations")]
async fn a_control_character_in_a_header_is_answered_with_a_400_not_an_invocation_error(pool: PgPool) {
    let mut processes = Processes(Vec::new());
    let url = start(&pool, &mut processes);

    for name in ["ingest-create-event-rest.json", "ingest-create-event-http.json"] {
        for value in ["a\u{1}b", "a\r\nX-Injected: 1", "a\u{0}b"] {
            let mut event = fixture(name);
            event["headers"]["X-Note"] = json!(value);
            if event.get("multiValueHeaders").is_some() {
                event["multiValueHeaders"]["X-Note"] = json!([value]);
            }
            let (status, body) = invoke(&url, &event);
            assert_eq!(
                (status, &body["error"]["code"]),
                (400, &json!("malformed_request")),
                "{name} {value:?}: {body}"
            );
        }
    }

    let (status, refused) = invoke(&url, &fixture("ingest-create-event-rest.json"));
    assert_eq!((status, &refused["error"]["code"]), (401, &json!("invalid_token")), "the function still serves");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 0);
}
