//! The ingest function: EventStream's REST API behind API Gateway.

use eventstream::{
    bus::AmqpBus,
    config::ApiConfig,
    handlers::{
        http::lambda::run_http,
        rest::{AppState, malformed_request, service},
    },
    store::lazy_pool,
};
use lambda_http::{Error, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = ApiConfig::from_env()?;
    let pool = lazy_pool(&config.database)?;
    run_http(service(AppState::new(pool, &config.jwt, AmqpBus::from_config(&config.amqp))), malformed_request).await
}
