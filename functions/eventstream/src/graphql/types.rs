//! The schema's object and input types. Their doc comments are the schema's descriptions.

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{error::GqlError, guard::RoleGuard, loaders::Loaders};
use crate::{
    domain::{self, EventInput, Role},
    store::{self, Cursor, EventFilter, NotificationRecord, PgEventStore},
};

/// An event as stored, with where the pipeline has taken it.
pub struct Event(pub domain::Event);

/// An event as stored, with where the pipeline has taken it.
#[Object]
impl Event {
    /// Unique id (UUID v7: ids sort by the time the API received them).
    async fn id(&self) -> Uuid {
        self.0.id
    }

    /// Short summary, 1 to 200 characters.
    async fn title(&self) -> &str {
        &self.0.title
    }

    /// Longer text, up to 10,000 characters; empty when none was sent.
    async fn description(&self) -> &str {
        &self.0.description
    }

    /// How it turned out at its source; decides where the pipeline routes it.
    async fn status(&self) -> Status {
        self.0.status.into()
    }

    /// The system that sent it, when it said.
    async fn source(&self) -> Option<&str> {
        self.0.source.as_deref()
    }

    /// When it happened, by the sender's clock, when it said.
    async fn occurred_at(&self) -> Option<DateTime<Utc>> {
        self.0.occurred_at
    }

    /// When the API stored it, by the server's clock.
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }

    /// The sender's own key-value data: a JSON object.
    async fn attributes(&self) -> &serde_json::Value {
        &self.0.attributes
    }

    /// How far the pipeline has taken it.
    async fn pipeline_state(&self) -> PipelineState {
        self.0.pipeline_state.into()
    }

    /// When the pipeline state last changed.
    async fn pipeline_updated_at(&self) -> DateTime<Utc> {
        self.0.pipeline_updated_at
    }

    /// The id in every log line from its request to its email: X-Correlation-Id, else API Gateway's or a new one.
    async fn correlation_id(&self) -> Option<&str> {
        self.0.correlation_id.as_deref()
    }

    /// The username whose token posted it (admin only).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn posted_by(&self, ctx: &Context<'_>) -> Result<Option<String>, GqlError> {
        Ok(ctx.data_unchecked::<Loaders>().usernames.load_one(self.0.posted_by).await?)
    }

    /// What the dispatcher decided for it; null until it is dispatched.
    async fn routing(&self, ctx: &Context<'_>) -> Result<Option<Routing>, GqlError> {
        Ok(ctx.data_unchecked::<Loaders>().routing.load_one(self.0.id).await?.map(Routing))
    }

    /// The warning or error handler's record of it; null until a handler has processed it.
    async fn processing(&self, ctx: &Context<'_>) -> Result<Option<Processing>, GqlError> {
        let record = ctx.data_unchecked::<Loaders>().processing.load_one(self.0.id).await?;
        Ok(record.map(|record| Processing { handler: record.handler.into(), processed_at: record.processed_at }))
    }

    /// The notifications sent, or being sent, about it, oldest first.
    async fn notifications(&self, ctx: &Context<'_>) -> Result<Vec<Notification>, GqlError> {
        let records = ctx.data_unchecked::<Loaders>().notifications.load_one(self.0.id).await?;
        Ok(records.unwrap_or_default().into_iter().map(Notification).collect())
    }
}

/// How an event turned out at its source; decides where the pipeline routes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "domain::Status")]
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

/// How far the pipeline has taken an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "domain::PipelineState")]
pub enum PipelineState {
    /// Stored, not yet routed.
    Received,
    /// Routed by the dispatcher.
    Dispatched,
    /// Handled by the warning or error handler.
    Processed,
}

/// The two handlers the dispatcher can hand an event to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "domain::Handler")]
pub enum Handler {
    /// The warning handler (SQS `warning-events`).
    Warning,
    /// The error handler (SQS `error-events`), which also sends email.
    Error,
}

/// The dispatcher's decision for one event.
pub struct Routing(pub store::RoutingRecord);

/// The dispatcher's decision for one event.
#[Object]
impl Routing {
    /// The handler it was sent to; null when dispatch finished it (success and info events).
    async fn handler(&self) -> Option<Handler> {
        self.0.target.map(Handler::from)
    }

    /// The routing rule that matched, if one did.
    async fn rule_id(&self) -> Option<i64> {
        self.0.rule_id
    }

    /// When it was routed.
    async fn routed_at(&self) -> DateTime<Utc> {
        self.0.routed_at
    }
}

/// A handler's record of an event it processed.
#[derive(SimpleObject)]
pub struct Processing {
    /// Which handler processed it.
    pub handler: Handler,
    /// When the handler first recorded it.
    pub processed_at: DateTime<Utc>,
}

/// Where sending a notification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "domain::NotificationState")]
pub enum NotificationState {
    /// Not yet tried.
    Pending,
    /// A handler is sending it now.
    Sending,
    /// Sent.
    Sent,
    /// The last attempt failed; it is retried while the event is redelivered.
    Failed,
}

/// One notification about an event.
pub struct Notification(pub NotificationRecord);

/// One notification about an event.
#[Object]
impl Notification {
    /// How it is sent: `email`.
    async fn channel(&self) -> &str {
        &self.0.channel
    }

    /// Who it goes to (admin only).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn recipients(&self) -> &[String] {
        &self.0.recipients
    }

    /// Where sending it stands.
    async fn state(&self) -> NotificationState {
        self.0.state.into()
    }

    /// How many times sending it was tried.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }

    /// Why the last attempt failed, if it did (admin only: it may quote the relay).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    /// When it was first claimed for sending.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When it was sent; null until then.
    async fn sent_at(&self) -> Option<DateTime<Utc>> {
        self.0.sent_at
    }
}

/// Which events to list; every filter is optional and they combine with AND.
#[derive(Clone, Debug, Default, InputObject)]
pub struct EventsFilter {
    /// Any of these statuses.
    pub statuses: Option<Vec<Status>>,
    /// Exactly this source.
    pub source: Option<String>,
    /// Received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Received before this time.
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive text found in the title or the description.
    pub search: Option<String>,
    /// Any of these pipeline states.
    pub pipeline_states: Option<Vec<PipelineState>>,
}

impl TryFrom<EventsFilter> for EventFilter {
    type Error = GqlError;

    fn try_from(filter: EventsFilter) -> Result<Self, GqlError> {
        if let Some(source) = &filter.source {
            domain::reject_nul("filter.source", source)?;
        }
        Ok(EventFilter {
            statuses: filter.statuses.unwrap_or_default().into_iter().map(Into::into).collect(),
            source: filter.source,
            since: filter.since,
            until: filter.until,
            text: domain::search_text("filter.search", filter.search)?,
            pipeline_states: filter.pipeline_states.unwrap_or_default().into_iter().map(Into::into).collect(),
        })
    }
}

/// A page of events, newest first (Relay connection).
pub struct EventConnection {
    pub events: Vec<domain::Event>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub filter: EventFilter,
    pub store: PgEventStore,
}

/// A page of events, newest first (Relay connection).
#[Object]
impl EventConnection {
    /// The events of this page, each with its cursor.
    async fn edges(&self) -> Vec<EventEdge> {
        self.events.iter().map(|event| EventEdge(event.clone())).collect()
    }

    /// The events of this page, without cursors.
    async fn nodes(&self) -> Vec<Event> {
        self.events.iter().cloned().map(Event).collect()
    }

    /// Where this page sits.
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.has_next_page,
            has_previous_page: self.has_previous_page,
            start_cursor: self.events.first().map(cursor_of),
            end_cursor: self.events.last().map(cursor_of),
        }
    }

    /// How many events match the filter across all pages (one more query, only when asked for).
    async fn total_count(&self) -> Result<i64, GqlError> {
        Ok(self.store.count(&self.filter).await?)
    }
}

pub fn cursor_of(event: &domain::Event) -> String {
    Cursor { received_at: event.received_at, id: event.id }.encode()
}

/// An event and its place in the list.
pub struct EventEdge(domain::Event);

/// An event and its place in the list.
#[Object]
impl EventEdge {
    /// Pass as `after` to get the events that follow this one.
    async fn cursor(&self) -> String {
        cursor_of(&self.0)
    }

    /// The event.
    async fn node(&self) -> Event {
        Event(self.0.clone())
    }
}

/// Relay page information.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// Whether more events follow this page.
    pub has_next_page: bool,
    /// Whether this page started after a cursor.
    pub has_previous_page: bool,
    /// The first event's cursor; null on an empty page.
    pub start_cursor: Option<String>,
    /// The last event's cursor: pass it as `after` for the next page; null on an empty page.
    pub end_cursor: Option<String>,
}

/// The width of a time-series bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum Bucket {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl Bucket {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(match self {
            Bucket::Minute => 60,
            Bucket::Hour => 3_600,
            Bucket::Day => 86_400,
        })
    }
}

/// Events received in one time bucket, counted per status.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct StatsBucket {
    /// Where the bucket starts (buckets are aligned to the Unix epoch, in UTC).
    pub start: DateTime<Utc>,
    /// Events with status SUCCESS.
    pub success: i64,
    /// Events with status INFO.
    pub info: i64,
    /// Events with status WARNING.
    pub warning: i64,
    /// Events with status ERROR.
    pub error: i64,
}

#[ComplexObject]
impl StatsBucket {
    /// Events of every status.
    async fn total(&self) -> i64 {
        self.success + self.info + self.warning + self.error
    }
}

impl From<store::StatsBucket> for StatsBucket {
    fn from(row: store::StatsBucket) -> Self {
        Self { start: row.start, success: row.success, info: row.info, warning: row.warning, error: row.error }
    }
}

/// How many events have one status.
#[derive(SimpleObject)]
pub struct StatusCount {
    /// The status.
    pub status: Status,
    /// How many events have it.
    pub count: i64,
}

/// How many events one source sent.
#[derive(SimpleObject)]
pub struct SourceCount {
    /// The source, as events name it.
    pub source: String,
    /// How many events it sent.
    pub count: i64,
}

/// How many events are in one pipeline state.
#[derive(SimpleObject)]
pub struct PipelineStateCount {
    /// The pipeline state.
    pub state: PipelineState,
    /// How many events are in it.
    pub count: i64,
}

/// Where the pipeline stands now.
#[derive(SimpleObject)]
pub struct Pipeline {
    /// Events per pipeline state, every state present.
    pub states: Vec<PipelineStateCount>,
    /// Events stored but not yet dispatched.
    pub received: i64,
    /// Events dispatched and not (or not yet) processed by a handler.
    pub dispatched: i64,
    /// Events processed by the warning or error handler.
    pub processed: i64,
    /// How long, in seconds, the oldest undispatched event has waited; null when none waits.
    pub oldest_undispatched_age_seconds: Option<f64>,
    /// Error emails sent.
    pub emails_sent: i64,
    /// Error emails whose last attempt failed.
    pub emails_failed: i64,
    /// Error emails waiting to be sent or being sent.
    pub emails_pending: i64,
    /// Messages parked because no consumer could read them (admin only).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    pub dead_letters: i64,
}

/// A new event. Checked exactly as the REST API checks `POST /api/events`.
#[derive(InputObject)]
pub struct CreateEventInput {
    /// Short summary, 1 to 200 characters, not blank.
    pub title: String,
    /// Longer text, up to 10,000 characters.
    pub description: Option<String>,
    /// How it turned out.
    pub status: Status,
    /// The system that sends it, 1 to 100 characters.
    pub source: Option<String>,
    /// When it happened, by the sender's clock.
    pub occurred_at: Option<DateTime<Utc>>,
    /// A JSON object of the sender's own data, up to 16 KiB.
    pub attributes: Option<serde_json::Value>,
}

impl From<CreateEventInput> for EventInput {
    fn from(input: CreateEventInput) -> Self {
        EventInput {
            title: Some(input.title),
            description: input.description,
            status: Some(domain::Status::from(input.status).as_str().to_string()),
            source: input.source,
            occurred_at: input.occurred_at,
            attributes: input.attributes,
        }
    }
}
