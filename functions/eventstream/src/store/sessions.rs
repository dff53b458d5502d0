//! Refresh-token rotation and login throttling in PostgreSQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// What using a refresh token found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshUse {
    /// The token was unused and is now used: issue the next one in `family`.
    Rotated { family: Uuid },
    /// The token was used before: someone replays it, and its whole family is now revoked.
    Reused,
    /// No such token, or its family was revoked, or it expired.
    Unknown,
}

/// A failed login's key: the username tried, or the client address it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleKey<'a> {
    Username(&'a str),
    Client(&'a str),
}

impl ThrottleKey<'_> {
    fn scope(&self) -> &'static str {
        match self {
            ThrottleKey::Username(_) => "username",
            ThrottleKey::Client(_) => "client",
        }
    }

    /// Keys are stored bounded; a longer one (a made-up username) is cut, which only merges
    /// made-up usernames that share their first 200 characters.
    fn key(&self) -> String {
        let (ThrottleKey::Username(key) | ThrottleKey::Client(key)) = self;
        key.chars().take(200).collect()
    }
}

/// Refresh tokens and failed logins.
#[derive(Clone, Debug)]
pub struct PgSessionStore {
    pool: PgPool,
}

impl PgSessionStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Records a refresh token issued at login (a new family) or by rotation.
    #[tracing::instrument(skip(self))]
    pub async fn record_refresh(
        &self,
        id: Uuid,
        family: Uuid,
        user_id: Uuid,
        lifetime: Duration,
    ) -> Result<(), StoreError> {
        let lifetime_seconds = lifetime.as_secs_f64();
        sqlx::query!(
            "WITH expired AS (DELETE FROM refresh_tokens WHERE user_id = $3 AND expires_at < now())
             INSERT INTO refresh_tokens (id, family, user_id, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            id,
            family,
            user_id,
            lifetime_seconds
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks refresh token `id` of `user_id` used, once: a second use revokes its family.
    #[tracing::instrument(skip(self))]
    pub async fn use_refresh(&self, id: Uuid, user_id: Uuid) -> Result<RefreshUse, StoreError> {
        let row = sqlx::query!(
            r#"WITH token AS (
                   SELECT id, family, used_at IS NOT NULL AS was_used,
                          revoked_at IS NULL AND expires_at > now() AS is_live
                   FROM refresh_tokens WHERE id = $1 AND user_id = $2 FOR UPDATE
               ),
               used AS (
                   UPDATE refresh_tokens SET used_at = now()
                   WHERE id = (SELECT id FROM token WHERE is_live AND NOT was_used) RETURNING family
               ),
               revoked AS (
                   UPDATE refresh_tokens SET revoked_at = now()
                   WHERE family = (SELECT family FROM token WHERE was_used) AND revoked_at IS NULL
               )
               SELECT token.family, token.was_used AS "was_used!", token.is_live AS "is_live!"
               FROM token"#,
            id,
            user_id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) if row.was_used => RefreshUse::Reused,
            Some(row) if row.is_live => RefreshUse::Rotated { family: row.family },
            _ => RefreshUse::Unknown,
        })
    }

    /// Until when the first of `keys` still locked is locked, if one is.
    #[tracing::instrument(skip(self))]
    pub async fn locked_until(&self, keys: &[ThrottleKey<'_>]) -> Result<Option<DateTime<Utc>>, StoreError> {
        let scopes: Vec<&str> = keys.iter().map(ThrottleKey::scope).collect();
        let names: Vec<String> = keys.iter().map(ThrottleKey::key).collect();
        let until = sqlx::query_scalar!(
            "SELECT max(locked_until) FROM login_failures
             WHERE (scope, key) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND locked_until > now()",
            &scopes as &[&str],
            &names
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(until)
    }

    /// Counts a failed login against `key` and locks it once `max_failures` fall in one window.
    /// Answers whether it is now locked.
    #[tracing::instrument(skip(self))]
    pub async fn record_failure(
        &self,
        key: ThrottleKey<'_>,
        max_failures: i32,
        window: Duration,
        lockout: Duration,
    ) -> Result<bool, StoreError> {
        let (window_seconds, lockout_seconds) = (window.as_secs_f64(), lockout.as_secs_f64());
        let locked = sqlx::query_scalar!(
            r#"INSERT INTO login_failures AS f (scope, key, failures, window_started_at, locked_until)
               VALUES ($1, $2, 1, now(), CASE WHEN $3 <= 1 THEN now() + make_interval(secs => $5) END)
               ON CONFLICT (scope, key) DO UPDATE SET
                   failures = CASE WHEN f.window_started_at < now() - make_interval(secs => $4) THEN 1
                                   ELSE f.failures + 1 END,
                   window_started_at = CASE WHEN f.window_started_at < now() - make_interval(secs => $4) THEN now()
                                            ELSE f.window_started_at END,
                   locked_until = CASE
                       WHEN (CASE WHEN f.window_started_at < now() - make_interval(secs => $4) THEN 1
                                  ELSE f.failures + 1 END) >= $3
                       THEN now() + make_interval(secs => $5)
                       ELSE f.locked_until END
               RETURNING coalesce(locked_until > now(), false) AS "locked!""#,
            key.scope(),
            key.key(),
            max_failures,
            window_seconds,
            lockout_seconds
        )
        .fetch_one(&self.pool)
        .await?;
        // Keys whose window and lock both ended hold nothing worth keeping.
        sqlx::query!(
            "DELETE FROM login_failures WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM login_failures
                 WHERE window_started_at < now() - make_interval(secs => $1)
                   AND (locked_until IS NULL OR locked_until < now())
                 LIMIT 100))",
            window_seconds.max(lockout_seconds)
        )
        .execute(&self.pool)
        .await?;
        Ok(locked)
    }

    /// A successful login forgets the username's failures (not the client's: a client guessing
    /// many usernames must not clear its count by logging in to its own account).
    #[tracing::instrument(skip(self))]
    pub async fn clear_failures(&self, username: &str) -> Result<(), StoreError> {
        let key = ThrottleKey::Username(username);
        sqlx::query!("DELETE FROM login_failures WHERE scope = $1 AND key = $2", key.scope(), key.key())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
