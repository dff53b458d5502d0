//! The ingest function: EventStream's REST API behind API Gateway.

use eventstream::{
    config::ApiConfig,
    handlers::http::{
        AppState,
        lambda::{malformed_request, run_http},
        service,
    },
    store::lazy_pool,
};
use lambda_http::{Error, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = ApiConfig::from_env()?;
    let pool = lazy_pool(&config.database)?;
    run_http(service(AppState::new(pool, &config.jwt, config.amqp.bus())), malformed_request).await
}
