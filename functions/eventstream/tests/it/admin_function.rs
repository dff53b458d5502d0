//! The admin function's handler over a real database: CloudFormation's custom-resource requests
//! answered by a real HTTP PUT to a response URL served here, and direct commands.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant, SystemTime},
};

use axum::http::StatusCode;
use eventstream::{
    MIGRATOR,
    config::DatabaseConfig,
    handlers::admin::{AdminFunctionError, AdminState, MIGRATIONS_RESOURCE_ID, handle},
    store::lazy_pool,
};
use lambda_runtime::{Config, Context, Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{Rest, TestApi, count, create_user};

const CREATE_FIXTURE: &str = include_str!("../../../../events/admin-migrations-create.json");
const CREATE_USER_FIXTURE: &str = include_str!("../../../../events/admin-create-user.json");
/// Every wait on the response server ends by then.
const WAIT: Duration = Duration::from_secs(30);

/// One request the response server took.
struct Put {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Put {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// A response URL served on a real TCP listener, standing in for S3's pre-signed URL.
struct ResponseServer {
    url: String,
    requests: mpsc::Receiver<Put>,
}

impl ResponseServer {
    /// Answers each request with the next of `statuses`, then 200.
    fn start(statuses: &'static [u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/cfn-responses/stack%7CMigrations%7Cid?X-Amz-Signature=abc",
            listener.local_addr().unwrap()
        );
        let (sender, requests) = mpsc::channel();
        let mut statuses = statuses.iter().copied();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                stream.set_read_timeout(Some(WAIT)).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap();
                    headers.push((name.to_string(), value.trim().to_string()));
                }
                let length = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, value)| value.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let status = statuses.next().unwrap_or(200);
                write!(stream, "HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if sender.send(Put { request_line: request_line.trim_end().to_string(), headers, body }).is_err() {
                    return;
                }
            }
        });
        Self { url, requests }
    }

    fn next(&self) -> Put {
        self.requests.recv_timeout(WAIT).expect("a response was PUT")
    }

    fn nothing_more(&self) {
        assert!(self.requests.try_recv().is_err(), "one response per request");
    }
}

/// A Lambda context with `time_left` before the deadline and a log stream for the reason to name.
fn context(time_left: Duration) -> Context {
    let mut context = Context::default();
    let deadline = SystemTime::now() + time_left;
    context.deadline = deadline.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
    context.env_config = Arc::new(Config { log_stream: "2025/01/01/[$LATEST]abc".into(), ..Config::default() });
    context
}

/// The fixture's request, of `request_type`, answering to `url`.
fn request(request_type: &str, url: &str) -> Value {
    let mut request: Value = serde_json::from_str(CREATE_FIXTURE).unwrap();
    request["RequestType"] = json!(request_type);
    request["ResponseURL"] = json!(url);
    if request_type != "Create" {
        request["PhysicalResourceId"] = json!(MIGRATIONS_RESOURCE_ID);
    }
    if request_type == "Update" {
        request["OldResourceProperties"] = json!({ "Version": "0" });
    }
    request
}

async fn invoke(state: &AdminState, payload: Value) -> Result<Value, AdminFunctionError> {
    invoke_with(state, payload, context(Duration::from_secs(300))).await
}

async fn invoke_with(state: &AdminState, payload: Value, context: Context) -> Result<Value, AdminFunctionError> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(WAIT, handle(state, LambdaEvent::new(payload, context)))
        .await
        .expect("the handler answers within 30 s");
    assert!(started.elapsed() < WAIT);
    outcome.map(|response| serde_json::to_value(response).unwrap())
}

async fn applied_migrations(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(pool).await.unwrap_or(0)
}

fn assert_echoes_the_request(put: &Put, request: &Value) {
    for field in ["StackId", "RequestId", "LogicalResourceId"] {
        assert_eq!(put.body[field], request[field], "{field}");
    }
}

#[sqlx::test(migrations = false)]
async fn create_migrates_a_fresh_database_and_puts_success(pool: PgPool) {
    let server = ResponseServer::start(&[]);
    let state = AdminState::new(pool.clone());
    let create = request("Create", &server.url);

    let answer = invoke(&state, create.clone()).await.unwrap();

    let put = server.next();
    assert_eq!(put.request_line, "PUT /cfn-responses/stack%7CMigrations%7Cid?X-Amz-Signature=abc HTTP/1.1");
    assert_eq!(put.header("Content-Type"), Some(""), "signed with an empty content type: {:?}", put.headers);
    assert!(put.header("Content-Length").is_some(), "S3 takes no chunked upload: {:?}", put.headers);
    assert_eq!(put.body["Status"], "SUCCESS");
    assert_eq!(put.body["PhysicalResourceId"], MIGRATIONS_RESOURCE_ID);
    assert_echoes_the_request(&put, &create);
    assert_eq!(answer, put.body, "the function answers with what it PUT");
    server.nothing_more();
    assert_eq!(applied_migrations(&pool).await, MIGRATOR.iter().count() as i64);
    assert_eq!(count(&pool, "users").await, 0, "the schema is there");

    invoke(&state, request("Update", &server.url)).await.unwrap();
    let put = server.next();
    assert_eq!(put.body["Status"], "SUCCESS", "migrating again is harmless: {}", put.body);
    assert_eq!(put.body["PhysicalResourceId"], MIGRATIONS_RESOURCE_ID, "an update is no replacement");
}

#[sqlx::test(migrations = false)]
async fn an_unreachable_database_puts_failed_with_a_reason_without_hanging(_pool: PgPool) {
    let server = ResponseServer::start(&[]);
    let unreachable = DatabaseConfig {
        url: "postgres://postgres@127.0.0.1:1/eventstream".into(),
        login: None,
        max_connections: 1,
        statement_timeout: Duration::from_secs(5),
    };
    let state = AdminState::new(lazy_pool(&unreachable).unwrap());
    let create = request("Create", &server.url);

    let answer = invoke(&state, create.clone()).await.expect("CloudFormation was told, so the invocation succeeds");

    let put = server.next();
    assert_eq!(put.body["Status"], "FAILED");
    assert_eq!(put.body["PhysicalResourceId"], MIGRATIONS_RESOURCE_ID);
    assert_echoes_the_request(&put, &create);
    let reason = put.body["Reason"].as_str().unwrap();
    assert!(reason.starts_with("applying migrations: "), "{reason}");
    assert_eq!(reason.matches("pool timed out").count(), 1, "each cause said once: {reason}");
    assert!(reason.ends_with("(log stream 2025/01/01/[$LATEST]abc)"), "{reason}");
    assert_eq!(answer["Status"], "FAILED");
}

#[sqlx::test(migrations = false)]
async fn migrations_that_would_outlive_the_function_put_failed_in_time(pool: PgPool) {
    let server = ResponseServer::start(&[]);
    let state = AdminState::new(pool.clone());

    invoke_with(&state, request("Create", &server.url), context(Duration::from_secs(5))).await.unwrap();

    let put = server.next();
    assert_eq!(put.body["Status"], "FAILED");
    assert!(put.body["Reason"].as_str().unwrap().contains("time limit"), "{}", put.body);
}

#[sqlx::test(migrations = "../../migrations")]
async fn delete_succeeds_and_drops_nothing(pool: PgPool) {
    create_user(&pool, "ops", &[]).await;
    let migrations = applied_migrations(&pool).await;
    let server = ResponseServer::start(&[]);
    let state = AdminState::new(pool.clone());
    let delete = request("Delete", &server.url);

    invoke(&state, delete.clone()).await.unwrap();

    let put = server.next();
    assert_eq!(put.body["Status"], "SUCCESS");
    assert_eq!(put.body["PhysicalResourceId"], MIGRATIONS_RESOURCE_ID);
    assert_echoes_the_request(&put, &delete);
    assert_eq!(count(&pool, "users").await, 1);
    assert_eq!(applied_migrations(&pool).await, migrations);
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_failed_put_is_tried_again_and_an_undelivered_response_fails_the_invocation(pool: PgPool) {
    let state = AdminState::new(pool.clone());
    let flaky = ResponseServer::start(&[503]);
    invoke(&state, request("Delete", &flaky.url)).await.unwrap();
    assert_eq!(flaky.next().body["Status"], "SUCCESS");
    assert_eq!(flaky.next().body["Status"], "SUCCESS", "the second attempt");

    let down = ResponseServer::start(&[503, 503, 503]);
    let error = invoke(&state, request("Delete", &down.url)).await.unwrap_err();
    for _ in 0..3 {
        down.next();
    }
    down.nothing_more();
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "Admin.ResponseUndelivered");
    assert!(diagnostic.error_message.contains("503"), "{}", diagnostic.error_message);
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_https_response_url_is_spoken_to_over_tls(pool: PgPool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/cfn-responses/x", listener.local_addr().unwrap());
    let (sender, first_bytes) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            let mut record_header = [0; 3];
            stream.read_exact(&mut record_header).unwrap();
            if sender.send(record_header).is_err() {
                return;
            }
        }
    });
    let state = AdminState::new(pool);

    let error = invoke(&state, request("Delete", &url)).await.unwrap_err();

    // A TLS handshake record (22) of TLS 1.x (3, n): rustls spoke; the plain-TCP listener hung up on
    // every attempt.
    let record_header = first_bytes.recv_timeout(WAIT).unwrap();
    assert_eq!(record_header[..2], [22, 3], "{record_header:?}");
    assert_eq!(Diagnostic::from(error).error_type, "Admin.ResponseUndelivered");
}

#[sqlx::test(migrations = false)]
async fn an_unreadable_request_still_gets_its_answer(pool: PgPool) {
    let server = ResponseServer::start(&[]);
    let state = AdminState::new(pool.clone());
    let mut create = request("Create", &server.url);
    create.as_object_mut().unwrap().remove("ResourceType");

    invoke(&state, create.clone()).await.unwrap();

    let put = server.next();
    assert_eq!(put.body["Status"], "FAILED");
    assert!(put.body["Reason"].as_str().unwrap().contains("ResourceType"), "{}", put.body);
    assert_echoes_the_request(&put, &create);
    assert_eq!(applied_migrations(&pool).await, 0, "nothing was done");
}

/// Log lines written while `work` runs, at every level.
async fn logs_of<T>(work: impl Future<Output = T>) -> (T, String) {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber =
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).finish();
    // The test's runtime has one thread, so every log line of the handler goes to this subscriber.
    let output = {
        let _default = tracing::subscriber::set_default(subscriber);
        work.await
    };
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (output, logs)
}

#[sqlx::test(migrations = "../../migrations")]
async fn create_user_returns_a_generated_password_that_logs_in_and_is_never_logged(pool: PgPool) {
    let state = AdminState::new(pool.clone());
    let mut payload: Value = serde_json::from_str(CREATE_USER_FIXTURE).unwrap();
    // scripts/invoke fills the fixture's placeholder with a fresh name; so does this test.
    assert_eq!(payload["username"], "REPLACE_WITH_NEW_USERNAME");
    payload["username"] = json!("ana");

    let (reply, logs) = logs_of(invoke(&state, payload)).await;

    let reply = reply.unwrap();
    assert_eq!(reply["username"], "ana");
    assert!(reply["message"].as_str().unwrap().contains("with roles [producer]"), "{reply}");
    let password = reply["password"].as_str().unwrap().to_string();
    assert!(password.len() >= 24, "{password}");
    assert!(logs.contains("admin command done"), "the capture works: {logs}");
    assert!(!logs.contains(&password), "the password was logged: {logs}");

    let api = TestApi::new(pool.clone());
    assert_eq!(api.call(Rest::login("ana", &password)).await.status, StatusCode::OK);

    let (reply, logs) = logs_of(invoke(&state, json!({ "command": "set-password", "username": "ana" }))).await;
    let reply = reply.unwrap();
    let new_password = reply["password"].as_str().unwrap();
    assert_ne!(new_password, password);
    assert!(!logs.contains(new_password), "the password was logged: {logs}");
    assert_eq!(api.call(Rest::login("ana", &password)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.call(Rest::login("ana", new_password)).await.status, StatusCode::OK);
}

#[sqlx::test(migrations = false)]
async fn migrate_and_the_user_commands_mirror_the_cli(pool: PgPool) {
    let state = AdminState::new(pool.clone());
    let reply = invoke(&state, json!({ "command": "migrate" })).await.unwrap();
    assert_eq!(reply, json!({ "message": "migrations applied" }));
    assert_eq!(applied_migrations(&pool).await, MIGRATOR.iter().count() as i64);

    invoke(&state, json!({ "command": "create-user", "username": "dag" })).await.unwrap();
    let steps = [
        (
            json!({ "command": "grant", "username": "dag", "roles": ["analyst", "producer"] }),
            "now has roles [analyst, producer]",
        ),
        (json!({ "command": "revoke", "username": "dag", "roles": ["analyst"] }), "now has roles [producer]"),
        (json!({ "command": "deactivate", "username": "dag" }), "deactivated dag"),
        (json!({ "command": "activate", "username": "dag" }), "activated dag"),
        (json!({ "command": "sign-out", "username": "dag" }), "every session of dag ended"),
    ];
    for (payload, message) in steps {
        let reply = invoke(&state, payload.clone()).await.unwrap();
        assert!(reply["message"].as_str().unwrap().contains(message), "{payload}: {reply}");
        assert_eq!(reply["username"], "dag");
        assert!(reply.get("password").is_none(), "{reply}");
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn bad_commands_fail_with_a_message_naming_the_problem_and_change_nothing(pool: PgPool) {
    let state = AdminState::new(pool.clone());
    create_user(&pool, "ops", &[]).await;
    let version: i32 = sqlx::query_scalar("SELECT token_version FROM users").fetch_one(&pool).await.unwrap();
    let cases = [
        (json!({ "command": "drop-everything" }), "Admin.BadCommand", "unknown variant `drop-everything`"),
        (json!({ "username": "ops" }), "Admin.BadCommand", "missing field `command`"),
        (json!("create-user"), "Admin.BadCommand", "invalid type"),
        (
            json!({ "command": "create-user", "username": "ana", "password": "chosen" }),
            "Admin.BadCommand",
            "never carries a password",
        ),
        (
            json!({ "command": "set-password", "username": "ops", "password": "chosen" }),
            "Admin.BadCommand",
            "never carries a password",
        ),
        (json!({ "command": "create-user" }), "Admin.BadCommand", "missing field `username`"),
        (
            json!({ "command": "create-user", "username": "ana", "roles": ["root"] }),
            "Admin.BadCommand",
            "unknown variant `root`",
        ),
        (
            json!({ "command": "deactivate", "username": "ops", "force": true }),
            "Admin.BadCommand",
            "unknown field `force`",
        ),
        (json!({ "command": "grant", "username": "ops", "roles": [] }), "Admin.InvalidInput", "at least one role"),
        (json!({ "command": "create-user", "username": "new user" }), "Admin.InvalidInput", "without spaces"),
        (json!({ "command": "create-user", "username": "ops" }), "Admin.UsernameTaken", "already exists"),
        (json!({ "command": "sign-out", "username": "ghost" }), "Admin.UserNotFound", "no user named \"ghost\""),
    ];
    for (payload, error_type, message) in cases {
        let diagnostic = Diagnostic::from(invoke(&state, payload.clone()).await.unwrap_err());
        assert_eq!(diagnostic.error_type, error_type, "{payload}: {}", diagnostic.error_message);
        assert!(diagnostic.error_message.contains(message), "{payload}: {}", diagnostic.error_message);
    }
    assert_eq!(count(&pool, "users").await, 1);
    let after: i32 = sqlx::query_scalar("SELECT token_version FROM users").fetch_one(&pool).await.unwrap();
    assert_eq!(after, version, "no command took effect");
}
