use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// What a user may do. A token carries its user's roles; every endpoint and GraphQL field names the
/// role it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Posts events: the REST create and batch endpoints, GraphQL `createEvent`.
    Producer,
    /// Reads events and analytics: the REST list and read endpoints, GraphQL queries.
    Analyst,
    /// Sees diagnostics (who posted, email recipients and errors, dead letters).
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Producer, Role::Analyst, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the roles.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a role; the roles are producer, analyst, admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|role| role.as_str() == text).ok_or_else(|| UnknownRole(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_parses_from_its_own_name_and_nothing_else_does() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        for text in ["Admin", "root", "", "admin "] {
            assert!(text.parse::<Role>().is_err(), "{text:?}");
        }
    }
}
