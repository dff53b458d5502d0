//! The dispatch function: Amazon MQ (RabbitMQ) batches in, routed events out; on a schedule,
//! the sweep of events stuck before routing.

use eventstream::{
    bus::AmqpBus,
    config::DispatchConfig,
    handlers::{dispatch::service, lazy::Lazy},
    pipeline::Dispatcher,
    store::lazy_pool,
};
use lambda_runtime::{Error, run, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let service = Lazy::new(DispatchConfig::from_env()?, |config: DispatchConfig| {
        Ok(service(Dispatcher::new(lazy_pool(&config.database)?, AmqpBus::from_config(&config.amqp), config.sweep)))
    })?;
    run(service).await
}
