//! The drain itself: the bridge, the dispatch function and the pollers started together, timed
//! until PostgreSQL records every event finished, and what each stage did.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use aws_config::SdkConfig;
use bench::{machine::LoadAvg, timing::verdict};
use bridge::BridgeConfig;
use chrono::{DateTime, Utc};
use eventstream::domain::Handler;
use sqlx::PgPool;
use tokio::{sync::watch, task::JoinSet};

use crate::{
    Args, CELERY_EVENTS_PER_SECOND, TARGET_EVENTS_PER_SECOND,
    cpu::{CpuSample, CpuUse},
    functions::{HandlerFunction, InProcessDispatch},
    maildev::EmailCheck,
    pollers::{Poller, PollerStats},
    resources::SqsQueue,
    seed::Seeded,
};

/// Lambda refuses a synchronous invocation whose payload is larger.
const MAX_INVOKE_PAYLOAD_BYTES: u64 = 6 * 1024 * 1024;
/// How often the drain's end is looked for in PostgreSQL; the drain's time itself comes from the
/// rows' commit times, not from this.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How far the pipeline got, as PostgreSQL records it.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    dispatched: i64,
    success_done: i64,
    warnings_done: i64,
    errors_done: i64,
    last_change: Option<DateTime<Utc>>,
}

impl Progress {
    async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let (dispatched, success_done, warnings_done, errors_done, last_change): (
            i64,
            i64,
            i64,
            i64,
            Option<DateTime<Utc>>,
        ) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE pipeline_state <> 'received'),
                    count(*) FILTER (WHERE status IN ('success', 'info') AND pipeline_state = 'dispatched'),
                    count(*) FILTER (WHERE status = 'warning' AND pipeline_state = 'processed'),
                    count(*) FILTER (WHERE status = 'error' AND pipeline_state = 'processed'),
                    max(pipeline_updated_at)
             FROM events",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self { dispatched, success_done, warnings_done, errors_done, last_change })
    }

    fn finished(&self, seeded: &Seeded) -> bool {
        self.success_done as usize == seeded.success
            && self.warnings_done as usize == seeded.warnings
            && self.errors_done as usize == seeded.errors.len()
    }

    fn line(&self, seeded: &Seeded, elapsed: Duration) -> String {
        format!(
            "  {:6.1} s  dispatched {}/{}  warnings processed {}/{}  errors processed and emailed {}/{}  (load {:.2})",
            elapsed.as_secs_f64(),
            self.dispatched,
            seeded.total,
            self.warnings_done,
            seeded.warnings,
            self.errors_done,
            seeded.errors.len(),
            LoadAvg::read()
        )
    }
}

/// What the handlers wrote, counted once the drain ended.
#[derive(Debug, Default)]
struct Records {
    routings: i64,
    warnings: i64,
    errors: i64,
    emails_sent: i64,
    dead_letters: i64,
}

impl Records {
    async fn read(pool: &PgPool) -> anyhow::Result<Self> {
        let (routings, warnings, errors, emails_sent, dead_letters): (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM event_routings),
                    (SELECT count(*) FROM processed_warnings),
                    (SELECT count(*) FROM error_records),
                    (SELECT count(*) FROM notifications WHERE state = 'sent'),
                    (SELECT count(*) FROM dead_letters)",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self { routings, warnings, errors, emails_sent, dead_letters })
    }
}

/// The drain's outcome and what each stage did.
pub struct Drained {
    /// From the start to the last event's final commit; `None` when it did not finish in time.
    pub seconds: Option<f64>,
    progress: Progress,
    records: Records,
    pub prefetch: u16,
    bridge: bridge::stats::Snapshot,
    dispatch: Arc<InProcessDispatch>,
    pollers: [(Handler, Arc<PollerStats>); 2],
    cpu: CpuUse,
    load: (LoadAvg, LoadAvg),
}

/// Starts the bridge, the dispatch environments and the pollers, and times them until every
/// seeded event is finished or --timeout passes; prints progress every --progress seconds.
pub async fn drain(
    args: &Args,
    aws: &SdkConfig,
    admin: &PgPool,
    config: BridgeConfig,
    [warning_queue, error_queue]: [&SqsQueue; 2],
    seeded: &Seeded,
) -> anyhow::Result<Drained> {
    let region = aws.region().map_or("us-east-1", |region| region.as_ref()).to_string();
    let prefetch = config.prefetch;
    let started_at: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(admin).await?;
    let started = Instant::now();
    let load = LoadAvg::read();
    let cpu = CpuSample::take();
    let (stop, stopped) = watch::channel(false);

    let dispatch = Arc::new(InProcessDispatch::new(args, &config.topology, started)?);
    let bridge = tokio::spawn({
        let (aws, dispatch, mut stopped) = (aws.clone(), dispatch.clone(), stopped.clone());
        async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            };
            bridge::run_with_dispatch(config, &aws, Some(dispatch), shutdown).await
        }
    });
    let sqs = aws_sdk_sqs::Client::new(aws);
    let mut pollers = JoinSet::new();
    let stats = Handler::ALL.map(|handler| (handler, Arc::new(PollerStats::default())));
    for ((handler, queue_stats), sqs_queue) in stats.iter().zip([warning_queue, error_queue]) {
        for _ in 0..args.pollers {
            let poller = Poller {
                client: sqs.clone(),
                url: sqs_queue.url.clone(),
                arn: sqs_queue.arn.clone(),
                region: region.clone(),
                handler: HandlerFunction::new(*handler, args)?,
                stats: queue_stats.clone(),
                started,
            };
            pollers.spawn(poller.run(stopped.clone()));
        }
    }

    let deadline = started + Duration::from_secs_f64(args.timeout);
    let interval = Duration::from_secs_f64(args.progress);
    let mut next_line = started + interval;
    let (finished, progress) = loop {
        let progress = Progress::read(admin).await?;
        if progress.finished(seeded) {
            break (true, progress);
        }
        let now = Instant::now();
        if now >= deadline {
            break (false, progress);
        }
        if now >= next_line {
            println!("{}", progress.line(seeded, started.elapsed()));
            next_line += interval;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let cpu = cpu.since();
    let load = (load, LoadAvg::read());
    println!("{}", progress.line(seeded, started.elapsed()));

    stop.send_replace(true);
    let bridged = bridge.await.context("the bridge panicked")?;
    while let Some(joined) = pollers.join_next().await {
        joined.context("a poller panicked")??;
    }
    let seconds = match (finished, progress.last_change) {
        (true, Some(last)) => Some((last - started_at).as_seconds_f64().max(f64::EPSILON)),
        _ => None,
    };
    Ok(Drained {
        seconds,
        progress,
        records: Records::read(admin).await?,
        prefetch,
        bridge: bridged,
        dispatch,
        pollers: stats,
        cpu,
        load,
    })
}

impl Drained {
    /// Anything lost, doubled or left over, whether or not the drain finished in time.
    pub fn problems(&self, seeded: &Seeded) -> Vec<String> {
        let mut problems = Vec::new();
        let records = &self.records;
        let expected = [
            ("routings", records.routings, seeded.total),
            ("warnings recorded", records.warnings, seeded.warnings),
            ("errors recorded", records.errors, seeded.errors.len()),
            ("emails marked sent", records.emails_sent, seeded.errors.len()),
            ("dead letters", records.dead_letters, 0),
        ];
        for (what, got, wanted) in expected {
            if got != wanted as i64 {
                problems.push(format!("{got} {what} where {wanted} were expected"));
            }
        }
        problems
    }

    /// The end-to-end rate against its targets, then what each stage did and the CPU it took.
    pub fn print(&self, seeded: &Seeded, emails: Option<&EmailCheck>) {
        let total = seeded.total as f64;
        println!();
        match self.seconds {
            Some(seconds) => {
                let rate = total / seconds;
                println!(
                    "end to end: {rate:.0} events/s, {} events drained in {seconds:.2} s (start to the last event's commit)   load {:.2} -> {:.2}",
                    seeded.total, self.load.0, self.load.1
                );
                println!(
                    "  target >= {TARGET_EVENTS_PER_SECOND:.0} events/s: {} ({:.0}% of it)",
                    verdict(rate >= TARGET_EVENTS_PER_SECOND),
                    100.0 * rate / TARGET_EVENTS_PER_SECOND
                );
                println!(
                    "  against the original Celery pipeline, ~{CELERY_EVENTS_PER_SECOND:.0} events/s (a published figure, \
                     not measured in this run): {:.1}x",
                    rate / CELERY_EVENTS_PER_SECOND
                );
            }
            None => println!(
                "end to end: NOT FINISHED; {} of {} events dispatched, {}/{} warnings and {}/{} errors finished",
                self.progress.dispatched,
                seeded.total,
                self.progress.warnings_done,
                seeded.warnings,
                self.progress.errors_done,
                seeded.errors.len()
            ),
        }

        println!("\nstages (times from the start of the drain; busy = the calls' durations added up):");
        let dispatch = &self.dispatch.stats;
        let largest = dispatch.largest_payload.load(Ordering::Relaxed);
        println!(
            "  dispatch        {} invocations of {} events (routed {}, finished {}, already routed {}, parked {}), {} failed; \
             busy {:.2} s, active {}; largest payload {:.2} MB{}",
            dispatch.invocations.calls(),
            dispatch.invocations.items(),
            dispatch.routed.load(Ordering::Relaxed),
            dispatch.finished.load(Ordering::Relaxed),
            dispatch.already_routed.load(Ordering::Relaxed),
            dispatch.parked.load(Ordering::Relaxed),
            dispatch.failures.load(Ordering::Relaxed),
            dispatch.invocations.seconds(),
            dispatch.invocations.span(),
            largest as f64 / 1_048_576.0,
            if largest > MAX_INVOKE_PAYLOAD_BYTES { ", OVER the 6 MB Lambda would accept" } else { "" }
        );
        println!(
            "  bridge          acknowledged {} dispatch messages after their invocation; forwarded {} warning and {} error \
             messages to SQS; {} retries",
            self.bridge.dispatch, self.bridge.warning, self.bridge.error, self.bridge.retries
        );
        for (handler, stats) in &self.pollers {
            println!(
                "  {:<15} {} invocations of {} records ({} failed, {} redelivered), busy {:.2} s, active {}",
                format!("{handler}-handler"),
                stats.invocations.calls(),
                stats.invocations.items(),
                stats.failed_records.load(Ordering::Relaxed),
                stats.redelivered.load(Ordering::Relaxed),
                stats.invocations.seconds(),
                stats.invocations.span(),
            );
            println!(
                "  {:<15} {} ReceiveMessage ({} messages, {} empty, {} failed), busy {:.2} s; {} DeleteMessageBatch, \
                 busy {:.2} s, {} messages not deleted",
                "",
                stats.receives.calls(),
                stats.receives.items(),
                stats.empty_receives.load(Ordering::Relaxed),
                stats.receive_errors.load(Ordering::Relaxed),
                stats.receives.seconds(),
                stats.deletes.calls(),
                stats.deletes.seconds(),
                stats.delete_errors.load(Ordering::Relaxed),
            );
        }
        let records = &self.records;
        println!(
            "  PostgreSQL      {} routings, {} warnings recorded, {} errors recorded, {} emails marked sent, {} dead letters",
            records.routings, records.warnings, records.errors, records.emails_sent, records.dead_letters
        );
        if let Some(emails) = emails {
            println!("  maildev         {}", emails.summary());
        }
        println!("\n{}", self.cpu);
    }
}
