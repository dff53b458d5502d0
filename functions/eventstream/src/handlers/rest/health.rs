use std::time::Duration;

use axum::{Json, extract::State};
use serde_json::{Value, json};

use super::{ApiError, AppState};

/// A load balancer or a person waiting on a dead database should not wait longer than this.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /api/health`: 200 when the database answers, 503 otherwise. No token needed.
pub async fn check(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, state.events.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ok", "database": "ok" }))),
        Ok(Err(error)) => Err(ApiError::Unavailable(anyhow::Error::new(error).context("database check failed"))),
        Err(_) => Err(ApiError::Unavailable(anyhow::anyhow!("database check timed out"))),
    }
}
