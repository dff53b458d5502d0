//! The bridge's configuration, read from the environment once at start.
//!
//! A missing or invalid variable stops the bridge at start with an error naming it.

use std::time::Duration;

use eventstream::{
    bus::Topology,
    config::{ConfigError, Parts, Pending, amqp_url, env_lookup, optional, parse_amqp_url, required},
};
use secrecy::SecretString;

/// What the bridge connects to, where it sends, and how it batches.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// `AMQP_URL`, with the user and password of the secret `AMQP_SECRET_ARN` names when set.
    pub amqp_url: SecretString,
    /// The RabbitMQ virtual host of `amqp_url`: Amazon MQ names a queue `<queue>::<vhost>`.
    pub amqp_vhost: String,
    /// Queue names, from `AMQP_QUEUE_PREFIX`.
    pub topology: Topology,
    /// `WARNING_QUEUE_URL`: the SQS queue for RabbitMQ's `warning` queue.
    pub warning_queue_url: String,
    /// `ERROR_QUEUE_URL`: the SQS queue for RabbitMQ's `error` queue.
    pub error_queue_url: String,
    /// `DISPATCH_FUNCTION`: when set, the bridge also plays Amazon MQ's event source for
    /// `dispatch` and invokes this function (where no Amazon MQ event source exists).
    pub dispatch_function: Option<String>,
    /// `BRIDGE_PREFETCH`: unacknowledged messages RabbitMQ hands each consumer at once.
    pub prefetch: u16,
    /// `BRIDGE_BATCH_WINDOW_MS`: how long a batch waits for more messages after its first.
    pub batch_window: Duration,
    /// `BRIDGE_SUMMARY_SECONDS`: how often the throughput summary is logged.
    pub summary_interval: Duration,
    /// `BRIDGE_DRAIN_SECONDS`: how long a stopping bridge keeps retrying batches it holds
    /// before leaving them unacknowledged for RabbitMQ to deliver again.
    pub drain_timeout: Duration,
}

impl BridgeConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Pending<Self>, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    /// Reads the configuration from `lookup`, which answers for the environment's variables.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Pending<Self>, ConfigError> {
        let amqp_vhost = parse_amqp_url(&required(lookup, "AMQP_URL")?)?.vhost;
        let prefetch: u16 = optional(lookup, "BRIDGE_PREFETCH", 100)?;
        let batch_window_ms: u64 = optional(lookup, "BRIDGE_BATCH_WINDOW_MS", 20)?;
        let summary_seconds: u64 = optional(lookup, "BRIDGE_SUMMARY_SECONDS", 30)?;
        for (name, value) in [("BRIDGE_PREFETCH", u64::from(prefetch)), ("BRIDGE_SUMMARY_SECONDS", summary_seconds)] {
            if value == 0 {
                return Err(ConfigError::Invalid { name, reason: "must be at least 1".into() });
            }
        }
        let mut parts = Parts::default();
        let config = Self {
            amqp_url: parts.take(amqp_url(lookup)?, |config: &mut Self| &mut config.amqp_url),
            amqp_vhost,
            topology: Topology::with_prefix(&optional(lookup, "AMQP_QUEUE_PREFIX", String::new())?),
            warning_queue_url: required(lookup, "WARNING_QUEUE_URL")?,
            error_queue_url: required(lookup, "ERROR_QUEUE_URL")?,
            dispatch_function: lookup("DISPATCH_FUNCTION").filter(|name| !name.trim().is_empty()),
            prefetch,
            batch_window: Duration::from_millis(batch_window_ms),
            summary_interval: Duration::from_secs(summary_seconds),
            drain_timeout: Duration::from_secs(optional(lookup, "BRIDGE_DRAIN_SECONDS", 20)?),
        };
        Ok(parts.pending(config))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use eventstream::bus::Queue;

    use super::*;

    const REQUIRED: [(&str, &str); 3] = [
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        ("WARNING_QUEUE_URL", "http://sqs/warning-events"),
        ("ERROR_QUEUE_URL", "http://sqs/error-events"),
    ];

    fn config_from(pairs: &[(&str, &str)]) -> Result<BridgeConfig, ConfigError> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        BridgeConfig::from_lookup(&|name| vars.get(name).cloned())?.complete(&[])
    }

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let config = config_from(&REQUIRED).unwrap();
        assert_eq!(config.amqp_vhost, "/");
        assert_eq!(config.topology.queue_name(Queue::Warning), "warning");
        assert_eq!(config.dispatch_function, None);
        assert_eq!(config.prefetch, 100);
        assert_eq!(config.batch_window, Duration::from_millis(20));
        assert_eq!(config.summary_interval, Duration::from_secs(30));
        assert_eq!(config.drain_timeout, Duration::from_secs(20));
    }

    #[test]
    fn optional_variables_are_read() {
        let mut vars = REQUIRED.to_vec();
        vars.extend([
            ("AMQP_QUEUE_PREFIX", "t1-"),
            ("DISPATCH_FUNCTION", "eventstream-dispatch"),
            ("BRIDGE_PREFETCH", "50"),
            ("BRIDGE_BATCH_WINDOW_MS", "5"),
        ]);
        let config = config_from(&vars).unwrap();
        assert_eq!(config.topology.queue_name(Queue::Error), "t1-error");
        assert_eq!(config.dispatch_function.as_deref(), Some("eventstream-dispatch"));
        assert_eq!(config.prefetch, 50);
        assert_eq!(config.batch_window, Duration::from_millis(5));
    }

    #[test]
    fn a_missing_or_invalid_variable_is_named() {
        let error = config_from(&REQUIRED[..2]).unwrap_err();
        assert_eq!(error.to_string(), "environment variable ERROR_QUEUE_URL is not set");
        let error = config_from(&[REQUIRED.as_slice(), &[("BRIDGE_PREFETCH", "0")]].concat()).unwrap_err();
        assert!(error.to_string().starts_with("environment variable BRIDGE_PREFETCH is invalid"), "{error}");
        let error = config_from(&[REQUIRED.as_slice(), &[("BRIDGE_PREFETCH", "70000")]].concat()).unwrap_err();
        assert!(error.to_string().starts_with("environment variable BRIDGE_PREFETCH is invalid"), "{error}");
        let error = config_from(&[("AMQP_URL", "http://secret@x"), REQUIRED[1], REQUIRED[2]]).unwrap_err();
        assert!(error.to_string().starts_with("environment variable AMQP_URL is invalid"), "{error}");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
