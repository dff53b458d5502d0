//! The timed phases: the raw INSERT baseline, the handler, and the store and the publish alone.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use axum::http::StatusCode;
use bench::{
    database::function_pool,
    rabbitmq::function_bus,
    timing::{Run, Sample, timed},
};
use chrono::{DateTime, Utc};
use eventstream::{
    bus::{AmqpBus, EventMessage, Queue, SCHEMA_VERSION, Topology},
    config::JwtConfig,
    domain::NewEvent,
    handlers::rest::{AppState, service},
    store::PgEventStore,
};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Mutex;
use tower::ServiceExt;
use uuid::Uuid;

/// The columns `PgEventStore::insert` writes, without its idempotency-key claim and RETURNING.
const RAW_BATCH_SQL: &str = r#"
INSERT INTO events (id, title, description, status, source, occurred_at, attributes, user_id)
SELECT e.id, e.title, e.description, e.status, e.source, e.occurred_at, e.attributes, $1
FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::jsonb[])
    AS e (id, title, description, status, source, occurred_at, attributes)
"#;

/// What one function instance holds: built once, as at a cold start.
pub struct Instance {
    state: AppState,
    pool: PgPool,
}

/// `count` instances with the function's own defaults, publishing to `topology`.
pub fn instances(
    database_url: &str,
    amqp_url: &str,
    jwt: &JwtConfig,
    topology: &Topology,
    count: u32,
) -> anyhow::Result<Vec<Instance>> {
    (0..count)
        .map(|_| {
            let pool = function_pool(database_url)?;
            Ok(Instance { state: AppState::new(pool.clone(), jwt, function_bus(amqp_url, topology)), pool })
        })
        .collect()
}

/// The raw baseline: `rows` in one INSERT per statement, on `connections` connections.
pub async fn raw_batches(
    url: &str,
    connections: u32,
    user: Uuid,
    rows: &[NewEvent],
    duration: Duration,
) -> anyhow::Result<Run> {
    let mut slots = Vec::new();
    for _ in 0..connections {
        slots.push(Arc::new(Mutex::new(PgConnection::connect(url).await?)));
    }
    let rows = Arc::new(rows.to_vec());
    timed(connections as usize, duration, move |task| {
        let connection = slots[task].clone();
        let rows = rows.clone();
        async move {
            let begun = Instant::now();
            let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
            let titles: Vec<&str> = rows.iter().map(|e| e.title.as_str()).collect();
            let descriptions: Vec<&str> = rows.iter().map(|e| e.description.as_str()).collect();
            let statuses: Vec<&str> = rows.iter().map(|e| e.status.as_str()).collect();
            let sources: Vec<Option<&str>> = rows.iter().map(|e| e.source.as_deref()).collect();
            let occurred: Vec<Option<DateTime<Utc>>> = rows.iter().map(|e| e.occurred_at).collect();
            let attributes: Vec<Value> = rows.iter().map(|e| e.attributes.clone()).collect();
            let mut connection = connection.lock().await;
            let done = sqlx::query(RAW_BATCH_SQL)
                .bind(user)
                .bind(&ids)
                .bind(&titles)
                .bind(&descriptions)
                .bind(&statuses)
                .bind(&sources)
                .bind(&occurred)
                .bind(&attributes)
                .execute(&mut *connection)
                .await?;
            Ok(Sample::since(begun, done.rows_affected()))
        }
    })
    .await
}

/// The store alone: `PgEventStore::insert` of `rows` on each instance's pool.
pub async fn store_batches(
    instances: &[Instance],
    user: Uuid,
    rows: &[NewEvent],
    duration: Duration,
) -> anyhow::Result<Run> {
    let stores: Arc<Vec<PgEventStore>> =
        Arc::new(instances.iter().map(|instance| PgEventStore::new(instance.pool.clone())).collect());
    let rows = Arc::new(rows.to_vec());
    timed(instances.len(), duration, move |task| {
        let stores = stores.clone();
        let rows = rows.clone();
        async move {
            let begun = Instant::now();
            let stored = stores[task].insert(user, None, None, &rows).await?.events.len();
            Ok(Sample::since(begun, stored as u64))
        }
    })
    .await
}

/// Sends `event` to each instance's service, one request at a time per instance.
pub async fn drive(
    instances: &[Instance],
    event: &str,
    expected: StatusCode,
    rows_per_request: u64,
    duration: Duration,
) -> anyhow::Result<Run> {
    let services: Arc<Vec<_>> = Arc::new(instances.iter().map(|instance| service(instance.state.clone())).collect());
    let event: Arc<str> = event.into();
    timed(instances.len(), duration, move |task| {
        let services = services.clone();
        let event = event.clone();
        async move {
            let begun = Instant::now();
            let request = lambda_http::request::from_str(&event).context("the API Gateway event")?;
            let response = services[task].clone().oneshot(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if status != expected {
                bail!("the handler answered {status}: {}", String::from_utf8_lossy(&body));
            }
            Ok(Sample::since(begun, rows_per_request))
        }
    })
    .await
}

/// How a request's events go to the broker.
#[derive(Clone, Copy)]
pub enum Packing {
    /// In one message, as ingest publishes them to dispatch.
    Together,
    /// One message per event, as ingest published them before.
    Each,
}

/// Publishes a message for the rows, with confirms, as the handler does after its insert.
pub async fn publish_only(
    amqp_url: &str,
    topology: &Topology,
    rows: &[NewEvent],
    packing: Packing,
    tasks: u32,
    duration: Duration,
) -> anyhow::Result<Run> {
    let buses: Arc<Vec<AmqpBus>> = Arc::new((0..tasks).map(|_| function_bus(amqp_url, topology)).collect());
    let now = Utc::now();
    let messages: Arc<Vec<EventMessage>> = Arc::new(
        rows.iter()
            .map(|row| EventMessage {
                schema: SCHEMA_VERSION,
                event_id: Uuid::now_v7(),
                status: row.status,
                source: row.source.clone(),
                title: row.title.clone(),
                received_at: now,
                correlation_id: None,
            })
            .collect(),
    );
    timed(tasks as usize, duration, move |task| {
        let buses = buses.clone();
        let messages = messages.clone();
        async move {
            let begun = Instant::now();
            match packing {
                Packing::Together => buses[task].publish_batch(Queue::Dispatch, &messages).await?,
                Packing::Each => buses[task].publish(Queue::Dispatch, &messages).await?,
            }
            Ok(Sample::since(begun, messages.len() as u64))
        }
    })
    .await
}
