use axum::{Json, extract::State};
use serde::Deserialize;

use super::{
    ApiError, LoginState,
    extract::{ClientAddress, JsonBody},
};
use crate::{auth::TokenPair, domain::FieldError};

/// The longest username a login looks up: the users table allows 150 characters.
const MAX_USERNAME_CHARS: usize = 150;
/// argon2 hashes what it is given: a password over this is refused before it is hashed.
const MAX_PASSWORD_BYTES: usize = 1024;

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

/// `POST /api/token`: a username and password for an access and a refresh token. Failed logins
/// lock the username and the client for a while (429 with `Retry-After`).
pub async fn obtain(
    State(state): State<LoginState>,
    ClientAddress(client): ClientAddress,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<Json<TokenPair>, ApiError> {
    let username = credentials.username.ok_or_else(|| FieldError::new("username", "is required"))?;
    let password = credentials.password.ok_or_else(|| FieldError::new("password", "is required"))?;
    if username.is_empty() || username.chars().count() > MAX_USERNAME_CHARS || username.chars().any(char::is_control) {
        return Err(FieldError::new(
            "username",
            format!("must be 1 to {MAX_USERNAME_CHARS} characters without control characters"),
        )
        .into());
    }
    if password.len() > MAX_PASSWORD_BYTES || password.contains('\0') {
        let message = format!("must be at most {MAX_PASSWORD_BYTES} bytes, without NUL characters");
        return Err(FieldError::new("password", message).into());
    }
    Ok(Json(state.sessions.login(&username, password, &client).await?))
}

/// `POST /api/token/refresh`: a refresh token for a new pair. Each refresh token works once;
/// presenting a used one again revokes the login it came from.
pub async fn refresh(
    State(state): State<LoginState>,
    JsonBody(request): JsonBody<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let token = request.refresh.ok_or_else(|| FieldError::new("refresh", "is required"))?;
    Ok(Json(state.sessions.refresh(&token).await?))
}
