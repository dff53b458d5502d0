use sqlx::{PgPool, postgres::PgQueryResult};
use uuid::Uuid;

use super::StoreError;
use crate::domain::Role;

/// A user as login and token checks need it.
#[derive(Clone, Debug)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
    pub roles: Vec<Role>,
    /// Bumped by every revocation; tokens carry the version they were issued under.
    pub token_version: i32,
}

/// What a request's token is checked against: is the user still there, active, and on the
/// token's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenStanding {
    pub is_active: bool,
    pub token_version: i32,
}

/// A failure of a user-management command.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user named {0:?} already exists")]
    UsernameTaken(String),
    #[error("no user named {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for UserError {
    fn from(error: sqlx::Error) -> Self {
        UserError::Store(StoreError::Database(error))
    }
}

/// Users in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgUserStore {
    pool: PgPool,
}

struct UserRow {
    id: Uuid,
    username: String,
    password_hash: String,
    is_active: bool,
    roles: Vec<String>,
    token_version: i32,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: row.id,
            username: row.username,
            password_hash: row.password_hash,
            is_active: row.is_active,
            roles: parse_roles(&row.roles)?,
            token_version: row.token_version,
        })
    }
}

fn parse_roles(names: &[String]) -> Result<Vec<Role>, StoreError> {
    names.iter().map(|name| super::parse_stored(name)).collect()
}

fn role_names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|role| role.as_str().to_string()).collect()
}

impl PgUserStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    #[tracing::instrument(skip(self))]
    pub async fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query_as!(
            UserRow,
            "SELECT id, username, password_hash, is_active, roles, token_version FROM users WHERE username = $1",
            username
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(User::try_from).transpose()
    }

    #[tracing::instrument(skip(self))]
    pub async fn find_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let row = sqlx::query_as!(
            UserRow,
            "SELECT id, username, password_hash, is_active, roles, token_version FROM users WHERE id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(User::try_from).transpose()
    }

    /// The one lookup every authenticated request makes: a primary-key read of two columns.
    #[tracing::instrument(skip(self))]
    pub async fn token_standing(&self, id: Uuid) -> Result<Option<TokenStanding>, sqlx::Error> {
        sqlx::query_as!(TokenStanding, "SELECT is_active, token_version FROM users WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await
    }

    #[tracing::instrument(skip(self, password_hash))]
    pub async fn create(&self, username: &str, password_hash: &str, roles: &[Role]) -> Result<Uuid, UserError> {
        let id = Uuid::now_v7();
        let inserted = sqlx::query!(
            "INSERT INTO users (id, username, password_hash, roles) VALUES ($1, $2, $3, $4)
             ON CONFLICT (username) DO NOTHING",
            id,
            username,
            password_hash,
            &role_names(roles)
        )
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(UserError::UsernameTaken(username.to_string()));
        }
        Ok(id)
    }

    /// A new password ends every session: tokens issued under the old one stop working.
    #[tracing::instrument(skip(self, password_hash))]
    pub async fn set_password(&self, username: &str, password_hash: &str) -> Result<(), UserError> {
        let updated = sqlx::query!(
            "UPDATE users SET password_hash = $2, token_version = token_version + 1, updated_at = now()
             WHERE username = $1",
            username,
            password_hash
        )
        .execute(&self.pool)
        .await?;
        require_user_found(updated, username)
    }

    /// Deactivating ends every session too; activating leaves the version as it is.
    #[tracing::instrument(skip(self))]
    pub async fn set_active(&self, username: &str, is_active: bool) -> Result<(), UserError> {
        let updated = sqlx::query!(
            "UPDATE users SET is_active = $2, updated_at = now(),
                              token_version = token_version + CASE WHEN $2 THEN 0 ELSE 1 END
             WHERE username = $1",
            username,
            is_active
        )
        .execute(&self.pool)
        .await?;
        require_user_found(updated, username)
    }

    /// Adds roles; they reach the user's tokens at the next login or refresh.
    #[tracing::instrument(skip(self))]
    pub async fn grant(&self, username: &str, roles: &[Role]) -> Result<Vec<Role>, UserError> {
        let roles = sqlx::query_scalar!(
            "UPDATE users SET roles = ARRAY(SELECT DISTINCT unnest(roles || $2::text[]) ORDER BY 1), updated_at = now()
             WHERE username = $1 RETURNING roles",
            username,
            &role_names(roles)
        )
        .fetch_optional(&self.pool)
        .await?;
        roles_of(username, roles)
    }

    /// Removes roles and ends every session, so no token goes on carrying them.
    #[tracing::instrument(skip(self))]
    pub async fn revoke(&self, username: &str, roles: &[Role]) -> Result<Vec<Role>, UserError> {
        let roles = sqlx::query_scalar!(
            "UPDATE users SET roles = ARRAY(SELECT unnest(roles) EXCEPT SELECT unnest($2::text[]) ORDER BY 1),
                              token_version = token_version + 1, updated_at = now()
             WHERE username = $1 RETURNING roles",
            username,
            &role_names(roles)
        )
        .fetch_optional(&self.pool)
        .await?;
        roles_of(username, roles)
    }

    /// "Sign out everywhere": every token issued so far stops working.
    #[tracing::instrument(skip(self))]
    pub async fn end_sessions(&self, username: &str) -> Result<(), UserError> {
        let updated = sqlx::query!(
            "UPDATE users SET token_version = token_version + 1, updated_at = now() WHERE username = $1",
            username
        )
        .execute(&self.pool)
        .await?;
        require_user_found(updated, username)
    }
}

/// The roles an update returned for `username`, or NotFound when it matched no user.
fn roles_of(username: &str, stored: Option<Vec<String>>) -> Result<Vec<Role>, UserError> {
    let stored = stored.ok_or_else(|| UserError::NotFound(username.to_string()))?;
    Ok(parse_roles(&stored)?)
}

fn require_user_found(updated: PgQueryResult, username: &str) -> Result<(), UserError> {
    if updated.rows_affected() == 0 {
        return Err(UserError::NotFound(username.to_string()));
    }
    Ok(())
}
