//! Secrets from LocalStack's Secrets Manager: a function whose configuration names them by ARN reads
//! them on its first invocation, once, and really uses them; a secret it cannot read or use fails
//! the invocation with the variable named, and the next invocation reads it again.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::config::Credentials;
use eventstream::{
    auth::{TokenCodec, TokenKind, TokenSubject},
    bus::{AmqpBus, EventMessage, Queue, Topology},
    config::{AmqpConfig, ApiConfig, JwtConfig, Pending},
    domain::{Role, Status},
    handlers::{
        http::lambda::ApiGatewayService,
        lazy::Lazy,
        rest::{AppState, malformed_request, service},
    },
    secrets::{ReadError, SecretStore, SecretsManager, https_client, resolve},
    store::lazy_pool,
};
use lambda_http::lambda_runtime::Diagnostic;
use lapin::{
    Connection, ConnectionProperties,
    options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions},
};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

use crate::helpers::{Rest, create_user, event_json, jwt_config, raw};

const RABBITMQ: &str = "amqp://127.0.0.1:5672/%2f";

/// LocalStack's Secrets Manager, as the tests make and remove their secrets; and the library's
/// adapter on the same endpoint, counting its reads.
struct Secrets {
    client: aws_sdk_secretsmanager::Client,
    store: Arc<Counting>,
    names: Vec<String>,
}

struct Counting {
    inner: SecretsManager,
    reads: AtomicUsize,
}

impl SecretStore for Counting {
    async fn secret_string(&self, arn: &str) -> Result<SecretString, ReadError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.secret_string(arn).await
    }
}

impl Secrets {
    async fn new() -> Self {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .load()
            .await;
        let store = Counting { inner: SecretsManager::from_config(&config), reads: AtomicUsize::new(0) };
        Self { client: aws_sdk_secretsmanager::Client::new(&config), store: Arc::new(store), names: Vec::new() }
    }

    /// A name no other test uses.
    fn name(&mut self, what: &str) -> String {
        let name = format!("eventstream-test/{what}-{}", Uuid::now_v7().simple());
        self.names.push(name.clone());
        name
    }

    /// Makes a secret holding `value`; returns its ARN.
    async fn create(&mut self, what: &str, value: &str) -> String {
        let name = self.name(what);
        self.put(&name, value).await
    }

    /// Makes the secret `name` (or gives it a new value); returns its ARN.
    async fn put(&self, name: &str, value: &str) -> String {
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(_) => {
                self.client.put_secret_value().secret_id(name).secret_string(value).send().await.unwrap();
                self.client.describe_secret().secret_id(name).send().await.unwrap().arn.unwrap()
            }
            Err(_) => self.client.create_secret().name(name).secret_string(value).send().await.unwrap().arn.unwrap(),
        }
    }

    fn reads(&self) -> usize {
        self.store.reads.load(Ordering::SeqCst)
    }

    async fn remove(self) {
        for name in &self.names {
            let _ = self.client.delete_secret().secret_id(name).force_delete_without_recovery(true).send().await;
        }
    }
}

fn lookup(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| vars.get(name).cloned()
}

fn login_secret(username: &str, password: &str) -> String {
    // As RDS keeps a managed master user's secret: more keys than the login.
    json!({ "username": username, "password": password, "engine": "postgres", "port": 5432 }).to_string()
}

/// A signing key as the template generates it: 64 letters and digits.
fn signing_key() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// The ingest function as its main builds it, reading secrets from `secrets`.
fn ingest(config: Pending<ApiConfig>, secrets: &Secrets) -> Lazy<impl HttpService> {
    Lazy::with_store(config, secrets.store.clone(), |config: ApiConfig| {
        let pool = lazy_pool(&config.database)?;
        Ok(service(AppState::new(pool, &config.jwt, AmqpBus::from_config(&config.amqp))))
    })
    .expect("nothing is built before the first invocation")
}

/// The service an HTTP function's state makes.
trait HttpService:
    tower::Service<
        lambda_http::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<
            lambda_http::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Hands `event` to the function as the Lambda runtime does; its proxy response, or the error it
/// reports to Lambda.
async fn invoke(function: &Lazy<impl HttpService>, event: &Value) -> Result<Value, Diagnostic> {
    let answer = ApiGatewayService::new(function.clone(), malformed_request).oneshot(raw(event)).await?;
    Ok(serde_json::to_value(answer).unwrap())
}

/// An access token for `user` signed with `key`.
fn token(key: &str, user: Uuid) -> String {
    let codec = TokenCodec::new(&JwtConfig { secret: SecretString::from(key), ..jwt_config() });
    let subject = TokenSubject { user_id: user, username: "producer", roles: &Role::ALL, token_version: 1 };
    codec.issue(subject, TokenKind::Access, Uuid::now_v7())
}

async fn current_database(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT current_database()").fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrations = "../../migrations")]
async fn ingest_reads_its_secrets_on_the_first_invocation_once_and_really_uses_them(pool: PgPool) {
    let mut secrets = Secrets::new().await;
    let database = current_database(&pool).await;
    // A role that exists only for this test; its password is in the secret alone, and the URL has
    // no user. (PostgreSQL here trusts 127.0.0.1: the proof is whose sessions the pool opens.)
    let role = format!("secret_user_{}", Uuid::now_v7().simple());
    let password = "p@ss w:rd/?#%&=+";
    for statement in [
        format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(&statement).execute(&pool).await.unwrap();
    }
    let key = signing_key();
    let prefix = format!("tmp-secrets-{}-", Uuid::now_v7().simple());
    let vars = [
        ("DATABASE_URL", format!("postgres://127.0.0.1:5432/{database}")),
        ("DATABASE_SECRET_ARN", secrets.create("database", &login_secret(&role, password)).await),
        ("JWT_SECRET_ARN", secrets.create("jwt", &key).await),
        ("AMQP_URL", RABBITMQ.to_string()),
        ("AMQP_SECRET_ARN", secrets.create("amqp", &login_secret("guest", "guest")).await),
        ("AMQP_QUEUE_PREFIX", prefix.clone()),
    ];
    let function = ingest(ApiConfig::from_lookup(&lookup(&vars)).unwrap(), &secrets);
    assert_eq!(secrets.reads(), 0, "the cold start's init reads nothing");

    let user = create_user(&pool, "producer", &Role::ALL).await;
    let request = Rest::post("/api/events").bearer(&token(&key, user)).json(&event_json("from secrets", "info"));
    let created = invoke(&function, &request.event).await.unwrap();
    assert_eq!(created["statusCode"], 201, "{created}");
    assert_eq!(secrets.reads(), 3, "one read per secret");

    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = $2")
        .bind(&role)
        .bind(&database)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(sessions >= 1, "the function's pool is logged in as the secret's user");

    // Published with the secret's RabbitMQ login.
    let topology = Topology::with_prefix(&prefix);
    let connection =
        Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get(topology.queue_name(Queue::Dispatch).as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the event was published to dispatch");
    let id: Value = serde_json::from_str(created["body"].as_str().unwrap()).unwrap();
    let published = EventMessage::parse_batch(&message.delivery.data).unwrap();
    assert_eq!(published[0].event_id.to_string(), id["id"].as_str().unwrap());

    // Tokens are checked with the secret's key, not another one.
    let other_key = Rest::get("/api/events").bearer(&token(crate::helpers::SECRET, user));
    assert_eq!(invoke(&function, &other_key.event).await.unwrap()["statusCode"], 401);
    let own_key = Rest::get("/api/events").bearer(&token(&key, user));
    assert_eq!(invoke(&function, &own_key.event).await.unwrap()["statusCode"], 200);
    assert_eq!(secrets.reads(), 3, "read once for the life of the process");

    for queue in Queue::ALL {
        channel.queue_delete(topology.queue_name(queue).as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    }
    channel.exchange_delete(topology.exchange.as_str().into(), ExchangeDeleteOptions::default()).await.unwrap();
    connection.close(200, "done".into()).await.unwrap();
    drop(function);
    for statement in [
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"),
        format!("DROP OWNED BY {role}"),
        format!("DROP ROLE {role}"),
    ] {
        sqlx::query(&statement).execute(&pool).await.unwrap();
    }
    secrets.remove().await;
}

#[tokio::test]
async fn the_rabbitmq_login_is_the_secrets() {
    let mut secrets = Secrets::new().await;
    let wrong = secrets.create("amqp-wrong", &login_secret("guest", "not-the-password")).await;
    let right = secrets.create("amqp-right", &login_secret("guest", "guest")).await;
    let message = EventMessage {
        schema: eventstream::bus::SCHEMA_VERSION,
        event_id: Uuid::now_v7(),
        status: Status::Warning,
        source: Some("secrets-test".into()),
        title: "secret login".into(),
        received_at: chrono::Utc::now(),
        correlation_id: None,
    };
    let mut outcomes = Vec::new();
    for arn in [wrong, right] {
        let vars = [("AMQP_URL", RABBITMQ.to_string()), ("AMQP_SECRET_ARN", arn)];
        let config = resolve(&AmqpConfig::from_lookup(&lookup(&vars)).unwrap(), &secrets.store).await.unwrap();
        let bus = AmqpBus::new(config.url, Topology::ephemeral(), Duration::from_secs(5));
        outcomes.push(bus.publish(Queue::Warning, std::slice::from_ref(&message)).await.is_ok());
    }
    assert_eq!(outcomes, [false, true], "refused with the wrong password, accepted with the right one");
    secrets.remove().await;
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_missing_secret_fails_the_invocation_naming_its_variable_and_the_next_one_reads_it(pool: PgPool) {
    let mut secrets = Secrets::new().await;
    let database = current_database(&pool).await;
    let not_yet = secrets.name("jwt-later");
    let vars = [
        ("DATABASE_URL", format!("postgres://postgres@127.0.0.1:5432/{database}")),
        ("JWT_SECRET_ARN", not_yet.clone()),
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f".to_string()),
    ];
    let function = ingest(ApiConfig::from_lookup(&lookup(&vars)).unwrap(), &secrets);
    let key = signing_key();
    let user = create_user(&pool, "producer", &Role::ALL).await;
    let list = Rest::get("/api/events").bearer(&token(&key, user));

    let error = invoke(&function, &list.event).await.unwrap_err();
    assert_eq!(error.error_type, "Config.SecretUnavailable");
    assert!(error.error_message.starts_with("cannot read the secret that JWT_SECRET_ARN names"), "{error:?}");

    secrets.put(&not_yet, &key).await;
    assert_eq!(invoke(&function, &list.event).await.unwrap()["statusCode"], 200, "the next invocation read it");
    assert_eq!(secrets.reads(), 2);
    secrets.remove().await;
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_secret_that_is_not_a_login_fails_naming_its_variable_without_its_value(pool: PgPool) {
    let mut secrets = Secrets::new().await;
    let database = current_database(&pool).await;
    let leaked = format!("do-not-leak-{}", Uuid::now_v7().simple());
    let arn = secrets.create("database-bad", &json!({ "user": "postgres", "password": leaked }).to_string()).await;
    let key = signing_key();
    let vars = [
        ("DATABASE_URL", format!("postgres://127.0.0.1:5432/{database}")),
        ("DATABASE_SECRET_ARN", arn.clone()),
        ("JWT_SECRET", key.clone()),
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f".to_string()),
    ];
    let function = ingest(ApiConfig::from_lookup(&lookup(&vars)).unwrap(), &secrets);
    let user = create_user(&pool, "producer", &Role::ALL).await;
    let list = Rest::get("/api/events").bearer(&token(&key, user));

    let error = invoke(&function, &list.event).await.unwrap_err();
    assert_eq!(error.error_type, "Config.InvalidSecret");
    assert!(error.error_message.contains("DATABASE_SECRET_ARN"), "{error:?}");
    assert!(!error.error_message.contains(&leaked), "{error:?}");

    secrets.put(&arn, &login_secret("postgres", &leaked)).await;
    assert_eq!(invoke(&function, &list.event).await.unwrap()["statusCode"], 200, "the next invocation read it");
    secrets.remove().await;
}
