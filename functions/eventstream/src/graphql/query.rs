//! The query and mutation roots.

use async_graphql::{Context, Object};
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{
    Services,
    error::GqlError,
    guard::RoleGuard,
    limits::MAX_PAGE_SIZE,
    types::{
        Bucket, CreateEventInput, Event, EventConnection, EventsFilter, Pipeline, PipelineStateCount, SourceCount,
        StatsBucket, StatusCount,
    },
};
use crate::{
    auth::Claims,
    domain::{CorrelationId, EventInput, PipelineState, Role, reject_nul},
    pipeline::idempotency_claim,
    store::{Cursor, EventFilter},
};

/// Events per page when `first` is not given.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// The most buckets one `stats` query may return.
pub const MAX_STATS_BUCKETS: i64 = 10_000;
/// How far back `stats` looks when `since` is not given.
const DEFAULT_STATS_WINDOW: TimeDelta = TimeDelta::hours(24);

/// What analysts can ask.
pub struct QueryRoot;

/// What analysts can ask: events, their history, time series and counts, pipeline health.
#[Object(name = "Query")]
impl QueryRoot {
    /// Events, newest first, one page at a time (Relay connection).
    #[graphql(complexity = "page_complexity(first, child_complexity)", guard = "RoleGuard(Role::Analyst)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which events; all of them when omitted.")] filter: Option<EventsFilter>,
        #[graphql(desc = "How many events per page, 1 to 500.", default = 50)] first: i32,
        #[graphql(desc = "A cursor from a previous page: the events that follow it.")] after: Option<String>,
    ) -> Result<EventConnection, GqlError> {
        let services = ctx.data_unchecked::<Services>();
        if !(1..=MAX_PAGE_SIZE).contains(&i64::from(first)) {
            return Err(GqlError::bad_input("first", format!("must be from 1 to {MAX_PAGE_SIZE}")));
        }
        let cursor = after
            .as_deref()
            .map(|text| Cursor::decode(text).map_err(|error| GqlError::bad_input("after", error.to_string())))
            .transpose()?;
        let filter = EventFilter::try_from(filter.unwrap_or_default())?;
        let mut events = services.events.list(&filter, cursor, i64::from(first) + 1).await?;
        let has_next_page = events.len() > first as usize;
        events.truncate(first as usize);
        Ok(EventConnection {
            events,
            has_next_page,
            has_previous_page: cursor.is_some(),
            filter,
            store: services.events.clone(),
        })
    }

    /// One event with its routing, processing and notification history; null when no event has this id.
    #[graphql(guard = "RoleGuard(Role::Analyst)")]
    async fn event(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event's id.")] id: Uuid,
    ) -> Result<Option<Event>, GqlError> {
        Ok(ctx.data_unchecked::<Services>().events.get(id).await?.map(Event))
    }

    /// Events received per time bucket and status, every bucket of the range present (empty ones as zeros).
    #[graphql(guard = "RoleGuard(Role::Analyst)")]
    async fn stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Start of the range (inclusive); 24 hours before `until` when omitted.")] since: Option<
            DateTime<Utc>,
        >,
        #[graphql(desc = "End of the range (exclusive); now when omitted.")] until: Option<DateTime<Utc>>,
        #[graphql(desc = "Width of each bucket.", default_with = "Bucket::Hour")] bucket: Bucket,
        #[graphql(desc = "Only events from this source.")] source: Option<String>,
    ) -> Result<Vec<StatsBucket>, GqlError> {
        let until = until.unwrap_or_else(Utc::now);
        let since = since.unwrap_or(until - DEFAULT_STATS_WINDOW);
        if since >= until {
            return Err(GqlError::bad_input("since", "must be before `until`"));
        }
        let width = bucket.duration();
        let buckets = (until - since).num_seconds() / width.as_secs() as i64 + 2;
        if buckets > MAX_STATS_BUCKETS {
            return Err(GqlError::bad_input(
                "bucket",
                format!(
                    "the range holds about {buckets} buckets, more than {MAX_STATS_BUCKETS}; widen the bucket or narrow the range"
                ),
            ));
        }
        if let Some(source) = &source {
            reject_nul("source", source)?;
        }
        let rows = ctx.data_unchecked::<Services>().analytics.stats(since, until, width, source.as_deref()).await?;
        Ok(rows.into_iter().map(StatsBucket::from).collect())
    }

    /// Events received in the range per status; every status is listed, zero or not.
    #[graphql(guard = "RoleGuard(Role::Analyst)")]
    async fn status_counts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Received at or after.")] since: Option<DateTime<Utc>>,
        #[graphql(desc = "Received before.")] until: Option<DateTime<Utc>>,
    ) -> Result<Vec<StatusCount>, GqlError> {
        let counts = ctx.data_unchecked::<Services>().analytics.status_counts(since, until).await?;
        Ok(counts.into_iter().map(|(status, count)| StatusCount { status: status.into(), count }).collect())
    }

    /// The sources that sent the most events, most first.
    #[graphql(guard = "RoleGuard(Role::Analyst)")]
    async fn top_sources(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many sources, 1 to 100.", default = 10)] limit: i32,
        #[graphql(desc = "Only events received at or after.")] since: Option<DateTime<Utc>>,
    ) -> Result<Vec<SourceCount>, GqlError> {
        if !(1..=super::limits::MAX_LIMIT).contains(&i64::from(limit)) {
            return Err(GqlError::bad_input("limit", format!("must be from 1 to {}", super::limits::MAX_LIMIT)));
        }
        let rows = ctx.data_unchecked::<Services>().analytics.top_sources(i64::from(limit), since).await?;
        Ok(rows.into_iter().map(|row| SourceCount { source: row.source, count: row.count }).collect())
    }

    /// Where the pipeline stands now: events per state, the oldest undispatched event, emails.
    #[graphql(guard = "RoleGuard(Role::Analyst)")]
    async fn pipeline(&self, ctx: &Context<'_>) -> Result<Pipeline, GqlError> {
        let health = ctx.data_unchecked::<Services>().analytics.pipeline().await?;
        let count = |state: PipelineState| {
            health.by_state.iter().find(|(s, _)| *s == state).map(|(_, count)| *count).unwrap_or(0)
        };
        Ok(Pipeline {
            received: count(PipelineState::Received),
            dispatched: count(PipelineState::Dispatched),
            processed: count(PipelineState::Processed),
            states: health
                .by_state
                .iter()
                .map(|&(state, count)| PipelineStateCount { state: state.into(), count })
                .collect(),
            oldest_undispatched_age_seconds: health
                .oldest_undispatched_at
                .map(|oldest| (Utc::now() - oldest).as_seconds_f64().max(0.0)),
            emails_sent: health.emails_sent,
            emails_failed: health.emails_failed,
            emails_pending: health.emails_pending,
            dead_letters: health.dead_letters,
        })
    }
}

/// A page's fields count once per event it may hold.
fn page_complexity(first: i32, child_complexity: usize) -> usize {
    (first.clamp(1, MAX_PAGE_SIZE as i32) as usize).saturating_mul(child_complexity)
}

/// What clients can change.
pub struct MutationRoot;

/// What clients can change.
#[Object(name = "Mutation")]
impl MutationRoot {
    /// Stores one event and hands it to the pipeline, as `POST /api/events` does, with the same checks.
    #[graphql(guard = "RoleGuard(Role::Producer)")]
    async fn create_event(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event.")] input: CreateEventInput,
        #[graphql(desc = "Makes a retry safe: the same key with the same input returns the first result and \
                          stores nothing; with another input it fails with IDEMPOTENCY_CONFLICT.")]
        idempotency_key: Option<String>,
    ) -> Result<Event, GqlError> {
        let caller = ctx.data_unchecked::<Claims>();
        let event = EventInput::from(input).validate().map_err(|error| error.within("input"))?;
        let claim = idempotency_key
            .map(|key| idempotency_claim("idempotencyKey", &key, "graphql createEvent", std::slice::from_ref(&event)))
            .transpose()?;
        // The HTTP handler puts the request's id in; a schema run any other way makes one.
        let correlation_id = ctx.data_opt::<CorrelationId>().cloned().unwrap_or_else(CorrelationId::generate);
        let insertion = ctx
            .data_unchecked::<Services>()
            .intake
            .accept(caller.sub, claim.as_ref(), &correlation_id, &[event])
            .await?;
        insertion
            .events
            .into_iter()
            .next()
            .map(Event)
            .ok_or_else(|| GqlError::from(crate::store::StoreError::Corrupt("insert returned no event".into())))
    }
}
