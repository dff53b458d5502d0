//! The dispatch function: Amazon MQ (RabbitMQ) batches in, routed events out; on a schedule,
//! the sweep of events stuck before routing.

use eventstream::{
    config::DispatchConfig,
    handlers::dispatch::{DispatchState, handle},
    store::{PgRoutingStore, lazy_pool},
};
use lambda_runtime::{Error, run, service_fn, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = DispatchConfig::from_env()?;
    let state = DispatchState {
        routing: PgRoutingStore::new(lazy_pool(&config.database)?),
        bus: config.amqp.bus(),
        sweep: config.sweep,
    };
    run(service_fn(|event| handle(&state, event))).await
}
