//! Handlers: turn a Lambda event, an HTTP request or a GraphQL request into a use-case call from
//! [`crate::pipeline`] (or a store query) and its result into the response.

pub mod admin;
pub mod dispatch;
pub mod graphql;
pub mod http;
pub mod lazy;
pub mod rest;
pub mod sqs;
