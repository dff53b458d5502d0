use sqlx::{PgPool, postgres::PgQueryResult};
use uuid::Uuid;

/// A user as the login needs it.
#[derive(Clone, Debug)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
}

/// A failure of a user-management command.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user named {0:?} already exists")]
    UsernameTaken(String),
    #[error("no user named {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Users in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgUserStore {
    pool: PgPool,
}

impl PgUserStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    #[tracing::instrument(skip(self))]
    pub async fn find_by_username(&self, username: &str) -> Result<Option<User>, sqlx::Error> {
        sqlx::query_as!(User, "SELECT id, username, password_hash, is_active FROM users WHERE username = $1", username)
            .fetch_optional(&self.pool)
            .await
    }

    #[tracing::instrument(skip(self))]
    pub async fn find_by_id(&self, id: Uuid) -> Result<Option<User>, sqlx::Error> {
        sqlx::query_as!(User, "SELECT id, username, password_hash, is_active FROM users WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await
    }

    #[tracing::instrument(skip(self, password_hash))]
    pub async fn create(&self, username: &str, password_hash: &str) -> Result<Uuid, UserError> {
        let id = Uuid::now_v7();
        let inserted = sqlx::query!(
            "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3) ON CONFLICT (username) DO NOTHING",
            id,
            username,
            password_hash
        )
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(UserError::UsernameTaken(username.to_string()));
        }
        Ok(id)
    }

    #[tracing::instrument(skip(self, password_hash))]
    pub async fn set_password(&self, username: &str, password_hash: &str) -> Result<(), UserError> {
        let updated = sqlx::query!(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE username = $1",
            username,
            password_hash
        )
        .execute(&self.pool)
        .await?;
        require_user_found(updated, username)
    }

    #[tracing::instrument(skip(self))]
    pub async fn set_active(&self, username: &str, is_active: bool) -> Result<(), UserError> {
        let updated = sqlx::query!(
            "UPDATE users SET is_active = $2, updated_at = now() WHERE username = $1",
            username,
            is_active
        )
        .execute(&self.pool)
        .await?;
        require_user_found(updated, username)
    }
}

fn require_user_found(updated: PgQueryResult, username: &str) -> Result<(), UserError> {
    if updated.rows_affected() == 0 {
        return Err(UserError::NotFound(username.to_string()));
    }
    Ok(())
}
