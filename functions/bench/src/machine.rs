//! The machine a benchmark ran on. Its cores are shared with the services being measured, so
//! every figure is printed with the load average beside it.

use std::fmt;

/// The one-minute load average.
#[derive(Clone, Copy, Debug)]
pub struct LoadAvg(f64);

impl LoadAvg {
    /// Now, from /proc/loadavg; NaN where that cannot be read.
    pub fn read() -> Self {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Self(text.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
    }
}

/// Formats as the number, honouring width and precision (`{:.2}`).
impl fmt::Display for LoadAvg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// One line for the top of a report: cores, CPU model, memory and the load averages at start.
pub fn summary() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':'])))
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "machine: {cores} cores ({model}), {:.1} GiB memory; load average {} at start (shared with other work)",
        memory_kib / 1024.0 / 1024.0,
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}
