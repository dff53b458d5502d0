//! Alerting: each error event is recorded once and the alert recipients are emailed about it
//! exactly once, however often the event is delivered.
//!
//! The email's row in `notifications` is claimed before sending and marked sent after, so
//! concurrent deliveries send one email between them. The event becomes `processed` only once
//! the email is sent. A sender that dies between sending and marking leaves a stale claim that a
//! later delivery takes over: that is the one window where a second email can go out, with the
//! same `Message-ID`.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

use super::{Delivery, Handled, error_chain, park, read_message};
use crate::{
    config::AlertConfig,
    mail::{Mailer, error_alert},
    metrics::Metrics,
    store::{Claim, PgDeadLetterStore, PgEventStore, PgHandlingStore, StoreError},
};

/// What alerting needs, built once per cold start.
#[derive(Clone, Debug)]
pub struct Alerting<M> {
    events: PgEventStore,
    handling: PgHandlingStore,
    dead_letters: PgDeadLetterStore,
    mailer: M,
    alert: AlertConfig,
    /// The alert's recipients as stored in `notifications.recipients`.
    recipients: Vec<String>,
    claim_timeout: Duration,
    metrics: Metrics,
}

/// Why an error event must be delivered again.
#[derive(Debug, thiserror::Error)]
pub enum AlertError<E> {
    #[error("the database failed")]
    Store(#[from] StoreError),
    #[error("the alert email was not sent")]
    Mail(#[source] E),
    #[error("another invocation claimed the alert email and has not finished sending it")]
    HeldElsewhere,
}

impl<M: Mailer> Alerting<M> {
    /// `claim_timeout`: how long a claimed email may stay unsent before another delivery may
    /// send it (see [`crate::config::ErrorHandlerConfig::claim_timeout`]). Its handler emits
    /// metrics to stdout ([`Metrics::from_env`]); see [`Alerting::with_metrics`].
    pub fn new(pool: PgPool, mailer: M, alert: AlertConfig, claim_timeout: Duration) -> Self {
        let recipients = alert.recipients.iter().map(ToString::to_string).collect();
        Self {
            events: PgEventStore::new(pool.clone()),
            handling: PgHandlingStore::new(pool.clone()),
            dead_letters: PgDeadLetterStore::new(pool),
            mailer,
            alert,
            recipients,
            claim_timeout,
            metrics: Metrics::from_env(),
        }
    }

    /// The same, its handler emitting metrics to `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Where the error handler's metrics go.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records the error event a delivery names and sends its email unless it was sent. A
    /// delivery that is not an event message, or names no event, is parked and counts as handled.
    pub async fn handle(&self, delivery: Delivery<'_>) -> Result<Handled, AlertError<M::Error>> {
        let Some(message) = read_message(&self.dead_letters, delivery).await? else { return Ok(Handled::Parked) };
        let Some(event) = self.events.get(message.event_id).await? else {
            park(&self.dead_letters, delivery, "no event has this event_id").await?;
            return Ok(Handled::Parked);
        };
        self.handling.record_error(event.id, &self.recipients).await?;
        match self.handling.claim_email(event.id, &self.recipients, self.claim_timeout).await? {
            Claim::AlreadySent => {
                // An earlier delivery may have sent the email and died before marking the event.
                self.handling.mark_processed(event.id).await?;
                tracing::info!("error already recorded and its email sent");
                Ok(Handled::Before)
            }
            // Not a success: if that invocation dies, this delivery must come back to send.
            Claim::HeldElsewhere => Err(AlertError::HeldElsewhere),
            Claim::Claimed { attempt } => match self.mailer.send(&error_alert(&event, &self.alert)).await {
                Ok(()) => {
                    let sent_at = Utc::now();
                    self.handling.email_sent(event.id).await?;
                    tracing::info!(attempt, "error recorded and its email sent");
                    Ok(Handled::Now { received_at: event.received_at, email_sent_at: Some(sent_at) })
                }
                Err(error) => {
                    self.handling.email_failed(event.id, &error_chain(&error)).await?;
                    Err(AlertError::Mail(error))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sqlx::PgPool;
    use uuid::Uuid;

    use super::*;
    use crate::{
        bus::SCHEMA_VERSION,
        domain::{Event, NewEvent, Status},
        mail::Email,
    };

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

    fn alerting(pool: &PgPool, mailer: FakeMailer) -> Alerting<FakeMailer> {
        let alert = AlertConfig {
            from: "alerts@example.com".parse().unwrap(),
            recipients: vec!["ops@example.com".parse().unwrap()],
            api_base_url: "https://api.example.com".into(),
        };
        Alerting::new(pool.clone(), mailer, alert, Duration::from_secs(300))
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
        let correlation_id = crate::domain::CorrelationId::parse("test", "req-alerting").unwrap();
        PgEventStore::new(pool.clone())
            .insert(user, None, Some(&correlation_id), &[new])
            .await
            .unwrap()
            .events
            .remove(0)
    }

    /// Hands `alerting` an `error-events` delivery naming `event_id`.
    async fn deliver(alerting: &Alerting<FakeMailer>, event_id: Uuid) -> Result<Handled, AlertError<Refused>> {
        let body = serde_json::json!({
            "schema": SCHEMA_VERSION,
            "event_id": event_id,
            "status": "error",
            "source": "billing",
            "title": "Payment failed",
            "received_at": "2026-12-03T10:00:00Z",
        })
        .to_string();
        alerting.handle(Delivery { origin: "sqs:error-events", body: &body }).await
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
        let refusing = alerting(&pool, FakeMailer { refusal: Some("550 relay says no"), ..Default::default() });

        let outcome = deliver(&refusing, event.id).await;

        assert!(matches!(outcome, Err(AlertError::Mail(Refused(_)))), "{outcome:?}");
        let (state, attempts, last_error) = notification(&pool, event.id).await;
        assert_eq!((state.as_str(), attempts), ("failed", 1));
        assert_eq!(last_error.as_deref(), Some("550 relay says no"));
        assert_eq!(pipeline_state(&pool, event.id).await, "received");

        let working = alerting(&pool, FakeMailer::default());
        let handled = deliver(&working, event.id).await.unwrap();

        assert!(
            matches!(handled, Handled::Now { received_at, email_sent_at: Some(_) } if received_at == event.received_at),
            "{handled:?}"
        );
        let sent = working.mailer.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].message_id, format!("<{}@eventstream>", event.id));
        assert_eq!(sent[0].correlation_id.as_deref(), Some("req-alerting"));
        let (state, attempts, last_error) = notification(&pool, event.id).await;
        assert_eq!((state.as_str(), attempts, last_error), ("sent", 2, None));
        assert_eq!(pipeline_state(&pool, event.id).await, "processed");
    }

    #[sqlx::test(migrations = "../../migrations")]
    async fn an_email_claimed_elsewhere_is_retried_until_its_claim_goes_stale(pool: PgPool) {
        let event = error_event(&pool).await;
        let sender = alerting(&pool, FakeMailer::default());
        sqlx::query(
            "INSERT INTO notifications (event_id, channel, recipients, state, attempts, claimed_at)
             VALUES ($1, 'email', '{ops@example.com}', 'sending', 1, now())",
        )
        .bind(event.id)
        .execute(&pool)
        .await
        .unwrap();

        let outcome = deliver(&sender, event.id).await;

        assert!(matches!(outcome, Err(AlertError::HeldElsewhere)), "a live claim elsewhere must not count as done");
        assert!(sender.mailer.sent.lock().unwrap().is_empty());

        sqlx::query("UPDATE notifications SET claimed_at = now() - interval '301 seconds' WHERE event_id = $1")
            .bind(event.id)
            .execute(&pool)
            .await
            .unwrap();
        deliver(&sender, event.id).await.unwrap();

        assert_eq!(sender.mailer.sent.lock().unwrap().len(), 1);
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
        let sender = alerting(&pool, FakeMailer::default());

        assert_eq!(deliver(&sender, event.id).await.unwrap(), Handled::Before);

        assert!(sender.mailer.sent.lock().unwrap().is_empty());
        assert_eq!(pipeline_state(&pool, event.id).await, "processed");
    }

    #[sqlx::test(migrations = "../../migrations")]
    async fn an_unknown_event_is_parked_without_an_email(pool: PgPool) {
        let sender = alerting(&pool, FakeMailer::default());
        let unknown = Uuid::now_v7();

        assert_eq!(deliver(&sender, unknown).await.unwrap(), Handled::Parked);

        assert!(sender.mailer.sent.lock().unwrap().is_empty());
        let (origin, error): (String, String) =
            sqlx::query_as("SELECT origin, error FROM dead_letters").fetch_one(&pool).await.unwrap();
        assert_eq!(origin, "sqs:error-events");
        assert_eq!(error, "no event has this event_id");
    }
}
