//! The error handler: records each error event once and emails the alert recipients about it
//! exactly once, however often the event is delivered.
//!
//! The email's row in `notifications` is claimed before sending and marked sent after, so
//! concurrent deliveries send one email between them. The event becomes `processed` only once
//! the email is sent. A sender that dies between sending and marking leaves a stale claim that a
//! later delivery takes over: that is the one window where a second email can go out, with the
//! same `Message-ID`.

use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use sqlx::PgPool;

use super::{RecordHandler, error_chain, handle_batch, park, read_message};
use crate::{
    config::AlertConfig,
    mail::{Mailer, error_alert},
    store::{Claim, PgEventStore, PgHandlingStore, StoreError},
};

/// What the error handler keeps across invocations.
#[derive(Clone, Debug)]
pub struct ErrorHandler<M> {
    events: PgEventStore,
    store: PgHandlingStore,
    mailer: M,
    alert: AlertConfig,
    /// The alert's recipients as stored in `notifications.recipients`.
    recipients: Vec<String>,
    claim_timeout: Duration,
}

impl<M: Mailer> ErrorHandler<M> {
    /// `claim_timeout`: how long a claimed email may stay unsent before another delivery may
    /// send it (see [`crate::config::ErrorHandlerConfig::claim_timeout`]).
    pub fn new(pool: PgPool, mailer: M, alert: AlertConfig, claim_timeout: Duration) -> Self {
        let recipients = alert.recipients.iter().map(ToString::to_string).collect();
        Self {
            events: PgEventStore::new(pool.clone()),
            store: PgHandlingStore::new(pool),
            mailer,
            alert,
            recipients,
            claim_timeout,
        }
    }
}

/// Why an error event must be delivered again.
#[derive(Debug, thiserror::Error)]
pub enum ErrorEventError<E> {
    #[error("the database failed")]
    Store(#[from] StoreError),
    #[error("the alert email was not sent")]
    Mail(#[source] E),
    #[error("another invocation claimed the alert email and has not finished sending it")]
    HeldElsewhere,
}

/// Handles a batch from `error-events`; the response names the messages to deliver again.
pub async fn handle<M: Mailer>(
    state: &ErrorHandler<M>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    Ok(handle_batch(state, &event.payload.records).await)
}

impl<M: Mailer> RecordHandler for ErrorHandler<M> {
    type Error = ErrorEventError<M::Error>;

    async fn handle(&self, record: &SqsMessage) -> Result<(), Self::Error> {
        let Some(message) = read_message(&self.store, record).await? else { return Ok(()) };
        let Some(event) = self.events.get(message.event_id).await? else {
            park(&self.store, record, "no event has this event_id").await?;
            return Ok(());
        };
        self.store.record_error(event.id, &self.recipients).await?;
        match self.store.claim_email(event.id, &self.recipients, self.claim_timeout).await? {
            Claim::AlreadySent => {
                // An earlier delivery may have sent the email and died before marking the event.
                self.store.mark_processed(event.id).await?;
                tracing::info!("error already recorded and its email sent");
                Ok(())
            }
            // Not a success: if that invocation dies, this delivery must come back to send.
            Claim::HeldElsewhere => Err(ErrorEventError::HeldElsewhere),
            Claim::Claimed { attempt } => match self.mailer.send(&error_alert(&event, &self.alert)).await {
                Ok(()) => {
                    self.store.email_sent(event.id).await?;
                    tracing::info!(attempt, "error recorded and its email sent");
                    Ok(())
                }
                Err(error) => {
                    self.store.email_failed(event.id, &error_chain(&error)).await?;
                    Err(ErrorEventError::Mail(error))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use lambda_runtime::Context;
    use sqlx::PgPool;
    use uuid::Uuid;

    use super::*;
    use crate::{
        domain::{Event, NewEvent, Status},
        mail::Email,
    };

    const FIXTURE: &str = include_str!("../../../../../events/error-handler-sqs.json");

    /// Records what it is asked to send, or refuses everything when `refusal` is set.
    #[derive(Default)]
    struct FakeMailer {
        refusal: Option<&'static str>,
        sent: Mutex<Vec<Email>>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Refused(&'static str);

    impl Mailer for FakeMailer {
        type Error = Refused;

        async fn send(&self, email: &Email) -> Result<(), Refused> {
            match self.refusal {
                Some(reason) => Err(Refused(reason)),
                None => {
                    self.sent.lock().unwrap().push(email.clone());
                    Ok(())
                }
            }
        }
    }

    fn handler(pool: &PgPool, mailer: FakeMailer) -> ErrorHandler<FakeMailer> {
        let alert = AlertConfig {
            from: "alerts@example.com".parse().unwrap(),
            recipients: vec!["ops@example.com".parse().unwrap()],
            api_base_url: "https://api.example.com".into(),
        };
        ErrorHandler::new(pool.clone(), mailer, alert, Duration::from_secs(300))
    }

    async fn error_event(pool: &PgPool) -> Event {
        let user = Uuid::now_v7();
        sqlx::query("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, '$argon2id$unused')")
            .bind(user)
            .bind(format!("u{}", user.simple()))
            .execute(pool)
            .await
            .unwrap();
        let new = NewEvent {
            title: "Payment failed".into(),
            description: "Card declined".into(),
            status: Status::Error,
            source: Some("billing".into()),
            occurred_at: None,
            attributes: serde_json::json!({}),
        };
        PgEventStore::new(pool.clone()).insert(user, None, &[new]).await.unwrap().events.remove(0)
    }

    /// The fixture's batch with its one record pointed at `event_id`.
    fn batch_about(event_id: Uuid) -> LambdaEvent<SqsEvent> {
        let mut payload: SqsEvent = serde_json::from_str(FIXTURE).unwrap();
        let record = &mut payload.records[0];
        let mut body: serde_json::Value = serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
        body["event_id"] = event_id.to_string().into();
        record.body = Some(body.to_string());
        LambdaEvent::new(payload, Context::default())
    }

    fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect()
    }

    async fn notification(pool: &PgPool, event_id: Uuid) -> (String, i32, Option<String>) {
        sqlx::query_as("SELECT state, attempts, last_error FROM notifications WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    async fn pipeline_state(pool: &PgPool, event_id: Uuid) -> String {
        sqlx::query_scalar("SELECT pipeline_state FROM events WHERE id = $1")
            .bind(event_id)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[sqlx::test(migrations = "../../migrations")]
    async fn a_refused_email_is_retried_and_the_event_waits_until_it_is_sent(pool: PgPool) {
        let event = error_event(&pool).await;
        let refusing = handler(&pool, FakeMailer { refusal: Some("550 relay says no"), ..Default::default() });

        let response = handle(&refusing, batch_about(event.id)).await.unwrap();

        assert_eq!(failed_ids(&response), ["7f2d0c1b-3a4e-4f5d-9c6b-8a7e6d5c4b3a"]);
        let (state, attempts, last_error) = notification(&pool, event.id).await;
        assert_eq!((state.as_str(), attempts), ("failed", 1));
        assert_eq!(last_error.as_deref(), Some("550 relay says no"));
        assert_eq!(pipeline_state(&pool, event.id).await, "received");

        let working = handler(&pool, FakeMailer::default());
        let response = handle(&working, batch_about(event.id)).await.unwrap();

        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        let sent = working.mailer.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].message_id, format!("<{}@eventstream>", event.id));
        let (state, attempts, last_error) = notification(&pool, event.id).await;
        assert_eq!((state.as_str(), attempts, last_error), ("sent", 2, None));
        assert_eq!(pipeline_state(&pool, event.id).await, "processed");
    }

    #[sqlx::test(migrations = "../../migrations")]
    async fn an_email_claimed_elsewhere_is_retried_until_its_claim_goes_stale(pool: PgPool) {
        let event = error_event(&pool).await;
        let mailer = handler(&pool, FakeMailer::default());
        sqlx::query(
            "INSERT INTO notifications (event_id, channel, recipients, state, attempts, claimed_at)
             VALUES ($1, 'email', '{ops@example.com}', 'sending', 1, now())",
        )
        .bind(event.id)
        .execute(&pool)
        .await
        .unwrap();

        let response = handle(&mailer, batch_about(event.id)).await.unwrap();

        assert_eq!(failed_ids(&response).len(), 1, "a live claim elsewhere must not count as done");
        assert!(mailer.mailer.sent.lock().unwrap().is_empty());

        sqlx::query("UPDATE notifications SET claimed_at = now() - interval '301 seconds' WHERE event_id = $1")
            .bind(event.id)
            .execute(&pool)
            .await
            .unwrap();
        let response = handle(&mailer, batch_about(event.id)).await.unwrap();

        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert_eq!(mailer.mailer.sent.lock().unwrap().len(), 1);
        assert_eq!(notification(&pool, event.id).await.0, "sent");
    }

    #[sqlx::test(migrations = "../../migrations")]
    async fn an_email_sent_before_a_crash_is_not_sent_again_and_the_event_is_finished(pool: PgPool) {
        let event = error_event(&pool).await;
        sqlx::query(
            "INSERT INTO notifications (event_id, channel, recipients, state, attempts, sent_at)
             VALUES ($1, 'email', '{ops@example.com}', 'sent', 1, now())",
        )
        .bind(event.id)
        .execute(&pool)
        .await
        .unwrap();
        let mailer = handler(&pool, FakeMailer::default());

        let response = handle(&mailer, batch_about(event.id)).await.unwrap();

        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert!(mailer.mailer.sent.lock().unwrap().is_empty());
        assert_eq!(pipeline_state(&pool, event.id).await, "processed");
    }

    #[sqlx::test(migrations = "../../migrations")]
    async fn an_unknown_event_is_parked_without_an_email(pool: PgPool) {
        let mailer = handler(&pool, FakeMailer::default());
        let unknown = Uuid::now_v7();

        let response = handle(&mailer, batch_about(unknown)).await.unwrap();

        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert!(mailer.mailer.sent.lock().unwrap().is_empty());
        let (origin, error): (String, String) =
            sqlx::query_as("SELECT origin, error FROM dead_letters").fetch_one(&pool).await.unwrap();
        assert_eq!(origin, "sqs:error-events");
        assert_eq!(error, "no event has this event_id");
    }
}
