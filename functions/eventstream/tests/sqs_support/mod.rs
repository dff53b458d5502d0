//! Feeds the SQS handlers the fixture batches kept in `events/`, seeds the events they name in the
//! database `#[sqlx::test]` made for the test, and reads what the real SMTP sink (maildev) got.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use eventstream::{
    config::{SmtpConfig, SmtpTls},
    domain::{Event, NewEvent, Status},
    store::PgEventStore,
};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

pub const WARNING_FIXTURE: &str = include_str!("../../../../events/warning-handler-sqs.json");
pub const ERROR_FIXTURE: &str = include_str!("../../../../events/error-handler-sqs.json");

/// Stores `count` events of `status` as dispatch leaves them: `dispatched`.
pub async fn seed_events(pool: &PgPool, status: Status, count: usize) -> Vec<Event> {
    let user = Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, '$argon2id$unused')")
        .bind(user)
        .bind(format!("u{}", user.simple()))
        .execute(pool)
        .await
        .unwrap();
    let events: Vec<NewEvent> = (1..=count)
        .map(|n| NewEvent {
            title: format!("{status} number {n}"),
            description: format!("what happened, part {n}"),
            status,
            source: Some("integration-test".into()),
            occurred_at: Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
            attributes: serde_json::json!({ "n": n }),
        })
        .collect();
    let stored = PgEventStore::new(pool.clone()).insert(user, None, &events).await.unwrap().events;
    sqlx::query("UPDATE events SET pipeline_state = 'dispatched'").execute(pool).await.unwrap();
    stored
}

/// The fixture's batch with its records' event ids replaced, in order, by `event_ids`.
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

pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(pool).await.unwrap()
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
