//! Timed phases: workers repeating one call until the phase's time is up, and the rates and
//! nearest-rank percentiles of what they did.

use std::time::{Duration, Instant};

/// Latencies, sorted.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// Sorts `samples`.
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }

    /// How many there are.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The nearest-rank percentile, `fraction` of 1 (0.99 for p99); zero when there are none.
    pub fn percentile(&self, fraction: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((fraction * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }

    /// The slowest; zero when there are none.
    pub fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }
}

/// Calls (requests or statements) done in a phase.
pub struct Run {
    pub elapsed: Duration,
    /// The rows or events the calls stored.
    pub rows: u64,
    /// One per call.
    pub latencies: Latencies,
}

impl Run {
    /// Calls per second.
    pub fn per_second(&self) -> f64 {
        self.latencies.count() as f64 / self.elapsed.as_secs_f64()
    }

    /// Rows per second.
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// What one call did.
pub struct Sample {
    pub latency: Duration,
    pub rows: u64,
}

impl Sample {
    /// A call that began at `begun` and has just ended.
    pub fn since(begun: Instant, rows: u64) -> Self {
        Self { latency: begun.elapsed(), rows }
    }
}

/// Runs `work` on `workers` tasks, one call at a time each, until `duration` passes. One untimed
/// call per worker comes first, all at once: connections, prepared statements, RabbitMQ channels
/// and LocalStack's environments are made then, once per instance, as in production.
pub async fn timed<F, Fut>(workers: usize, duration: Duration, work: F) -> anyhow::Result<Run>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<Sample>> + Send + 'static,
{
    let warm_ups: Vec<_> = (0..workers).map(|worker| tokio::spawn(work.clone()(worker))).collect();
    for warm_up in warm_ups {
        warm_up.await??;
    }
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let work = work.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    samples.push(work(worker).await?);
                }
                anyhow::Ok(samples)
            })
        })
        .collect();
    let (mut rows, mut latencies) = (0, Vec::new());
    for handle in handles {
        for sample in handle.await?? {
            rows += sample.rows;
            latencies.push(sample.latency);
        }
    }
    Ok(Run { elapsed: started.elapsed(), rows, latencies: Latencies::new(latencies) })
}

/// A duration in milliseconds, for printing.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// How a report says whether a target was met.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
