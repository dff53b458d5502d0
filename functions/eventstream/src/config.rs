//! Configuration, read from the environment once per cold start.
//!
//! Every variable is documented in `.env.example`. A missing or invalid variable stops the
//! process at start with an error that names it, rather than failing on the first request.

use std::{str::FromStr, time::Duration};

use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};

/// How long a statement may run when DATABASE_STATEMENT_TIMEOUT_MS is not set: far longer than any
/// query the API serves takes, far shorter than a function's timeout.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest HS256 signing key accepted: RFC 7518 asks for a key at least as long as the hash.
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// The longest an access token may live. Requests check the user's token version, but a token
/// that leaks is still good for this long wherever it is replayed before revocation.
pub const MAX_ACCESS_TTL_SECONDS: u64 = 900;
/// The longest a refresh token may live: a login lasts at most this long without a password.
pub const MAX_REFRESH_TTL_SECONDS: u64 = 30 * 86_400;

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
    /// PostgreSQL cancels any statement that runs longer; zero turns the limit off.
    pub statement_timeout: Duration,
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

/// What the dispatch function needs.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    pub database: DatabaseConfig,
    pub amqp: AmqpConfig,
    pub sweep: SweepConfig,
}

impl DispatchConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_lookup(lookup)?,
            amqp: AmqpConfig::from_lookup(lookup)?,
            sweep: SweepConfig {
                older_than: Duration::from_secs(optional(lookup, "SWEEP_AFTER_SECONDS", 60)?),
                limit: optional(lookup, "SWEEP_LIMIT", 1_000)?,
            },
        })
    }
}

/// How the dispatch function's sweep finds events whose publish was lost.
#[derive(Clone, Copy, Debug)]
pub struct SweepConfig {
    /// An event still `received` after this long is taken as lost on its way to dispatch.
    pub older_than: Duration,
    /// At most this many are published again per run; the next run takes the rest.
    pub limit: i64,
}

/// What the API functions need: ingest (REST) and graphql.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub database: DatabaseConfig,
    pub jwt: JwtConfig,
    pub amqp: AmqpConfig,
}

/// When failed logins lock a username or a client out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginThrottleConfig {
    /// Failed logins for one username within `window` that lock it.
    pub max_failures_per_username: i32,
    /// Failed logins from one client address within `window` that lock it.
    pub max_failures_per_client: i32,
    pub window: Duration,
    /// How long a locked username or client is refused without a password check.
    pub lockout: Duration,
}

impl Default for LoginThrottleConfig {
    fn default() -> Self {
        Self {
            max_failures_per_username: 5,
            max_failures_per_client: 30,
            window: Duration::from_secs(900),
            lockout: Duration::from_secs(900),
        }
    }
}

impl LoginThrottleConfig {
    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let at_least_one = |name: &'static str| ConfigError::Invalid { name, reason: "must be at least 1".into() };
        let count = |name: &'static str, default: i32| -> Result<i32, ConfigError> {
            Some(optional(lookup, name, default)?).filter(|count| *count >= 1).ok_or_else(|| at_least_one(name))
        };
        let seconds = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            let seconds = Some(optional(lookup, name, default.as_secs())?).filter(|seconds| *seconds >= 1);
            seconds.map(Duration::from_secs).ok_or_else(|| at_least_one(name))
        };
        Ok(Self {
            max_failures_per_username: count("LOGIN_MAX_FAILURES_PER_USERNAME", defaults.max_failures_per_username)?,
            max_failures_per_client: count("LOGIN_MAX_FAILURES_PER_CLIENT", defaults.max_failures_per_client)?,
            window: seconds("LOGIN_FAILURE_WINDOW_SECONDS", defaults.window)?,
            lockout: seconds("LOGIN_LOCKOUT_SECONDS", defaults.lockout)?,
        })
    }
}

/// What the login function needs.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    pub database: DatabaseConfig,
    pub jwt: JwtConfig,
    pub throttle: LoginThrottleConfig,
}

impl LoginConfig {
    /// Reads the login function's configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_lookup(lookup)?,
            jwt: JwtConfig::from_lookup(lookup)?,
            throttle: LoginThrottleConfig::from_lookup(lookup)?,
        })
    }
}

impl DatabaseConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: SecretString::from(required(lookup, "DATABASE_URL")?),
            max_connections: optional(lookup, "DATABASE_MAX_CONNECTIONS", 2)?,
            statement_timeout: Duration::from_millis(optional(
                lookup,
                "DATABASE_STATEMENT_TIMEOUT_MS",
                DEFAULT_STATEMENT_TIMEOUT.as_millis() as u64,
            )?),
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
        for (name, ttl, max) in [
            ("JWT_ACCESS_TTL_SECONDS", access_ttl, MAX_ACCESS_TTL_SECONDS),
            ("JWT_REFRESH_TTL_SECONDS", refresh_ttl, MAX_REFRESH_TTL_SECONDS),
        ] {
            if !(1..=max).contains(&ttl) {
                return Err(ConfigError::Invalid { name, reason: format!("must be from 1 to {max} seconds") });
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

impl ApiConfig {
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

/// How the connection to the SMTP relay is secured (`SMTP_TLS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: only for a local sink such as maildev.
    None,
    /// A plain connection upgraded with STARTTLS, which the relay must offer.
    StartTls,
    /// TLS from the first byte (implicit TLS).
    Tls,
}

impl SmtpTls {
    /// The port relays conventionally listen on for this mode.
    fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

impl FromStr for SmtpTls {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Tls),
            _ => Err(format!("{text:?} is not one of none, starttls, tls")),
        }
    }
}

/// The account the relay is logged in to.
#[derive(Clone, Debug)]
pub struct SmtpLogin {
    pub username: String,
    pub password: SecretString,
}

/// Where the SMTP relay is and how to talk to it.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// None when the relay takes mail without logging in (a local sink, a relay trusting the VPC).
    pub login: Option<SmtpLogin>,
    /// Bounds connecting and each SMTP command; keep it well under the function's timeout.
    pub timeout: Duration,
}

/// Who error alerts come from and go to, and where their links point.
#[derive(Clone, Debug)]
pub struct AlertConfig {
    pub from: Mailbox,
    pub recipients: Vec<Mailbox>,
    /// The API's base URL without a trailing slash, stage included (`https://…/Prod`).
    pub api_base_url: String,
}

/// What the error handler needs.
#[derive(Clone, Debug)]
pub struct ErrorHandlerConfig {
    pub database: DatabaseConfig,
    pub smtp: SmtpConfig,
    pub alert: AlertConfig,
    /// How long an email may stay claimed by one invocation before another may send it: longer
    /// than the function's timeout, so a live sender is never doubled.
    pub claim_timeout: Duration,
}

impl SmtpConfig {
    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let tls: SmtpTls = optional(lookup, "SMTP_TLS", SmtpTls::StartTls)?;
        let login = match (lookup("SMTP_USERNAME").filter(|v| !v.is_empty()), lookup("SMTP_PASSWORD")) {
            (Some(username), Some(password)) if !password.is_empty() => {
                Some(SmtpLogin { username, password: SecretString::from(password) })
            }
            (Some(_), _) => return Err(ConfigError::Missing("SMTP_PASSWORD")),
            (None, Some(password)) if !password.is_empty() => return Err(ConfigError::Missing("SMTP_USERNAME")),
            (None, _) => None,
        };
        Ok(Self {
            host: required(lookup, "SMTP_HOST")?.trim().to_string(),
            port: optional(lookup, "SMTP_PORT", tls.default_port())?,
            tls,
            login,
            timeout: Duration::from_millis(optional(lookup, "SMTP_TIMEOUT_MS", 10_000)?),
        })
    }
}

impl AlertConfig {
    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let from = required(lookup, "MAIL_FROM")?;
        let from = from.trim().parse().map_err(|error: lettre::address::AddressError| ConfigError::Invalid {
            name: "MAIL_FROM",
            reason: format!("{from:?} is not an email address: {error}"),
        })?;
        let recipients = required(lookup, "ALERT_RECIPIENTS")?
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry.parse().map_err(|error: lettre::address::AddressError| ConfigError::Invalid {
                    name: "ALERT_RECIPIENTS",
                    reason: format!("{entry:?} is not an email address: {error}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if recipients.is_empty() {
            return Err(ConfigError::Missing("ALERT_RECIPIENTS"));
        }
        let api_base_url = required(lookup, "API_BASE_URL")?.trim().trim_end_matches('/').to_string();
        if !(api_base_url.starts_with("https://") || api_base_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                name: "API_BASE_URL",
                reason: "must start with https:// or http://".into(),
            });
        }
        Ok(Self { from, recipients, api_base_url })
    }

    /// Where the API serves one event.
    pub fn event_link(&self, id: uuid::Uuid) -> String {
        format!("{}/api/events/{id}", self.api_base_url)
    }
}

impl ErrorHandlerConfig {
    /// Reads the error handler's configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let claim_timeout = optional(lookup, "NOTIFICATION_CLAIM_TIMEOUT_SECONDS", 300)?;
        if claim_timeout == 0 {
            return Err(ConfigError::Invalid {
                name: "NOTIFICATION_CLAIM_TIMEOUT_SECONDS",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            database: DatabaseConfig::from_lookup(lookup)?,
            smtp: SmtpConfig::from_lookup(lookup)?,
            alert: AlertConfig::from_lookup(lookup)?,
            claim_timeout: Duration::from_secs(claim_timeout),
        })
    }
}

/// Reads a variable from the process environment; the `lookup` every `from_lookup` takes in production.
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A variable that must be set and not blank.
pub fn required(lookup: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<String, ConfigError> {
    match lookup(name) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ConfigError::Missing(name)),
    }
}

/// A variable parsed as `T`, or `default` when unset or blank; unparsable is an error naming it.
pub fn optional<T>(lookup: &dyn Fn(&str) -> Option<String>, name: &'static str, default: T) -> Result<T, ConfigError>
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

    fn config_from(pairs: &[(&str, &str)]) -> Result<ApiConfig, ConfigError> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ApiConfig::from_lookup(&|name| vars.get(name).cloned())
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
        assert_eq!(config.database.statement_timeout, DEFAULT_STATEMENT_TIMEOUT);
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

    #[test]
    fn the_statement_timeout_is_read_in_milliseconds_and_zero_turns_it_off() {
        let database = |timeout: &str| {
            let vars: HashMap<&str, &str> =
                [("DATABASE_URL", "postgres://x"), ("DATABASE_STATEMENT_TIMEOUT_MS", timeout)].into_iter().collect();
            DatabaseConfig::from_lookup(&|name| vars.get(name).map(|v| v.to_string()))
        };
        assert_eq!(database("250").unwrap().statement_timeout, Duration::from_millis(250));
        assert_eq!(database("0").unwrap().statement_timeout, Duration::ZERO);
        let error = database("5s").unwrap_err();
        assert!(
            error.to_string().starts_with("environment variable DATABASE_STATEMENT_TIMEOUT_MS is invalid"),
            "{error}"
        );
    }

    #[test]
    fn an_access_token_lifetime_over_the_cap_is_refused() {
        let base = [("DATABASE_URL", "postgres://x"), ("JWT_SECRET", SECRET), ("AMQP_URL", "amqp://x")];
        let with = |ttl: &'static str| {
            let mut pairs = base.to_vec();
            pairs.push(("JWT_ACCESS_TTL_SECONDS", ttl));
            config_from(&pairs)
        };
        assert_eq!(with("900").unwrap().jwt.access_ttl, Duration::from_secs(MAX_ACCESS_TTL_SECONDS));
        let error = with("901").unwrap_err();
        assert!(error.to_string().contains("must be from 1 to 900 seconds"), "{error}");
    }

    #[test]
    fn the_login_throttle_has_defaults_and_refuses_zero() {
        let vars: HashMap<&str, &str> =
            [("DATABASE_URL", "postgres://x"), ("JWT_SECRET", SECRET)].into_iter().collect();
        let config = LoginConfig::from_lookup(&|name| vars.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(config.throttle, LoginThrottleConfig::default());
        for name in ["LOGIN_MAX_FAILURES_PER_USERNAME", "LOGIN_MAX_FAILURES_PER_CLIENT", "LOGIN_LOCKOUT_SECONDS"] {
            let mut vars = vars.clone();
            vars.insert(name, "0");
            let error = LoginConfig::from_lookup(&|key| vars.get(key).map(|v| v.to_string())).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    fn error_handler_config_from(pairs: &[(&str, &str)]) -> Result<ErrorHandlerConfig, ConfigError> {
        let mut vars: HashMap<String, String> = [
            ("DATABASE_URL", "postgres://localhost/x"),
            ("SMTP_HOST", "smtp.example.com"),
            ("MAIL_FROM", "EventStream <alerts@example.com>"),
            ("ALERT_RECIPIENTS", "ops@example.com"),
            ("API_BASE_URL", "https://api.example.com/Prod"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        ErrorHandlerConfig::from_lookup(&|name| vars.get(name).cloned())
    }

    #[test]
    fn the_error_handler_defaults_to_starttls_on_587_without_login() {
        let config = error_handler_config_from(&[]).unwrap();
        assert_eq!(config.smtp.host, "smtp.example.com");
        assert_eq!((config.smtp.tls, config.smtp.port), (SmtpTls::StartTls, 587));
        assert!(config.smtp.login.is_none());
        assert_eq!(config.smtp.timeout, Duration::from_secs(10));
        assert_eq!(config.claim_timeout, Duration::from_secs(300));
        assert_eq!(config.alert.from.to_string(), "EventStream <alerts@example.com>");
    }

    #[test]
    fn the_smtp_port_defaults_by_tls_mode_and_a_set_port_wins() {
        let port = |pairs: &[(&str, &str)]| error_handler_config_from(pairs).unwrap().smtp.port;
        assert_eq!(port(&[("SMTP_TLS", "tls")]), 465);
        assert_eq!(port(&[("SMTP_TLS", "NONE")]), 25);
        assert_eq!(port(&[("SMTP_TLS", "none"), ("SMTP_PORT", "1025")]), 1025);
        let error = error_handler_config_from(&[("SMTP_TLS", "ssl")]).unwrap_err();
        assert!(error.to_string().starts_with("environment variable SMTP_TLS is invalid"), "{error}");
        let error = error_handler_config_from(&[("SMTP_PORT", "70000")]).unwrap_err();
        assert!(error.to_string().starts_with("environment variable SMTP_PORT is invalid"), "{error}");
    }

    #[test]
    fn an_smtp_login_needs_both_username_and_password() {
        let config = error_handler_config_from(&[("SMTP_USERNAME", "user"), ("SMTP_PASSWORD", "pw")]).unwrap();
        let login = config.smtp.login.unwrap();
        assert_eq!((login.username.as_str(), login.password.expose_secret()), ("user", "pw"));
        let error = error_handler_config_from(&[("SMTP_USERNAME", "user")]).unwrap_err();
        assert_eq!(error.to_string(), "environment variable SMTP_PASSWORD is not set");
        let error = error_handler_config_from(&[("SMTP_PASSWORD", "pw")]).unwrap_err();
        assert_eq!(error.to_string(), "environment variable SMTP_USERNAME is not set");
    }

    #[test]
    fn alert_recipients_are_a_comma_separated_list_of_addresses() {
        let config =
            error_handler_config_from(&[("ALERT_RECIPIENTS", " ops@example.com, Dev <dev@example.com>,")]).unwrap();
        let recipients: Vec<String> = config.alert.recipients.iter().map(ToString::to_string).collect();
        assert_eq!(recipients, ["ops@example.com", "Dev <dev@example.com>"]);

        let error = error_handler_config_from(&[("ALERT_RECIPIENTS", "ops@example.com, not-an-address")]).unwrap_err();
        assert!(
            error.to_string().starts_with(r#"environment variable ALERT_RECIPIENTS is invalid: "not-an-address""#),
            "{error}"
        );
        let error = error_handler_config_from(&[("ALERT_RECIPIENTS", " , ")]).unwrap_err();
        assert_eq!(error.to_string(), "environment variable ALERT_RECIPIENTS is not set");
        let error = error_handler_config_from(&[("MAIL_FROM", "alerts")]).unwrap_err();
        assert!(error.to_string().starts_with("environment variable MAIL_FROM is invalid"), "{error}");
    }

    #[test]
    fn the_api_base_url_must_be_http_and_loses_its_trailing_slash() {
        let config =
            error_handler_config_from(&[("API_BASE_URL", "http://localhost:4566/restapis/x/local/_user_request_/")])
                .unwrap();
        let id = uuid::Uuid::nil();
        assert_eq!(
            config.alert.event_link(id),
            format!("http://localhost:4566/restapis/x/local/_user_request_/api/events/{id}")
        );
        let error = error_handler_config_from(&[("API_BASE_URL", "api.example.com")]).unwrap_err();
        assert!(error.to_string().starts_with("environment variable API_BASE_URL is invalid"), "{error}");
        let error = error_handler_config_from(&[("SMTP_HOST", "")]).unwrap_err();
        assert_eq!(error.to_string(), "environment variable SMTP_HOST is not set");
    }
}
