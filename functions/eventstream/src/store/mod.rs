//! Persistence ports and their PostgreSQL adapters.

mod analytics;
mod dead_letters;
mod events;
mod handling;
mod routing;
mod sessions;
mod users;

use std::{str::FromStr, time::Duration};

use secrecy::ExposeSecret;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

pub use analytics::{
    NotificationRecord, PgAnalyticsStore, PipelineHealth, ProcessingRecord, RoutingRecord, SourceCount, StatsBucket,
};
pub use dead_letters::PgDeadLetterStore;
pub use events::{Cursor, EventFilter, IdempotencyClaim, Insertion, InvalidCursor, PgEventStore};
pub use handling::{Claim, PgHandlingStore, Recorded};
pub use routing::{PgRoutingStore, Routing, RoutingDecision};
pub use sessions::{PgSessionStore, RefreshUse, ThrottleKey};
pub use users::{PgUserStore, TokenStanding, User, UserError};

use crate::config::DatabaseConfig;

/// A failure of the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Idempotency-Key was already used for a different request.
    #[error("idempotency key was already used with a different request")]
    IdempotencyConflict,
    #[error("a stored row holds a value the domain does not know: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A domain value read from the text a row stores it as; anything the domain does not know means
/// the row was written by something else, and is reported rather than guessed at.
fn parse_stored<T: FromStr<Err: std::fmt::Display>>(text: &str) -> Result<T, StoreError> {
    text.parse().map_err(|error: T::Err| StoreError::Corrupt(error.to_string()))
}

/// Builds the pool a process shares across invocations; connects on first use, so a cold start
/// does not wait for the database. Every connection has the configured `statement_timeout`.
pub fn lazy_pool(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let options = connect_options(config)?;
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // A frozen Lambda environment may find its connections dead; test them before use.
        .test_before_acquire(true)
        .idle_timeout(Duration::from_secs(60))
        .connect_lazy_with(options))
}

/// How each connection is made: the URL's settings (`sslmode` among them, kept as given), the
/// login from the secret when there is one, and the statement timeout.
pub fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions, sqlx::Error> {
    let mut options = config
        .url
        .expose_secret()
        .parse::<PgConnectOptions>()?
        .options([("statement_timeout", config.statement_timeout.as_millis().to_string())]);
    if let Some(login) = &config.login {
        options = options.username(&login.username).password(login.password.expose_secret());
    }
    Ok(options)
}

/// Whether PostgreSQL canceled the statement (SQLSTATE 57014, `query_canceled`): it ran past
/// `statement_timeout`, or an operator canceled it.
pub fn is_query_canceled(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.code().as_deref() == Some("57014"))
}

/// An error as PostgreSQL returns it for a statement that outlived its timeout.
#[cfg(test)]
pub(crate) async fn canceled_statement() -> sqlx::Error {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL names the test database");
    let config = DatabaseConfig {
        url: url.into(),
        login: None,
        max_connections: 1,
        statement_timeout: Duration::from_millis(50),
    };
    let pool = lazy_pool(&config).expect("DATABASE_URL is a PostgreSQL URL");
    let outcome = sqlx::query("SELECT pg_sleep(10)").execute(&pool).await;
    pool.close().await;
    outcome.expect_err("pg_sleep(10) outlived a 50 ms statement_timeout")
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use sqlx::postgres::PgSslMode;

    use super::*;
    use crate::config::Login;

    fn database(url: &str, login: Option<Login>) -> DatabaseConfig {
        DatabaseConfig { url: url.to_string().into(), login, max_connections: 1, statement_timeout: Duration::ZERO }
    }

    #[test]
    fn the_urls_ssl_mode_is_kept_so_verify_full_checks_the_certificate_and_the_host() {
        let url = "postgres://proxy.example.com:5432/eventstream?sslmode=verify-full";
        let options = connect_options(&database(url, None)).unwrap();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull), "{:?}", options.get_ssl_mode());
        let login = Login { username: "app".into(), password: "p@ss:/word?#%".to_string().into() };
        let options = connect_options(&database(url, Some(login))).unwrap();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull), "{:?}", options.get_ssl_mode());
    }

    #[test]
    fn the_secrets_login_replaces_the_urls_user() {
        let login = Login { username: "from_secret".into(), password: "pw".to_string().into() };
        let options = connect_options(&database("postgres://url_user:url_pw@db/x", Some(login))).unwrap();
        assert_eq!(options.get_username(), "from_secret");
        let options = connect_options(&database("postgres://url_user:url_pw@db/x", None)).unwrap();
        assert_eq!(options.get_username(), "url_user");
    }

    #[tokio::test]
    async fn a_statement_longer_than_the_timeout_is_canceled() {
        let started = Instant::now();
        let error = canceled_statement().await;
        assert!(is_query_canceled(&error), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "canceled after {:?}", started.elapsed());
        assert!(!is_query_canceled(&sqlx::Error::PoolTimedOut));
    }
}
