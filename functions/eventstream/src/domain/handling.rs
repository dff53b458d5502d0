//! What happens to an event once dispatch has looked at it: the handler a routing rule sends it
//! to, and how the notification about it stands.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A handler dispatch can send an event to: what a routing rule names as its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Handler {
    /// The warning handler, behind SQS `warning-events`.
    Warning,
    /// The error handler, behind SQS `error-events`; it also sends email.
    Error,
}

impl Handler {
    pub const ALL: [Handler; 2] = [Handler::Warning, Handler::Error];

    /// The name routing rules and routings store (`routing_rules.target_queue`).
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Warning => "warning",
            Handler::Error => "error",
        }
    }
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text names no handler (`dispatch`, for one, is not a routing target).
#[derive(Debug, thiserror::Error)]
#[error("unknown handler {0:?}")]
pub struct UnknownHandler(pub String);

impl FromStr for Handler {
    type Err = UnknownHandler;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Handler::ALL.into_iter().find(|handler| handler.as_str() == s).ok_or_else(|| UnknownHandler(s.to_string()))
    }
}

/// Where sending a notification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationState {
    /// Not yet tried.
    Pending,
    /// A handler claimed it and is sending it.
    Sending,
    /// Sent.
    Sent,
    /// The last attempt failed; the next delivery of the event tries again.
    Failed,
}

impl NotificationState {
    pub const ALL: [NotificationState; 4] =
        [NotificationState::Pending, NotificationState::Sending, NotificationState::Sent, NotificationState::Failed];

    /// The name `notifications.state` stores.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sending => "sending",
            NotificationState::Sent => "sent",
            NotificationState::Failed => "failed",
        }
    }
}

/// The text is not a notification state.
#[derive(Debug, thiserror::Error)]
#[error("unknown notification state {0:?}")]
pub struct UnknownNotificationState(pub String);

impl FromStr for NotificationState {
    type Err = UnknownNotificationState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NotificationState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownNotificationState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back_and_nothing_else_does() {
        for handler in Handler::ALL {
            assert_eq!(handler.as_str().parse::<Handler>().unwrap(), handler);
        }
        assert!("dispatch".parse::<Handler>().is_err());
        for state in NotificationState::ALL {
            assert_eq!(state.as_str().parse::<NotificationState>().unwrap(), state);
        }
        assert!("Sent".parse::<NotificationState>().is_err());
    }
}
