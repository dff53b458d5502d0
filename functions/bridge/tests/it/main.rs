//! The bridge's integration tests, one module per area, against the real RabbitMQ and LocalStack's
//! SQS and Lambda; what they share is in `helpers`.

mod dispatch;
mod faults;
mod forwarding;
mod helpers;
mod lambda;
mod tls;
