//! The dispatch function's events: a batch of RabbitMQ messages from the Amazon MQ event source
//! (or from the bridge, which plays it locally) to route, or the schedule's sweep.

use std::sync::Arc;

use aws_lambda_events::rabbitmq::RabbitMqEvent;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Deserialize;
use tower::Service;

use crate::pipeline::{Delivery, DispatchError, DispatchReport, Dispatcher};

/// What the dispatch function is invoked with: the schedule's `{"action": "sweep"}`, or a batch
/// of RabbitMQ messages.
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

impl From<DispatchError> for Diagnostic {
    fn from(error: DispatchError) -> Self {
        let error_type = match error {
            DispatchError::Store(_) => "Dispatch.StoreError",
            DispatchError::Bus(_) => "Dispatch.BusError",
        };
        Diagnostic { error_type: error_type.into(), error_message: error.to_string() }
    }
}

/// The dispatch function's service over `dispatcher`.
pub fn service(
    dispatcher: Dispatcher,
) -> impl Service<LambdaEvent<DispatchRequest>, Response = DispatchReport, Error = DispatchError, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    let dispatcher = Arc::new(dispatcher);
    service_fn(move |event| {
        let dispatcher = dispatcher.clone();
        async move { handle(&dispatcher, event).await }
    })
}

pub async fn handle(
    dispatcher: &Dispatcher,
    event: LambdaEvent<DispatchRequest>,
) -> Result<DispatchReport, DispatchError> {
    let report = match event.payload {
        DispatchRequest::Scheduled(ScheduledAction::Sweep) => dispatcher.sweep().await?,
        DispatchRequest::Batch(batch) => {
            // The event source names a queue `name::vhost`; dead letters name it `rabbitmq:name`.
            let bodies: Vec<(String, String)> = batch
                .messages_by_queue
                .into_iter()
                .flat_map(|(queue, messages)| {
                    let origin = format!("rabbitmq:{}", queue.split("::").next().unwrap_or(&queue));
                    messages.into_iter().map(move |message| (origin.clone(), message.data.unwrap_or_default()))
                })
                .collect();
            let deliveries: Vec<Delivery> = bodies.iter().map(|(origin, body)| Delivery { origin, body }).collect();
            dispatcher.dispatch(&deliveries).await?
        }
    };
    tracing::info!(?report, "dispatch done");
    Ok(report)
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
