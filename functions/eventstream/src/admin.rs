//! `eventstream-admin`: the project's `createsuperuser`, plus roles, password reset, deactivation,
//! signing out everywhere and migrations. Passwords come from standard input or a prompt, never
//! from an argument.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    MIGRATOR,
    auth::hash_password,
    config::DatabaseConfig,
    domain::Role,
    secrets::{SecretsManager, resolve},
    store::{PgUserStore, lazy_pool},
};

/// Manage EventStream's users and schema. Reads DATABASE_URL from the environment.
#[derive(Debug, Parser)]
#[command(name = "eventstream-admin", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Create a user; the password is read from a prompt, or from stdin when it is not a terminal.
    CreateUser {
        username: String,
        /// A role to grant (producer, analyst, admin); repeat for several.
        #[arg(long = "role", value_name = "ROLE")]
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

/// Runs one command and says what it did on standard output.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = resolve(&DatabaseConfig::from_env()?, &SecretsManager::default()).await?;
    if matches!(cli.command, Command::Migrate) {
        // A migration may rebuild an index over every event; the API's statement timeout is not for it.
        config.statement_timeout = std::time::Duration::ZERO;
    }
    let pool = lazy_pool(&config).context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let users = PgUserStore::new(pool.clone());
    match cli.command {
        Command::Migrate => {
            MIGRATOR.run(&pool).await.context("applying migrations")?;
            println!("migrations applied");
        }
        Command::CreateUser { username, roles } => {
            check_username(&username)?;
            let hash = hash_password(read_password()?.expose_secret())?;
            let id = users.create(&username, &hash, &roles).await?;
            println!("created user {username} ({id}) with roles [{}]", role_list(&roles));
        }
        Command::SetPassword { username } => {
            let hash = hash_password(read_password()?.expose_secret())?;
            users.set_password(&username, &hash).await?;
            println!("password of {username} changed; every session of {username} ended");
        }
        Command::Grant { username, roles } => {
            let roles = users.grant(&username, &roles).await?;
            println!("{username} now has roles [{}]", role_list(&roles));
        }
        Command::Revoke { username, roles } => {
            let roles = users.revoke(&username, &roles).await?;
            println!("{username} now has roles [{}]; every session of {username} ended", role_list(&roles));
        }
        Command::SignOut { username } => {
            users.end_sessions(&username).await?;
            println!("every session of {username} ended");
        }
        Command::Deactivate { username } => {
            users.set_active(&username, false).await?;
            println!("deactivated {username}; every session of {username} ended");
        }
        Command::Activate { username } => {
            users.set_active(&username, true).await?;
            println!("activated {username}");
        }
    }
    Ok(())
}

fn role_list(roles: &[Role]) -> String {
    roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(", ")
}

fn check_username(username: &str) -> anyhow::Result<()> {
    if !(1..=150).contains(&username.chars().count()) || username.chars().any(char::is_whitespace) {
        bail!("a username is 1 to 150 characters without spaces");
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
