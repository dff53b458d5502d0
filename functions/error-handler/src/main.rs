//! The error-handler function: records each error event that SQS `error-events` delivers and
//! emails the alert recipients about it once.

use eventstream::{
    config::ErrorHandlerConfig, handlers::sqs::handle_error_events, mail::SmtpMailer, pipeline::Alerting,
    store::lazy_pool,
};
use lambda_runtime::{Error, run, service_fn, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = ErrorHandlerConfig::from_env()?;
    let mailer = SmtpMailer::new(&config.smtp)?;
    let alerting = Alerting::new(lazy_pool(&config.database)?, mailer, config.alert, config.claim_timeout);
    run(service_fn(|event| handle_error_events(&alerting, event))).await
}
