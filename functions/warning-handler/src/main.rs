//! The warning-handler function: records each warning event that SQS `warning-events` delivers.

use eventstream::{
    config::DatabaseConfig, handlers::sqs::handle_warning_events, pipeline::WarningHandling, store::lazy_pool,
};
use lambda_runtime::{Error, run, service_fn, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let database = DatabaseConfig::from_env()?;
    let warnings = WarningHandling::new(lazy_pool(&database)?);
    run(service_fn(|event| handle_warning_events(&warnings, event))).await
}
