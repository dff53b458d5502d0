//! CPU time per service during the drain, from /proc: which process used the machine.

use std::{collections::HashMap, time::Instant};

/// CPU time per service, from /proc: which process used the machine during the drain.
pub struct CpuSample {
    at: Instant,
    /// Jiffies per process, with the service it belongs to.
    processes: HashMap<u32, (Service, u64)>,
    /// The machine's busy and total jiffies, all cores together.
    machine: (u64, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Service {
    Benchmark,
    PostgreSql,
    RabbitMq,
    LocalStack,
    Maildev,
    Other,
}

impl Service {
    const ALL: [Service; 6] = [
        Service::Benchmark,
        Service::PostgreSql,
        Service::RabbitMq,
        Service::LocalStack,
        Service::Maildev,
        Service::Other,
    ];

    fn of(pid: u32, comm: &str, cmdline: &str) -> Self {
        if pid == std::process::id() {
            Service::Benchmark
        } else if comm == "postgres" {
            Service::PostgreSql
        } else if comm == "beam.smp" || cmdline.contains("rabbitmq") {
            Service::RabbitMq
        } else if cmdline.contains("localstack") {
            Service::LocalStack
        } else if cmdline.contains("maildev") {
            Service::Maildev
        } else {
            Service::Other
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::Benchmark => "this benchmark (bridge, functions, SDK clients)",
            Service::PostgreSql => "PostgreSQL",
            Service::RabbitMq => "RabbitMQ",
            Service::LocalStack => "LocalStack",
            Service::Maildev => "maildev",
            Service::Other => "everything else",
        }
    }
}

/// /proc counts CPU time in USER_HZ ticks, 100 a second on Linux's common architectures.
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuSample {
    /// Every process's CPU time and the machine's, now.
    pub fn take() -> Self {
        let mut processes = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // The command name, in parentheses, may itself hold spaces and parentheses.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            // utime and stime are the stat file's 14th and 15th fields; `fields` starts at the 3rd.
            let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let service = Service::of(pid, &stat[open + 1..close], &String::from_utf8_lossy(&cmdline));
            processes.insert(pid, (service, ticks(11) + ticks(12)));
        }
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let ticks: Vec<u64> =
                    stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal: guest time is already in user.
                let total: u64 = ticks.iter().take(8).sum();
                let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
                Some((total - idle, total))
            })
            .unwrap_or_default();
        Self { at: Instant::now(), processes, machine }
    }

    /// What each service used since this sample; a process started since counts from zero, one
    /// that ended since is missing (its time is lost).
    pub fn since(self) -> CpuUse {
        let now = CpuSample::take();
        let mut seconds: HashMap<Service, f64> = HashMap::new();
        for (pid, (service, ticks)) in &now.processes {
            let before = self.processes.get(pid).map_or(0, |(_, ticks)| *ticks);
            *seconds.entry(*service).or_default() += ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND;
        }
        let busy = now.machine.0.saturating_sub(self.machine.0) as f64;
        let total = now.machine.1.saturating_sub(self.machine.1) as f64;
        CpuUse {
            wall: now.at.duration_since(self.at).as_secs_f64(),
            busy: if total > 0.0 { busy / total } else { 0.0 },
            seconds,
        }
    }
}

/// CPU time used during the drain.
pub struct CpuUse {
    wall: f64,
    /// The machine's cores' busy share.
    busy: f64,
    seconds: HashMap<Service, f64>,
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        writeln!(
            f,
            "CPU during the drain ({cores} cores x {:.2} s = {:.2} core-seconds; the cores were {:.0}% busy):",
            self.wall,
            cores as f64 * self.wall,
            100.0 * self.busy
        )?;
        let parts: Vec<String> = Service::ALL
            .iter()
            .map(|service| format!("{} {:.2} s", service.name(), self.seconds.get(service).copied().unwrap_or(0.0)))
            .collect();
        write!(f, "  {}", parts.join(", "))
    }
}
