//! The dispatch function: Amazon MQ (RabbitMQ) batches in, routed events out; on a schedule,
//! the sweep of events stuck before routing.

use eventstream::{
    bus::AmqpBus, config::DispatchConfig, handlers::dispatch::handle, pipeline::Dispatcher, store::lazy_pool,
};
use lambda_runtime::{Error, run, service_fn, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = DispatchConfig::from_env()?;
    let dispatcher = Dispatcher::new(lazy_pool(&config.database)?, AmqpBus::from_config(&config.amqp), config.sweep);
    run(service_fn(|event| handle(&dispatcher, event))).await
}
