//! The ingest function: EventStream's REST API behind API Gateway.

use eventstream::{
    config::ApiConfig,
    handlers::http::{AppState, service},
    store::lazy_pool,
};
use lambda_http::{Error, run, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = ApiConfig::from_env()?;
    let pool = lazy_pool(&config.database)?;
    run(service(AppState::new(pool, &config.jwt, config.amqp.bus()))).await
}
