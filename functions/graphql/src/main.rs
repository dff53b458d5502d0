//! The graphql function: EventStream's analytics API behind API Gateway.

use eventstream::{
    config::ApiConfig,
    handlers::{
        graphql::{GraphqlState, router},
        http::lambda_service,
    },
    store::lazy_pool,
};
use lambda_http::{Error, run, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    // RabbitMQ too: createEvent hands new events to the pipeline, as ingest does.
    let config = ApiConfig::from_env()?;
    let pool = lazy_pool(&config.database)?;
    run(lambda_service(router(GraphqlState::new(pool, &config.jwt, config.amqp.bus())))).await
}
