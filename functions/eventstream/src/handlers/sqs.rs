//! The warning and error handler functions' events: batches from SQS `warning-events` and
//! `error-events`.
//!
//! Each record of a batch is handled on its own, in its own span, and the response lists only the
//! records SQS should deliver again (`ReportBatchItemFailures`).

use std::{error::Error as StdError, sync::Arc};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::future::join_all;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tower::Service;
use tracing::{Instrument, field};

use crate::{
    mail::Mailer,
    pipeline::{AlertError, Alerting, Delivery, WarningHandling, error_chain},
    store::StoreError,
};

/// The warning-handler function's service over `warnings`.
pub fn warning_service(
    warnings: WarningHandling,
) -> impl Service<LambdaEvent<SqsEvent>, Response = SqsBatchResponse, Error = Error, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    let warnings = Arc::new(warnings);
    service_fn(move |event| {
        let warnings = warnings.clone();
        async move { handle_warning_events(&warnings, event).await }
    })
}

/// The error-handler function's service over `alerting`.
pub fn error_service<M: Mailer + Send + Sync + 'static>(
    alerting: Alerting<M>,
) -> impl Service<LambdaEvent<SqsEvent>, Response = SqsBatchResponse, Error = Error, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    let alerting = Arc::new(alerting);
    service_fn(move |event| {
        let alerting = alerting.clone();
        async move { handle_error_events(&alerting, event).await }
    })
}

/// Handles a batch from `warning-events`; the response names the messages to deliver again.
pub async fn handle_warning_events(
    warnings: &WarningHandling,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    Ok(handle_batch(warnings, &event.payload.records).await)
}

/// Handles a batch from `error-events`; the response names the messages to deliver again.
pub async fn handle_error_events<M: Mailer>(
    alerting: &Alerting<M>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    Ok(handle_batch(alerting, &event.payload.records).await)
}

/// A use case that takes one delivery at a time.
trait RecordHandler {
    type Error: StdError;

    fn handle(&self, delivery: Delivery<'_>) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl RecordHandler for WarningHandling {
    type Error = StoreError;

    async fn handle(&self, delivery: Delivery<'_>) -> Result<(), StoreError> {
        WarningHandling::handle(self, delivery).await
    }
}

impl<M: Mailer> RecordHandler for Alerting<M> {
    type Error = AlertError<M::Error>;

    async fn handle(&self, delivery: Delivery<'_>) -> Result<(), Self::Error> {
        Alerting::handle(self, delivery).await
    }
}

/// Runs `handler` over the records and reports those to deliver again. The records are
/// independent, so they are handled together: one slow email does not hold up the batch.
async fn handle_batch<H: RecordHandler>(handler: &H, records: &[SqsMessage]) -> SqsBatchResponse {
    let outcomes = join_all(records.iter().map(|record| async move {
        let span = tracing::info_span!(
            "sqs_record",
            message_id = record.message_id.as_deref().unwrap_or_default(),
            receive_count = record.attributes.get("ApproximateReceiveCount").map(String::as_str).unwrap_or_default(),
            event_id = field::Empty,
        );
        let queue = record.event_source_arn.as_deref().and_then(|arn| arn.rsplit(':').next()).unwrap_or("unknown");
        let origin = format!("sqs:{queue}");
        let delivery = Delivery { origin: &origin, body: record.body.as_deref().unwrap_or_default() };
        let outcome = handler.handle(delivery).instrument(span.clone()).await;
        if let Err(error) = &outcome {
            span.in_scope(|| tracing::warn!(error = %error_chain(error), "record failed; SQS will deliver it again"));
        }
        (record, outcome.is_ok())
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (record, handled) in outcomes {
        if !handled {
            // SQS always sets the id; an empty one would make Lambda retry the whole batch.
            response.add_failure(record.message_id.clone().unwrap_or_default());
        }
    }
    response
}
