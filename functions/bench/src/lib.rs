//! What the benchmarks share: the machine they ran on, their databases and RabbitMQ topologies,
//! the requests they send, the Lambda Runtime API they serve to function binaries, and how a
//! phase is timed. Each benchmark is a binary in `src/bin/`;
//! BENCHMARKS.md holds their figures.

pub mod database;
pub mod machine;
pub mod rabbitmq;
pub mod requests;
pub mod runtime;
pub mod timing;
