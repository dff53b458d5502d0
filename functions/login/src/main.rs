//! The login function: `POST /api/token` and `POST /api/token/refresh`, apart from ingest so that
//! password hashing cannot take the instances that store events.

use eventstream::{
    config::LoginConfig,
    handlers::{
        http::lambda::run_http,
        rest::{LoginState, login_service, malformed_request},
    },
    store::lazy_pool,
};
use lambda_http::{Error, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = LoginConfig::from_env()?;
    let pool = lazy_pool(&config.database)?;
    run_http(login_service(LoginState::new(pool, &config.jwt, config.throttle)), malformed_request).await
}
