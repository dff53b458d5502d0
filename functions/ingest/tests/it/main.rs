//! The ingest function's integration tests, against the real PostgreSQL and RabbitMQ and
//! cargo-lambda's Runtime API emulator; what they share is in `helpers`.

mod helpers;
mod runtime_api;
