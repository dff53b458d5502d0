//! Who is calling: the bearer token a request carries, checked once per request, for the REST API
//! and GraphQL alike; each API renders a refusal in its own error shape.

use axum::{extract::FromRequestParts, http::request::Parts, response::IntoResponse};

use crate::auth::{AuthError, Authenticator, Claims, bearer_token};

/// Why a request has no caller.
#[derive(Debug, thiserror::Error)]
pub enum Unauthenticated {
    #[error("an Authorization: Bearer token is required")]
    MissingToken,
    #[error(transparent)]
    Refused(#[from] AuthError),
}

/// A router state that authenticates callers, and how its API answers a request without one.
pub trait Authenticating {
    type Rejection: From<Unauthenticated> + IntoResponse;

    fn authenticator(&self) -> &Authenticator;
}

/// The caller, proven by a valid access token whose user is still active and on its version.
#[derive(Debug)]
pub struct Caller(pub Claims);

impl<S: Authenticating + Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = S::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers).ok_or(Unauthenticated::MissingToken)?;
        let claims = state.authenticator().authenticate(token).await.map_err(Unauthenticated::Refused)?;
        Ok(Caller(claims))
    }
}
