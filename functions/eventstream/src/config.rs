//! Configuration, read from the environment once per cold start.
//!
//! Every variable is documented in `.env.example`. A missing or invalid variable stops the
//! process at start with an error that names it, rather than failing on the first request.
//!
//! A secret is either a variable's value (`JWT_SECRET`, credentials in `DATABASE_URL`...) or the
//! Secrets Manager secret a `*_ARN` variable names. The latter are read on first use, not at start,
//! so each `from_lookup` returns a [`Pending`] configuration: complete once the secrets' values are
//! in ([`crate::secrets::resolve`]).

use std::{str::FromStr, time::Duration};

use lapin::uri::AMQPUri;
use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

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
    #[error("environment variables {value} and {arn} are both set: set one of them")]
    Ambiguous { value: &'static str, arn: &'static str },
    #[error("neither environment variable {value} nor {arn} is set")]
    Neither { value: &'static str, arn: &'static str },
}

/// A configuration whose secrets are still in Secrets Manager: the configuration without them,
/// and for each secret, the variable that names it and where its value goes.
pub struct Pending<C> {
    partial: C,
    reads: Vec<SecretRead<C>>,
}

/// Puts a secret's value into its place in the configuration, or says why the value is unusable
/// (without quoting it).
type Apply<C> = Box<dyn Fn(&mut C, &SecretString) -> Result<(), ConfigError> + Send + Sync>;

struct SecretRead<C> {
    /// The `*_ARN` variable, named by every error about this secret.
    variable: &'static str,
    arn: String,
    apply: Apply<C>,
}

impl<C> Pending<C> {
    /// A configuration with no secret to read.
    pub fn ready(config: C) -> Self {
        Self { partial: config, reads: Vec::new() }
    }

    fn read(
        partial: C,
        variable: &'static str,
        arn: String,
        apply: impl Fn(&mut C, &SecretString) -> Result<(), ConfigError> + Send + Sync + 'static,
    ) -> Self {
        Self { partial, reads: vec![SecretRead { variable, arn, apply: Box::new(apply) }] }
    }

    /// The secrets to read, as (variable, ARN), in the order [`Pending::complete`] takes their values.
    pub fn secrets(&self) -> impl ExactSizeIterator<Item = (&'static str, &str)> {
        self.reads.iter().map(|read| (read.variable, read.arn.as_str()))
    }

    /// The configuration, given the values of [`Pending::secrets`] in their order.
    pub fn complete(&self, values: &[SecretString]) -> Result<C, ConfigError>
    where
        C: Clone,
    {
        assert_eq!(values.len(), self.reads.len(), "one value per secret");
        let mut config = self.partial.clone();
        for (read, value) in self.reads.iter().zip(values) {
            (read.apply)(&mut config, value)?;
        }
        Ok(config)
    }
}

impl<C: std::fmt::Debug> std::fmt::Debug for Pending<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("partial", &self.partial)
            .field("secrets", &self.secrets().collect::<Vec<_>>())
            .finish()
    }
}

/// Gathers the secrets of a configuration's parts, to make the whole a [`Pending`] of its own.
pub struct Parts<P> {
    reads: Vec<SecretRead<P>>,
}

impl<P: 'static> Default for Parts<P> {
    fn default() -> Self {
        Self { reads: Vec::new() }
    }
}

impl<P: 'static> Parts<P> {
    /// `part` without its secrets, which are kept to go to `field` of the whole.
    pub fn take<C: 'static>(&mut self, part: Pending<C>, field: fn(&mut P) -> &mut C) -> C {
        self.reads.extend(part.reads.into_iter().map(|read| {
            let apply = read.apply;
            SecretRead {
                variable: read.variable,
                arn: read.arn,
                apply: Box::new(move |whole: &mut P, value: &SecretString| apply(field(whole), value)) as Apply<P>,
            }
        }));
        part.partial
    }

    /// The whole, with its parts' secrets still to read.
    pub fn pending(self, whole: P) -> Pending<P> {
        Pending { partial: whole, reads: self.reads }
    }
}

/// A user name and password: for PostgreSQL, RabbitMQ or the SMTP relay.
#[derive(Clone, Debug)]
pub struct Login {
    pub username: String,
    pub password: SecretString,
}

/// The JSON of a Secrets Manager secret that holds a login, as RDS (managed master user) and Amazon
/// MQ (event source) keep them; other keys (engine, host...) are ignored.
#[derive(Deserialize)]
struct LoginSecret {
    username: String,
    password: String,
}

impl Login {
    /// The login a secret holds; an error names `variable` and never quotes the value.
    fn from_secret(variable: &'static str, value: &SecretString) -> Result<Self, ConfigError> {
        let secret: LoginSecret = serde_json::from_str(value.expose_secret()).map_err(|_| ConfigError::Invalid {
            name: variable,
            // serde_json's message may quote the value, so it is left out.
            reason: "the secret is not a JSON object with string fields username and password".into(),
        })?;
        if secret.username.is_empty() || secret.password.is_empty() {
            return Err(ConfigError::Invalid {
                name: variable,
                reason: "the secret's username or password is empty".into(),
            });
        }
        Ok(Self { username: secret.username, password: SecretString::from(secret.password) })
    }
}

/// The value of `variable` or the secret that `arn_variable` names, never both.
enum Source {
    Value(String),
    Arn(String),
}

fn value_or_arn(
    lookup: &dyn Fn(&str) -> Option<String>,
    variable: &'static str,
    arn_variable: &'static str,
) -> Result<Option<Source>, ConfigError> {
    match (nonblank(lookup, variable), nonblank(lookup, arn_variable)) {
        (Some(_), Some(_)) => Err(ConfigError::Ambiguous { value: variable, arn: arn_variable }),
        (Some(value), None) => Ok(Some(Source::Value(value))),
        (None, Some(arn)) => Ok(Some(Source::Arn(arn.trim().to_string()))),
        (None, None) => Ok(None),
    }
}

fn nonblank(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name).filter(|value| !value.trim().is_empty())
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
    /// `DATABASE_URL`, with or without a user and password.
    pub url: SecretString,
    /// From the secret `DATABASE_SECRET_ARN` names: replaces the URL's user and password.
    pub login: Option<Login>,
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
    pub fn from_env() -> Result<Pending<Self>, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Pending<Self>, ConfigError> {
        let mut parts = Parts::default();
        let config = Self {
            database: parts.take(DatabaseConfig::from_lookup(lookup)?, |config: &mut Self| &mut config.database),
            amqp: parts.take(AmqpConfig::from_lookup(lookup)?, |config| &mut config.amqp),
            sweep: SweepConfig {
                older_than: Duration::from_secs(optional(lookup, "SWEEP_AFTER_SECONDS", 60)?),
                limit: optional(lookup, "SWEEP_LIMIT", 1_000)?,
            },
        };
        Ok(parts.pending(config))
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
    pub fn from_env() -> Result<Pending<Self>, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Pending<Self>, ConfigError> {
        let mut parts = Parts::default();
        let config = Self {
            database: parts.take(DatabaseConfig::from_lookup(lookup)?, |config: &mut Self| &mut config.database),
            jwt: parts.take(JwtConfig::from_lookup(lookup)?, |config| &mut config.jwt),
            throttle: LoginThrottleConfig::from_lookup(lookup)?,
        };
        Ok(parts.pending(config))
    }
}

impl DatabaseConfig {
    pub fn from_env() -> Result<Pending<Self>, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Pending<Self>, ConfigError> {
        let config = Self {
            url: SecretString::from(required(lookup, "DATABASE_URL")?),
            login: None,
            max_connections: optional(lookup, "DATABASE_MAX_CONNECTIONS", 2)?,
            statement_timeout: Duration::from_millis(optional(
                lookup,
                "DATABASE_STATEMENT_TIMEOUT_MS",
                DEFAULT_STATEMENT_TIMEOUT.as_millis() as u64,
            )?),
        };
        Ok(match nonblank(lookup, "DATABASE_SECRET_ARN") {
            None => Pending::ready(config),
            Some(arn) => Pending::read(config, "DATABASE_SECRET_ARN", arn.trim().to_string(), |config, value| {
                config.login = Some(Login::from_secret("DATABASE_SECRET_ARN", value)?);
                Ok(())
            }),
        })
    }
}

impl AmqpConfig {
    pub fn from_env() -> Result<Pending<Self>, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Pending<Self>, ConfigError> {
        let mut parts = Parts::default();
        let config = Self {
            url: parts.take(amqp_url(lookup)?, |config: &mut Self| &mut config.url),
            queue_prefix: optional(lookup, "AMQP_QUEUE_PREFIX", String::new())?,
            timeout: Duration::from_millis(optional(lookup, "AMQP_TIMEOUT_MS", 3_000)?),
        };
        Ok(parts.pending(config))
    }
}

/// `AMQP_URL`, whose user and password come from the secret `AMQP_SECRET_ARN` names when it is set.
pub fn amqp_url(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Pending<SecretString>, ConfigError> {
    let url = required(lookup, "AMQP_URL")?;
    let Some(arn) = nonblank(lookup, "AMQP_SECRET_ARN") else {
        return Ok(Pending::ready(SecretString::from(url)));
    };
    let uri = parse_amqp_url(&url)?;
    Ok(Pending::read(SecretString::from(url), "AMQP_SECRET_ARN", arn.trim().to_string(), move |url, value| {
        let login = Login::from_secret("AMQP_SECRET_ARN", value)?;
        let mut uri = uri.clone();
        uri.authority.userinfo.username = login.username;
        uri.authority.userinfo.password = login.password.expose_secret().to_owned();
        // lapin's own rendering, which percent-encodes the user and password.
        *url = SecretString::from(uri.to_string());
        Ok(())
    }))
}

/// `AMQP_URL` parsed as lapin parses it.
pub fn parse_amqp_url(url: &str) -> Result<AMQPUri, ConfigError> {
    // The parser's message is kept out of the error: it may quote the password.
    url.parse::<AMQPUri>()
        .map_err(|_| ConfigError::Invalid { name: "AMQP_URL", reason: "not an amqp:// or amqps:// URL".into() })
}

/// The signing key, refused when shorter than [`MIN_JWT_SECRET_BYTES`]; the error names `variable`.
fn jwt_secret(variable: &'static str, secret: &str) -> Result<SecretString, ConfigError> {
    if secret.len() < MIN_JWT_SECRET_BYTES {
        return Err(ConfigError::Invalid {
            name: variable,
            reason: format!("the signing key must be at least {MIN_JWT_SECRET_BYTES} bytes long"),
        });
    }
    Ok(SecretString::from(secret))
}

impl JwtConfig {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Pending<Self>, ConfigError> {
        let source = value_or_arn(lookup, "JWT_SECRET", "JWT_SECRET_ARN")?
            .ok_or(ConfigError::Neither { value: "JWT_SECRET", arn: "JWT_SECRET_ARN" })?;
        let secret = match &source {
            Source::Value(secret) => jwt_secret("JWT_SECRET", secret)?,
            Source::Arn(_) => SecretString::default(),
        };
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
        let config = Self {
            secret,
            issuer: optional(lookup, "JWT_ISSUER", "eventstream".to_string())?,
            audience: optional(lookup, "JWT_AUDIENCE", "eventstream-api".to_string())?,
            access_ttl: Duration::from_secs(access_ttl),
            refresh_ttl: Duration::from_secs(refresh_ttl),
        };
        Ok(match source {
            Source::Value(_) => Pending::ready(config),
            // The secret's whole SecretString is the key.
            Source::Arn(arn) => Pending::read(config, "JWT_SECRET_ARN", arn, |config, value| {
                config.secret = jwt_secret("JWT_SECRET_ARN", value.expose_secret())?;
                Ok(())
            }),
        })
    }

    /// The signing key's bytes, for the token codec only.
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        self.secret.expose_secret().as_bytes()
    }
}

impl ApiConfig {
    /// Reads the ingest (or graphql) function's configuration from the process environment.
    pub fn from_env() -> Result<Pending<Self>, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Pending<Self>, ConfigError> {
        let mut parts = Parts::default();
        let config = Self {
            database: parts.take(DatabaseConfig::from_lookup(lookup)?, |config: &mut Self| &mut config.database),
            jwt: parts.take(JwtConfig::from_lookup(lookup)?, |config| &mut config.jwt),
            amqp: parts.take(AmqpConfig::from_lookup(lookup)?, |config| &mut config.amqp),
        };
        Ok(parts.pending(config))
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

/// Where the SMTP relay is and how to talk to it.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The account the relay is logged in to; None when it takes mail without logging in (a local
    /// sink, a relay trusting the VPC).
    pub login: Option<Login>,
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
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Pending<Self>, ConfigError> {
        let tls: SmtpTls = optional(lookup, "SMTP_TLS", SmtpTls::StartTls)?;
        // Either variable beside the secret, which holds both, would leave unclear which one is used.
        let secret = match value_or_arn(lookup, "SMTP_PASSWORD", "SMTP_SECRET_ARN")? {
            Some(Source::Arn(_)) if nonblank(lookup, "SMTP_USERNAME").is_some() => {
                return Err(ConfigError::Ambiguous { value: "SMTP_USERNAME", arn: "SMTP_SECRET_ARN" });
            }
            Some(Source::Arn(arn)) => Some(arn),
            _ => None,
        };
        let login = match (lookup("SMTP_USERNAME").filter(|v| !v.is_empty()), lookup("SMTP_PASSWORD")) {
            (Some(username), Some(password)) if !password.is_empty() => {
                Some(Login { username, password: SecretString::from(password) })
            }
            (Some(_), _) => return Err(ConfigError::Missing("SMTP_PASSWORD")),
            (None, Some(password)) if !password.is_empty() => return Err(ConfigError::Missing("SMTP_USERNAME")),
            (None, _) => None,
        };
        let config = Self {
            host: required(lookup, "SMTP_HOST")?.trim().to_string(),
            port: optional(lookup, "SMTP_PORT", tls.default_port())?,
            tls,
            login,
            timeout: Duration::from_millis(optional(lookup, "SMTP_TIMEOUT_MS", 10_000)?),
        };
        Ok(match secret {
            None => Pending::ready(config),
            Some(arn) => Pending::read(config, "SMTP_SECRET_ARN", arn, |config, value| {
                config.login = Some(Login::from_secret("SMTP_SECRET_ARN", value)?);
                Ok(())
            }),
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
    pub fn from_env() -> Result<Pending<Self>, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Pending<Self>, ConfigError> {
        let claim_timeout = optional(lookup, "NOTIFICATION_CLAIM_TIMEOUT_SECONDS", 300)?;
        if claim_timeout == 0 {
            return Err(ConfigError::Invalid {
                name: "NOTIFICATION_CLAIM_TIMEOUT_SECONDS",
                reason: "must be at least 1".into(),
            });
        }
        let mut parts = Parts::default();
        let config = Self {
            database: parts.take(DatabaseConfig::from_lookup(lookup)?, |config: &mut Self| &mut config.database),
            smtp: parts.take(SmtpConfig::from_lookup(lookup)?, |config| &mut config.smtp),
            alert: AlertConfig::from_lookup(lookup)?,
            claim_timeout: Duration::from_secs(claim_timeout),
        };
        Ok(parts.pending(config))
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
        ApiConfig::from_lookup(&|name| vars.get(name).cloned())?.complete(&[])
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
        assert_eq!(error.to_string(), "neither environment variable JWT_SECRET nor JWT_SECRET_ARN is set");
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
            DatabaseConfig::from_lookup(&|name| vars.get(name).map(|v| v.to_string()))?.complete(&[])
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
        let config =
            LoginConfig::from_lookup(&|name| vars.get(name).map(|v| v.to_string())).unwrap().complete(&[]).unwrap();
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
        ErrorHandlerConfig::from_lookup(&|name| vars.get(name).cloned())?.complete(&[])
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

#[cfg(test)]
mod secret_tests {
    use std::collections::HashMap;

    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const ARN: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:x";

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    fn api(pairs: &[(&str, &str)]) -> Result<Pending<ApiConfig>, ConfigError> {
        let base = [("DATABASE_URL", "postgres://db/x"), ("AMQP_URL", "amqp://mq:5672/%2f")];
        ApiConfig::from_lookup(&lookup(&[base.as_slice(), pairs].concat()))
    }

    fn secret(value: &str) -> SecretString {
        SecretString::from(value.to_string())
    }

    #[test]
    fn a_value_and_the_arn_of_the_same_secret_are_refused_naming_both() {
        let error = api(&[("JWT_SECRET", KEY), ("JWT_SECRET_ARN", ARN)]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variables JWT_SECRET and JWT_SECRET_ARN are both set: set one of them"
        );
        let smtp = |pairs: &[(&str, &str)]| {
            let base = [("SMTP_HOST", "smtp.example.com"), ("SMTP_SECRET_ARN", ARN)];
            SmtpConfig::from_lookup(&lookup(&[base.as_slice(), pairs].concat()))
        };
        let error = smtp(&[("SMTP_PASSWORD", "pw")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variables SMTP_PASSWORD and SMTP_SECRET_ARN are both set: set one of them"
        );
        let error = smtp(&[("SMTP_USERNAME", "user")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variables SMTP_USERNAME and SMTP_SECRET_ARN are both set: set one of them"
        );
        assert_eq!(smtp(&[]).unwrap().secrets().collect::<Vec<_>>(), [("SMTP_SECRET_ARN", ARN)]);
    }

    #[test]
    fn values_in_the_environment_need_no_read() {
        let pending = api(&[("JWT_SECRET", KEY)]).unwrap();
        assert_eq!(pending.secrets().len(), 0);
        assert_eq!(pending.complete(&[]).unwrap().jwt.secret.expose_secret(), KEY);
    }

    #[test]
    fn each_arn_is_one_read_and_its_value_goes_to_its_place() {
        let pending =
            api(&[("JWT_SECRET_ARN", "jwt-arn"), ("DATABASE_SECRET_ARN", "db-arn"), ("AMQP_SECRET_ARN", "mq-arn")])
                .unwrap();
        let secrets: Vec<_> = pending.secrets().collect();
        assert_eq!(
            secrets,
            [("DATABASE_SECRET_ARN", "db-arn"), ("JWT_SECRET_ARN", "jwt-arn"), ("AMQP_SECRET_ARN", "mq-arn")]
        );
        let values = [
            secret(r#"{"username": "app", "password": "db pw", "engine": "postgres", "port": 5432}"#),
            secret(KEY),
            secret(r#"{"username": "mq user", "password": "p@ss:/w?#%rd"}"#),
        ];
        let config = pending.complete(&values).unwrap();
        let login = config.database.login.unwrap();
        assert_eq!((login.username.as_str(), login.password.expose_secret()), ("app", "db pw"));
        assert_eq!(config.database.url.expose_secret(), "postgres://db/x");
        assert_eq!(config.jwt.secret.expose_secret(), KEY);
        let amqp: lapin::uri::AMQPUri = config.amqp.url.expose_secret().parse().unwrap();
        assert_eq!(amqp.authority.userinfo.username, "mq user");
        assert_eq!(amqp.authority.userinfo.password, "p@ss:/w?#%rd");
        assert_eq!((amqp.authority.host.as_str(), amqp.authority.port, amqp.vhost.as_str()), ("mq", 5672, "/"));
    }

    #[test]
    fn an_unusable_secret_is_named_by_its_variable_without_its_value() {
        let pending = api(&[("JWT_SECRET_ARN", ARN), ("DATABASE_SECRET_ARN", ARN)]).unwrap();
        let error =
            pending.complete(&[secret(r#"{"user": "app", "password": "hunter2-secret"}"#), secret(KEY)]).unwrap_err();
        assert!(error.to_string().starts_with("environment variable DATABASE_SECRET_ARN is invalid"), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let error = pending.complete(&[secret("hunter2-secret, not JSON"), secret(KEY)]).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let error =
            pending.complete(&[secret(r#"{"username": 5, "password": "hunter2-secret"}"#), secret(KEY)]).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let login = secret(r#"{"username": "app", "password": "pw"}"#);
        let error = pending.complete(&[login, secret("short-hunter2")]).unwrap_err();
        assert!(error.to_string().starts_with("environment variable JWT_SECRET_ARN is invalid"), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn with_an_amqp_secret_the_url_must_be_one_lapin_reads() {
        let pending = |url: &str| amqp_url(&lookup(&[("AMQP_URL", url), ("AMQP_SECRET_ARN", ARN)]));
        let error = pending("http://b-1.mq.example.com").unwrap_err();
        assert!(error.to_string().starts_with("environment variable AMQP_URL is invalid"), "{error}");
        let url = pending("amqps://b-1.mq.us-east-1.amazonaws.com:5671").unwrap();
        let url = url.complete(&[secret(r#"{"username": "u", "password": "p"}"#)]).unwrap();
        // The default vhost, `/`, as lapin writes it.
        assert_eq!(url.expose_secret(), "amqps://u:p@b-1.mq.us-east-1.amazonaws.com:5671/%2F");
    }
}
