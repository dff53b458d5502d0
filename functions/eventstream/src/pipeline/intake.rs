//! Accepting events, whichever API they come through: store them, then hand them to the dispatcher.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    bus::{AmqpBus, EventMessage, Queue},
    domain::{CorrelationId, Event, FieldError, NewEvent, Status, reject_nul},
    metrics::Metrics,
    store::{IdempotencyClaim, Insertion, PgEventStore, StoreError},
};

/// The longest Idempotency-Key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// Stores validated events and publishes the new ones for dispatch.
#[derive(Clone)]
pub struct Intake {
    events: PgEventStore,
    bus: Arc<AmqpBus>,
    metrics: Metrics,
}

impl Intake {
    /// Emits its metrics to stdout ([`Metrics::from_env`]); see [`Intake::with_metrics`].
    pub fn new(events: PgEventStore, bus: Arc<AmqpBus>) -> Self {
        Self { events, bus, metrics: Metrics::from_env() }
    }

    /// The same, emitting its metrics to `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Stores `events` for `user_id`, all or none, under the request's `correlation_id`. Events
    /// stored by this call are published; a replay of an earlier request publishes nothing, since
    /// the original request did. Emits `EventsIngested` by status for the events it stored.
    pub async fn accept(
        &self,
        user_id: Uuid,
        claim: Option<&IdempotencyClaim>,
        correlation_id: &CorrelationId,
        events: &[NewEvent],
    ) -> Result<Insertion, StoreError> {
        let insertion = self.events.insert(user_id, claim, Some(correlation_id), events).await?;
        for event in &insertion.events {
            tracing::info!(
                event_id = %event.id,
                %correlation_id,
                status = %event.status,
                replayed = insertion.replayed,
                "event accepted"
            );
        }
        if !insertion.replayed {
            self.publish_for_dispatch(&insertion).await;
            self.count_ingested(&insertion.events);
        }
        Ok(insertion)
    }

    /// One line per status among `events`: `EventsIngested`, by status and in total.
    fn count_ingested(&self, events: &[Event]) {
        for status in Status::ALL {
            let count = events.iter().filter(|event| event.status == status).count();
            if count > 0 {
                self.metrics
                    .line()
                    .dimension("Status", status.as_str())
                    .group(&[&["Status"], &[]])
                    .count("EventsIngested", count)
                    .emit();
            }
        }
    }

    /// A failure does not fail the request: the events are stored and stay `received`, and the
    /// dispatcher's sweep publishes them later.
    async fn publish_for_dispatch(&self, insertion: &Insertion) {
        let messages: Vec<EventMessage> = insertion.events.iter().map(EventMessage::for_event).collect();
        if let Err(error) = self.bus.publish_batch(Queue::Dispatch, &messages).await {
            tracing::warn!(%error, count = messages.len(), "events stored but not published; the sweep will publish them");
        }
    }
}

/// The claim a request makes on its idempotency key. The fingerprint covers the operation and the
/// validated events, so formatting differences in what the client sent do not count as another request.
pub fn idempotency_claim(
    field: &str,
    key: &str,
    operation: &str,
    events: &[NewEvent],
) -> Result<IdempotencyClaim, FieldError> {
    reject_nul(field, key)?;
    if !(1..=MAX_IDEMPOTENCY_KEY_CHARS).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"),
        ));
    }
    let mut hasher = Sha256::new();
    hasher.update(operation.as_bytes());
    hasher.update(serde_json::to_vec(events).expect("validated events always serialize"));
    Ok(IdempotencyClaim { key: key.to_string(), fingerprint: hasher.finalize().to_vec() })
}
