//! Dispatch: each stored event is routed by the routing rules to the handler they name, or
//! finished; and events whose publish for dispatch was lost are published again (the sweep).

use std::collections::{HashMap, hash_map::Entry};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::Delivery;
use crate::{
    bus::{AmqpBus, BusError, EventMessage, Queue},
    config::SweepConfig,
    domain::Handler,
    metrics::{Metrics, Unit, millis_between},
    store::{PgDeadLetterStore, PgEventStore, PgRoutingStore, Routing, StoreError},
};

/// What one dispatch did, returned as the function's result and logged.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct DispatchReport {
    /// Published to a handler queue.
    pub routed: usize,
    /// Finished at dispatch: no rule sends them further.
    pub finished: usize,
    /// Routed by an earlier delivery of the same message: nothing done again.
    pub already_routed: usize,
    /// Unreadable or unknown messages kept in `dead_letters`.
    pub parked: usize,
    /// Stuck events the sweep published again.
    pub republished: usize,
}

/// A batch could not be dispatched; the whole batch is delivered again.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// What dispatch needs, built once per cold start.
pub struct Dispatcher {
    events: PgEventStore,
    routing: PgRoutingStore,
    dead_letters: PgDeadLetterStore,
    bus: AmqpBus,
    sweep: SweepConfig,
    metrics: Metrics,
}

impl Dispatcher {
    /// Emits its metrics to stdout ([`Metrics::from_env`]); see [`Dispatcher::with_metrics`].
    pub fn new(pool: PgPool, bus: AmqpBus, sweep: SweepConfig) -> Self {
        Self {
            events: PgEventStore::new(pool.clone()),
            routing: PgRoutingStore::new(pool.clone()),
            dead_letters: PgDeadLetterStore::new(pool),
            bus,
            sweep,
            metrics: Metrics::from_env(),
        }
    }

    /// The same, emitting its metrics to `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Routes the events of a batch of `dispatch` queue messages, each body base64 as the Amazon
    /// MQ event source delivers it. Publishing comes before recording, so a crash in between only
    /// means the redelivered batch publishes again, which the handlers absorb; once recorded, a
    /// redelivery changes nothing.
    #[tracing::instrument(skip_all, fields(messages = deliveries.len()))]
    pub async fn dispatch(&self, deliveries: &[Delivery<'_>]) -> Result<DispatchReport, DispatchError> {
        let mut report = DispatchReport::default();
        let mut messages: HashMap<Uuid, EventMessage> = HashMap::new();
        let mut order = Vec::new();
        for delivery in deliveries {
            match EventMessage::parse_batch_base64(delivery.body) {
                Ok(events) => {
                    for message in events {
                        if let Entry::Vacant(slot) = messages.entry(message.event_id) {
                            order.push(message.event_id);
                            slot.insert(message);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, origin = delivery.origin, "unreadable message parked");
                    self.dead_letters.park(delivery.origin, delivery.body, &error.to_string()).await?;
                    report.parked += 1;
                }
            }
        }
        if order.is_empty() {
            return Ok(report);
        }

        let mut outgoing: HashMap<Handler, Vec<EventMessage>> = HashMap::new();
        let mut routings = Vec::new();
        let mut finished = Vec::new();
        for decision in self.routing.decide(&order).await? {
            let message = &messages[&decision.event_id];
            if !decision.known {
                let error = "no stored event has this id";
                tracing::warn!(event_id = %decision.event_id, error, "message parked");
                let body = String::from_utf8_lossy(&message.to_bytes()).into_owned();
                self.dead_letters.park("rabbitmq:dispatch", &body, error).await?;
                report.parked += 1;
            } else if decision.already_routed {
                report.already_routed += 1;
            } else {
                match decision.target {
                    Some(handler) => outgoing.entry(handler).or_default().push(message.clone()),
                    None => {
                        report.finished += 1;
                        finished.push(message);
                    }
                }
                routings.push(Routing {
                    event_id: decision.event_id,
                    rule_id: decision.rule_id,
                    target: decision.target,
                });
            }
        }
        for (handler, messages) in &outgoing {
            self.bus.publish(Queue::from(*handler), messages).await?;
            report.routed += messages.len();
        }
        if !routings.is_empty() {
            self.routing.record(&routings).await?;
        }
        let routed_at = Utc::now();
        let targets = outgoing
            .iter()
            .map(|(handler, messages)| (handler.as_str(), messages.iter().collect::<Vec<_>>()))
            .chain([("none", finished)]);
        for (target, messages) in targets {
            for message in &messages {
                tracing::info!(
                    event_id = %message.event_id,
                    correlation_id = message.correlation_id.as_deref(),
                    target,
                    "event routed"
                );
            }
            self.count_routed(target, &messages, routed_at);
        }
        Ok(report)
    }

    /// `EventsRouted` to `target` (by target and in total) and each event's `DispatchLatency`.
    fn count_routed(&self, target: &str, messages: &[&EventMessage], routed_at: DateTime<Utc>) {
        if messages.is_empty() {
            return;
        }
        self.metrics
            .line()
            .dimension("Target", target)
            .group(&[&["Target"], &[]])
            .count("EventsRouted", messages.len())
            .group(&[&[]])
            .values(
                "DispatchLatency",
                Unit::Milliseconds,
                messages.iter().map(|message| millis_between(message.received_at, routed_at)),
            )
            .emit();
    }

    /// Publishes events left `received` longer than the sweep's age to `dispatch` again, each
    /// with its correlation id. Every run emits `EventsRepublished` and the age of the oldest
    /// event not yet routed, `OldestUndispatchedAgeSeconds` (0 when none): the backlog an alarm
    /// watches.
    #[tracing::instrument(skip_all)]
    pub async fn sweep(&self) -> Result<DispatchReport, DispatchError> {
        let stuck = self.events.undispatched(self.sweep.older_than, self.sweep.limit).await?;
        if !stuck.is_empty() {
            tracing::warn!(count = stuck.len(), "events were stuck before dispatch; publishing them again");
            let messages: Vec<EventMessage> = stuck.iter().map(EventMessage::for_event).collect();
            self.bus.publish_batch(Queue::Dispatch, &messages).await?;
            for event in &stuck {
                tracing::info!(
                    event_id = %event.id,
                    correlation_id = event.correlation_id.as_deref(),
                    "event republished for dispatch"
                );
            }
        }
        let oldest = self.events.oldest_undispatched().await?;
        let age = oldest.map_or(0.0, |oldest| millis_between(oldest, Utc::now()) / 1000.0);
        self.metrics
            .line()
            .group(&[&[]])
            .count("EventsRepublished", stuck.len())
            .values("OldestUndispatchedAgeSeconds", Unit::Seconds, [age])
            .emit();
        Ok(DispatchReport { republished: stuck.len(), ..Default::default() })
    }
}
