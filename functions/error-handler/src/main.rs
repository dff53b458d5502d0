//! The error-handler function: records each error event that SQS `error-events` delivers and
//! emails the alert recipients about it once.

use eventstream::{
    config::ErrorHandlerConfig,
    handlers::{lazy::Lazy, sqs::error_service},
    mail::SmtpMailer,
    pipeline::Alerting,
    store::lazy_pool,
};
use lambda_runtime::{Error, run, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let service = Lazy::new(ErrorHandlerConfig::from_env()?, |config: ErrorHandlerConfig| {
        let mailer = SmtpMailer::new(&config.smtp)?;
        Ok(error_service(Alerting::new(lazy_pool(&config.database)?, mailer, config.alert, config.claim_timeout)))
    })?;
    run(service).await
}
