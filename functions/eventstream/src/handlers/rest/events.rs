use axum::{
    Extension, Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    ApiError, AppState,
    extract::{Analyst, Authorized, JsonBody, Producer},
};
use crate::{
    domain::{CorrelationId, Event, EventInput, FieldError, NewEvent, Status, reject_nul, search_text, validate_batch},
    pipeline::idempotency_claim,
    store::{Cursor, EventFilter, IdempotencyClaim, Insertion},
};

const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
const DEFAULT_PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 500;

/// Body of `POST /api/events/batch`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    events: Option<Vec<EventInput>>,
}

/// Answer of the batch and list endpoints.
#[derive(Serialize)]
pub struct EventList {
    events: Vec<Event>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<Option<String>>,
}

/// `POST /api/events`: stores one event; 201, or 200 when an Idempotency-Key replays an earlier one.
pub async fn create(
    State(state): State<AppState>,
    Authorized { caller, .. }: Authorized<Producer>,
    Extension(correlation_id): Extension<CorrelationId>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<EventInput>,
) -> Result<(StatusCode, Json<Event>), ApiError> {
    let event = input.validate()?;
    let claim = claim_from_headers(&headers, "POST /api/events", std::slice::from_ref(&event))?;
    let Insertion { mut events, replayed } =
        state.intake.accept(caller.sub, claim.as_ref(), &correlation_id, &[event]).await?;
    let event = events.pop().ok_or_else(|| ApiError::Internal(anyhow::anyhow!("insert returned no event")))?;
    Ok((created_or_replayed(replayed), Json(event)))
}

/// `POST /api/events/batch`: stores 1 to 500 events in one statement, all or none, under the
/// request's one correlation id.
pub async fn create_batch(
    State(state): State<AppState>,
    Authorized { caller, .. }: Authorized<Producer>,
    Extension(correlation_id): Extension<CorrelationId>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<BatchInput>,
) -> Result<(StatusCode, Json<EventList>), ApiError> {
    let inputs = input.events.ok_or_else(|| FieldError::new("events", "is required"))?;
    let events = validate_batch(inputs)?;
    let claim = claim_from_headers(&headers, "POST /api/events/batch", &events)?;
    let Insertion { events, replayed } =
        state.intake.accept(caller.sub, claim.as_ref(), &correlation_id, &events).await?;
    Ok((created_or_replayed(replayed), Json(EventList { events, next_cursor: None })))
}

fn created_or_replayed(replayed: bool) -> StatusCode {
    if replayed { StatusCode::OK } else { StatusCode::CREATED }
}

/// The claim on the request's Idempotency-Key, if it sent one.
fn claim_from_headers(
    headers: &HeaderMap,
    operation: &str,
    events: &[NewEvent],
) -> Result<Option<IdempotencyClaim>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    // A value that is not visible ASCII fails like an empty key, with the same message.
    let key = value.to_str().unwrap_or_default();
    Ok(Some(idempotency_claim("Idempotency-Key", key, operation, events)?))
}

/// Query of `GET /api/events`; values stay text so each bad one is reported by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    source: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /api/events`: newest first, filtered, one page at a time.
pub async fn list(
    State(state): State<AppState>,
    _caller: Authorized<Analyst>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))?;
    if let Some(source) = &query.source {
        reject_nul("source", source)?;
    }
    let filter = EventFilter {
        statuses: query
            .status
            .map(|status| status.parse::<Status>().map_err(|error| FieldError::new("status", error.to_string())))
            .transpose()?
            .into_iter()
            .collect(),
        source: query.source,
        since: query.since.as_deref().map(|text| timestamp("since", text)).transpose()?,
        until: query.until.as_deref().map(|text| timestamp("until", text)).transpose()?,
        text: search_text("q", query.q)?,
        pipeline_states: Vec::new(),
    };
    let limit = match query.limit {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => text
            .parse()
            .ok()
            .filter(|limit| (1..=MAX_PAGE_SIZE).contains(limit))
            .ok_or_else(|| FieldError::new("limit", format!("must be a whole number from 1 to {MAX_PAGE_SIZE}")))?,
    };
    let cursor = query
        .cursor
        .map(|text| Cursor::decode(&text).map_err(|error| FieldError::new("cursor", error.to_string())))
        .transpose()?;

    let mut events = state.events.list(&filter, cursor, limit + 1).await?;
    let next_cursor = if events.len() as i64 > limit {
        events.truncate(limit as usize);
        events.last().map(|last| Cursor { received_at: last.received_at, id: last.id }.encode())
    } else {
        None
    };
    Ok(Json(EventList { events, next_cursor: Some(next_cursor) }))
}

fn timestamp(field: &str, text: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| FieldError::new(field, "must be an RFC 3339 timestamp, such as 2026-11-29T10:00:00Z"))
}

/// `GET /api/events/{id}`: one event with its pipeline state.
pub async fn get(
    State(state): State<AppState>,
    _caller: Authorized<Analyst>,
    Path(id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    let id: Uuid = id.parse().map_err(|_| FieldError::new("id", "must be a UUID"))?;
    state.events.get(id).await?.map(Json).ok_or(ApiError::NotFound("event"))
}
