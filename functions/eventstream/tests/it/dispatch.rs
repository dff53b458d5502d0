//! The dispatch function's handler fed Amazon MQ batches (the `events/` fixture's shape), against
//! the real PostgreSQL and RabbitMQ.

use std::time::Duration;

use axum::http::StatusCode;
use eventstream::{
    bus::{EventMessage, Queue},
    config::SweepConfig,
    domain::Status,
    handlers::dispatch::{DispatchRequest, handle},
    pipeline::{DispatchReport, Dispatcher},
};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Rest, TestApi, count, dispatch_batch};

fn dispatcher(api: &TestApi) -> Dispatcher {
    Dispatcher::new(api.pool.clone(), api.bus(), SweepConfig { older_than: Duration::from_secs(60), limit: 1_000 })
}

async fn invoke(state: &Dispatcher, payload: Value) -> DispatchReport {
    let request: DispatchRequest = serde_json::from_value(payload).unwrap();
    handle(state, LambdaEvent::new(request, Context::default())).await.unwrap()
}

/// Posts events with these statuses (and sources) and returns what ingest published for them.
async fn ingest(api: &TestApi, events: &[(&str, &str)]) -> Vec<EventMessage> {
    let token = api.access_token(api.user(&format!("u{}", Uuid::now_v7().simple())).await);
    let events: Vec<Value> =
        events.iter().map(|(status, source)| json!({ "title": format!("{status} from {source}"), "status": status, "source": source })).collect();
    let reply = api.call(Rest::post("/api/events/batch").bearer(&token).json(&json!({ "events": events }))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    api.drain(Queue::Dispatch).await
}

async fn states(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT status, pipeline_state FROM events ORDER BY id").fetch_all(pool).await.unwrap()
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_batch_routes_warnings_and_errors_and_finishes_the_rest(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let messages =
        ingest(&api, &[("success", "cron"), ("info", "cdn"), ("warning", "web-1"), ("error", "billing")]).await;
    let bodies: Vec<Vec<u8>> = messages.iter().map(EventMessage::to_bytes).collect();

    let report = invoke(&dispatcher(&api), dispatch_batch(&bodies)).await;

    assert_eq!(report, DispatchReport { routed: 2, finished: 2, ..Default::default() });
    let warnings = api.drain(Queue::Warning).await;
    let errors = api.drain(Queue::Error).await;
    assert_eq!(warnings.iter().map(|m| m.status).collect::<Vec<_>>(), [Status::Warning]);
    assert_eq!(
        errors.iter().map(|m| (m.status, m.source.as_deref())).collect::<Vec<_>>(),
        [(Status::Error, Some("billing"))]
    );
    assert!(states(&pool).await.iter().all(|(_, state)| state == "dispatched"));
    let targets: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT e.status, r.target_queue FROM event_routings r JOIN events e ON e.id = r.event_id ORDER BY e.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        targets,
        [
            ("success".into(), None),
            ("info".into(), None),
            ("warning".into(), Some("warning".into())),
            ("error".into(), Some("error".into()))
        ]
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn messages_carrying_a_request_s_events_route_each_event_once(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let token = api.access_token(api.user("alice").await);
    let events: Vec<Value> = ["warning", "error", "success", "error"]
        .iter()
        .map(|status| json!({ "title": format!("{status} event"), "status": status }))
        .collect();
    let reply = api.call(Rest::post("/api/events/batch").bearer(&token).json(&json!({ "events": events }))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let mut bodies = api.drain_bodies(Queue::Dispatch).await;
    assert_eq!(bodies.len(), 1);
    // The same event again on its own, as an older publisher or the sweep's race could send it.
    let first = EventMessage::parse_batch(&bodies[0]).unwrap().remove(0);
    bodies.push(first.to_bytes());

    let report = invoke(&dispatcher(&api), dispatch_batch(&bodies)).await;

    assert_eq!(report, DispatchReport { routed: 3, finished: 1, ..Default::default() });
    assert_eq!(api.drain(Queue::Warning).await.len(), 1);
    assert_eq!(api.drain(Queue::Error).await.len(), 2);
    assert!(states(&pool).await.iter().all(|(_, state)| state == "dispatched"));
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_redelivered_batch_changes_nothing_twice(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let messages = ingest(&api, &[("warning", "a"), ("error", "b"), ("info", "c")]).await;
    let payload = dispatch_batch(&messages.iter().map(EventMessage::to_bytes).collect::<Vec<_>>());
    let state = dispatcher(&api);

    invoke(&state, payload.clone()).await;
    let first = (api.drain(Queue::Warning).await.len(), api.drain(Queue::Error).await.len());
    let again = invoke(&state, payload).await;

    assert_eq!(first, (1, 1));
    assert_eq!(again, DispatchReport { already_routed: 3, ..Default::default() });
    assert_eq!((api.drain(Queue::Warning).await.len(), api.drain(Queue::Error).await.len()), (0, 0));
    assert_eq!(count(&pool, "event_routings").await, 3);
}

#[sqlx::test(migrations = "../../migrations")]
async fn unreadable_and_unknown_messages_are_parked_and_the_rest_routed(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let good = ingest(&api, &[("error", "billing")]).await.remove(0);
    let unknown = EventMessage { event_id: Uuid::now_v7(), ..good.clone() };
    let mut future_schema = serde_json::to_value(&good).unwrap();
    future_schema["schema"] = json!(99);

    let report = invoke(
        &dispatcher(&api),
        dispatch_batch(&[
            b"not json".to_vec(),
            future_schema.to_string().into_bytes(),
            unknown.to_bytes(),
            good.to_bytes(),
        ]),
    )
    .await;

    assert_eq!(report, DispatchReport { routed: 1, parked: 3, ..Default::default() });
    let parked: Vec<(String, String)> =
        sqlx::query_as("SELECT origin, error FROM dead_letters ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(parked.len(), 3);
    assert!(parked.iter().all(|(origin, _)| origin == "rabbitmq:dispatch"), "{parked:?}");
    assert!(parked[1].1.contains("schema version 99"), "{parked:?}");
    assert_eq!(parked[2].1, "no stored event has this id");
    assert_eq!(api.drain(Queue::Error).await.len(), 1);
}

#[sqlx::test(migrations = "../../migrations")]
async fn routing_rules_in_the_table_change_routing_without_a_deploy(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    // Batch jobs' errors are expected: finish them at dispatch. Cache warnings become errors.
    sqlx::query(
        "INSERT INTO routing_rules (status, source_pattern, target_queue, priority) VALUES
             ('error', 'batch-%', NULL, 10), ('info', 'cache%', 'error', 10)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE routing_rules SET enabled = false WHERE status = 'warning'").execute(&pool).await.unwrap();
    let messages =
        ingest(&api, &[("error", "batch-nightly"), ("error", "billing"), ("info", "cache-eu"), ("warning", "web-1")])
            .await;

    let report =
        invoke(&dispatcher(&api), dispatch_batch(&messages.iter().map(EventMessage::to_bytes).collect::<Vec<_>>()))
            .await;

    assert_eq!(report, DispatchReport { routed: 2, finished: 2, ..Default::default() });
    let errors: Vec<Option<String>> = api.drain(Queue::Error).await.into_iter().map(|m| m.source).collect();
    assert_eq!(errors, [Some("billing".to_string()), Some("cache-eu".to_string())]);
    assert!(api.drain(Queue::Warning).await.is_empty());
}

#[sqlx::test(migrations = "../../migrations")]
async fn events_ingested_while_rabbitmq_refuses_connections_are_swept_and_routed(pool: PgPool) {
    // Ingest with RabbitMQ refusing connections: stored, left received, nothing published.
    let offline = TestApi::with_amqp(pool.clone(), "amqp://guest:guest@127.0.0.1:1/%2f");
    let token = offline.access_token(offline.user("alice").await);
    let posted = offline
        .call(Rest::post("/api/events/batch").bearer(&token).json(&json!({ "events": [
            { "title": "lost 1", "status": "error" }, { "title": "lost 2", "status": "warning" },
            { "title": "just now", "status": "error" } ] })))
        .await;
    assert_eq!(posted.status, StatusCode::CREATED);
    sqlx::query("UPDATE events SET received_at = received_at - interval '5 minutes' WHERE title LIKE 'lost%'")
        .execute(&pool)
        .await
        .unwrap();
    let api = TestApi::new(pool.clone());
    let state = dispatcher(&api);

    let swept = invoke(&state, json!({ "action": "sweep" })).await;

    assert_eq!(swept, DispatchReport { republished: 2, ..Default::default() }, "the recent one is not yet stuck");
    let republished = api.drain(Queue::Dispatch).await;
    assert_eq!(republished.iter().map(|m| m.title.as_str()).collect::<Vec<_>>(), ["lost 1", "lost 2"]);
    let routed =
        invoke(&state, dispatch_batch(&republished.iter().map(EventMessage::to_bytes).collect::<Vec<_>>())).await;
    assert_eq!(routed.routed, 2);
    assert_eq!(invoke(&state, json!({ "action": "sweep" })).await.republished, 0, "dispatched events are not swept");
}
