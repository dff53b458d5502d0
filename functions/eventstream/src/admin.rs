//! User and schema administration, shared by `eventstream-admin` (an operator's shell next to the
//! database) and the admin function (inside the VPC, where no laptop reaches the database): the same
//! commands, run by [`execute`]. A password never travels in a command: the CLI reads it from
//! standard input or a prompt, the function generates it.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::{PgPool, migrate::MigrateError};

use crate::{
    MIGRATOR,
    auth::{PasswordError, hash_password},
    config::DatabaseConfig,
    domain::Role,
    secrets::{SecretsManager, resolve},
    store::{PgUserStore, UserError, lazy_pool},
};

/// Manage EventStream's users and schema. Reads DATABASE_URL from the environment.
#[derive(Debug, Parser)]
#[command(name = "eventstream-admin", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One administrative command: a subcommand of `eventstream-admin`, or the admin function's
/// payload, e.g. `{"command": "create-user", "username": "ana", "roles": ["producer"]}`.
#[derive(Debug, Subcommand, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Create a user; the password is read from a prompt, or from stdin when it is not a terminal.
    CreateUser {
        username: String,
        /// A role to grant (producer, analyst, admin); repeat for several.
        #[arg(long = "role", value_name = "ROLE")]
        #[serde(default)]
        roles: Vec<Role>,
    },
    /// Set a new password for a user, read like create-user's; signs the user out everywhere.
    SetPassword { username: String },
    /// Stop a user from obtaining or refreshing tokens; signs the user out everywhere.
    Deactivate { username: String },
    /// Let a deactivated user log in again.
    Activate { username: String },
    /// Grant roles (producer, analyst, admin); they reach the user's tokens at the next login or refresh.
    Grant {
        username: String,
        #[arg(required = true, value_name = "ROLE")]
        roles: Vec<Role>,
    },
    /// Revoke roles; signs the user out everywhere, so no token keeps them.
    Revoke {
        username: String,
        #[arg(required = true, value_name = "ROLE")]
        roles: Vec<Role>,
    },
    /// End every session of a user: every access and refresh token issued so far stops working.
    SignOut { username: String },
}

impl Command {
    /// Whether the command sets a password, which [`execute`] then asks its caller for.
    pub fn sets_password(&self) -> bool {
        matches!(self, Command::CreateUser { .. } | Command::SetPassword { .. })
    }

    /// The user the command is about; none for `migrate`.
    pub fn username(&self) -> Option<&str> {
        match self {
            Command::Migrate => None,
            Command::CreateUser { username, .. }
            | Command::SetPassword { username }
            | Command::Deactivate { username }
            | Command::Activate { username }
            | Command::Grant { username, .. }
            | Command::Revoke { username, .. }
            | Command::SignOut { username } => Some(username),
        }
    }
}

/// Why a command did nothing.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("a username is 1 to 150 characters without spaces")]
    InvalidUsername,
    #[error("{0} needs at least one role (producer, analyst, admin)")]
    NoRoles(&'static str),
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The caller could not supply the new password (the CLI's prompt or standard input).
    #[error(transparent)]
    PasswordInput(anyhow::Error),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("applying migrations")]
    Migrate(#[from] MigrateError),
}

/// Runs one command and says what it did, in a sentence for the operator. `new_password` is asked
/// only by the commands that [set one](Command::sets_password), after the username was checked.
pub async fn execute(
    pool: &PgPool,
    command: Command,
    new_password: impl FnOnce() -> anyhow::Result<SecretString>,
) -> Result<String, AdminError> {
    let users = PgUserStore::new(pool.clone());
    Ok(match command {
        Command::Migrate => {
            migrate(pool).await?;
            "migrations applied".to_string()
        }
        Command::CreateUser { username, roles } => {
            check_username(&username)?;
            let hash = hash_new_password(new_password)?;
            let id = users.create(&username, &hash, &roles).await?;
            format!("created user {username} ({id}) with roles [{}]", role_list(&roles))
        }
        Command::SetPassword { username } => {
            let hash = hash_new_password(new_password)?;
            users.set_password(&username, &hash).await?;
            format!("password of {username} changed; every session of {username} ended")
        }
        Command::Grant { username, roles } => {
            require_roles("grant", &roles)?;
            let roles = users.grant(&username, &roles).await?;
            format!("{username} now has roles [{}]", role_list(&roles))
        }
        Command::Revoke { username, roles } => {
            require_roles("revoke", &roles)?;
            let roles = users.revoke(&username, &roles).await?;
            format!("{username} now has roles [{}]; every session of {username} ended", role_list(&roles))
        }
        Command::SignOut { username } => {
            users.end_sessions(&username).await?;
            format!("every session of {username} ended")
        }
        Command::Deactivate { username } => {
            users.set_active(&username, false).await?;
            format!("deactivated {username}; every session of {username} ended")
        }
        Command::Activate { username } => {
            users.set_active(&username, true).await?;
            format!("activated {username}")
        }
    })
}

/// Applies the pending migrations on a connection of their own with no statement timeout (a
/// migration may rebuild an index over every event; the API's limit is not for it). The connection
/// is closed afterwards, so the pool never hands out one without its limit.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let mut connection = pool.acquire().await?;
    connection.close_on_drop();
    sqlx::query("SET statement_timeout = 0").execute(&mut *connection).await?;
    MIGRATOR.run(&mut *connection).await
}

/// Runs one command of `eventstream-admin` and says what it did on standard output.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = resolve(&DatabaseConfig::from_env()?, &SecretsManager::default()).await?;
    let pool = lazy_pool(&config).context("DATABASE_URL is not a valid PostgreSQL URL")?;
    println!("{}", execute(&pool, cli.command, read_password).await?);
    Ok(())
}

fn role_list(roles: &[Role]) -> String {
    roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(", ")
}

fn check_username(username: &str) -> Result<(), AdminError> {
    if !(1..=150).contains(&username.chars().count()) || username.chars().any(char::is_whitespace) {
        return Err(AdminError::InvalidUsername);
    }
    Ok(())
}

fn hash_new_password(new_password: impl FnOnce() -> anyhow::Result<SecretString>) -> Result<String, AdminError> {
    let password = new_password().map_err(AdminError::PasswordInput)?;
    Ok(hash_password(password.expose_secret())?)
}

fn require_roles(command: &'static str, roles: &[Role]) -> Result<(), AdminError> {
    if roles.is_empty() {
        return Err(AdminError::NoRoles(command));
    }
    Ok(())
}

fn read_password() -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Password (again): ")?;
        if first != second {
            bail!("the two passwords differ");
        }
        return Ok(SecretString::from(first));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(SecretString::from(password))
}
