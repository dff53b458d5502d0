//! Sessions: logging in (throttled), rotating refresh tokens, and checking an access token against
//! its user on every request.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use uuid::Uuid;

use super::{Claims, TokenCodec, TokenError, TokenKind, TokenPair, token::TokenSubject, verify_password};
use crate::{
    config::LoginThrottleConfig,
    store::{PgSessionStore, PgUserStore, RefreshUse, StoreError, ThrottleKey, User},
};

/// Why a token was not accepted for a request.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The user was deleted or deactivated, or revoked the token's version.
    #[error("the token was revoked")]
    Revoked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a login or a refresh was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the username or password is wrong, or the user is inactive")]
    InvalidCredentials,
    /// Too many failed logins for this username or from this client.
    #[error("too many failed logins; try again in {} seconds", retry_after.as_secs())]
    Locked { retry_after: Duration },
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A refresh token used a second time: the login it belongs to is revoked.
    #[error("the refresh token was already used; that login is revoked")]
    RefreshReused,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the password check did not finish")]
    PasswordCheck(#[source] tokio::task::JoinError),
}

/// Checks an access token's signature and claims, then that its user still exists, is active
/// and still holds the token's version. Built once per cold start.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<TokenCodec>,
    users: PgUserStore,
}

impl Authenticator {
    pub fn new(tokens: Arc<TokenCodec>, users: PgUserStore) -> Self {
        Self { tokens, users }
    }

    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, access_token: &str) -> Result<Claims, AuthError> {
        let claims = self.tokens.verify(access_token, TokenKind::Access)?;
        let standing = self.users.token_standing(claims.sub).await.map_err(StoreError::from)?;
        match standing {
            Some(standing) if standing.is_active && standing.token_version == claims.ver => Ok(claims),
            _ => Err(AuthError::Revoked),
        }
    }
}

/// Logging in and refreshing. Built once per cold start of the login function.
#[derive(Clone)]
pub struct Sessions {
    tokens: Arc<TokenCodec>,
    users: PgUserStore,
    store: PgSessionStore,
    throttle: LoginThrottleConfig,
}

impl Sessions {
    pub fn new(
        tokens: Arc<TokenCodec>,
        users: PgUserStore,
        store: PgSessionStore,
        throttle: LoginThrottleConfig,
    ) -> Self {
        Self { tokens, users, store, throttle }
    }

    /// A username and password, from the client at `client` (its address), for a new token pair.
    /// A locked username or client is refused before any password is hashed, so a flood of
    /// guesses costs a database read each, not an argon2 run.
    #[tracing::instrument(skip(self, password))]
    pub async fn login(&self, username: &str, password: String, client: &str) -> Result<TokenPair, LoginError> {
        let keys = [ThrottleKey::Username(username), ThrottleKey::Client(client)];
        if let Some(until) = self.store.locked_until(&keys).await? {
            return Err(LoginError::Locked { retry_after: seconds_until(until) });
        }
        let user = self.users.find_by_username(username).await?;
        let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
        let password_matches = tokio::task::spawn_blocking(move || verify_password(&password, stored_hash.as_deref()))
            .await
            .map_err(LoginError::PasswordCheck)?;
        match user {
            Some(user) if password_matches && user.is_active => {
                self.store.clear_failures(username).await?;
                let pair = self.issue(&user, Uuid::now_v7()).await?;
                tracing::info!(user_id = %user.id, "tokens issued");
                Ok(pair)
            }
            _ => {
                let limits = [
                    (keys[0], self.throttle.max_failures_per_username),
                    (keys[1], self.throttle.max_failures_per_client),
                ];
                for (key, max_failures) in limits {
                    let locked = self
                        .store
                        .record_failure(key, max_failures, self.throttle.window, self.throttle.lockout)
                        .await?;
                    if locked {
                        tracing::warn!(?key, "login locked after repeated failures");
                    }
                }
                Err(LoginError::InvalidCredentials)
            }
        }
    }

    /// A refresh token for a new pair. The token is used up; presenting it again revokes the
    /// login it belongs to. The user must still be active and on the token's version.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, LoginError> {
        let claims = self.tokens.verify(refresh_token, TokenKind::Refresh).map_err(AuthError::from)?;
        let user = self.users.find_by_id(claims.sub).await?;
        let Some(user) = user.filter(|user| user.is_active && user.token_version == claims.ver) else {
            return Err(AuthError::Revoked.into());
        };
        match self.store.use_refresh(claims.jti, user.id).await? {
            RefreshUse::Rotated { family } => {
                let pair = self.issue(&user, family).await?;
                tracing::info!(user_id = %user.id, "tokens rotated");
                Ok(pair)
            }
            RefreshUse::Reused => {
                tracing::warn!(user_id = %user.id, token = %claims.jti, "a used refresh token came back; its login is revoked");
                Err(LoginError::RefreshReused)
            }
            RefreshUse::Unknown => Err(AuthError::Revoked.into()),
        }
    }

    /// A new pair for `user`; the refresh token joins `family` (a login's first token starts one).
    async fn issue(&self, user: &User, family: Uuid) -> Result<TokenPair, StoreError> {
        let subject = TokenSubject {
            user_id: user.id,
            username: &user.username,
            roles: &user.roles,
            token_version: user.token_version,
        };
        let refresh_id = Uuid::now_v7();
        self.store.record_refresh(refresh_id, family, user.id, self.tokens.lifetime(TokenKind::Refresh)).await?;
        Ok(self.tokens.issue_pair(subject, refresh_id))
    }
}

fn seconds_until(until: chrono::DateTime<Utc>) -> Duration {
    let remaining = (until - Utc::now()).num_seconds().max(1);
    Duration::from_secs(remaining as u64)
}
