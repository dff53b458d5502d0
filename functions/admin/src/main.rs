//! The admin function: CloudFormation's custom resource that migrates the schema on every deploy,
//! and `eventstream-admin`'s commands for a database no laptop reaches (create-user and set-password
//! generate the password and return it once).

use eventstream::{
    config::DatabaseConfig,
    handlers::{
        admin::{AdminState, handle_lazily},
        lazy::Lazy,
    },
    store::lazy_pool,
};
use lambda_runtime::{Error, run, service_fn, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let state =
        Lazy::new(DatabaseConfig::from_env()?, |config: DatabaseConfig| Ok(AdminState::new(lazy_pool(&config)?)))?;
    run(service_fn(|event| handle_lazily(&state, event))).await
}
