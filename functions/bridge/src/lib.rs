//! The bridge: moves RabbitMQ's `warning` and `error` queues into their SQS queues and, where
//! no Amazon MQ event source exists (LocalStack), drains `dispatch` into the dispatch function.
//!
//! Each queue has its own channel and consumer with a bounded prefetch. Deliveries are gathered
//! into batches (a short window, or until a batch is full); every batch is sent on its own task,
//! so up to `prefetch / batch size` batches are in flight per queue. A message is acknowledged
//! only after SQS accepted it (or the function succeeded); refusals and failed calls are retried
//! with backoff and nothing is ever rejected. A lost connection is made again with backoff; what
//! was unacknowledged RabbitMQ delivers again, and the consumers downstream are idempotent.
//!
//! In AWS the same forwarding runs as a Lambda function fed by Amazon MQ's event source: see
//! [`lambda`] and the `bridge-lambda` binary.

pub mod batch;
pub mod config;
pub mod dispatch;
pub mod lambda;
pub mod sqs;
pub mod stats;

use std::{sync::Arc, time::Duration};

use aws_config::SdkConfig;
use eventstream::bus::{Queue, declare_topology};
use lapin::{
    Connection, ConnectionProperties,
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use secrecy::ExposeSecret;
use tokio::{
    sync::watch,
    task::JoinSet,
    time::{Instant, sleep, sleep_until},
};

pub use crate::config::BridgeConfig;
use crate::{
    batch::{Backoff, Ending, next_batch},
    dispatch::{DispatchFunction, DispatchInvoker, LambdaFunction},
    sqs::SqsForwarder,
    stats::{Snapshot, Stats},
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that lasted this long was healthy: the next reconnection starts its backoff over.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(60);

/// When in-flight batches stop retrying: unset while the bridge runs, set when it stops
/// (after the drain timeout) or when the connection their acknowledgements need is lost (now).
type GiveUp = watch::Receiver<Option<Instant>>;

/// Runs the bridge until `shutdown` completes, then drains: stops taking messages, finishes the
/// batches in flight (sent and acknowledged, or left to RabbitMQ after the drain timeout) and
/// closes the connection. `dispatch` is drained into the Lambda function `DISPATCH_FUNCTION`
/// names, if any.
pub async fn run(config: BridgeConfig, aws: &SdkConfig, shutdown: impl Future<Output = ()>) {
    let dispatch = config.dispatch_function.clone().map(|function| {
        Arc::new(LambdaFunction { client: aws_sdk_lambda::Client::new(aws), function }) as Arc<dyn DispatchFunction>
    });
    run_with_dispatch(config, aws, dispatch, shutdown).await;
}

/// Runs the bridge as [`run`] does, but drains `dispatch` into `dispatch_function` (not at all
/// when `None`), whatever `config.dispatch_function` says: how a benchmark runs the dispatch
/// handler in-process behind the bridge's own consumer. Returns what the bridge forwarded.
pub async fn run_with_dispatch(
    config: BridgeConfig,
    aws: &SdkConfig,
    dispatch_function: Option<Arc<dyn DispatchFunction>>,
    shutdown: impl Future<Output = ()>,
) -> Snapshot {
    let stats = Arc::new(Stats::default());
    let lanes = lanes(&config, aws, dispatch_function);
    let (stop, mut stopping) = watch::channel(None);
    let bridge = async {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            let started = Instant::now();
            if let Err(error) = session(&config, &lanes, &mut stopping.clone(), &stats).await {
                tracing::warn!(%error, "RabbitMQ session failed");
            }
            if stopping.borrow().is_some() {
                return;
            }
            if started.elapsed() > HEALTHY_CONNECTION {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::info!(?delay, "reconnecting to RabbitMQ");
            tokio::select! {
                () = sleep(delay) => {}
                _ = stopping.wait_for(Option::is_some) => return,
            }
        }
    };
    let stop_on_shutdown = async {
        shutdown.await;
        tracing::info!(drain_timeout = ?config.drain_timeout, "stopping: finishing the batches in flight");
        stop.send_replace(Some(Instant::now() + config.drain_timeout));
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = bridge => {}
        () = stop_on_shutdown => {}
        () = stats.report_every(config.summary_interval) => {}
    }
    let totals = stats.snapshot();
    tracing::info!(
        warning = totals.warning,
        error = totals.error,
        dispatch = totals.dispatch,
        retries = totals.retries,
        "bridge stopped"
    );
    totals
}

/// Completes on SIGTERM (what ECS and `docker stop` send) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}

/// One queue the bridge consumes and where its messages go.
struct Lane {
    queue: Queue,
    destination: Arc<Destination>,
    batch_size: usize,
}

enum Destination {
    Sqs(SqsForwarder),
    Dispatch(DispatchInvoker),
}

impl Destination {
    async fn deliver(&self, deliveries: Vec<Delivery>, retry: &mut Retry) {
        match self {
            Destination::Sqs(forwarder) => forwarder.forward(deliveries, retry).await,
            Destination::Dispatch(invoker) => invoker.dispatch(deliveries, retry).await,
        }
    }
}

fn lanes(config: &BridgeConfig, aws: &SdkConfig, dispatch_function: Option<Arc<dyn DispatchFunction>>) -> Vec<Lane> {
    let sqs = aws_sdk_sqs::Client::new(aws);
    let forward = |queue, queue_url: &str| Lane {
        queue,
        destination: Arc::new(Destination::Sqs(SqsForwarder {
            client: sqs.clone(),
            queue_url: queue_url.to_string(),
            queue,
        })),
        batch_size: sqs::MAX_BATCH_ENTRIES,
    };
    let mut lanes =
        vec![forward(Queue::Warning, &config.warning_queue_url), forward(Queue::Error, &config.error_queue_url)];
    if let Some(function) = dispatch_function {
        let region = aws.region().map_or("us-east-1", |region| region.as_ref());
        lanes.push(Lane {
            queue: Queue::Dispatch,
            destination: Arc::new(Destination::Dispatch(DispatchInvoker {
                function,
                queue_key: format!("{}::{}", config.topology.queue_name(Queue::Dispatch), config.amqp_vhost),
                event_source_arn: format!(
                    "arn:aws:mq:{region}:000000000000:broker:eventstream-bridge:b-00000000-0000-0000-0000-000000000000"
                ),
            })),
            // A batch must fit in what the broker hands over unacknowledged.
            batch_size: dispatch::MAX_BATCH_MESSAGES.min(usize::from(config.prefetch)),
        });
    }
    lanes
}

/// Why a connection to RabbitMQ could not be used.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("RabbitMQ did not accept a connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
}

/// One connection's life: consumes every lane until the bridge stops or a consumer fails.
async fn session(
    config: &BridgeConfig,
    lanes: &[Lane],
    stopping: &mut GiveUp,
    stats: &Arc<Stats>,
) -> Result<(), SessionError> {
    // Named so that operators (and tests) can tell this connection apart from its neighbours.
    let properties = ConnectionProperties::default().with_connection_name(connection_name(config).into());
    let connection =
        tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(config.amqp_url.expose_secret(), properties))
            .await
            .map_err(|_| SessionError::ConnectTimeout(CONNECT_TIMEOUT))??;
    let consumed = consume(&connection, config, lanes, stopping, stats).await;
    // Closing hands every unacknowledged message back to its queue.
    if let Err(error) = connection.close(200, "bridge stopping".into()).await {
        tracing::debug!(%error, "closing the RabbitMQ connection failed");
    }
    consumed
}

/// The name the bridge's connection shows in RabbitMQ's management UI and `rabbitmqctl`.
pub fn connection_name(config: &BridgeConfig) -> String {
    format!("eventstream-bridge {}", config.topology.exchange)
}

async fn consume(
    connection: &Connection,
    config: &BridgeConfig,
    lanes: &[Lane],
    stopping: &mut GiveUp,
    stats: &Arc<Stats>,
) -> Result<(), SessionError> {
    declare_topology(&connection.create_channel().await?, &config.topology).await?;
    let (give_up, give_up_at) = watch::channel(None);
    let mut pumps = JoinSet::new();
    for lane in lanes {
        let channel = connection.create_channel().await?;
        channel.basic_qos(config.prefetch, BasicQosOptions::default()).await?;
        let queue = config.topology.queue_name(lane.queue);
        let consumer = channel
            .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await?;
        let pump = Pump {
            queue: lane.queue,
            destination: lane.destination.clone(),
            batch_size: lane.batch_size,
            window: config.batch_window,
            give_up_at: give_up_at.clone(),
            stats: stats.clone(),
        };
        pumps.spawn(pump.run(consumer));
    }
    tracing::info!(queues = lanes.len(), prefetch = config.prefetch, "consuming from RabbitMQ");
    tokio::select! {
        stopped = stopping.wait_for(Option::is_some) => {
            give_up.send_replace(stopped.map_or(Some(Instant::now()), |deadline| *deadline));
        }
        Some(ended) = pumps.join_next() => {
            tracing::warn!(ending = ?ended, "a consumer stopped; reconnecting");
            give_up.send_replace(Some(Instant::now()));
        }
    }
    while pumps.join_next().await.is_some() {}
    Ok(())
}

/// Moves one queue's deliveries to its destination.
struct Pump {
    queue: Queue,
    destination: Arc<Destination>,
    batch_size: usize,
    window: Duration,
    give_up_at: GiveUp,
    stats: Arc<Stats>,
}

impl Pump {
    /// Batches deliveries until told to stop, then waits for the batches in flight; or until
    /// the consumer ends.
    async fn run(self, mut consumer: lapin::Consumer) -> Ending<lapin::Error> {
        let mut in_flight = JoinSet::new();
        loop {
            let mut stop = self.give_up_at.clone();
            let stopped = async move {
                let _ = stop.wait_for(Option::is_some).await;
            };
            let (deliveries, ending) = next_batch(&mut consumer, self.batch_size, self.window, stopped).await;
            if !deliveries.is_empty() {
                let destination = self.destination.clone();
                let mut retry = Retry::new(self.give_up_at.clone(), self.stats.clone());
                in_flight.spawn(async move { destination.deliver(deliveries, &mut retry).await });
            }
            while in_flight.try_join_next().is_some() {}
            match ending {
                None => {}
                Some(Ending::Shutdown) => {
                    while in_flight.join_next().await.is_some() {}
                    return Ending::Shutdown;
                }
                // Batches in flight can no longer be acknowledged on this connection: dropping
                // `in_flight` abandons them, and RabbitMQ delivers their messages again.
                Some(ending) => {
                    tracing::warn!(queue = self.queue.role(), ?ending, "consumer ended");
                    return ending;
                }
            }
        }
    }
}

/// The retry state of one batch: its backoff and when to give up.
pub struct Retry {
    backoff: Backoff,
    give_up_at: GiveUp,
    stats: Arc<Stats>,
}

impl Retry {
    fn new(give_up_at: GiveUp, stats: Arc<Stats>) -> Self {
        Self { backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(20)), give_up_at, stats }
    }

    /// Retries that give up at `deadline`, with a backoff short enough for a few attempts before.
    pub fn until(deadline: Instant, max_delay: Duration) -> Self {
        // A receiver keeps the last value after its sender is gone: the deadline stays set.
        let (_, give_up_at) = watch::channel(Some(deadline));
        Self { backoff: Backoff::new(Duration::from_millis(100), max_delay), give_up_at, stats: Arc::default() }
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
    }

    /// Waits out the backoff before the next attempt; false when it is time to give up instead.
    async fn wait(&mut self) -> bool {
        self.stats.retried();
        let delay = self.backoff.next_delay();
        let mut give_up_at = self.give_up_at.clone();
        let deadline = async move {
            // An error means the session is gone: nobody can acknowledge any more.
            let at = give_up_at.wait_for(Option::is_some).await.ok().and_then(|at| *at);
            if let Some(at) = at {
                sleep_until(at).await;
            }
        };
        tokio::select! {
            () = sleep(delay) => {}
            () = deadline => {}
        }
        self.give_up_at.borrow().is_none_or(|at| Instant::now() < at)
    }
}

/// Acknowledges each delivery; one that cannot be (its channel is gone) RabbitMQ delivers again.
async fn ack_all<'a>(deliveries: impl IntoIterator<Item = &'a Delivery>) {
    for delivery in deliveries {
        if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
            tracing::warn!(%error, "acknowledgement failed; RabbitMQ will deliver the message again");
        }
    }
}
