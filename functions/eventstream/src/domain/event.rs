use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How an event turned out at its source; decides where the pipeline routes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It went well; finished at dispatch.
    Success,
    /// Worth knowing; finished at dispatch.
    Info,
    /// Something to look at; handled by the warning handler.
    Warning,
    /// Something failed; handled by the error handler, which emails people about it.
    Error,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Success, Status::Info, Status::Warning, Status::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Info => "info",
            Status::Warning => "warning",
            Status::Error => "error",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the four statuses.
#[derive(Debug, thiserror::Error)]
#[error("must be one of success, info, warning, error")]
pub struct UnknownStatus;

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL.into_iter().find(|status| status.as_str() == s).ok_or(UnknownStatus)
    }
}

/// How far the pipeline has taken an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PipelineState {
    /// Stored, not yet routed.
    Received,
    /// Routed by the dispatcher.
    Dispatched,
    /// Handled by the warning or error handler.
    Processed,
}

impl PipelineState {
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineState::Received => "received",
            PipelineState::Dispatched => "dispatched",
            PipelineState::Processed => "processed",
        }
    }
}

/// The text was not one of the pipeline states.
#[derive(Debug, thiserror::Error)]
#[error("unknown pipeline state {0:?}")]
pub struct UnknownPipelineState(pub String);

impl FromStr for PipelineState {
    type Err = UnknownPipelineState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [PipelineState::Received, PipelineState::Dispatched, PipelineState::Processed]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownPipelineState(s.to_string()))
    }
}

/// An event as a client sends it, before validation.
///
/// Fields are loosely typed on purpose so that every problem is reported by
/// [`EventInput::validate`] with the field's name and a message a person can act on.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub source: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub attributes: Option<serde_json::Value>,
}

/// An event that passed validation, ready to be stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewEvent {
    pub title: String,
    pub description: String,
    pub status: Status,
    pub source: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    /// Always a JSON object.
    pub attributes: serde_json::Value,
}

/// A stored event with its pipeline state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub status: Status,
    pub source: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub attributes: serde_json::Value,
    pub pipeline_state: PipelineState,
    pub pipeline_updated_at: DateTime<Utc>,
    /// The user whose token posted it.
    pub posted_by: Uuid,
    /// The id that follows the event through the pipeline: the request's `X-Correlation-Id`, API
    /// Gateway's request id, or one the API made; none for events stored before it was kept.
    pub correlation_id: Option<String>,
}
