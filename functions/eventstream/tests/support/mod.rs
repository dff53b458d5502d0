//! Drives the ingest service the way API Gateway does: a proxy event through `lambda_http`'s own
//! deserialisation, against a real PostgreSQL database that `#[sqlx::test]` made for the test.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use eventstream::{
    auth::{TokenCodec, TokenKind, TokenSubject, hash_password},
    bus::{AmqpBus, EventMessage, Queue, Topology},
    config::{JwtConfig, LoginThrottleConfig},
    domain::Role,
    handlers::http::{AppState, LoginState, login_service, service},
    store::PgUserStore,
};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

pub const SECRET: &str = "integration-test-secret-32-bytes-or-more";
pub const PASSWORD: &str = "correct horse battery";

/// The REST (v1) proxy event kept in `events/` for `sam local invoke`; tests reshape it.
pub const REST_FIXTURE: &str = include_str!("../../../../events/ingest-create-event-rest.json");
pub const HTTP_FIXTURE: &str = include_str!("../../../../events/ingest-create-event-http.json");

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

pub struct TestApi {
    pub pool: PgPool,
    pub tokens: TokenCodec,
    pub topology: Topology,
    state: AppState,
    login: LoginState,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `error.code` and `error.field` of an error answer.
    pub fn error(&self) -> (&str, Option<&str>) {
        (self.body["error"]["code"].as_str().unwrap_or("<none>"), self.body["error"]["field"].as_str())
    }
}

impl TestApi {
    /// An API over `pool` publishing to a topology of its own on the real RabbitMQ.
    pub fn new(pool: PgPool) -> Self {
        Self::with_amqp(pool, &amqp_url())
    }

    pub fn with_amqp(pool: PgPool, url: &str) -> Self {
        Self::with(pool, url, LoginThrottleConfig::default())
    }

    /// An API whose login locks out after the failures `throttle` allows.
    pub fn with_throttle(pool: PgPool, throttle: LoginThrottleConfig) -> Self {
        Self::with(pool, &amqp_url(), throttle)
    }

    fn with(pool: PgPool, url: &str, throttle: LoginThrottleConfig) -> Self {
        let topology = Topology::ephemeral();
        let bus = AmqpBus::new(SecretString::from(url), topology.clone(), Duration::from_secs(2));
        Self {
            state: AppState::new(pool.clone(), &jwt_config(), bus),
            login: LoginState::new(pool.clone(), &jwt_config(), throttle),
            tokens: TokenCodec::new(&jwt_config()),
            topology,
            pool,
        }
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
        use lapin::{Connection, ConnectionProperties, options::BasicGetOptions};
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let name = self.topology.queue_name(queue);
        let mut bodies = Vec::new();
        while let Some(message) =
            channel.basic_get(name.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap()
        {
            bodies.push(message.delivery.data);
        }
        connection.close(0, "done".into()).await.ok();
        bodies
    }

    /// A user with every role, and [`PASSWORD`].
    pub async fn user(&self, username: &str) -> Uuid {
        self.user_with_roles(username, &Role::ALL).await
    }

    pub async fn user_with_roles(&self, username: &str, roles: &[Role]) -> Uuid {
        PgUserStore::new(self.pool.clone()).create(username, &hash_password(PASSWORD).unwrap(), roles).await.unwrap()
    }

    /// An access token with every role, for a user still on token version 1.
    pub fn access_token(&self, user: Uuid) -> String {
        self.access_token_with_roles(user, &Role::ALL)
    }

    pub fn access_token_with_roles(&self, user: Uuid, roles: &[Role]) -> String {
        let subject = TokenSubject { user_id: user, username: "someone", roles, token_version: 1 };
        self.tokens.issue(subject, TokenKind::Access, Uuid::now_v7())
    }

    /// Sends `event` to the function API Gateway would: the login function for the token routes,
    /// ingest for the rest.
    pub async fn call_event(&self, event: &Value) -> Reply {
        let request = lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event");
        let is_login = event["path"].as_str().is_some_and(|path| path.starts_with("/api/token"));
        let response = if is_login {
            login_service(self.login.clone()).oneshot(request).await.unwrap()
        } else {
            service(self.state.clone()).oneshot(request).await.unwrap()
        };
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("body is not JSON: {bytes:?}"))
        };
        Reply { status, headers, body }
    }

    pub async fn call(&self, request: Rest) -> Reply {
        self.call_event(&request.event).await
    }

    /// Hands `event` to ingest as the Lambda runtime does in `run_http`, raw, and returns the proxy
    /// response it answers API Gateway with.
    pub async fn invoke(&self, event: &Value) -> Value {
        use eventstream::handlers::http::lambda::{ApiGatewayService, malformed_request};
        let payload = serde_json::value::to_raw_value(event).unwrap();
        let answer = ApiGatewayService::new(service(self.state.clone()), malformed_request)
            .oneshot(lambda_http::LambdaEvent::new(payload, lambda_http::Context::default()))
            .await
            .unwrap();
        serde_json::to_value(answer).unwrap()
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&self.pool).await.unwrap()
    }

    pub async fn key_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys").fetch_one(&self.pool).await.unwrap()
    }
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
