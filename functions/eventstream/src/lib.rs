//! EventStream: the domain, its ports and adapters, authentication and the Lambda handlers.
//!
//! Each Lambda function under `functions/` is a thin `main.rs` over this crate: it reads the
//! [`config::Config`], builds its state once per cold start and hands a handler from
//! [`handlers`] to the Lambda runtime.

pub mod admin;
pub mod auth;
pub mod bus;
pub mod config;
pub mod domain;
pub mod graphql;
pub mod handlers;
pub mod intake;
pub mod mail;
pub mod store;

/// The schema every database EventStream talks to is migrated to, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
