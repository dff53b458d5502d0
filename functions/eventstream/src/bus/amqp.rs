use std::time::Duration;

use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::{EventMessage, MAX_EVENTS_PER_MESSAGE, Queue, Topology};
use crate::config::AmqpConfig;

/// Persistent: the broker writes the message to disk before it confirms it.
const PERSISTENT: u8 = 2;

/// Why a publish did not reach the broker's disk.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot reach RabbitMQ: {0}")]
    Connect(#[source] lapin::Error),
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(Duration),
    #[error("RabbitMQ refused the publish: {0}")]
    Publish(#[source] lapin::Error),
    #[error("RabbitMQ did not confirm {0} of the messages")]
    NotConfirmed(usize),
}

/// Declares the durable exchange and queues, each bound by its own name. Idempotent: whoever
/// connects first (ingest, dispatch, the bridge) creates them.
pub async fn declare_topology(channel: &Channel, topology: &Topology) -> Result<(), lapin::Error> {
    let ephemeral = topology.expires.is_some();
    let exchange = ExchangeDeclareOptions { durable: !ephemeral, auto_delete: ephemeral, ..Default::default() };
    channel
        .exchange_declare(topology.exchange.as_str().into(), ExchangeKind::Direct, exchange, FieldTable::default())
        .await?;
    let mut arguments = FieldTable::default();
    if let Some(expires) = topology.expires {
        arguments.insert("x-expires".into(), AMQPValue::LongUInt(expires.as_millis() as u32));
    }
    for queue in Queue::ALL {
        let name = topology.queue_name(queue);
        channel.queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), arguments.clone()).await?;
        channel
            .queue_bind(
                name.as_str().into(),
                topology.exchange.as_str().into(),
                name.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Publishes event messages with publisher confirms over one connection per process, made on
/// first use and made again when it was lost (a Lambda environment frozen between invocations
/// finds its connection closed by the broker).
pub struct AmqpBus {
    url: SecretString,
    topology: Topology,
    timeout: Duration,
    channel: Mutex<Option<Channel>>,
}

impl AmqpBus {
    pub fn new(url: SecretString, topology: Topology, timeout: Duration) -> Self {
        Self { url, topology, timeout, channel: Mutex::new(None) }
    }

    /// The publisher a deployment's configuration describes; it connects on first use.
    pub fn from_config(config: &AmqpConfig) -> Self {
        Self::new(config.url.clone(), Topology::with_prefix(&config.queue_prefix), config.timeout)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Publishes each event as a message of its own to `queue` and returns once the broker
    /// confirmed them all: for the handler queues, whose consumers take events one by one.
    #[tracing::instrument(skip_all, fields(queue = queue.role(), events = messages.len()))]
    pub async fn publish(&self, queue: Queue, messages: &[EventMessage]) -> Result<(), BusError> {
        let outgoing: Vec<Outgoing> = messages
            .iter()
            .map(|message| Outgoing {
                body: message.to_bytes(),
                message_id: Some(message.event_id.to_string()),
                correlation_id: message.correlation_id.clone(),
            })
            .collect();
        self.send(queue, &outgoing).await
    }

    /// Publishes the events to `queue` together, up to [`MAX_EVENTS_PER_MESSAGE`] in a message,
    /// and returns once the broker confirmed them all: for `dispatch`, which routes many at once.
    /// Events of different correlation ids (the sweep's) go in different messages, so that each
    /// message's `correlation_id` property is true of every event it carries.
    #[tracing::instrument(skip_all, fields(queue = queue.role(), events = messages.len()))]
    pub async fn publish_batch(&self, queue: Queue, messages: &[EventMessage]) -> Result<(), BusError> {
        let outgoing: Vec<Outgoing> = by_correlation_id(messages)
            .into_iter()
            .flat_map(|(correlation_id, group)| {
                let chunks: Vec<Vec<EventMessage>> =
                    group.chunks(MAX_EVENTS_PER_MESSAGE).map(<[EventMessage]>::to_vec).collect();
                chunks.into_iter().map(move |chunk| Outgoing {
                    body: EventMessage::batch_to_bytes(&chunk),
                    message_id: None,
                    correlation_id: correlation_id.clone(),
                })
            })
            .collect();
        self.send(queue, &outgoing).await
    }

    /// A failure on a connection that was already open is retried once on a new connection.
    async fn send(&self, queue: Queue, messages: &[Outgoing]) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut slot = self.channel.lock().await;
        let reused = slot.as_ref().is_some_and(|channel| channel.status().connected());
        if !reused {
            *slot = Some(self.connect().await?);
        }
        let channel = slot.as_ref().expect("a channel was just set");
        match self.publish_on(channel, queue, messages).await {
            Ok(()) => Ok(()),
            Err(error) if reused => {
                tracing::warn!(%error, "publish failed on an old connection; reconnecting");
                *slot = Some(self.connect().await?);
                let channel = slot.as_ref().expect("a channel was just set");
                self.publish_on(channel, queue, messages).await.inspect_err(|_| *slot = None)
            }
            Err(error) => {
                *slot = None;
                Err(error)
            }
        }
    }

    async fn connect(&self) -> Result<Channel, BusError> {
        let connect = async {
            let connection = Connection::connect(self.url.expose_secret(), ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            declare_topology(&channel, &self.topology).await?;
            Ok::<_, lapin::Error>(channel)
        };
        let channel = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| BusError::Timeout(self.timeout))?
            .map_err(BusError::Connect)?;
        tracing::info!("connected to RabbitMQ");
        Ok(channel)
    }

    async fn publish_on(&self, channel: &Channel, queue: Queue, messages: &[Outgoing]) -> Result<(), BusError> {
        let routing_key = self.topology.queue_name(queue);
        let publish = async {
            let mut confirms = Vec::with_capacity(messages.len());
            for message in messages {
                let mut properties = BasicProperties::default()
                    .with_delivery_mode(PERSISTENT)
                    .with_content_type("application/json".into());
                if let Some(id) = &message.message_id {
                    properties = properties.with_message_id(id.as_str().into());
                }
                // A short string in AMQP: an id too long for one travels in the body only.
                if let Some(id) = message.correlation_id.as_deref().filter(|id| id.len() <= 255) {
                    properties = properties.with_correlation_id(id.into());
                }
                let confirm = channel
                    .basic_publish(
                        self.topology.exchange.as_str().into(),
                        routing_key.as_str().into(),
                        // Mandatory: a message no queue takes comes back instead of vanishing.
                        BasicPublishOptions { mandatory: true, ..Default::default() },
                        &message.body,
                        properties,
                    )
                    .await
                    .map_err(BusError::Publish)?;
                confirms.push(confirm);
            }
            let mut unconfirmed = 0;
            for confirm in confirms {
                let confirmation = confirm.await.map_err(BusError::Publish)?;
                if !confirmation.is_ack() || confirmation.take_message().is_some() {
                    unconfirmed += 1;
                }
            }
            if unconfirmed > 0 {
                return Err(BusError::NotConfirmed(unconfirmed));
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, publish).await.map_err(|_| BusError::Timeout(self.timeout))?
    }
}

/// A message as it goes to the broker.
struct Outgoing {
    body: Vec<u8>,
    /// The event's id, when the message carries one event.
    message_id: Option<String>,
    /// The AMQP `correlation_id` property: the id every event of the message shares.
    correlation_id: Option<String>,
}

/// The messages grouped by correlation id, groups in the order of their first message.
fn by_correlation_id(messages: &[EventMessage]) -> Vec<(Option<String>, Vec<EventMessage>)> {
    let mut groups: Vec<(Option<String>, Vec<EventMessage>)> = Vec::new();
    for message in messages {
        match groups.iter_mut().find(|(id, _)| *id == message.correlation_id) {
            Some((_, group)) => group.push(message.clone()),
            None => groups.push((message.correlation_id.clone(), vec![message.clone()])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::{bus::SCHEMA_VERSION, domain::Status};

    fn message(correlation_id: Option<&str>) -> EventMessage {
        EventMessage {
            schema: SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            status: Status::Error,
            source: None,
            title: "t".into(),
            received_at: Utc::now(),
            correlation_id: correlation_id.map(str::to_string),
        }
    }

    #[test]
    fn events_are_grouped_by_correlation_id_in_order_of_first_appearance() {
        let messages = [message(Some("a")), message(None), message(Some("b")), message(Some("a")), message(None)];
        let groups = by_correlation_id(&messages);
        let shape: Vec<(Option<&str>, Vec<Uuid>)> = groups
            .iter()
            .map(|(id, group)| (id.as_deref(), group.iter().map(|message| message.event_id).collect()))
            .collect();
        let ids: Vec<Uuid> = messages.iter().map(|message| message.event_id).collect();
        assert_eq!(
            shape,
            vec![(Some("a"), vec![ids[0], ids[3]]), (None, vec![ids[1], ids[4]]), (Some("b"), vec![ids[2]])]
        );
    }
}
