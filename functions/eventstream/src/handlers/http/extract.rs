//! Extractors that turn a malformed request into an [`ApiError`] instead of axum's plain text.

use axum::{
    body::Bytes,
    extract::{FromRef, FromRequest, FromRequestParts, Request},
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState, MAX_BODY_BYTES};
use crate::auth::{Claims, TokenKind, bearer_token};

/// A JSON request body; errors name the path of the field that failed to parse.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES }
            } else {
                ApiError::MalformedJson { message: rejection.body_text(), field: None }
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::MalformedJson { message: "the request body is empty".into(), field: None });
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            ApiError::MalformedJson { message: error.into_inner().to_string(), field: (path != ".").then_some(path) }
        })?;
        // A second value or stray text after the first would otherwise be dropped without a word.
        deserializer.end().map_err(|error| ApiError::MalformedJson { message: error.to_string(), field: None })?;
        Ok(JsonBody(value))
    }
}

pub(crate) fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(mime) =
        content_type.and_then(|value| value.to_str().ok()).and_then(|value| value.parse::<mime::Mime>().ok())
    else {
        return false;
    };
    mime.type_() == mime::APPLICATION && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

/// The caller, proven by a valid access token.
#[derive(Debug)]
pub struct Authenticated(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers).ok_or(ApiError::MissingToken)?;
        let state = AppState::from_ref(state);
        let claims = state.tokens.verify(token, TokenKind::Access).map_err(ApiError::InvalidToken)?;
        Ok(Authenticated(claims))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        for accepted in ["application/json", "application/json; charset=utf-8", "application/problem+json"] {
            assert!(is_json(Some(&HeaderValue::from_static(accepted))), "{accepted}");
        }
        for refused in ["text/plain", "application/x-www-form-urlencoded", "json", ""] {
            assert!(!is_json(Some(&HeaderValue::from_static(refused))), "{refused}");
        }
        assert!(!is_json(None));
    }
}
