//! Counters of what the bridge forwarded, and the periodic one-line summary.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use eventstream::bus::Queue;

/// Messages forwarded per RabbitMQ queue and attempts that had to be retried.
#[derive(Debug, Default)]
pub struct Stats {
    dispatch: AtomicU64,
    warning: AtomicU64,
    error: AtomicU64,
    retries: AtomicU64,
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub dispatch: u64,
    pub warning: u64,
    pub error: u64,
    pub retries: u64,
}

impl Stats {
    fn counter(&self, queue: Queue) -> &AtomicU64 {
        match queue {
            Queue::Dispatch => &self.dispatch,
            Queue::Warning => &self.warning,
            Queue::Error => &self.error,
        }
    }

    pub fn forwarded(&self, queue: Queue, messages: usize) {
        self.counter(queue).fetch_add(messages as u64, Ordering::Relaxed);
    }

    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            dispatch: self.dispatch.load(Ordering::Relaxed),
            warning: self.warning.load(Ordering::Relaxed),
            error: self.error.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    /// Logs one summary line per `interval`, forever.
    pub async fn report_every(&self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        let (mut previous, mut since) = (self.snapshot(), Instant::now());
        loop {
            ticker.tick().await;
            let current = self.snapshot();
            let forwarded = (current.dispatch + current.warning + current.error)
                - (previous.dispatch + previous.warning + previous.error);
            let rate = forwarded as f64 / since.elapsed().as_secs_f64();
            tracing::info!(
                warning = current.warning - previous.warning,
                error = current.error - previous.error,
                dispatch = current.dispatch - previous.dispatch,
                retries = current.retries - previous.retries,
                messages_per_second = format_args!("{rate:.1}"),
                "forwarded in the last {:?}",
                interval
            );
            (previous, since) = (current, Instant::now());
        }
    }
}
