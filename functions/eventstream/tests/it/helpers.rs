//! What the integration tests share: the functions API Gateway fronts (ingest, login, graphql) over
//! the real PostgreSQL database `#[sqlx::test]` made for the test, API Gateway events built from the
//! fixtures in `events/`, users and tokens, queues of the test's own on the real RabbitMQ, the SQS
//! handlers' fixture batches, and the real SMTP sink (maildev).

use std::{
    sync::LazyLock,
    time::{Duration, Instant},
};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use axum::http::{HeaderMap, StatusCode};
use base64::{Engine, engine::general_purpose::STANDARD};
use eventstream::{
    auth::{TokenCodec, TokenKind, TokenSubject, hash_password},
    bus::{AmqpBus, EventMessage, Queue, Topology},
    config::{JwtConfig, LoginThrottleConfig, SmtpConfig, SmtpTls},
    domain::{Event, NewEvent, Role, Status},
    handlers::{
        graphql::{self, GraphqlState, router},
        http::{lambda::ApiGatewayService, lambda_service},
        rest::{AppState, LoginState, login_service, malformed_request, service},
    },
    store::{PgEventStore, PgUserStore},
};
use http_body_util::BodyExt;
use lambda_runtime::{Context, LambdaEvent};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

pub const SECRET: &str = "integration-test-secret-32-bytes-or-more";
/// The password of every user the tests make.
pub const PASSWORD: &str = "correct horse battery";

/// The REST (v1) proxy event kept in `events/` for `sam local invoke`; tests reshape it.
pub const REST_FIXTURE: &str = include_str!("../../../../events/ingest-create-event-rest.json");
pub const HTTP_FIXTURE: &str = include_str!("../../../../events/ingest-create-event-http.json");
pub const WARNING_FIXTURE: &str = include_str!("../../../../events/warning-handler-sqs.json");
pub const ERROR_FIXTURE: &str = include_str!("../../../../events/error-handler-sqs.json");
const DISPATCH_FIXTURE: &str = include_str!("../../../../events/dispatch-rabbitmq.json");

pub fn jwt_config() -> JwtConfig {
    JwtConfig {
        secret: SecretString::from(SECRET),
        issuer: "eventstream".into(),
        audience: "eventstream-api".into(),
        access_ttl: Duration::from_secs(300),
        refresh_ttl: Duration::from_secs(86_400),
    }
}

/// The RabbitMQ the tests use: the machine's, unless `AMQP_URL` names another.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn bus(url: &str, topology: &Topology) -> AmqpBus {
    AmqpBus::new(SecretString::from(url), topology.clone(), Duration::from_secs(2))
}

/// Makes a user with `roles` and [`PASSWORD`]: the one way the tests make users.
pub async fn create_user(pool: &PgPool, username: &str, roles: &[Role]) -> Uuid {
    // argon2 is slow in a debug build, and one salt serves every user of a test as well as many.
    static HASH: LazyLock<String> = LazyLock::new(|| hash_password(PASSWORD).unwrap());
    PgUserStore::new(pool.clone()).create(username, &HASH, roles).await.unwrap()
}

/// Rows in `table`.
pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(pool).await.unwrap()
}

/// The functions behind API Gateway.
#[derive(Clone, Copy)]
pub enum Function {
    Ingest,
    Login,
    Graphql,
}

/// The functions over one test database, publishing to a topology of their own.
pub struct TestApi {
    pub pool: PgPool,
    pub tokens: TokenCodec,
    pub topology: Topology,
    ingest: AppState,
    login: LoginState,
    graphql: GraphqlState,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The JSON body; `Null` when empty or an HTML page.
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The `error.code` and `error.field` of a REST error answer.
    pub fn error(&self) -> (&str, Option<&str>) {
        (self.body["error"]["code"].as_str().unwrap_or("<none>"), self.body["error"]["field"].as_str())
    }
}

impl TestApi {
    /// The functions publishing to the real RabbitMQ.
    pub fn new(pool: PgPool) -> Self {
        Self::with(pool, &amqp_url(), LoginThrottleConfig::default())
    }

    pub fn with_amqp(pool: PgPool, url: &str) -> Self {
        Self::with(pool, url, LoginThrottleConfig::default())
    }

    /// The functions with a login that locks out after the failures `throttle` allows.
    pub fn with_throttle(pool: PgPool, throttle: LoginThrottleConfig) -> Self {
        Self::with(pool, &amqp_url(), throttle)
    }

    fn with(pool: PgPool, url: &str, throttle: LoginThrottleConfig) -> Self {
        let topology = Topology::ephemeral();
        Self {
            ingest: AppState::new(pool.clone(), &jwt_config(), bus(url, &topology)),
            login: LoginState::new(pool.clone(), &jwt_config(), throttle),
            graphql: GraphqlState::new(pool.clone(), &jwt_config(), bus(url, &topology)),
            tokens: TokenCodec::new(&jwt_config()),
            topology,
            pool,
        }
    }

    /// A publisher to this API's topology on the real RabbitMQ.
    pub fn bus(&self) -> AmqpBus {
        bus(&amqp_url(), &self.topology)
    }

    /// Takes every event waiting in one of this API's queues: `dispatch` carries them in batches,
    /// the handler queues one per message.
    pub async fn drain(&self, queue: Queue) -> Vec<EventMessage> {
        let bodies = self.drain_bodies(queue).await;
        match queue {
            Queue::Dispatch => bodies.iter().flat_map(|body| EventMessage::parse_batch(body).unwrap()).collect(),
            Queue::Warning | Queue::Error => bodies.iter().map(|body| EventMessage::parse(body).unwrap()).collect(),
        }
    }

    /// Takes every message waiting in one of this API's queues, as its body.
    pub async fn drain_bodies(&self, queue: Queue) -> Vec<Vec<u8>> {
        self.drain_messages(queue).await.into_iter().map(|(_, body)| body).collect()
    }

    /// Takes every message waiting in one of this API's queues: its AMQP `correlation_id`
    /// property and its body.
    pub async fn drain_messages(&self, queue: Queue) -> Vec<(Option<String>, Vec<u8>)> {
        use lapin::{Connection, ConnectionProperties, options::BasicGetOptions};
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let name = self.topology.queue_name(queue);
        let mut messages = Vec::new();
        while let Some(message) =
            channel.basic_get(name.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap()
        {
            let correlation_id = message.delivery.properties.correlation_id().as_ref().map(|id| id.to_string());
            messages.push((correlation_id, message.delivery.data));
        }
        connection.close(0, "done".into()).await.ok();
        messages
    }

    /// A user with every role, and [`PASSWORD`].
    pub async fn user(&self, username: &str) -> Uuid {
        create_user(&self.pool, username, &Role::ALL).await
    }

    pub async fn user_with_roles(&self, username: &str, roles: &[Role]) -> Uuid {
        create_user(&self.pool, username, roles).await
    }

    /// An access token with every role, for a user still on token version 1.
    pub fn access_token(&self, user: Uuid) -> String {
        self.token(user, &Role::ALL, TokenKind::Access)
    }

    /// A token of `kind` for a user still on token version 1.
    pub fn token(&self, user: Uuid, roles: &[Role], kind: TokenKind) -> String {
        let subject = TokenSubject { user_id: user, username: "someone", roles, token_version: 1 };
        self.tokens.issue(subject, kind, Uuid::now_v7())
    }

    pub async fn call(&self, request: Rest) -> Reply {
        self.call_event(&request.event).await
    }

    /// Sends a REST `event` to the function API Gateway would: login for the token routes, ingest
    /// for the rest.
    pub async fn call_event(&self, event: &Value) -> Reply {
        let is_login = event["path"].as_str().is_some_and(|path| path.starts_with("/api/token"));
        self.send(if is_login { Function::Login } else { Function::Ingest }, event).await
    }

    /// Sends `event` to `function` through `lambda_http`'s own deserialisation.
    pub async fn send(&self, function: Function, event: &Value) -> Reply {
        let request = lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event");
        let response = match function {
            Function::Ingest => service(self.ingest.clone()).oneshot(request).await,
            Function::Login => login_service(self.login.clone()).oneshot(request).await,
            Function::Graphql => lambda_service(router(self.graphql.clone())).oneshot(request).await,
        }
        .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let is_page = headers.get("content-type").is_some_and(|value| value.as_bytes().starts_with(b"text/html"));
        let body = if bytes.is_empty() || is_page {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("body is not JSON: {text}"))
        };
        Reply { status, headers, body, text }
    }

    /// Hands `event` to ingest as the Lambda runtime does in `run_http`, raw, and returns the proxy
    /// response it answers API Gateway with.
    pub async fn invoke(&self, event: &Value) -> Value {
        let function = ApiGatewayService::new(service(self.ingest.clone()), malformed_request);
        serde_json::to_value(function.oneshot(raw(event)).await.unwrap()).unwrap()
    }

    /// [`TestApi::invoke`] for the graphql function.
    pub async fn invoke_graphql(&self, event: &Value) -> Value {
        let function = ApiGatewayService::new(lambda_service(router(self.graphql.clone())), graphql::malformed_request);
        serde_json::to_value(function.oneshot(raw(event)).await.unwrap()).unwrap()
    }

    pub async fn event_count(&self) -> i64 {
        count(&self.pool, "events").await
    }
}

/// `event` as the Lambda runtime hands it to `run_http`'s service: raw.
pub fn raw(event: &Value) -> LambdaEvent<Box<serde_json::value::RawValue>> {
    LambdaEvent::new(serde_json::value::to_raw_value(event).unwrap(), Context::default())
}

/// An API Gateway REST proxy event, built from the fixture.
pub struct Rest {
    pub event: Value,
}

impl Rest {
    pub fn new(method: &str, path: &str) -> Self {
        let mut event: Value = serde_json::from_str(REST_FIXTURE).unwrap();
        event["httpMethod"] = json!(method);
        event["requestContext"]["httpMethod"] = json!(method);
        event["path"] = json!(path);
        event["requestContext"]["path"] = json!(format!("/Prod{path}"));
        event["pathParameters"] = json!({ "proxy": path.trim_start_matches('/') });
        event["headers"] = json!({ "Host": "abc123.execute-api.us-east-1.amazonaws.com" });
        event["multiValueHeaders"] = json!({ "Host": ["abc123.execute-api.us-east-1.amazonaws.com"] });
        event["body"] = Value::Null;
        Self { event }
    }

    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn login(username: &str, password: &str) -> Self {
        Self::post("/api/token").json(&json!({ "username": username, "password": password }))
    }

    pub fn refresh(refresh: &Value) -> Self {
        Self::post("/api/token/refresh").json(&json!({ "refresh": refresh }))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.event["headers"][name] = json!(value);
        self.event["multiValueHeaders"][name] = json!([value]);
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn raw_body(mut self, content_type: &str, body: &str) -> Self {
        self.event["body"] = json!(body);
        self.header("Content-Type", content_type)
    }

    pub fn json(self, body: &Value) -> Self {
        self.raw_body("application/json", &body.to_string())
    }

    pub fn query(mut self, pairs: &[(&str, &str)]) -> Self {
        let single: serde_json::Map<String, Value> = pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let multi: serde_json::Map<String, Value> = pairs.iter().map(|(k, v)| (k.to_string(), json!([v]))).collect();
        self.event["queryStringParameters"] = Value::Object(single);
        self.event["multiValueQueryStringParameters"] = Value::Object(multi);
        self
    }
}

pub fn event_json(title: &str, status: &str) -> Value {
    json!({ "title": title, "status": status })
}

/// Stores `count` events of `status` as dispatch leaves them: `dispatched`.
pub async fn seed_events(pool: &PgPool, status: Status, count: usize) -> Vec<Event> {
    let user = create_user(pool, &format!("u{}", Uuid::now_v7().simple()), &[]).await;
    let events: Vec<NewEvent> = (1..=count)
        .map(|n| NewEvent {
            title: format!("{status} number {n}"),
            description: format!("what happened, part {n}"),
            status,
            source: Some("integration-test".into()),
            occurred_at: Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
            attributes: json!({ "n": n }),
        })
        .collect();
    let stored = PgEventStore::new(pool.clone()).insert(user, None, None, &events).await.unwrap().events;
    sqlx::query("UPDATE events SET pipeline_state = 'dispatched'").execute(pool).await.unwrap();
    stored
}

/// The SQS fixture's batch with its records' event ids replaced, in order, by `event_ids`.
pub fn batch(fixture: &str, event_ids: &[Uuid]) -> SqsEvent {
    let mut batch: SqsEvent = serde_json::from_str(fixture).unwrap();
    assert!(event_ids.len() <= batch.records.len(), "the fixture has {} records", batch.records.len());
    for (record, id) in batch.records.iter_mut().zip(event_ids) {
        let mut body: Value = serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
        body["event_id"] = id.to_string().into();
        record.body = Some(body.to_string());
    }
    batch
}

pub fn invocation(batch: &SqsEvent) -> LambdaEvent<SqsEvent> {
    LambdaEvent::new(batch.clone(), Context::default())
}

pub fn message_ids(batch: &SqsEvent) -> Vec<String> {
    batch.records.iter().map(|r| r.message_id.clone().unwrap()).collect()
}

pub fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
}

pub async fn pipeline_state(pool: &PgPool, event_id: Uuid) -> String {
    sqlx::query_scalar("SELECT pipeline_state FROM events WHERE id = $1").bind(event_id).fetch_one(pool).await.unwrap()
}

/// The SMTP sink: the machine's maildev unless `MAILDEV_SMTP_PORT` says otherwise.
pub fn maildev_smtp() -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: std::env::var("MAILDEV_SMTP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(1025),
        tls: SmtpTls::None,
        login: None,
        timeout: Duration::from_secs(5),
    }
}

fn maildev_api() -> String {
    std::env::var("MAILDEV_API_URL").unwrap_or_else(|_| "http://127.0.0.1:1080".into())
}

/// Every email in the sink whose body names `event_id`; other tests' mail is left alone.
pub async fn emails_about(event_id: Uuid) -> Vec<Value> {
    let url = format!("{}/api/email", maildev_api());
    let body = tokio::task::spawn_blocking(move || {
        ureq::get(&url).call().expect("maildev answers").body_mut().read_to_string().unwrap()
    })
    .await
    .unwrap();
    let all: Vec<Value> = serde_json::from_str(&body).unwrap();
    let id = event_id.to_string();
    all.into_iter().filter(|email| email["text"].as_str().is_some_and(|text| text.contains(&id))).collect()
}

/// Waits until the sink holds at least one email about `event_id`, then returns them all.
pub async fn wait_for_emails_about(event_id: Uuid) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let emails = emails_about(event_id).await;
        if !emails.is_empty() {
            return emails;
        }
        assert!(Instant::now() < deadline, "no email about {event_id} reached maildev within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The dispatch fixture batch (Amazon MQ's payload), carrying these bodies instead of its own.
pub fn dispatch_batch(bodies: &[Vec<u8>]) -> Value {
    let mut event: Value = serde_json::from_str(DISPATCH_FIXTURE).unwrap();
    let template = event["rmqMessagesByQueue"]["dispatch::/"][0].clone();
    let messages: Vec<Value> = bodies
        .iter()
        .map(|body| {
            let mut message = template.clone();
            message["data"] = json!(STANDARD.encode(body));
            message["basicProperties"]["bodySize"] = json!(body.len());
            message
        })
        .collect();
    event["rmqMessagesByQueue"]["dispatch::/"] = json!(messages);
    event
}
