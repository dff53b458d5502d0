//! The error handler against a real PostgreSQL and a real SMTP sink (maildev), fed the SQS batch
//! kept in `events/`.

use std::time::Duration;

use eventstream::{
    config::AlertConfig,
    domain::{Event, Status},
    handlers::sqs::handle_error_events as handle,
    mail::SmtpMailer,
    pipeline::Alerting,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    ERROR_FIXTURE, batch, count, emails_about, failed_ids, invocation, maildev_smtp, message_ids, pipeline_state,
    seed_events, wait_for_emails_about,
};

fn alert() -> AlertConfig {
    AlertConfig {
        from: "EventStream <alerts@eventstream.test>".parse().unwrap(),
        recipients: vec!["ops@eventstream.test".parse().unwrap(), "Dev Team <dev@eventstream.test>".parse().unwrap()],
        api_base_url: "https://api.eventstream.test/Prod".into(),
    }
}

fn handler_on(pool: &PgPool, smtp_port: u16) -> Alerting<SmtpMailer> {
    let smtp = eventstream::config::SmtpConfig { port: smtp_port, ..maildev_smtp() };
    Alerting::new(pool.clone(), SmtpMailer::new(&smtp).unwrap(), alert(), Duration::from_secs(300))
}

fn handler(pool: &PgPool) -> Alerting<SmtpMailer> {
    handler_on(pool, maildev_smtp().port)
}

async fn error_event(pool: &PgPool) -> Event {
    seed_events(pool, Status::Error, 1).await.remove(0)
}

async fn notification(pool: &PgPool, event_id: Uuid) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT state, attempts, last_error FROM notifications WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_error_event_is_emailed_with_everything_needed_to_act_on_it(pool: PgPool) {
    let event = error_event(&pool).await;
    let batch = batch(ERROR_FIXTURE, &[event.id]);

    let response = handle(&handler(&pool), invocation(&batch)).await.unwrap();

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let emails = wait_for_emails_about(event.id).await;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    let email = &emails[0];
    assert_eq!(email["subject"], format!("[EventStream] error from integration-test: {}", event.title));
    assert_eq!(email["headers"]["message-id"], format!("<{}@eventstream>", event.id));
    assert_eq!(email["from"][0]["address"], "alerts@eventstream.test");
    let to: Vec<&str> = email["to"].as_array().unwrap().iter().map(|t| t["address"].as_str().unwrap()).collect();
    assert_eq!(to, ["ops@eventstream.test", "dev@eventstream.test"]);
    let text = email["text"].as_str().unwrap();
    for expected in [
        format!("Title:        {}", event.title),
        "Status:       error".to_string(),
        "Source:       integration-test".to_string(),
        format!("Occurred at:  {}", event.occurred_at.unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        format!("Received at:  {}", event.received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        format!("Event id:     {}", event.id),
        event.description.clone(),
        format!("https://api.eventstream.test/Prod/api/events/{}", event.id),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing from:\n{text}");
    }
    assert_eq!(count(&pool, "error_records").await, 1);
    assert_eq!(notification(&pool, event.id).await, ("sent".into(), 1, None));
    assert_eq!(pipeline_state(&pool, event.id).await, "processed");
}

#[sqlx::test(migrations = "../../migrations")]
async fn deliveries_at_once_and_again_later_send_a_single_email(pool: PgPool) {
    let event = error_event(&pool).await;
    let batch = batch(ERROR_FIXTURE, &[event.id]);
    let handlers: Vec<_> = (0..5).map(|_| handler(&pool)).collect();

    let responses = tokio::join!(
        handle(&handlers[0], invocation(&batch)),
        handle(&handlers[1], invocation(&batch)),
        handle(&handlers[2], invocation(&batch)),
        handle(&handlers[3], invocation(&batch)),
        handle(&handlers[4], invocation(&batch)),
    );

    let succeeded = [responses.0, responses.1, responses.2, responses.3, responses.4]
        .into_iter()
        .filter(|response| response.as_ref().unwrap().batch_item_failures.is_empty())
        .count();
    assert!(succeeded >= 1, "the invocation that sent the email reports success");
    let emails = wait_for_emails_about(event.id).await;
    assert_eq!(emails.len(), 1, "{emails:#?}");

    for _ in 0..2 {
        let response = handle(&handler(&pool), invocation(&batch)).await.unwrap();
        assert!(failed_ids(&response).is_empty(), "a later delivery finds the email sent: {response:?}");
    }
    assert_eq!(emails_about(event.id).await.len(), 1);
    assert_eq!(count(&pool, "error_records").await, 1);
    assert_eq!(count(&pool, "notifications").await, 1);
    assert_eq!(notification(&pool, event.id).await.0, "sent");
    assert_eq!(pipeline_state(&pool, event.id).await, "processed");
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_smtp_outage_fails_the_record_until_a_redelivery_sends_the_one_email(pool: PgPool) {
    let event = error_event(&pool).await;
    let batch = batch(ERROR_FIXTURE, &[event.id]);
    // Nothing listens on port 1: the connection is refused at once.
    let response = handle(&handler_on(&pool, 1), invocation(&batch)).await.unwrap();

    assert_eq!(failed_ids(&response), message_ids(&batch));
    let (state, attempts, last_error) = notification(&pool, event.id).await;
    assert_eq!((state.as_str(), attempts), ("failed", 1));
    let last_error = last_error.unwrap();
    assert!(last_error.starts_with("the SMTP relay did not accept the email: "), "{last_error}");
    assert_eq!(pipeline_state(&pool, event.id).await, "dispatched");
    assert_eq!(count(&pool, "error_records").await, 1, "the error is recorded even though its email is not sent");
    assert!(emails_about(event.id).await.is_empty());

    let response = handle(&handler(&pool), invocation(&batch)).await.unwrap();

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    assert_eq!(wait_for_emails_about(event.id).await.len(), 1);
    assert_eq!(notification(&pool, event.id).await, ("sent".into(), 2, None));
    assert_eq!(pipeline_state(&pool, event.id).await, "processed");
}
