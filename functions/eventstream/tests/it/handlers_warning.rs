//! The warning handler against a real PostgreSQL, fed the SQS batch kept in `events/`.

use eventstream::{domain::Status, handlers::sqs::handle_warning_events as handle, pipeline::WarningHandling};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{WARNING_FIXTURE, batch, count, failed_ids, invocation, message_ids, pipeline_state, seed_events};

async fn three_warnings(pool: &PgPool) -> Vec<Uuid> {
    seed_events(pool, Status::Warning, 3).await.iter().map(|e| e.id).collect()
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_batch_of_warnings_is_recorded_and_their_events_processed(pool: PgPool) {
    let ids = three_warnings(&pool).await;
    let batch = batch(WARNING_FIXTURE, &ids);

    let response = handle(&WarningHandling::new(pool.clone()), invocation(&batch)).await.unwrap();

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let recorded: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM processed_warnings ORDER BY event_id").fetch_all(&pool).await.unwrap();
    assert_eq!(recorded, ids);
    for id in ids {
        assert_eq!(pipeline_state(&pool, id).await, "processed");
    }
    assert_eq!(count(&pool, "dead_letters").await, 0);
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_batch_delivered_twice_records_each_warning_once(pool: PgPool) {
    let ids = three_warnings(&pool).await;
    let batch = batch(WARNING_FIXTURE, &ids);
    let handler = WarningHandling::new(pool.clone());
    handle(&handler, invocation(&batch)).await.unwrap();
    let first: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, pipeline_updated_at FROM events ORDER BY id").fetch_all(&pool).await.unwrap();

    let response = handle(&handler, invocation(&batch)).await.unwrap();

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    assert_eq!(count(&pool, "processed_warnings").await, 3);
    let second: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, pipeline_updated_at FROM events ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(second, first, "a repeat delivery must not touch the events again");
}

#[sqlx::test(migrations = "../../migrations")]
async fn unreadable_messages_and_unknown_events_are_parked_not_retried(pool: PgPool) {
    let known = three_warnings(&pool).await[0];
    let unknown = Uuid::now_v7();
    let mut batch = batch(WARNING_FIXTURE, &[known, unknown]);
    batch.records[2].body = Some("{\"schema\":1,\"event_id\":\"not-a-uuid\"}".into());

    let response = handle(&WarningHandling::new(pool.clone()), invocation(&batch)).await.unwrap();

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    assert_eq!(pipeline_state(&pool, known).await, "processed");
    let parked: Vec<(String, String, String)> =
        // Records are handled concurrently: order the parked ones by their reason, not arrival.
        sqlx::query_as("SELECT origin, body, error FROM dead_letters ORDER BY error DESC").fetch_all(&pool).await.unwrap();
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert_eq!(parked[0].0, "sqs:warning-events");
    assert!(parked[0].1.contains(&unknown.to_string()), "{parked:?}");
    assert_eq!(parked[0].2, "no event has this event_id");
    assert_eq!(parked[1].1, "{\"schema\":1,\"event_id\":\"not-a-uuid\"}");
    assert!(parked[1].2.starts_with("message is not a JSON event message"), "{parked:?}");
    assert_eq!(count(&pool, "processed_warnings").await, 1);
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_database_failure_fails_only_its_own_record(pool: PgPool) {
    let ids = three_warnings(&pool).await;
    // A trigger makes the database refuse the second warning, and only it.
    sqlx::query(&format!(
        "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.event_id = '{}' THEN RAISE EXCEPTION 'disk full'; END IF;
             RETURN NEW;
         END $$",
        ids[1]
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_one BEFORE INSERT ON processed_warnings FOR EACH ROW EXECUTE FUNCTION refuse_one()",
    )
    .execute(&pool)
    .await
    .unwrap();
    let batch = batch(WARNING_FIXTURE, &ids);

    let response = handle(&WarningHandling::new(pool.clone()), invocation(&batch)).await.unwrap();

    assert_eq!(failed_ids(&response), [message_ids(&batch)[1].clone()]);
    assert_eq!(pipeline_state(&pool, ids[0]).await, "processed");
    assert_eq!(pipeline_state(&pool, ids[1]).await, "dispatched", "the failed statement must change nothing");
    assert_eq!(pipeline_state(&pool, ids[2]).await, "processed");
    assert_eq!(count(&pool, "dead_letters").await, 0);
}
