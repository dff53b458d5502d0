//! EventStream: the domain, its adapters, the use cases and the handlers of every Lambda function.
//!
//! Layers, each depending only on those after it: [`handlers`] and [`admin`] → [`graphql`] →
//! [`pipeline`] → [`auth`] → [`store`], [`bus`], [`mail`], [`metrics`] → [`config`] → [`domain`]. `docs/architecture.md` says
//! what belongs where. Each Lambda function under `functions/` is a thin `main.rs` over this
//! crate: it reads its configuration, builds its state once per cold start and hands a handler
//! from [`handlers`] to the Lambda runtime.

pub mod admin;
pub mod auth;
pub mod bus;
pub mod config;
pub mod domain;
pub mod graphql;
pub mod handlers;
pub mod mail;
pub mod metrics;
pub mod pipeline;
pub mod secrets;
pub mod store;

/// The schema every database EventStream talks to is migrated to, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
