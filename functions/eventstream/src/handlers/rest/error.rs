//! The one error shape of the REST API: `{"error": {"code", "message", "field"}}`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    auth::{AuthError, LoginError},
    domain::{FieldError, Role},
    handlers::http::Unauthenticated,
    store::StoreError,
};

/// Everything a request can fail with, each mapped to one status and code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    #[error("{message}")]
    MalformedJson { message: String, field: Option<String> },
    /// API Gateway's event for the request could not be turned into an HTTP request.
    #[error("{0}")]
    MalformedRequest(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("an Authorization: Bearer token is required")]
    MissingToken,
    #[error("the token is invalid, expired or revoked")]
    InvalidToken(#[source] AuthError),
    #[error("this needs the {0} role, which the token does not carry")]
    Forbidden(Role),
    #[error("the username or password is wrong, or the user is inactive")]
    InvalidCredentials,
    #[error("the refresh token was already used; that login is revoked, log in again")]
    RefreshReused,
    #[error("too many failed logins for this username or from this client; try again in {} seconds", retry_after.as_secs())]
    TooManyAttempts { retry_after: std::time::Duration },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("method not allowed for this path")]
    MethodNotAllowed,
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyConflict,
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be JSON, sent with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("a service the API depends on is unavailable, try again")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidField(_) => (StatusCode::BAD_REQUEST, "invalid_field"),
            ApiError::MalformedJson { .. } => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::MalformedRequest(_) => (StatusCode::BAD_REQUEST, "malformed_request"),
            ApiError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, "missing_token"),
            ApiError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            ApiError::RefreshReused => (StatusCode::UNAUTHORIZED, "refresh_token_reused"),
            ApiError::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::IdempotencyConflict => (StatusCode::CONFLICT, "idempotency_conflict"),
            ApiError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::InvalidField(error) => Some(&error.field),
            ApiError::MalformedJson { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::InvalidField(error) => error.message.clone(),
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::IdempotencyConflict => ApiError::IdempotencyConflict,
            StoreError::Database(error) => error.into(),
            StoreError::Corrupt(_) => ApiError::Internal(error.into()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => ApiError::Unavailable(error.into()),
            // A statement past statement_timeout: the database is too busy for it now.
            error if crate::store::is_query_canceled(&error) => ApiError::Unavailable(error.into()),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<Unauthenticated> for ApiError {
    fn from(refusal: Unauthenticated) -> Self {
        match refusal {
            Unauthenticated::MissingToken => ApiError::MissingToken,
            Unauthenticated::Refused(error) => error.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Store(error) => error.into(),
            refused => ApiError::InvalidToken(refused),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => ApiError::InvalidCredentials,
            LoginError::Locked { retry_after } => ApiError::TooManyAttempts { retry_after },
            LoginError::Auth(error) => error.into(),
            LoginError::RefreshReused => ApiError::RefreshReused,
            LoginError::Store(error) => error.into(),
            LoginError::PasswordCheck(error) => ApiError::Internal(error.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Internal(cause) | ApiError::Unavailable(cause) => {
                tracing::error!(error = ?cause, code, "request failed");
            }
            ApiError::InvalidToken(cause) => tracing::info!(error = %cause, "token refused"),
            _ => tracing::debug!(error = %self, code, "request refused"),
        }
        let body = json!({ "error": { "code": code, "message": self.message(), "field": self.field() } });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::TooManyAttempts { retry_after } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs()));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn render(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_field_error_is_a_400_naming_the_field() {
        let (status, body) = render(FieldError::new("events[2].title", "is required").into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({ "error": { "code": "invalid_field", "message": "is required", "field": "events[2].title" } })
        );
    }

    #[tokio::test]
    async fn an_internal_error_leaks_nothing_of_its_cause() {
        let (status, body) = render(ApiError::Internal(anyhow::anyhow!("password=hunter2 at 10.0.0.1"))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, json!({ "error": { "code": "internal", "message": "internal error", "field": null } }));
    }

    #[tokio::test]
    async fn statuses_follow_the_error_kind() {
        let cases = [
            (ApiError::MissingToken, StatusCode::UNAUTHORIZED, "missing_token"),
            (ApiError::Forbidden(Role::Admin), StatusCode::FORBIDDEN, "forbidden"),
            (LoginError::RefreshReused.into(), StatusCode::UNAUTHORIZED, "refresh_token_reused"),
            (AuthError::Revoked.into(), StatusCode::UNAUTHORIZED, "invalid_token"),
            (ApiError::NotFound("event"), StatusCode::NOT_FOUND, "not_found"),
            (ApiError::MethodNotAllowed, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (StoreError::IdempotencyConflict.into(), StatusCode::CONFLICT, "idempotency_conflict"),
            (ApiError::PayloadTooLarge { limit: 1 }, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            (ApiError::UnsupportedMediaType, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (sqlx::Error::PoolTimedOut.into(), StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            (sqlx::Error::RowNotFound.into(), StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        ];
        for (error, expected_status, expected_code) in cases {
            let (status, body) = render(error).await;
            assert_eq!(status, expected_status);
            assert_eq!(body["error"]["code"], expected_code);
        }
    }

    #[tokio::test]
    async fn a_locked_login_is_a_429_that_says_when_to_come_back() {
        let locked = LoginError::Locked { retry_after: std::time::Duration::from_secs(42) };
        let response = ApiError::from(locked).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }

    #[tokio::test]
    async fn a_statement_past_its_timeout_is_a_503_without_the_database_message() {
        let (status, body) = render(crate::store::canceled_statement().await.into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(!body.to_string().contains("statement timeout"), "{body}");
    }

    #[tokio::test]
    async fn unauthorized_answers_carry_a_bearer_challenge() {
        let response = ApiError::MissingToken.into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
