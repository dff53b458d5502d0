use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, extract::JsonBody};
use crate::{
    auth::{TokenKind, TokenPair, verify_password},
    domain::FieldError,
};

/// Body of `POST /api/token`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

/// Body of `POST /api/token/refresh`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh: Option<String>,
}

/// Answer of `POST /api/token/refresh`.
#[derive(Serialize)]
pub struct AccessToken {
    access: String,
}

/// `POST /api/token`: a username and password for an access and a refresh token.
pub async fn obtain(
    State(state): State<AppState>,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<Json<TokenPair>, ApiError> {
    let username = credentials.username.ok_or_else(|| FieldError::new("username", "is required"))?;
    let password = credentials.password.ok_or_else(|| FieldError::new("password", "is required"))?;
    let user = state.users.find_by_username(&username).await?;
    let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
    let password_matches = tokio::task::spawn_blocking(move || verify_password(&password, stored_hash.as_deref()))
        .await
        .map_err(|error| ApiError::Internal(error.into()))?;
    match user {
        Some(user) if password_matches && user.is_active => {
            tracing::info!(user_id = %user.id, "tokens issued");
            Ok(Json(state.tokens.issue_pair(user.id, &user.username)))
        }
        _ => Err(ApiError::InvalidCredentials),
    }
}

/// `POST /api/token/refresh`: a refresh token for a new access token, while the user is active.
pub async fn refresh(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RefreshRequest>,
) -> Result<Json<AccessToken>, ApiError> {
    let token = request.refresh.ok_or_else(|| FieldError::new("refresh", "is required"))?;
    let claims = state.tokens.verify(&token, TokenKind::Refresh).map_err(ApiError::InvalidToken)?;
    match state.users.find_by_id(claims.sub).await? {
        Some(user) if user.is_active => {
            Ok(Json(AccessToken { access: state.tokens.issue(user.id, &user.username, TokenKind::Access) }))
        }
        _ => Err(ApiError::InvalidCredentials),
    }
}
