//! The graphql function: EventStream's analytics API behind API Gateway.

use eventstream::{
    bus::AmqpBus,
    config::ApiConfig,
    handlers::{
        graphql::{GraphqlState, malformed_request, router},
        http::{lambda::run_http, lambda_service},
        lazy::Lazy,
    },
    store::lazy_pool,
};
use lambda_http::{Error, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    // RabbitMQ too: createEvent hands new events to the pipeline, as ingest does.
    let service = Lazy::new(ApiConfig::from_env()?, |config: ApiConfig| {
        let pool = lazy_pool(&config.database)?;
        Ok(lambda_service(router(GraphqlState::new(pool, &config.jwt, AmqpBus::from_config(&config.amqp)))))
    })?;
    run_http(service, malformed_request).await
}
