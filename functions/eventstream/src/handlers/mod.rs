//! Handlers: turn a Lambda event into a domain call and its result into a Lambda response.

pub mod dispatch;
pub mod graphql;
pub mod http;
pub mod sqs;
