//! The single-event baseline: pgbench running a single-row INSERT of the columns ingest writes.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, ensure};
use bench::timing::{Latencies, Run};
use uuid::Uuid;

/// The newest /usr/lib/postgresql/*/bin/pgbench, else PATH's.
pub fn find() -> PathBuf {
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin/pgbench"))
        .filter(|path| path.exists())
        .collect();
    installed.sort_by_key(|path| {
        path.components().nth(4).and_then(|c| c.as_os_str().to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    installed.pop().unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// pgbench with a single-row INSERT returning what the store returns, from `clients` clients;
/// latencies from its per-transaction log.
pub fn run(pgbench: &Path, url: &str, clients: u32, user: Uuid, duration: Duration) -> anyhow::Result<Run> {
    let dir = std::env::temp_dir().join(format!("bench_ingest-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("insert.sql");
    std::fs::write(
        &script,
        format!(
            "INSERT INTO events (id, title, description, status, source, occurred_at, attributes, user_id) \
             VALUES (gen_random_uuid(), 'Disk full on web-1', '', 'error', 'web-1', NULL, '{{\"mount\": \"/var\"}}', '{user}') \
             RETURNING id, title, description, status, source, occurred_at, received_at, attributes, \
             pipeline_state, pipeline_updated_at, user_id;\n"
        ),
    )?;
    let seconds = duration.as_secs_f64().ceil().max(1.0) as u64;
    let output = Command::new(pgbench)
        .args(["-n", "-c", &clients.to_string(), "-j", &clients.to_string(), "-T", &seconds.to_string()])
        .arg("-f")
        .arg(&script)
        .arg("-l")
        .arg(format!("--log-prefix={}", dir.join("log").display()))
        .arg(url)
        .output()
        .with_context(|| format!("cannot run {}", pgbench.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "pgbench failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));

    // Each log line: client transaction latency_us script epoch_s epoch_us.
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("log")) {
            for line in std::fs::read_to_string(&path)?.lines() {
                if let Some(micros) = line.split_whitespace().nth(2).and_then(|v| v.parse::<u64>().ok()) {
                    latencies.push(Duration::from_micros(micros));
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    let rows = latencies.len() as u64;
    Ok(Run { elapsed: Duration::from_secs(seconds), rows, latencies: Latencies::new(latencies) })
}
