//! Configuration, read from the environment once per cold start.
//!
//! Every variable is documented in `.env.example`. A missing or invalid variable stops the
//! process at start with an error that names it, rather than failing on the first request.

use std::{str::FromStr, time::Duration};

use secrecy::{ExposeSecret, SecretString};

/// The shortest HS256 signing key accepted: RFC 7518 asks for a key at least as long as the hash.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// A variable that is missing or cannot be used.
#[derive(thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// `main` returns this error and Rust prints it with `Debug`: show the operator the message.
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Where PostgreSQL is and how many connections one process may hold.
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    pub url: SecretString,
    /// Kept small: every concurrent Lambda instance opens its own pool.
    pub max_connections: u32,
}

/// How tokens are signed and how long they live.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub secret: SecretString,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

/// Where RabbitMQ is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct AmqpConfig {
    pub url: SecretString,
    /// Put before every exchange and queue name; empty in a normal deployment.
    pub queue_prefix: String,
    /// Bounds connecting and waiting for publisher confirms.
    pub timeout: Duration,
}

/// What the ingest function needs.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub database: DatabaseConfig,
    pub jwt: JwtConfig,
    pub amqp: AmqpConfig,
}

impl DatabaseConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: SecretString::from(required(lookup, "DATABASE_URL")?),
            max_connections: optional(lookup, "DATABASE_MAX_CONNECTIONS", 2)?,
        })
    }
}

impl AmqpConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: SecretString::from(required(lookup, "AMQP_URL")?),
            queue_prefix: optional(lookup, "AMQP_QUEUE_PREFIX", String::new())?,
            timeout: Duration::from_millis(optional(lookup, "AMQP_TIMEOUT_MS", 3_000)?),
        })
    }

    /// The publisher for this configuration; it connects on first use.
    pub fn bus(&self) -> crate::bus::AmqpBus {
        crate::bus::AmqpBus::new(self.url.clone(), crate::bus::Topology::with_prefix(&self.queue_prefix), self.timeout)
    }
}

impl JwtConfig {
    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secret = required(lookup, "JWT_SECRET")?;
        if secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                name: "JWT_SECRET",
                reason: format!("must be at least {MIN_JWT_SECRET_BYTES} bytes long"),
            });
        }
        let access_ttl = optional(lookup, "JWT_ACCESS_TTL_SECONDS", 300)?;
        let refresh_ttl = optional(lookup, "JWT_REFRESH_TTL_SECONDS", 86_400)?;
        for (name, ttl) in [("JWT_ACCESS_TTL_SECONDS", access_ttl), ("JWT_REFRESH_TTL_SECONDS", refresh_ttl)] {
            if ttl == 0 {
                return Err(ConfigError::Invalid { name, reason: "must be at least 1".into() });
            }
        }
        Ok(Self {
            secret: SecretString::from(secret),
            issuer: optional(lookup, "JWT_ISSUER", "eventstream".to_string())?,
            audience: optional(lookup, "JWT_AUDIENCE", "eventstream-api".to_string())?,
            access_ttl: Duration::from_secs(access_ttl),
            refresh_ttl: Duration::from_secs(refresh_ttl),
        })
    }

    /// The signing key's bytes, for the token codec only.
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        self.secret.expose_secret().as_bytes()
    }
}

impl IngestConfig {
    /// Reads the ingest function's configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_lookup(lookup)?,
            jwt: JwtConfig::from_lookup(lookup)?,
            amqp: AmqpConfig::from_lookup(lookup)?,
        })
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn required(lookup: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<String, ConfigError> {
    match lookup(name) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ConfigError::Missing(name)),
    }
}

fn optional<T>(lookup: &dyn Fn(&str) -> Option<String>, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match lookup(name) {
        Some(value) if !value.trim().is_empty() => {
            value.trim().parse().map_err(|error: T::Err| ConfigError::Invalid { name, reason: error.to_string() })
        }
        _ => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config_from(pairs: &[(&str, &str)]) -> Result<IngestConfig, ConfigError> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        IngestConfig::from_lookup(&|name| vars.get(name).cloned())
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let config = config_from(&[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("JWT_SECRET", SECRET),
            ("AMQP_URL", "amqp://localhost"),
        ])
        .unwrap();
        assert_eq!(config.amqp.queue_prefix, "");
        assert_eq!(config.amqp.timeout, Duration::from_secs(3));
        assert_eq!(config.database.max_connections, 2);
        assert_eq!(config.jwt.access_ttl, Duration::from_secs(300));
        assert_eq!(config.jwt.refresh_ttl, Duration::from_secs(86_400));
        assert_eq!(config.jwt.issuer, "eventstream");
        assert_eq!(config.jwt.audience, "eventstream-api");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let error = config_from(&[("JWT_SECRET", SECRET)]).unwrap_err();
        assert_eq!(error.to_string(), "environment variable DATABASE_URL is not set");
        let error = config_from(&[("DATABASE_URL", "postgres://x"), ("JWT_SECRET", SECRET)]).unwrap_err();
        assert_eq!(error.to_string(), "environment variable AMQP_URL is not set");
        let error = config_from(&[("DATABASE_URL", "postgres://x"), ("JWT_SECRET", "  ")]).unwrap_err();
        assert_eq!(error.to_string(), "environment variable JWT_SECRET is not set");
    }

    #[test]
    fn a_short_jwt_secret_is_refused() {
        let error = config_from(&[("DATABASE_URL", "postgres://x"), ("JWT_SECRET", "too-short")]).unwrap_err();
        assert!(error.to_string().starts_with("environment variable JWT_SECRET is invalid"), "{error}");
    }

    #[test]
    fn an_unparsable_number_is_named_with_the_reason() {
        let error = config_from(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", SECRET),
            ("AMQP_URL", "amqp://x"),
            ("JWT_ACCESS_TTL_SECONDS", "five minutes"),
        ])
        .unwrap_err();
        assert!(error.to_string().starts_with("environment variable JWT_ACCESS_TTL_SECONDS is invalid"), "{error}");
        let error = config_from(&[
            ("DATABASE_URL", "postgres://x"),
            ("JWT_SECRET", SECRET),
            ("AMQP_URL", "amqp://x"),
            ("JWT_REFRESH_TTL_SECONDS", "0"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("JWT_REFRESH_TTL_SECONDS"), "{error}");
    }
}
