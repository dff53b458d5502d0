//! The dispatch function: routes each event of an Amazon MQ (RabbitMQ) batch by the routing
//! rules, and on a schedule sweeps up events whose publish was lost.

use std::{collections::HashMap, time::Duration};

use aws_lambda_events::rabbitmq::RabbitMqEvent;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};

use crate::{
    bus::{AmqpBus, BusError, EventMessage, Queue},
    store::{PgRoutingStore, Routing, StoreError},
};

/// What the dispatch function is invoked with: the schedule's `{"action": "sweep"}`, or a batch
/// of RabbitMQ messages from the Amazon MQ event source (or from the bridge, which plays it locally).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DispatchRequest {
    Scheduled(ScheduledAction),
    Batch(RabbitMqEvent),
}

/// What the schedule asks for, as `{"action": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum ScheduledAction {
    Sweep,
}

/// What one invocation did, returned as its result and logged.
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

impl From<DispatchError> for Diagnostic {
    fn from(error: DispatchError) -> Self {
        let error_type = match error {
            DispatchError::Store(_) => "Dispatch.StoreError",
            DispatchError::Bus(_) => "Dispatch.BusError",
        };
        Diagnostic { error_type: error_type.into(), error_message: error.to_string() }
    }
}

/// How the sweep finds stuck events.
#[derive(Clone, Copy, Debug)]
pub struct SweepSettings {
    /// An event still `received` after this long is taken as lost on its way to dispatch.
    pub older_than: Duration,
    /// At most this many are published again per run; the next run takes the rest.
    pub limit: i64,
}

/// Built once per cold start.
pub struct DispatchState {
    pub routing: PgRoutingStore,
    pub bus: AmqpBus,
    pub sweep: SweepSettings,
}

pub async fn handle(
    state: &DispatchState,
    event: LambdaEvent<DispatchRequest>,
) -> Result<DispatchReport, DispatchError> {
    let report = match event.payload {
        DispatchRequest::Scheduled(ScheduledAction::Sweep) => sweep(state).await?,
        DispatchRequest::Batch(batch) => dispatch(state, batch).await?,
    };
    tracing::info!(?report, "dispatch done");
    Ok(report)
}

/// Routes a batch. Publishing comes before recording, so a crash in between only means the
/// redelivered batch publishes again, which the handlers absorb; once recorded, a redelivery
/// changes nothing.
#[tracing::instrument(skip_all)]
async fn dispatch(state: &DispatchState, batch: RabbitMqEvent) -> Result<DispatchReport, DispatchError> {
    let mut report = DispatchReport::default();
    let mut messages: HashMap<uuid::Uuid, EventMessage> = HashMap::new();
    let mut order = Vec::new();
    for (queue, deliveries) in batch.messages_by_queue {
        let origin = format!("rabbitmq:{}", queue.split("::").next().unwrap_or(&queue));
        for delivery in deliveries {
            let body = delivery.data.unwrap_or_default();
            match EventMessage::parse_batch_base64(&body) {
                Ok(events) => {
                    for message in events {
                        if let std::collections::hash_map::Entry::Vacant(slot) = messages.entry(message.event_id) {
                            order.push(message.event_id);
                            slot.insert(message);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, origin, "unreadable message parked");
                    state.routing.park(&origin, &body, &error.to_string()).await?;
                    report.parked += 1;
                }
            }
        }
    }
    if order.is_empty() {
        return Ok(report);
    }

    let mut outgoing: HashMap<Queue, Vec<EventMessage>> = HashMap::new();
    let mut routings = Vec::new();
    for decision in state.routing.decide(&order).await? {
        let message = &messages[&decision.event_id];
        if !decision.known {
            let error = "no stored event has this id";
            tracing::warn!(event_id = %decision.event_id, error, "message parked");
            state.routing.park("rabbitmq:dispatch", &String::from_utf8_lossy(&message.to_bytes()), error).await?;
            report.parked += 1;
        } else if decision.already_routed {
            report.already_routed += 1;
        } else {
            match decision.target {
                Some(queue) => outgoing.entry(queue).or_default().push(message.clone()),
                None => report.finished += 1,
            }
            routings.push(Routing { event_id: decision.event_id, rule_id: decision.rule_id, target: decision.target });
        }
    }
    for (queue, messages) in outgoing {
        state.bus.publish(queue, &messages).await?;
        report.routed += messages.len();
    }
    if !routings.is_empty() {
        state.routing.record(&routings).await?;
    }
    Ok(report)
}

/// Publishes events left `received` to `dispatch` again.
#[tracing::instrument(skip_all)]
async fn sweep(state: &DispatchState) -> Result<DispatchReport, DispatchError> {
    let stuck = state.routing.stuck(state.sweep.older_than, state.sweep.limit).await?;
    if !stuck.is_empty() {
        tracing::warn!(count = stuck.len(), "events were stuck before dispatch; publishing them again");
        state.bus.publish_batch(Queue::Dispatch, &stuck).await?;
    }
    Ok(DispatchReport { republished: stuck.len(), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_schedule_input_is_a_sweep_and_anything_else_a_batch() {
        let sweep: DispatchRequest = serde_json::from_value(json!({ "action": "sweep" })).unwrap();
        assert!(matches!(sweep, DispatchRequest::Scheduled(ScheduledAction::Sweep)));
        let batch: DispatchRequest =
            serde_json::from_str(include_str!("../../../../events/dispatch-rabbitmq.json")).unwrap();
        let DispatchRequest::Batch(batch) = batch else { panic!("a RabbitMQ event read as a sweep") };
        assert_eq!(batch.messages_by_queue["dispatch::/"].len(), 4);
        assert!(
            serde_json::from_value::<DispatchRequest>(json!({ "action": "delete-everything" }))
                .is_ok_and(|request| matches!(request, DispatchRequest::Batch(_)))
        );
    }
}
