//! The warning and error handler functions' events: batches from SQS `warning-events` and
//! `error-events`.
//!
//! Each record of a batch is handled on its own, in its own span (with the event's id and
//! correlation id), and the response lists only the records SQS should deliver again
//! (`ReportBatchItemFailures`). Each batch emits one metric line: `EventsHandled` and
//! `HandlingLatency` by `Handler`, and for errors `EmailsSent`, `EmailsFailed` and `EmailLatency`.

use std::{error::Error as StdError, sync::Arc};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tower::Service;
use tracing::{Instrument, field};

use crate::{
    domain::Handler,
    mail::Mailer,
    metrics::{Metrics, Unit, millis_between},
    pipeline::{AlertError, Alerting, Delivery, Handled, WarningHandling, error_chain},
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

/// The SQS message attribute the bridge copies the event's correlation id into.
pub const CORRELATION_ID_ATTRIBUTE: &str = "correlation_id";

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
    /// Which handler it is, the `Handler` dimension of its metrics.
    const HANDLER: Handler;

    fn handle(&self, delivery: Delivery<'_>) -> impl Future<Output = Result<Handled, Self::Error>> + Send;

    fn metrics(&self) -> &Metrics;

    /// Whether `error` means the alert email was refused (`EmailsFailed`).
    fn is_email_failure(_error: &Self::Error) -> bool {
        false
    }
}

impl RecordHandler for WarningHandling {
    type Error = StoreError;
    const HANDLER: Handler = Handler::Warning;

    async fn handle(&self, delivery: Delivery<'_>) -> Result<Handled, StoreError> {
        WarningHandling::handle(self, delivery).await
    }

    fn metrics(&self) -> &Metrics {
        WarningHandling::metrics(self)
    }
}

impl<M: Mailer> RecordHandler for Alerting<M> {
    type Error = AlertError<M::Error>;
    const HANDLER: Handler = Handler::Error;

    async fn handle(&self, delivery: Delivery<'_>) -> Result<Handled, Self::Error> {
        Alerting::handle(self, delivery).await
    }

    fn metrics(&self) -> &Metrics {
        Alerting::metrics(self)
    }

    fn is_email_failure(error: &Self::Error) -> bool {
        matches!(error, AlertError::Mail(_))
    }
}

/// How one record went: handled (and when), or failed (and whether its email was refused).
enum RecordOutcome {
    Handled { handled: Handled, at: DateTime<Utc> },
    Failed { email_refused: bool },
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
            // The bridge's attribute first; the body's, read by the use case, wins.
            correlation_id = record
                .message_attributes
                .get(CORRELATION_ID_ATTRIBUTE)
                .and_then(|attribute| attribute.string_value.as_deref()),
        );
        let queue = record.event_source_arn.as_deref().and_then(|arn| arn.rsplit(':').next()).unwrap_or("unknown");
        let origin = format!("sqs:{queue}");
        let delivery = Delivery { origin: &origin, body: record.body.as_deref().unwrap_or_default() };
        let outcome = match handler.handle(delivery).instrument(span.clone()).await {
            Ok(handled) => RecordOutcome::Handled { handled, at: Utc::now() },
            Err(error) => {
                span.in_scope(
                    || tracing::warn!(error = %error_chain(&error), "record failed; SQS will deliver it again"),
                );
                RecordOutcome::Failed { email_refused: H::is_email_failure(&error) }
            }
        };
        (record, outcome)
    }))
    .await;
    emit_metrics::<H>(handler.metrics(), outcomes.iter().map(|(_, outcome)| outcome));
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in outcomes {
        if matches!(outcome, RecordOutcome::Failed { .. }) {
            // SQS always sets the id; an empty one would make Lambda retry the whole batch.
            response.add_failure(record.message_id.clone().unwrap_or_default());
        }
    }
    response
}

/// The batch's one metric line.
fn emit_metrics<'a, H: RecordHandler>(metrics: &Metrics, outcomes: impl Iterator<Item = &'a RecordOutcome> + Clone) {
    let handled_now = outcomes.clone().filter_map(|outcome| match outcome {
        RecordOutcome::Handled { handled: Handled::Now { received_at, email_sent_at }, at } => {
            Some((*received_at, *email_sent_at, *at))
        }
        _ => None,
    });
    let line = metrics
        .line()
        .dimension("Handler", H::HANDLER.as_str())
        .group(&[&["Handler"]])
        .count("EventsHandled", handled_now.clone().count())
        .values(
            "HandlingLatency",
            Unit::Milliseconds,
            handled_now.clone().map(|(received_at, _, at)| millis_between(received_at, at)),
        );
    let line = match H::HANDLER {
        Handler::Warning => line,
        Handler::Error => {
            let sent: Vec<f64> = handled_now
                .filter_map(|(received_at, sent_at, _)| sent_at.map(|sent_at| millis_between(received_at, sent_at)))
                .collect();
            let refused =
                outcomes.filter(|outcome| matches!(outcome, RecordOutcome::Failed { email_refused: true })).count();
            line.group(&[&[]]).count("EmailsSent", sent.len()).count("EmailsFailed", refused).values(
                "EmailLatency",
                Unit::Milliseconds,
                sent,
            )
        }
    };
    line.emit();
}
