//! The backlog: events stored and published to dispatch as ingest does, before the drain.

use std::time::Instant;

use anyhow::Context;
use bench::rabbitmq::function_bus;
use chrono::Utc;
use eventstream::{
    bus::{EventMessage, MAX_EVENTS_PER_MESSAGE, Queue, Topology},
    domain::{Event, NewEvent, Status},
    store::PgEventStore,
};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{Args, Mix};

/// The backlog: what was stored and published, and what the checks and baselines need of it.
#[derive(Default)]
pub struct Seeded {
    pub total: usize,
    /// Success and info events, finished at dispatch.
    pub success: usize,
    pub warnings: usize,
    pub errors: Vec<Event>,
    /// The messages dispatch publishes to the handler queues, one per event.
    pub handler_events: Vec<(Queue, EventMessage)>,
    pub dispatch_messages: usize,
    pub seconds: f64,
}

/// Stores and publishes the backlog as ingest does for each batch request.
pub async fn seed(args: &Args, admin: &PgPool, user: Uuid, topology: &Topology) -> anyhow::Result<Seeded> {
    let store = PgEventStore::new(admin.clone());
    let bus = function_bus(&args.amqp_url, topology);
    let started = Instant::now();
    let mut seeded = Seeded::default();
    let statuses: Vec<Status> = (0..args.events as usize).map(|n| status_of(args.status, n)).collect();
    for (batch, chunk) in statuses.chunks(MAX_EVENTS_PER_MESSAGE).enumerate() {
        let rows: Vec<NewEvent> = chunk
            .iter()
            .enumerate()
            .map(|(n, status)| new_event(batch * MAX_EVENTS_PER_MESSAGE + n, *status))
            .collect();
        let stored = store.insert(user, None, None, &rows).await.context("storing the backlog")?.events;
        let messages: Vec<EventMessage> = stored.iter().map(EventMessage::for_event).collect();
        bus.publish_batch(Queue::Dispatch, &messages).await.context("publishing the backlog")?;
        seeded.dispatch_messages += 1;
        for (event, message) in stored.into_iter().zip(messages) {
            seeded.total += 1;
            match event.status {
                Status::Success | Status::Info => seeded.success += 1,
                Status::Warning => {
                    seeded.warnings += 1;
                    seeded.handler_events.push((Queue::Warning, message));
                }
                Status::Error => {
                    seeded.handler_events.push((Queue::Error, message));
                    seeded.errors.push(event);
                }
            }
        }
    }
    seeded.seconds = started.elapsed().as_secs_f64();
    Ok(seeded)
}

fn status_of(mix: Mix, n: usize) -> Status {
    match mix {
        Mix::Dag => match n % 10 {
            0..7 => Status::Success,
            7 | 8 => Status::Warning,
            _ => Status::Error,
        },
        Mix::Success => Status::Success,
        Mix::Warning => Status::Warning,
        Mix::Error => Status::Error,
    }
}

/// An event as the Airflow DAG draws them: a title and description by status, a host, a run.
fn new_event(n: usize, status: Status) -> NewEvent {
    const HOSTS: [&str; 4] = ["web-1", "web-2", "worker-1", "db-1"];
    let host = HOSTS[n % HOSTS.len()];
    let (title, description) = match status {
        Status::Success | Status::Info => (format!("Backup completed on {host}"), "The nightly backup finished."),
        Status::Warning => (format!("Disk usage above 80% on {host}"), "The data volume is filling up."),
        Status::Error => (format!("Payment gateway timeout on {host}"), "Calls to the payment gateway timed out."),
    };
    NewEvent {
        title,
        description: description.into(),
        status,
        source: Some("bench-drain".into()),
        occurred_at: Some(Utc::now()),
        attributes: json!({ "host": host, "sequence": n }),
    }
}
