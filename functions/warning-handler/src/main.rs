//! The warning-handler function: records each warning event that SQS `warning-events` delivers.

use eventstream::{
    config::DatabaseConfig,
    handlers::{lazy::Lazy, sqs::warning_service},
    pipeline::WarningHandling,
    store::lazy_pool,
};
use lambda_runtime::{Error, run, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let service = Lazy::new(DatabaseConfig::from_env()?, |database: DatabaseConfig| {
        Ok(warning_service(WarningHandling::new(lazy_pool(&database)?)))
    })?;
    run(service).await
}
