//! The library's integration tests, one module per area, against the real PostgreSQL, RabbitMQ,
//! SMTP sink and LocalStack's Secrets Manager; what they share is in `helpers`.

mod access;
mod admin_cli;
mod admin_function;
mod api;
mod correlation;
mod dispatch;
mod graphql;
mod handlers_error;
mod handlers_warning;
mod helpers;
mod password_memory;
mod secrets;
