//! Metrics as CloudWatch Embedded Metric Format (EMF) log lines: no AWS call, no agent. Lambda
//! sends stdout to CloudWatch Logs, which turns each line into metric data points under the
//! namespace `METRICS_NAMESPACE` (default `EventStream`). Locally the lines are plain JSON logs.
//!
//! A [`Line`] carries several metrics, each with its unit, under one or more dimension sets. One
//! line is written per invocation or batch (per dimension value where a dimension varies), with
//! a single `write` so it never interleaves with other output. Writing never fails the caller: a
//! line that cannot be written is lost, as a log line would be.
//!
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::config::{env_lookup, optional};

/// The namespace when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "EventStream";
/// EMF takes at most this many values of one metric in one line; more go on further lines.
pub const MAX_VALUES_PER_LINE: usize = 100;

/// The unit of a metric, as CloudWatch names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// Where metric lines go: stdout in a function, a buffer in a test.
pub trait MetricsSink: Send + Sync {
    /// Writes one line, its newline included, at once; a failure is dropped.
    fn write_line(&self, line: &[u8]);
}

/// The process's stdout, which Lambda sends to CloudWatch Logs.
pub struct Stdout;

impl MetricsSink for Stdout {
    fn write_line(&self, line: &[u8]) {
        // One `write_all` of a whole line: Rust's stdout writes a buffer ending in a newline
        // straight through, so a line is one `write` and the lock is held only for it.
        let _ = std::io::stdout().lock().write_all(line);
    }
}

/// Keeps the lines in memory, for tests that check what a handler emitted.
#[derive(Default)]
pub struct CapturedLines(Mutex<Vec<String>>);

impl CapturedLines {
    /// The lines written so far, each parsed as JSON.
    pub fn lines(&self) -> Vec<Value> {
        let lines = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        lines.iter().map(|line| serde_json::from_str(line).expect("a metric line is JSON")).collect()
    }
}

impl MetricsSink for CapturedLines {
    fn write_line(&self, line: &[u8]) {
        let mut lines = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        lines.push(String::from_utf8_lossy(line).trim_end().to_string());
    }
}

/// Emits metric lines under one namespace; cheap to clone, built once per cold start.
#[derive(Clone)]
pub struct Metrics {
    namespace: Arc<str>,
    sink: Arc<dyn MetricsSink>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(namespace: &str, sink: Arc<dyn MetricsSink>) -> Self {
        Self { namespace: namespace.into(), sink }
    }

    /// Lines to stdout under `METRICS_NAMESPACE`. A namespace CloudWatch would refuse is replaced
    /// by [`DEFAULT_NAMESPACE`] with a warning: metrics are not worth failing a cold start for.
    pub fn from_env() -> Self {
        let namespace = match optional(&env_lookup, "METRICS_NAMESPACE", DEFAULT_NAMESPACE.to_string()) {
            Ok(namespace) if valid_namespace(&namespace) => namespace,
            _ => {
                tracing::warn!(default = DEFAULT_NAMESPACE, "METRICS_NAMESPACE is not a CloudWatch namespace");
                DEFAULT_NAMESPACE.to_string()
            }
        };
        Self::new(&namespace, Arc::new(Stdout))
    }

    /// A line to fill and [`Line::emit`].
    pub fn line(&self) -> Line<'_> {
        Line { metrics: self, dimensions: Vec::new(), groups: Vec::new() }
    }
}

/// 1 to 255 of the characters CloudWatch allows, and not AWS's own prefix.
fn valid_namespace(namespace: &str) -> bool {
    (1..=255).contains(&namespace.len())
        && !namespace.starts_with("AWS/")
        && namespace.chars().all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c))
}

/// Names of dimensions, each set one way CloudWatch aggregates the metrics (`[]`: across all).
pub type DimensionSets = &'static [&'static [&'static str]];

/// Metrics that share dimension sets: one `CloudWatchMetrics` directive.
struct Group {
    dimension_sets: DimensionSets,
    metrics: Vec<(&'static str, Unit, Vec<f64>)>,
}

/// One EMF line being built: dimension values, then groups of metrics.
#[must_use = "a line is written only by `emit`"]
pub struct Line<'a> {
    metrics: &'a Metrics,
    dimensions: Vec<(&'static str, String)>,
    groups: Vec<Group>,
}

impl Line<'_> {
    /// Sets a dimension's value for every group that names it.
    pub fn dimension(mut self, name: &'static str, value: &str) -> Self {
        self.dimensions.push((name, value.to_string()));
        self
    }

    /// Starts a group of metrics aggregated by `dimension_sets`.
    pub fn group(mut self, dimension_sets: DimensionSets) -> Self {
        self.groups.push(Group { dimension_sets, metrics: Vec::new() });
        self
    }

    /// A count in the current group, zero included.
    pub fn count(self, name: &'static str, count: usize) -> Self {
        self.values(name, Unit::Count, [count as f64])
    }

    /// Values of one metric in the current group; none leaves the metric out.
    pub fn values(mut self, name: &'static str, unit: Unit, values: impl IntoIterator<Item = f64>) -> Self {
        let group = self.groups.last_mut().expect("a metric belongs to a group: call `group` first");
        group.metrics.push((name, unit, values.into_iter().collect()));
        self
    }

    /// Writes the line (several when a metric has more than [`MAX_VALUES_PER_LINE`] values).
    pub fn emit(self) {
        for line in self.render(Utc::now()) {
            let mut bytes = line.into_bytes();
            bytes.push(b'\n');
            self.metrics.sink.write_line(&bytes);
        }
    }

    /// The JSON lines, timestamped `at`. Line `n` holds each metric's values `n * 100..`; a
    /// metric or group with none left is not repeated.
    fn render(&self, at: DateTime<Utc>) -> Vec<String> {
        let mut lines = Vec::new();
        for part in 0.. {
            let offset = part * MAX_VALUES_PER_LINE;
            let mut root = Map::new();
            let mut directives = Vec::new();
            for group in &self.groups {
                let mut names = Vec::new();
                for (name, unit, values) in &group.metrics {
                    let Some(slice) = values.get(offset..).filter(|rest| !rest.is_empty()) else { continue };
                    let slice = &slice[..slice.len().min(MAX_VALUES_PER_LINE)];
                    let value = if values.len() == 1 { json!(slice[0]) } else { json!(slice) };
                    root.insert((*name).to_string(), value);
                    names.push(json!({ "Name": name, "Unit": unit.as_str() }));
                }
                if !names.is_empty() {
                    directives.push(json!({
                        "Namespace": &*self.metrics.namespace,
                        "Dimensions": group.dimension_sets,
                        "Metrics": names,
                    }));
                }
            }
            if directives.is_empty() {
                break;
            }
            for (name, value) in &self.dimensions {
                root.insert((*name).to_string(), json!(value));
            }
            root.insert("_aws".into(), json!({ "Timestamp": at.timestamp_millis(), "CloudWatchMetrics": directives }));
            lines.push(Value::Object(root).to_string());
        }
        lines
    }
}

/// Milliseconds from `since` to `until`, never negative (clocks of two hosts may disagree).
pub fn millis_between(since: DateTime<Utc>, until: DateTime<Utc>) -> f64 {
    ((until - since).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0).max(0.0)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn captured() -> (Metrics, Arc<CapturedLines>) {
        let sink = Arc::new(CapturedLines::default());
        (Metrics::new("EventStream", sink.clone()), sink)
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap()
    }

    #[test]
    fn a_line_holds_its_dimensions_groups_units_values_and_timestamp() {
        let (metrics, _) = captured();
        let lines = metrics
            .line()
            .dimension("Target", "warning")
            .group(&[&["Target"], &[]])
            .count("EventsRouted", 3)
            .group(&[&[]])
            .values("DispatchLatency", Unit::Milliseconds, [12.5, 40.0, 7.0])
            .render(at());

        assert_eq!(lines.len(), 1);
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            line,
            json!({
                "_aws": {
                    "Timestamp": 1_796_292_000_000_i64,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": "EventStream",
                            "Dimensions": [["Target"], []],
                            "Metrics": [{ "Name": "EventsRouted", "Unit": "Count" }],
                        },
                        {
                            "Namespace": "EventStream",
                            "Dimensions": [[]],
                            "Metrics": [{ "Name": "DispatchLatency", "Unit": "Milliseconds" }],
                        },
                    ],
                },
                "Target": "warning",
                "EventsRouted": 3.0,
                "DispatchLatency": [12.5, 40.0, 7.0],
            })
        );
    }

    #[test]
    fn more_than_a_hundred_values_continue_on_further_lines_without_repeating_counts() {
        let (metrics, _) = captured();
        let latencies: Vec<f64> = (0..250).map(f64::from).collect();
        let lines = metrics
            .line()
            .dimension("Handler", "error")
            .group(&[&["Handler"]])
            .count("EventsHandled", 250)
            .values("HandlingLatency", Unit::Milliseconds, latencies.clone())
            .render(at());

        let lines: Vec<Value> = lines.iter().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["EventsHandled"], 250.0);
        let mut seen = Vec::new();
        for line in &lines {
            assert_eq!(line["Handler"], "error", "every line keeps the dimension values");
            let values = line["HandlingLatency"].as_array().unwrap();
            assert!(values.len() <= MAX_VALUES_PER_LINE);
            seen.extend(values.iter().map(|value| value.as_f64().unwrap()));
        }
        assert_eq!(seen, latencies);
        assert!(lines[1].get("EventsHandled").is_none());
        assert_eq!(
            lines[1]["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{ "Name": "HandlingLatency", "Unit": "Milliseconds" }])
        );
    }

    #[test]
    fn a_metric_without_values_is_left_out_and_a_line_without_metrics_is_not_written() {
        let (metrics, sink) = captured();
        metrics
            .line()
            .group(&[&[]])
            .count("EventsRepublished", 0)
            .values("DispatchLatency", Unit::Milliseconds, [])
            .emit();
        metrics.line().group(&[&[]]).values("EmailLatency", Unit::Milliseconds, []).emit();

        let lines = sink.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["EventsRepublished"], 0.0);
        assert!(lines[0].get("DispatchLatency").is_none());
        assert_eq!(lines[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn emitted_lines_end_with_one_newline_each() {
        struct Raw(Mutex<Vec<u8>>);
        impl MetricsSink for Raw {
            fn write_line(&self, line: &[u8]) {
                self.0.lock().unwrap().extend_from_slice(line);
            }
        }
        let raw = Arc::new(Raw(Mutex::new(Vec::new())));
        let metrics = Metrics::new("Test", raw.clone());
        metrics.line().group(&[&[]]).count("A", 1).emit();
        metrics.line().group(&[&[]]).count("B", 2).emit();
        let text = String::from_utf8(raw.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\n').count(), 2);
        assert!(text.lines().all(|line| serde_json::from_str::<Value>(line).is_ok()), "{text}");
    }

    #[test]
    fn namespaces_cloudwatch_refuses_are_recognised() {
        for valid in ["EventStream", "Team/Event-Stream_2", "a:b#c d.e"] {
            assert!(valid_namespace(valid), "{valid}");
        }
        for invalid in ["", "AWS/Lambda", "née", &"x".repeat(256), "a\"b"] {
            assert!(!valid_namespace(invalid), "{invalid}");
        }
    }

    #[test]
    fn latency_is_in_milliseconds_and_never_negative() {
        let received = at();
        assert_eq!(millis_between(received, received + chrono::Duration::microseconds(1_500)), 1.5);
        assert_eq!(millis_between(received, received - chrono::Duration::seconds(1)), 0.0);
    }
}
