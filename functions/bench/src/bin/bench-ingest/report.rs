//! The printed table: one line per phase, with its load average.

use std::time::Duration;

use bench::{
    machine::LoadAvg,
    timing::{Run, millis, verdict},
};

/// One row of the printed table.
pub struct Line {
    name: String,
    figure: String,
    latency: String,
    load: Option<LoadAvg>,
}

impl Line {
    /// A phase measured in rows per second.
    pub fn throughput(name: String, run: &Run, load: LoadAvg) -> Self {
        Self {
            name,
            figure: format!("{:>9.0} rows/s ({} statements)", run.rows_per_second(), run.latencies.count()),
            latency: latencies(run),
            load: Some(load),
        }
    }

    /// A phase measured in requests per second.
    pub fn requests(name: String, run: &Run, load: LoadAvg) -> Self {
        Self {
            name,
            figure: format!("{:>9.0} requests/s ({} requests)", run.per_second(), run.latencies.count()),
            latency: latencies(run),
            load: Some(load),
        }
    }

    /// One rate over another, against `target` when it is above zero.
    pub fn ratio(name: &str, ratio: f64, target: f64) -> Self {
        let against = if target > 0.0 {
            format!("   target >= {:.0}%: {}", target * 100.0, verdict(ratio >= target))
        } else {
            String::new()
        };
        Self {
            name: name.into(),
            figure: format!("{:>9.1}%{against}", ratio * 100.0),
            latency: String::new(),
            load: None,
        }
    }

    /// Whether a target was met.
    pub fn verdict(name: &str, met: bool) -> Self {
        Self { name: name.into(), figure: format!("{:>9}", verdict(met)), latency: String::new(), load: None }
    }
}

fn latencies(run: &Run) -> String {
    let latencies = &run.latencies;
    format!(
        "p50 {:6.2} ms  p99 {:6.2} ms  max {:7.2} ms",
        millis(latencies.percentile(0.5)),
        millis(latencies.percentile(0.99)),
        millis(latencies.max())
    )
}

/// Prints the table under a line saying how long each phase ran.
pub fn print(lines: &[Line], duration: Duration) {
    println!("\n{:.0} s per phase; latency is per request (or statement)", duration.as_secs_f64());
    for line in lines {
        let load = line.load.map(|load| format!("load {load:.2}")).unwrap_or_default();
        println!("{:<52} {:<40} {:<44} {}", line.name, line.figure, line.latency, load);
    }
}
