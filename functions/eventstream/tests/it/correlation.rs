//! One correlation id from the request to the email: ingest stores and publishes it, dispatch
//! forwards it, the error handler mails it; and the metric lines the stages emit on the way.

use std::{sync::Arc, time::Duration};

use aws_lambda_events::sqs::SqsEvent;
use axum::http::StatusCode;
use eventstream::{
    bus::{EventMessage, Queue},
    config::{AlertConfig, SweepConfig},
    handlers::{dispatch::handle as dispatch, sqs::handle_error_events},
    mail::SmtpMailer,
    metrics::{CapturedLines, Metrics},
    pipeline::{Alerting, Dispatcher},
};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    ERROR_FIXTURE, Function, Rest, TestApi, dispatch_batch, failed_ids, invocation, maildev_smtp, wait_for_emails_about,
};

fn captured() -> (Metrics, Arc<CapturedLines>) {
    let sink = Arc::new(CapturedLines::default());
    (Metrics::new("EventStreamTest", sink.clone()), sink)
}

/// The error handler's SQS fixture with one record carrying `body`, as the bridge forwards it.
fn error_batch(body: &[u8], correlation_id: &str) -> SqsEvent {
    let mut batch: Value = serde_json::from_str(ERROR_FIXTURE).unwrap();
    batch["Records"][0]["body"] = json!(String::from_utf8(body.to_vec()).unwrap());
    batch["Records"][0]["messageAttributes"] =
        json!({ "correlation_id": { "stringValue": correlation_id, "dataType": "String" } });
    serde_json::from_value(batch).unwrap()
}

/// The metric line whose directives name `metric`.
fn line_with<'a>(lines: &'a [Value], metric: &str) -> &'a Value {
    lines.iter().find(|line| line.get(metric).is_some()).unwrap_or_else(|| panic!("no line has {metric}: {lines:#?}"))
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_error_events_correlation_id_travels_from_its_request_to_its_email(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let token = api.access_token(api.user("producer").await);
    let correlation_id = format!("it-{}", Uuid::now_v7().simple());

    // Ingest: the id is echoed, stored with the event and published with it.
    let reply = api
        .call(
            Rest::post("/api/events")
                .bearer(&token)
                .header("X-Correlation-Id", &correlation_id)
                .json(&json!({ "title": "Payment failed", "status": "error", "source": "billing" })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.headers["x-correlation-id"], correlation_id.as_str());
    assert_eq!(reply.body["correlation_id"], correlation_id.as_str());
    let event_id: Uuid = reply.body["id"].as_str().unwrap().parse().unwrap();
    let stored: Option<String> = sqlx::query_scalar("SELECT correlation_id FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(correlation_id.as_str()));
    let published = api.drain_messages(Queue::Dispatch).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].0.as_deref(), Some(correlation_id.as_str()), "the AMQP correlation_id property");
    let events = EventMessage::parse_batch(&published[0].1).unwrap();
    assert_eq!(events[0].correlation_id.as_deref(), Some(correlation_id.as_str()), "the body's field");

    // Dispatch: forwarded to the error queue with the id, in the body and the property.
    let (metrics, dispatch_lines) = captured();
    let dispatcher =
        Dispatcher::new(pool.clone(), api.bus(), SweepConfig { older_than: Duration::from_secs(60), limit: 100 })
            .with_metrics(metrics);
    let bodies = vec![published[0].1.clone()];
    dispatch(
        &dispatcher,
        LambdaEvent::new(serde_json::from_value(dispatch_batch(&bodies)).unwrap(), Context::default()),
    )
    .await
    .unwrap();
    let routed = api.drain_messages(Queue::Error).await;
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].0.as_deref(), Some(correlation_id.as_str()));
    let message = EventMessage::parse(&routed[0].1).unwrap();
    assert_eq!((message.event_id, message.correlation_id.as_deref()), (event_id, Some(correlation_id.as_str())));
    let lines = dispatch_lines.lines();
    let line = line_with(&lines, "EventsRouted");
    assert_eq!((line["Target"].as_str(), line["EventsRouted"].as_f64()), (Some("error"), Some(1.0)));
    assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "EventStreamTest");
    assert!(line["DispatchLatency"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");

    // The error handler: the email carries the id in a header and its footer; one metric line.
    let (metrics, handler_lines) = captured();
    let alert = AlertConfig {
        from: "alerts@eventstream.test".parse().unwrap(),
        recipients: vec!["ops@eventstream.test".parse().unwrap()],
        api_base_url: "https://api.eventstream.test/Prod".into(),
    };
    let alerting =
        Alerting::new(pool.clone(), SmtpMailer::new(&maildev_smtp()).unwrap(), alert, Duration::from_secs(300))
            .with_metrics(metrics);
    let response =
        handle_error_events(&alerting, invocation(&error_batch(&routed[0].1, &correlation_id))).await.unwrap();
    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let emails = wait_for_emails_about(event_id).await;
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0]["headers"]["x-correlation-id"], correlation_id.as_str());
    let text = emails[0]["text"].as_str().unwrap();
    assert!(text.contains(&format!("Correlation id: {correlation_id}")), "{text}");

    let lines = handler_lines.lines();
    assert_eq!(lines.len(), 1, "one line per batch: {lines:#?}");
    let line = &lines[0];
    assert_eq!(line["Handler"], "error");
    assert_eq!((line["EventsHandled"].as_f64(), line["EmailsSent"].as_f64()), (Some(1.0), Some(1.0)));
    assert_eq!(line["EmailsFailed"].as_f64(), Some(0.0));
    assert!(line["HandlingLatency"].as_f64().is_some() && line["EmailLatency"].as_f64().is_some(), "{line}");
    let directives = line["_aws"]["CloudWatchMetrics"].as_array().unwrap();
    assert_eq!(directives[0]["Dimensions"], json!([["Handler"]]));
    assert_eq!(directives[1]["Dimensions"], json!([[]]));
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_invalid_correlation_id_is_a_400_naming_the_header_and_stores_nothing(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let token = api.access_token(api.user("producer").await);

    for invalid in ["two words", "a/b", &"x".repeat(129)] {
        let reply = api
            .call(
                Rest::post("/api/events/batch")
                    .bearer(&token)
                    .header("X-Correlation-Id", invalid)
                    .json(&json!({ "events": [{ "title": "t", "status": "error" }] })),
            )
            .await;

        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{invalid:?}: {:?}", reply.body);
        assert_eq!(reply.error(), ("invalid_field", Some("X-Correlation-Id")));
    }
    // Nothing stored, so nothing published: the test's queues were never even declared.
    assert_eq!(api.event_count().await, 0);
}

#[sqlx::test(migrations = "../../migrations")]
async fn without_a_header_a_batch_shares_api_gateways_request_id(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let token = api.access_token(api.user("producer").await);
    let mut request = Rest::post("/api/events/batch")
        .bearer(&token)
        .json(&json!({ "events": [{ "title": "a", "status": "info" }, { "title": "b", "status": "warning" }] }));
    request.event["requestContext"]["requestId"] = json!("c6af9ac6-7b61-11e6-9a41-93e8deadbeef");

    let reply = api.call(request).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.headers["x-correlation-id"], "c6af9ac6-7b61-11e6-9a41-93e8deadbeef");
    let ids: Vec<Option<String>> =
        sqlx::query_scalar("SELECT correlation_id FROM events ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(ids, vec![Some("c6af9ac6-7b61-11e6-9a41-93e8deadbeef".to_string()); 2]);
}

#[sqlx::test(migrations = "../../migrations")]
async fn graphql_create_event_stores_and_exposes_the_requests_correlation_id(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let token = api.access_token(api.user("producer").await);
    let query = r#"mutation { createEvent(input: {title: "Disk full", status: ERROR}) { id correlationId } }"#;
    let request =
        Rest::post("/graphql").bearer(&token).header("X-Correlation-Id", "gql-1").json(&json!({ "query": query }));

    let reply = api.send(Function::Graphql, &request.event).await;

    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.headers["x-correlation-id"], "gql-1");
    assert_eq!(reply.body["data"]["createEvent"]["correlationId"], "gql-1", "{:?}", reply.body);
    let stored: Option<String> =
        sqlx::query_scalar("SELECT correlation_id FROM events").fetch_one(&pool).await.unwrap();
    assert_eq!(stored.as_deref(), Some("gql-1"));
}
