//! Each service alone with the pipeline's counts and concurrency: the SMTP sink, LocalStack's SQS
//! and RabbitMQ, so the drain's rate through each can be read against the service's own.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, ensure};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use bench::rabbitmq::function_bus;
use bridge::sqs::MAX_BATCH_ENTRIES;
use eventstream::{
    bus::{EventMessage, MAX_EVENTS_PER_MESSAGE, Queue, Topology, declare_topology},
    domain::Event,
    mail::{Email, Mailer, SmtpMailer, error_alert},
};
use futures_util::{StreamExt, future::join_all};
use lapin::{
    Connection, ConnectionProperties,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio::task::JoinSet;

use crate::{
    Args,
    functions::{alert, smtp},
    maildev::BASELINE_MAIL_DOMAIN,
    pollers::{delete_entries, receive},
    resources::{Resources, sdk_error},
};

/// The SMTP sink alone: the error events' alerts sent straight through SmtpMailer, each of
/// --pollers mailers (one per error poller's environment) sending 10 at a time, as a handler
/// sends a batch's emails together.
pub async fn smtp_baseline(args: &Args, errors: &[Event], run: &str) -> anyhow::Result<f64> {
    let alert = alert()?;
    let emails: Arc<Vec<Email>> = Arc::new(
        errors
            .iter()
            .enumerate()
            .map(|(n, event)| Email {
                message_id: format!("<{n}.{run}@{BASELINE_MAIL_DOMAIN}>"),
                ..error_alert(event, &alert)
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let mut mailers = JoinSet::new();
    let started = Instant::now();
    for _ in 0..args.pollers {
        let mailer = SmtpMailer::new(&smtp(args))?;
        let (emails, next) = (emails.clone(), next.clone());
        mailers.spawn(async move {
            loop {
                let first = next.fetch_add(MAX_BATCH_ENTRIES, Ordering::Relaxed);
                if first >= emails.len() {
                    return anyhow::Ok(());
                }
                let batch = &emails[first..(first + MAX_BATCH_ENTRIES).min(emails.len())];
                for sent in join_all(batch.iter().map(|email| mailer.send(email))).await {
                    sent.context("the SMTP baseline's email")?;
                }
            }
        });
    }
    while let Some(joined) = mailers.join_next().await {
        joined??;
    }
    Ok(emails.len() as f64 / started.elapsed().as_secs_f64())
}

/// LocalStack's SQS alone: the handler messages sent as the bridge sends them (its entries, 10
/// per SendMessageBatch, from as many tasks per queue as it has batches in flight), received and
/// deleted as the pollers do, in queues of their own.
pub async fn sqs_baseline(
    args: &Args,
    resources: &mut Resources,
    messages: &[(Queue, EventMessage)],
    senders: usize,
) -> anyhow::Result<f64> {
    let mut queues = Vec::new();
    for queue in [Queue::Warning, Queue::Error] {
        let bodies: Vec<Vec<u8>> =
            messages.iter().filter(|(q, _)| *q == queue).map(|(_, message)| message.to_bytes()).collect();
        if !bodies.is_empty() {
            queues.push((resources.queue(&format!("sqs-{}", queue.role())).await?.url, bodies));
        }
    }
    let client = resources.sqs.clone();
    let finished_at = Arc::new(Mutex::new(None::<Instant>));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for (url, bodies) in queues {
        let url = Arc::new(url);
        let expected = bodies.len();
        let batches: Vec<Vec<SendMessageBatchRequestEntry>> = bodies
            .chunks(MAX_BATCH_ENTRIES)
            .map(|chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .map(|(n, body)| {
                        bridge::sqs::entry(
                            &n.to_string(),
                            &bridge::sqs::Outgoing { body, correlation_id: None, flag: None },
                        )
                    })
                    .collect()
            })
            .collect();
        let batches = Arc::new(Mutex::new(batches));
        for _ in 0..senders {
            let (client, url, batches) = (client.clone(), url.clone(), batches.clone());
            tasks.spawn(async move {
                loop {
                    let Some(entries) = batches.lock().expect("not poisoned").pop() else { return anyhow::Ok(()) };
                    let sent = client.send_message_batch().queue_url(url.as_str()).set_entries(Some(entries)).send();
                    let sent = sent.await.map_err(|error| sdk_error("SendMessageBatch", error))?;
                    ensure!(sent.failed.is_empty(), "SQS refused {} baseline messages", sent.failed.len());
                }
            });
        }
        let deleted = Arc::new(AtomicUsize::new(0));
        for _ in 0..args.pollers {
            let (client, url, deleted, finished_at) =
                (client.clone(), url.clone(), deleted.clone(), finished_at.clone());
            tasks.spawn(async move {
                // A poller still waiting when its queue is done returns within the receive's wait.
                while deleted.load(Ordering::Relaxed) < expected {
                    let received =
                        receive(&client, &url).send().await.map_err(|error| sdk_error("ReceiveMessage", error))?;
                    let entries = delete_entries(received.messages().iter())?;
                    if entries.is_empty() {
                        continue;
                    }
                    let count = entries.len();
                    client
                        .delete_message_batch()
                        .queue_url(url.as_str())
                        .set_entries(Some(entries))
                        .send()
                        .await
                        .map_err(|error| sdk_error("DeleteMessageBatch", error))?;
                    if deleted.fetch_add(count, Ordering::Relaxed) + count >= expected {
                        let mut at = finished_at.lock().expect("not poisoned");
                        *at = Some(at.map_or_else(Instant::now, |at| at.max(Instant::now())));
                    }
                }
                Ok(())
            });
        }
    }
    let count = messages.len();
    within(args, "the SQS baseline", async move {
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        Ok(())
    })
    .await?;
    let finished_at = finished_at.lock().expect("not poisoned").context("the SQS baseline never finished")?;
    Ok(count as f64 / finished_at.duration_since(started).as_secs_f64())
}

/// RabbitMQ alone: the handler messages published as dispatch publishes them (AmqpBus::publish,
/// one persistent message per event with a confirm) from as many publishers as dispatch has
/// environments, and consumed as the bridge consumes them (one consumer per queue with its
/// prefetch, each message acknowledged), in a topology of its own.
pub async fn rabbitmq_baseline(
    args: &Args,
    resources: &mut Resources,
    messages: &[(Queue, EventMessage)],
    prefetch: u16,
) -> anyhow::Result<f64> {
    let topology = Topology::ephemeral();
    resources.topologies.push(topology.clone());
    let connection = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    declare_topology(&connection.create_channel().await?, &topology).await?;
    let (mut consumers, mut channels) = (JoinSet::new(), Vec::new());
    for queue in [Queue::Warning, Queue::Error] {
        let expected = messages.iter().filter(|(q, _)| *q == queue).count();
        if expected == 0 {
            continue;
        }
        let channel = connection.create_channel().await?;
        channels.push(channel.clone());
        channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let mut consumer = channel
            .basic_consume(
                topology.queue_name(queue).as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        consumers.spawn(async move {
            for _ in 0..expected {
                let delivery = consumer.next().await.context("the baseline's consumer was cancelled")??;
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            anyhow::Ok(Instant::now())
        });
    }
    let started = Instant::now();
    let mut publishers = JoinSet::new();
    let publisher_count = args.dispatch_instances as usize;
    for publisher in 0..publisher_count {
        let bus = function_bus(&args.amqp_url, &topology);
        let share: Vec<(Queue, EventMessage)> =
            messages.iter().skip(publisher).step_by(publisher_count).cloned().collect();
        publishers.spawn(async move {
            for queue in [Queue::Warning, Queue::Error] {
                let outgoing: Vec<EventMessage> =
                    share.iter().filter(|(q, _)| *q == queue).map(|(_, message)| message.clone()).collect();
                for chunk in outgoing.chunks(MAX_EVENTS_PER_MESSAGE) {
                    bus.publish(queue, chunk).await?;
                }
            }
            anyhow::Ok(())
        });
    }
    let finished_at = within(args, "the RabbitMQ baseline", async move {
        while let Some(joined) = publishers.join_next().await {
            joined??;
        }
        let mut last = started;
        while let Some(joined) = consumers.join_next().await {
            last = last.max(joined??);
        }
        Ok(last)
    })
    .await?;
    // Channels closed before their connection, which lapin otherwise reports as an error.
    for channel in channels {
        channel.close(200, "done".into()).await.ok();
    }
    connection.close(200, "done".into()).await.ok();
    Ok(messages.len() as f64 / finished_at.duration_since(started).as_secs_f64())
}

/// Runs a baseline, failing it after --timeout rather than waiting for ever.
async fn within<T>(args: &Args, what: &str, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs_f64(args.timeout), work)
        .await
        .map_err(|_| anyhow!("{what} did not finish within {} s", args.timeout))?
}
