//! The login function: `POST /api/token` and `POST /api/token/refresh`, apart from ingest so that
//! password hashing cannot take the instances that store events.

use eventstream::{
    config::LoginConfig,
    handlers::{
        http::lambda::run_http,
        lazy::Lazy,
        rest::{LoginState, login_service, malformed_request},
    },
    store::lazy_pool,
};
use lambda_http::{Error, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let service = Lazy::new(LoginConfig::from_env()?, |config: LoginConfig| {
        let pool = lazy_pool(&config.database)?;
        Ok(login_service(LoginState::new(pool, &config.jwt, config.throttle)))
    })?;
    run_http(service, malformed_request).await
}
