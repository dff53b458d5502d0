//! The benchmarks' RabbitMQ topologies: each run publishes to queues of its own, so nothing it
//! publishes reaches the stack's pipeline, and deletes them at the end.

use std::time::Duration;

use eventstream::bus::{AmqpBus, Queue, Topology};
use lapin::{
    Connection, ConnectionProperties,
    options::{ExchangeDeleteOptions, QueueDeleteOptions},
};
use secrecy::SecretString;

/// A bus as a function instance builds it, with AMQP_TIMEOUT_MS's default; it connects on first use.
pub fn function_bus(url: &str, topology: &Topology) -> AmqpBus {
    AmqpBus::new(SecretString::from(url), topology.clone(), Duration::from_secs(3))
}

/// Deletes the topology's queues and exchange. They would expire by themselves; deleting them
/// frees RabbitMQ's disk at once.
pub async fn delete_topology(url: &str, topology: &Topology) {
    let Ok(connection) = Connection::connect(url, ConnectionProperties::default()).await else {
        eprintln!("could not reach RabbitMQ to delete the exchange {}", topology.exchange);
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for queue in Queue::ALL {
            channel.queue_delete(topology.queue_name(queue).as_str().into(), QueueDeleteOptions::default()).await.ok();
        }
        channel.exchange_delete(topology.exchange.as_str().into(), ExchangeDeleteOptions::default()).await.ok();
        // Closed before its connection, which lapin otherwise reports as an error.
        channel.close(200, "done".into()).await.ok();
    }
    connection.close(200, "done".into()).await.ok();
}
