//! GraphQL errors: a message for people and an extension `code` for programs, with causes logged
//! and never shown.

use std::sync::Arc;

use async_graphql::ErrorExtensions;

use crate::{domain::FieldError, store::StoreError};

/// The `code` extension of every error the API returns.
pub mod code {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    pub const QUERY_TOO_DEEP: &str = "QUERY_TOO_DEEP";
    pub const QUERY_TOO_LARGE: &str = "QUERY_TOO_LARGE";
    pub const QUERY_TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";
    pub const FIELD_REPEATED: &str = "FIELD_REPEATED";
    pub const PAGE_TOO_LARGE: &str = "PAGE_TOO_LARGE";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const IDEMPOTENCY_CONFLICT: &str = "IDEMPOTENCY_CONFLICT";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const INTERNAL: &str = "INTERNAL";
}

/// What a resolver fails with. It has no `Display` on purpose: `?` on an error of another type
/// does not compile into a resolver, so a database message cannot leak into a response.
#[derive(Debug)]
pub struct GqlError {
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl GqlError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None }
    }

    /// Bad input in the named argument or input field.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code::BAD_USER_INPUT, message: message.into(), field: Some(field.into()) }
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<FieldError> for GqlError {
    fn from(error: FieldError) -> Self {
        Self::bad_input(error.field, error.message)
    }
}

impl From<&StoreError> for GqlError {
    fn from(error: &StoreError) -> Self {
        match error {
            StoreError::IdempotencyConflict => {
                Self::new(code::IDEMPOTENCY_CONFLICT, "this idempotency key was already used with a different request")
            }
            StoreError::Database(database) if crate::store::is_query_canceled(database) => {
                tracing::warn!(error = ?error, "statement canceled");
                Self::new(code::TIMEOUT, "the query ran longer than the API allows; narrow its range or ask for less")
            }
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                tracing::error!(error = ?error, "database unavailable");
                Self::new(code::UNAVAILABLE, "a service the API depends on is unavailable, try again")
            }
            other => {
                tracing::error!(error = ?other, "query failed");
                Self::new(code::INTERNAL, "internal error")
            }
        }
    }
}

impl From<StoreError> for GqlError {
    fn from(error: StoreError) -> Self {
        Self::from(&error)
    }
}

/// DataLoaders share one error among every key of a batch.
impl From<Arc<StoreError>> for GqlError {
    fn from(error: Arc<StoreError>) -> Self {
        Self::from(error.as_ref())
    }
}

impl From<GqlError> for async_graphql::Error {
    fn from(error: GqlError) -> Self {
        async_graphql::Error::new(error.message).extend_with(|_, extensions| {
            extensions.set("code", error.code);
            if let Some(field) = &error.field {
                extensions.set("field", field.as_str());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_statement_past_its_timeout_is_a_timeout_without_the_database_message() {
        let error = GqlError::from(StoreError::from(crate::store::canceled_statement().await));
        assert_eq!(error.code(), code::TIMEOUT);
        assert!(!error.message.contains("statement timeout"), "{}", error.message);
    }
}
