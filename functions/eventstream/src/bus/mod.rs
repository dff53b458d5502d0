//! The event bus: RabbitMQ's topology, the message every stage passes on, and the publisher.

mod amqp;
mod message;

pub use amqp::{AmqpBus, BusError, declare_topology};
pub use message::{EventMessage, MAX_EVENTS_PER_MESSAGE, MessageError, SCHEMA_VERSION};

use crate::domain::Handler;

/// The queues of the pipeline, named by role; [`Topology`] gives their names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Every stored event, for the dispatcher.
    Dispatch,
    /// Warning events, for the bridge to SQS `warning-events`.
    Warning,
    /// Error events, for the bridge to SQS `error-events`.
    Error,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Dispatch, Queue::Warning, Queue::Error];

    /// The queue's part in the pipeline; its broker name is this under the topology's prefix.
    pub fn role(self) -> &'static str {
        match self {
            Queue::Dispatch => "dispatch",
            Queue::Warning => "warning",
            Queue::Error => "error",
        }
    }
}

/// The queue in front of a handler.
impl From<Handler> for Queue {
    fn from(handler: Handler) -> Self {
        match handler {
            Handler::Warning => Queue::Warning,
            Handler::Error => Queue::Error,
        }
    }
}

/// The exchange and queue names. A prefix keeps tests (or two stacks on one broker) apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub exchange: String,
    prefix: String,
    /// Set for short-lived topologies (tests): the broker deletes a queue unused for this long.
    pub expires: Option<std::time::Duration>,
}

impl Topology {
    pub fn with_prefix(prefix: &str) -> Self {
        Self { exchange: format!("{prefix}eventstream"), prefix: prefix.to_string(), expires: None }
    }

    /// A topology of its own under a random prefix, deleted by the broker once unused.
    pub fn ephemeral() -> Self {
        Self {
            expires: Some(std::time::Duration::from_secs(120)),
            ..Self::with_prefix(&format!("tmp-{}-", uuid::Uuid::now_v7().simple()))
        }
    }

    /// The broker's name for a queue; also its routing key on the exchange.
    pub fn queue_name(&self, queue: Queue) -> String {
        format!("{}{}", self.prefix, queue.role())
    }

    /// The queue a broker queue name stands for, if it is one of this topology's.
    pub fn queue_named(&self, name: &str) -> Option<Queue> {
        Queue::ALL.into_iter().find(|queue| self.queue_name(*queue) == name)
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_map_back() {
        let topology = Topology::with_prefix("t1-");
        assert_eq!(topology.exchange, "t1-eventstream");
        assert_eq!(topology.queue_name(Queue::Error), "t1-error");
        assert_eq!(topology.queue_named("t1-warning"), Some(Queue::Warning));
        assert_eq!(topology.queue_named("warning"), None);
        assert_eq!(Topology::default().queue_name(Queue::Dispatch), "dispatch");
    }

    #[test]
    fn each_handler_has_the_queue_of_its_name() {
        for handler in Handler::ALL {
            assert_eq!(Queue::from(handler).role(), handler.as_str());
        }
    }
}
