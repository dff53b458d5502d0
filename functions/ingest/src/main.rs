//! The ingest function: EventStream's REST API behind API Gateway.

use eventstream::{
    bus::AmqpBus,
    config::ApiConfig,
    handlers::{
        http::lambda::run_http,
        lazy::Lazy,
        rest::{AppState, malformed_request, service},
    },
    store::lazy_pool,
};
use lambda_http::{Error, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let service = Lazy::new(ApiConfig::from_env()?, |config: ApiConfig| {
        let pool = lazy_pool(&config.database)?;
        Ok(service(AppState::new(pool, &config.jwt, AmqpBus::from_config(&config.amqp))))
    })?;
    run_http(service, malformed_request).await
}
