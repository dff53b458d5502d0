//! The GraphQL API inside the function: API Gateway events in, real PostgreSQL (and RabbitMQ for
//! createEvent) behind, seeded with events at known times so every count and bucket is exact.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use eventstream::{
    auth::TokenKind,
    bus::{EventMessage, Queue},
    domain::Role,
    graphql::{MAX_DEPTH, MAX_PAGE_SIZE, Services},
    pipeline::Intake,
    store::{PgAnalyticsStore, PgEventStore, PgUserStore},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Function, Reply, Rest, TestApi};

/// The REST (v1) proxy event for the graphql function kept in `events/`.
const FIXTURE: &str = include_str!("../../../../events/graphql-query-rest.json");

/// The functions, and the user the tests query as: `analyst`, with every role.
struct TestGraphql {
    api: TestApi,
    user: Uuid,
}

impl Reply {
    fn codes(&self) -> Vec<&str> {
        self.body["errors"]
            .as_array()
            .map(|errors| errors.iter().map(|e| e["extensions"]["code"].as_str().unwrap_or("<none>")).collect())
            .unwrap_or_default()
    }

    fn data(&self) -> &Value {
        assert!(self.body.get("errors").is_none(), "unexpected errors: {}", self.body);
        &self.body["data"]
    }
}

impl TestGraphql {
    async fn new(pool: PgPool) -> Self {
        let api = TestApi::new(pool);
        let user = api.user("analyst").await;
        Self { api, user }
    }

    fn pool(&self) -> &PgPool {
        &self.api.pool
    }

    /// A token with every role: the tests of what a role may not do make their own.
    fn token(&self) -> String {
        self.token_with_roles(&Role::ALL, TokenKind::Access)
    }

    fn token_with_roles(&self, roles: &[Role], kind: TokenKind) -> String {
        self.api.token(self.user, roles, kind)
    }

    async fn send(&self, request: Rest) -> Reply {
        self.api.send(Function::Graphql, &request.event).await
    }

    async fn query(&self, query: &str, variables: Value) -> Reply {
        let token = self.token();
        self.send(Rest::post("/graphql").bearer(&token).json(&json!({ "query": query, "variables": variables }))).await
    }

    async fn event_count(&self) -> i64 {
        self.api.event_count().await
    }

    /// Hands `event` to the function raw, as the Lambda runtime does; see [`TestApi::invoke`].
    async fn invoke(&self, event: &Value) -> Value {
        self.api.invoke_graphql(event).await
    }

    /// What createEvent handed to the pipeline.
    async fn published(&self) -> Vec<EventMessage> {
        self.api.drain(Queue::Dispatch).await
    }

    /// Stores an event as if received at `received_at`.
    async fn seed(&self, received_at: &str, status: &str, source: Option<&str>, title: &str) -> Uuid {
        let id = Uuid::now_v7();
        let received_at: DateTime<Utc> = received_at.parse().unwrap();
        sqlx::query(
            "INSERT INTO events (id, title, status, source, received_at, user_id, pipeline_updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $5)",
        )
        .bind(id)
        .bind(title)
        .bind(status)
        .bind(source)
        .bind(received_at)
        .bind(self.user)
        .execute(self.pool())
        .await
        .unwrap();
        id
    }

    /// Six events over two hours of 2026-11-01, from three sources and none.
    async fn seed_day(&self) -> Vec<Uuid> {
        vec![
            self.seed("2026-11-01T10:00:10Z", "success", Some("web"), "deploy finished").await,
            self.seed("2026-11-01T10:00:50Z", "warning", Some("web"), "disk at 91%").await,
            self.seed("2026-11-01T10:01:05Z", "error", Some("db"), "replica lag").await,
            self.seed("2026-11-01T10:01:30Z", "error", Some("db"), "connection refused").await,
            self.seed("2026-11-01T10:03:00Z", "info", None, "nightly report").await,
            self.seed("2026-11-01T11:30:00Z", "success", Some("cron"), "backup done").await,
        ]
    }
}

// ---------- analytics: exact counts and buckets ----------

#[sqlx::test(migrations = "../../migrations")]
async fn stats_count_each_status_per_minute_with_empty_buckets_as_zeros(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    api.seed_day().await;

    let reply = api
        .query(
            r#"{ stats(since: "2026-11-01T10:00:00Z", until: "2026-11-01T10:04:00Z", bucket: MINUTE) {
                   start success info warning error total } }"#,
            json!({}),
        )
        .await;

    assert_eq!(
        reply.data()["stats"],
        json!([
            { "start": "2026-11-01T10:00:00+00:00", "success": 1, "info": 0, "warning": 1, "error": 0, "total": 2 },
            { "start": "2026-11-01T10:01:00+00:00", "success": 0, "info": 0, "warning": 0, "error": 2, "total": 2 },
            { "start": "2026-11-01T10:02:00+00:00", "success": 0, "info": 0, "warning": 0, "error": 0, "total": 0 },
            { "start": "2026-11-01T10:03:00+00:00", "success": 0, "info": 1, "warning": 0, "error": 0, "total": 1 },
        ])
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn stats_by_hour_and_by_day_and_for_one_source(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    api.seed_day().await;

    let hourly = api
        .query(
            r#"{ stats(since: "2026-11-01T10:00:00Z", until: "2026-11-01T12:00:00Z", bucket: HOUR) { start total success } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        hourly.data()["stats"],
        json!([
            { "start": "2026-11-01T10:00:00+00:00", "total": 5, "success": 1 },
            { "start": "2026-11-01T11:00:00+00:00", "total": 1, "success": 1 },
        ])
    );

    // A range that starts mid-bucket still reports whole, epoch-aligned buckets.
    let daily = api
        .query(
            r#"{ stats(since: "2026-10-31T12:00:00Z", until: "2026-11-02T00:00:00Z", bucket: DAY) { start total } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        daily.data()["stats"],
        json!([{ "start": "2026-10-31T00:00:00+00:00", "total": 0 }, { "start": "2026-11-01T00:00:00+00:00", "total": 6 }])
    );

    let one_source = api
        .query(
            r#"query($source: String) { stats(since: "2026-11-01T10:00:00Z", until: "2026-11-01T10:02:00Z",
                   bucket: MINUTE, source: $source) { start error total } }"#,
            json!({ "source": "db" }),
        )
        .await;
    assert_eq!(
        one_source.data()["stats"],
        json!([
            { "start": "2026-11-01T10:00:00+00:00", "error": 0, "total": 0 },
            { "start": "2026-11-01T10:01:00+00:00", "error": 2, "total": 2 },
        ])
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn stats_refuse_an_empty_range_and_too_many_buckets(pool: PgPool) {
    let api = TestGraphql::new(pool).await;

    let backwards = api
        .query(r#"{ stats(since: "2026-11-02T00:00:00Z", until: "2026-11-01T00:00:00Z") { total } }"#, json!({}))
        .await;
    assert_eq!(backwards.codes(), ["BAD_USER_INPUT"]);
    assert_eq!(backwards.body["errors"][0]["extensions"]["field"], "since");

    let a_year_of_minutes = api
        .query(
            r#"{ stats(since: "2025-11-01T00:00:00Z", until: "2026-11-01T00:00:00Z", bucket: MINUTE) { total } }"#,
            json!({}),
        )
        .await;
    assert_eq!(a_year_of_minutes.codes(), ["BAD_USER_INPUT"]);
    assert!(a_year_of_minutes.body["errors"][0]["message"].as_str().unwrap().contains("buckets"));
}

#[sqlx::test(migrations = "../../migrations")]
async fn status_counts_list_every_status_and_honour_the_range(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    api.seed_day().await;

    let all = api.query("{ statusCounts { status count } }", json!({})).await;
    assert_eq!(
        all.data()["statusCounts"],
        json!([
            { "status": "SUCCESS", "count": 2 },
            { "status": "INFO", "count": 1 },
            { "status": "WARNING", "count": 1 },
            { "status": "ERROR", "count": 2 },
        ])
    );

    let first_minute = api
        .query(
            r#"{ statusCounts(since: "2026-11-01T10:00:00Z", until: "2026-11-01T10:01:00Z") { status count } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        first_minute.data()["statusCounts"],
        json!([
            { "status": "SUCCESS", "count": 1 },
            { "status": "INFO", "count": 0 },
            { "status": "WARNING", "count": 1 },
            { "status": "ERROR", "count": 0 },
        ])
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn top_sources_rank_by_count_then_name(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    api.seed_day().await;

    let top = api.query("{ topSources(limit: 2) { source count } }", json!({})).await;
    assert_eq!(top.data()["topSources"], json!([{ "source": "db", "count": 2 }, { "source": "web", "count": 2 }]));

    let late = api.query(r#"{ topSources(since: "2026-11-01T11:00:00Z") { source count } }"#, json!({})).await;
    assert_eq!(late.data()["topSources"], json!([{ "source": "cron", "count": 1 }]));
}

#[sqlx::test(migrations = "../../migrations")]
async fn pipeline_reports_states_the_oldest_waiting_event_emails_and_dead_letters(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    let ids = api.seed_day().await;
    sqlx::query("UPDATE events SET pipeline_state = 'dispatched' WHERE id = ANY($1)")
        .bind(&ids[..2])
        .execute(api.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE events SET pipeline_state = 'processed' WHERE id = ANY($1)")
        .bind(&ids[2..4])
        .execute(api.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO notifications (event_id, channel, recipients, state) VALUES
             ($1, 'email', '{ops@example.com}', 'sent'), ($2, 'email', '{ops@example.com}', 'failed')",
    )
    .bind(ids[2])
    .bind(ids[3])
    .execute(api.pool())
    .await
    .unwrap();
    sqlx::query("INSERT INTO dead_letters (origin, body, error) VALUES ('dispatch', 'garbage', 'not JSON')")
        .execute(api.pool())
        .await
        .unwrap();

    let reply = api
        .query(
            "{ pipeline { received dispatched processed states { state count } oldestUndispatchedAgeSeconds
                          emailsSent emailsFailed emailsPending deadLetters } }",
            json!({}),
        )
        .await;

    let pipeline = &reply.data()["pipeline"];
    assert_eq!(pipeline["received"], 2);
    assert_eq!(pipeline["dispatched"], 2);
    assert_eq!(pipeline["processed"], 2);
    assert_eq!(
        pipeline["states"],
        json!([
            { "state": "RECEIVED", "count": 2 },
            { "state": "DISPATCHED", "count": 2 },
            { "state": "PROCESSED", "count": 2 },
        ])
    );
    // The oldest waiting event is the info event of 10:03 on 2026-11-01.
    let expected_age = (Utc::now() - "2026-11-01T10:03:00Z".parse::<DateTime<Utc>>().unwrap()).as_seconds_f64();
    let age = pipeline["oldestUndispatchedAgeSeconds"].as_f64().unwrap();
    assert!((age - expected_age).abs() < 60.0, "age {age}, expected about {expected_age}");
    assert_eq!((pipeline["emailsSent"].clone(), pipeline["emailsFailed"].clone()), (json!(1), json!(1)));
    assert_eq!(pipeline["emailsPending"], 0);
    assert_eq!(pipeline["deadLetters"], 1);
}

// ---------- events: the connection and one event's history ----------

#[sqlx::test(migrations = "../../migrations")]
async fn events_page_newest_first_with_cursors_and_a_total(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    api.seed_day().await;
    let page_query = "query($after: String) { events(first: 4, after: $after) {
        totalCount edges { cursor node { title } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

    let first = api.query(page_query, json!({})).await;
    let events = &first.data()["events"];
    let titles: Vec<&str> =
        events["edges"].as_array().unwrap().iter().map(|e| e["node"]["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["backup done", "nightly report", "connection refused", "replica lag"]);
    assert_eq!(events["totalCount"], 6);
    assert_eq!(events["pageInfo"]["hasNextPage"], true);
    assert_eq!(events["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(events["pageInfo"]["endCursor"], events["edges"][3]["cursor"]);

    let second = api.query(page_query, json!({ "after": events["pageInfo"]["endCursor"] })).await;
    let events = &second.data()["events"];
    let titles: Vec<&str> =
        events["edges"].as_array().unwrap().iter().map(|e| e["node"]["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["disk at 91%", "deploy finished"]);
    assert_eq!(events["pageInfo"]["hasNextPage"], false);
    assert_eq!(events["pageInfo"]["hasPreviousPage"], true);
}

#[sqlx::test(migrations = "../../migrations")]
async fn events_filter_by_statuses_source_time_text_and_pipeline_state(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    let ids = api.seed_day().await;
    sqlx::query("UPDATE events SET pipeline_state = 'processed' WHERE id = $1")
        .bind(ids[3])
        .execute(api.pool())
        .await
        .unwrap();
    let query = "query($filter: EventsFilter) { events(filter: $filter) { totalCount nodes { title } } }";
    let titles = |reply: &Reply| -> Vec<String> {
        reply.data()["events"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap().to_string())
            .collect()
    };

    let cases = [
        (json!({ "statuses": ["ERROR", "WARNING"] }), vec!["connection refused", "replica lag", "disk at 91%"]),
        (json!({ "source": "web" }), vec!["disk at 91%", "deploy finished"]),
        (
            json!({ "since": "2026-11-01T10:01:00Z", "until": "2026-11-01T10:03:00Z" }),
            vec!["connection refused", "replica lag"],
        ),
        (json!({ "search": "REPORT" }), vec!["nightly report"]),
        (json!({ "pipelineStates": ["PROCESSED"] }), vec!["connection refused"]),
        (json!({ "statuses": ["ERROR"], "pipelineStates": ["RECEIVED"] }), vec!["replica lag"]),
    ];
    for (filter, expected) in cases {
        let reply = api.query(query, json!({ "filter": filter })).await;
        assert_eq!(titles(&reply), expected, "filter {filter}");
        assert_eq!(reply.data()["events"]["totalCount"], expected.len(), "filter {filter}");
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn one_event_comes_with_its_routing_processing_and_notifications(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    let ids = api.seed_day().await;
    let error_event = ids[2];
    sqlx::query("INSERT INTO event_routings (event_id, target_queue, rule_id) VALUES ($1, 'error', 2)")
        .bind(error_event)
        .execute(api.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO error_records (event_id) VALUES ($1)")
        .bind(error_event)
        .execute(api.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO notifications (event_id, channel, recipients, state, attempts, last_error)
         VALUES ($1, 'email', '{ops@example.com,oncall@example.com}', 'failed', 2, 'connection refused')",
    )
    .bind(error_event)
    .execute(api.pool())
    .await
    .unwrap();
    let query = "query($id: UUID!) { event(id: $id) { id title status source postedBy pipelineState
        routing { handler ruleId } processing { handler } notifications { channel recipients state attempts lastError sentAt } } }";

    let reply = api.query(query, json!({ "id": error_event })).await;
    assert_eq!(
        reply.data()["event"],
        json!({
            "id": error_event, "title": "replica lag", "status": "ERROR", "source": "db", "postedBy": "analyst",
            "pipelineState": "RECEIVED",
            "routing": { "handler": "ERROR", "ruleId": 2 },
            "processing": { "handler": "ERROR" },
            "notifications": [{
                "channel": "email", "recipients": ["ops@example.com", "oncall@example.com"], "state": "FAILED",
                "attempts": 2, "lastError": "connection refused", "sentAt": null
            }]
        })
    );

    let undispatched = api.query(query, json!({ "id": ids[0] })).await;
    let event = &undispatched.data()["event"];
    assert_eq!((event["routing"].clone(), event["processing"].clone()), (Value::Null, Value::Null));
    assert_eq!(event["notifications"], json!([]));

    let unknown = api.query(query, json!({ "id": Uuid::now_v7() })).await;
    assert_eq!(unknown.data()["event"], Value::Null);
}

/// Counts the spans the stores open, by name: one span is one query.
#[derive(Clone, Default)]
struct QueryCounter(Arc<[AtomicUsize; 3]>);

const COUNTED: [&str; 3] = ["routings", "notifications", "usernames"];

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QueryCounter {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(index) = COUNTED.iter().position(|name| *name == attrs.metadata().name()) {
            self.0[index].fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_page_loads_each_kind_of_history_in_one_query_not_one_per_event(pool: PgPool) {
    use tracing_subscriber::layer::SubscriberExt;
    let api = TestGraphql::new(pool).await;
    for minute in 0..30 {
        let id = api.seed(&format!("2026-11-01T10:{minute:02}:00Z"), "error", Some("db"), "failure").await;
        sqlx::query("INSERT INTO event_routings (event_id, target_queue) VALUES ($1, 'error')")
            .bind(id)
            .execute(api.pool())
            .await
            .unwrap();
    }
    let counter = QueryCounter::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(counter.clone()));

    let reply = api
        .query("{ events(first: 30) { nodes { postedBy routing { handler } notifications { state } } } }", json!({}))
        .await;

    let nodes = reply.data()["events"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 30);
    assert!(nodes.iter().all(|node| node["routing"]["handler"] == "ERROR" && node["postedBy"] == "analyst"));
    let counts: Vec<usize> = counter.0.iter().map(|count| count.load(Ordering::SeqCst)).collect();
    assert_eq!(counts, [1, 1, 1], "queries per kind ({COUNTED:?}) for a page of 30 events");
}

// ---------- createEvent: the REST validation, the pipeline, idempotency ----------

#[sqlx::test(migrations = "../../migrations")]
async fn create_event_stores_it_and_hands_it_to_the_pipeline(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    let mutation = r#"mutation($input: CreateEventInput!) { createEvent(input: $input) {
        id title status source attributes pipelineState postedBy } }"#;
    let input =
        json!({ "title": "payment failed", "status": "ERROR", "source": "billing", "attributes": { "order": 42 } });

    let reply = api.query(mutation, json!({ "input": input })).await;

    let event = &reply.data()["createEvent"];
    assert_eq!(event["title"], "payment failed");
    assert_eq!(event["status"], "ERROR");
    assert_eq!(event["attributes"], json!({ "order": 42 }));
    assert_eq!(event["pipelineState"], "RECEIVED");
    assert_eq!(event["postedBy"], "analyst");
    assert_eq!(api.event_count().await, 1);
    let published = api.published().await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].event_id.to_string(), event["id"].as_str().unwrap());
}

#[sqlx::test(migrations = "../../migrations")]
async fn create_event_applies_the_rest_validation_and_stores_nothing_when_it_fails(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    let mutation = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id } }";
    let cases = [
        (json!({ "title": "   ", "status": "INFO" }), "input.title", "must not be blank"),
        (json!({ "title": "x".repeat(201), "status": "INFO" }), "input.title", "at most 200"),
        (json!({ "title": "t", "status": "INFO", "source": "" }), "input.source", "at least 1"),
        (json!({ "title": "t", "status": "INFO", "attributes": [1, 2] }), "input.attributes", "JSON object"),
        (
            json!({ "title": "t", "status": "INFO", "attributes": { "big": "x".repeat(17_000) } }),
            "input.attributes",
            "16384",
        ),
    ];
    for (input, field, message) in cases {
        let reply = api.query(mutation, json!({ "input": input })).await;
        assert_eq!(reply.codes(), ["BAD_USER_INPUT"], "{input}: {}", reply.body);
        assert_eq!(reply.body["errors"][0]["extensions"]["field"], field);
        assert!(reply.body["errors"][0]["message"].as_str().unwrap().contains(message), "{}", reply.body);
    }
    let unknown_status = api.query(mutation, json!({ "input": { "title": "t", "status": "FATAL" } })).await;
    assert_eq!(unknown_status.codes(), ["GRAPHQL_VALIDATION_FAILED"], "{}", unknown_status.body);
    assert_eq!(api.event_count().await, 0);
}

#[sqlx::test(migrations = "../../migrations")]
async fn create_event_with_an_idempotency_key_stores_once_and_refuses_another_input(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    let mutation =
        "mutation($input: CreateEventInput!, $key: String) { createEvent(input: $input, idempotencyKey: $key) { id } }";
    let input = json!({ "title": "nightly job failed", "status": "ERROR" });

    let first = api.query(mutation, json!({ "input": input, "key": "run-2026-11-29" })).await;
    let retry = api.query(mutation, json!({ "input": input, "key": "run-2026-11-29" })).await;
    assert_eq!(first.data()["createEvent"]["id"], retry.data()["createEvent"]["id"]);
    assert_eq!(api.event_count().await, 1);
    assert_eq!(api.published().await.len(), 1, "a replay publishes nothing");

    let other =
        api.query(mutation, json!({ "input": { "title": "other", "status": "ERROR" }, "key": "run-2026-11-29" })).await;
    assert_eq!(other.codes(), ["IDEMPOTENCY_CONFLICT"]);
    assert_eq!(api.event_count().await, 1);
}

// ---------- limits, refused before the database ----------

/// Proves a refusal touched no database: the pool is closed, so a query would fail as UNAVAILABLE.
impl TestGraphql {
    /// Runs `query` on the schema alone, over this test's pool closed, so any database access fails.
    /// The transport is left out because its token check reads the users table.
    async fn query_with_closed_pool(&self, query: &str, variables: Value) -> Reply {
        self.pool().close().await;
        let events = PgEventStore::new(self.pool().clone());
        let services = Services {
            intake: Intake::new(events.clone(), Arc::new(self.api.bus())),
            events,
            analytics: PgAnalyticsStore::new(self.pool().clone()),
        };
        let caller = self.api.tokens.verify(&self.token(), TokenKind::Access).unwrap();
        let request = async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(variables));
        let response = services.clone().schema().execute(services.request(request, caller)).await;
        let body = serde_json::to_value(&response).unwrap();
        Reply { status: StatusCode::OK, headers: HeaderMap::new(), text: body.to_string(), body }
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_page_over_500_is_refused_before_the_database(pool: PgPool) {
    let api = TestGraphql::new(pool).await;

    let literal = api.query_with_closed_pool("{ events(first: 501) { totalCount } }", json!({})).await;
    assert_eq!(literal.codes(), ["PAGE_TOO_LARGE"], "{}", literal.body);
    assert!(literal.body["errors"][0]["message"].as_str().unwrap().contains(&MAX_PAGE_SIZE.to_string()));
    assert_eq!(literal.body["data"], Value::Null);

    let variable = api
        .query_with_closed_pool(
            "query($n: Int!) { statusCounts { count } events(first: $n) { totalCount } }",
            json!({ "n": 100_000 }),
        )
        .await;
    assert_eq!(variable.codes(), ["PAGE_TOO_LARGE"], "{}", variable.body);
    assert_eq!(variable.body["data"], Value::Null, "no field ran");
}

#[sqlx::test(migrations = "../../migrations")]
async fn too_deep_and_too_complex_queries_are_refused_before_the_database(pool: PgPool) {
    let api = TestGraphql::new(pool).await;

    // The schema itself nests five levels at most; anything far deeper is refused before validation.
    let too_deep = (0..=MAX_DEPTH).fold("id".to_string(), |inner, _| format!("events {{ nodes {{ {inner} }} }}"));
    let refused = api.query_with_closed_pool(&format!("{{ {too_deep} }}"), json!({})).await;
    assert_eq!(refused.codes(), ["QUERY_TOO_DEEP"], "{}", refused.body);

    let every_field = "id title description status source occurredAt receivedAt attributes pipelineState \
        pipelineUpdatedAt postedBy routing { handler ruleId routedAt } processing { handler processedAt } \
        notifications { channel recipients state attempts lastError createdAt sentAt }";
    let complex = format!(
        "{{ a: events(first: 500) {{ nodes {{ {every_field} }} }} b: events(first: 500) {{ nodes {{ {every_field} }} }} }}"
    );
    let refused = api.query_with_closed_pool(&complex, json!({})).await;
    assert_eq!(refused.codes(), ["QUERY_TOO_COMPLEX"], "{}", refused.body);
    assert_eq!(refused.body["data"], Value::Null);
}

// ---------- HTTP: auth, GraphiQL, malformed requests ----------

#[sqlx::test(migrations = "../../migrations")]
async fn queries_need_a_valid_access_token(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    api.seed_day().await;
    let body = json!({ "query": "{ statusCounts { count } }" });

    let anonymous = api.send(Rest::post("/graphql").json(&body)).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.codes(), ["UNAUTHENTICATED"]);
    assert!(anonymous.body.get("data").is_none());

    let refresh = api.token_with_roles(&Role::ALL, TokenKind::Refresh);
    let with_refresh = api.send(Rest::post("/graphql").bearer(&refresh).json(&body)).await;
    assert_eq!(with_refresh.status, StatusCode::UNAUTHORIZED);
    assert_eq!(with_refresh.codes(), ["UNAUTHENTICATED"]);

    let introspection =
        api.send(Rest::post("/graphql").json(&json!({ "query": "{ __schema { queryType { name } } }" }))).await;
    assert_eq!(introspection.status, StatusCode::UNAUTHORIZED);

    let authorised = api.query("{ statusCounts { count } }", json!({})).await;
    assert_eq!(authorised.status, StatusCode::OK);
    assert_eq!(authorised.data()["statusCounts"].as_array().unwrap().len(), 4);
}

#[sqlx::test(migrations = "../../migrations")]
async fn get_serves_the_graphiql_page_without_data(pool: PgPool) {
    let api = TestGraphql::new(pool).await;

    let page = api.send(Rest::get("/graphql")).await;

    assert_eq!(page.status, StatusCode::OK);
    let content_type = page.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.text.contains("graphiql"), "not the GraphiQL page");
}

#[sqlx::test(migrations = "../../migrations")]
async fn malformed_requests_get_a_coded_graphql_error(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    let token = api.token();

    let not_json =
        api.send(Rest::post("/graphql").bearer(&token).raw_body("text/plain", "{ statusCounts { count } }")).await;
    assert_eq!(not_json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(not_json.codes(), ["BAD_REQUEST"]);

    let no_query = api.send(Rest::post("/graphql").bearer(&token).json(&json!({ "variables": {} }))).await;
    assert_eq!(no_query.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_query.codes(), ["BAD_REQUEST"]);

    let syntax = api.query("{ statusCounts { count }", json!({})).await;
    assert_eq!(syntax.codes(), ["GRAPHQL_PARSE_FAILED"]);

    let unknown_field = api.query("{ statusCounts { colour } }", json!({})).await;
    assert_eq!(unknown_field.codes(), ["GRAPHQL_VALIDATION_FAILED"]);

    let bad_cursor = api.query(r#"{ events(after: "not-a-cursor") { totalCount } }"#, json!({})).await;
    assert_eq!(bad_cursor.codes(), ["BAD_USER_INPUT"]);
    assert_eq!(bad_cursor.body["errors"][0]["extensions"]["field"], "after");

    let elsewhere = api.send(Rest::get("/api/events").bearer(&token)).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    assert_eq!(elsewhere.codes(), ["BAD_REQUEST"]);
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_rest_fixture_runs_its_named_operation(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    api.seed("2026-11-28T23:59:59Z", "error", None, "before the range").await;
    api.seed("2026-11-29T10:00:00Z", "error", None, "in the range").await;
    let mut event: Value = serde_json::from_str(FIXTURE).unwrap();
    let bearer = format!("Bearer {}", api.token());
    event["headers"]["Authorization"] = json!(bearer);
    event["multiValueHeaders"]["Authorization"] = json!([bearer]);

    let reply = api.send(Rest { event }).await;

    assert_eq!(reply.status, StatusCode::OK);
    let data = reply.data();
    assert_eq!(data["statusCounts"][3], json!({ "status": "ERROR", "count": 1 }));
    assert_eq!(data["pipeline"]["received"], 2);
}

// ---------- hostile input ----------

#[sqlx::test(migrations = "../../migrations")]
async fn nul_in_any_text_input_is_bad_user_input_naming_the_field_and_stores_nothing(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    let create =
        "mutation($input: CreateEventInput!, $key: String) { createEvent(input: $input, idempotencyKey: $key) { id } }";
    let event = |extra: Value| {
        let mut input = json!({ "title": "t", "status": "ERROR" });
        input.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "input": input })
    };
    let cases = [
        (
            "query($f: EventsFilter) { events(filter: $f) { totalCount } }",
            json!({ "f": { "search": "disk\u{0}" } }),
            "filter.search",
        ),
        (
            "query($f: EventsFilter) { events(filter: $f) { totalCount } }",
            json!({ "f": { "source": "\u{0}" } }),
            "filter.source",
        ),
        ("query($s: String) { stats(source: $s) { total } }", json!({ "s": "web\u{0}1" }), "source"),
        (create, event(json!({ "title": "a\u{0}b" })), "input.title"),
        (create, event(json!({ "description": "a\u{0}b" })), "input.description"),
        (create, event(json!({ "source": "web\u{0}1" })), "input.source"),
        (create, event(json!({ "source": "web\u{202E}1" })), "input.source"),
        (create, event(json!({ "attributes": { "k\u{0}": 1 } })), "input.attributes"),
        (create, event(json!({ "attributes": { "k": ["x\u{0}"] } })), "input.attributes"),
        (create, json!({ "input": { "title": "t", "status": "ERROR" }, "key": "key\u{0}" }), "idempotencyKey"),
    ];
    for (query, variables, field) in cases {
        let reply = api.query(query, variables.clone()).await;
        assert_eq!(reply.codes(), ["BAD_USER_INPUT"], "{variables}: {}", reply.body);
        assert_eq!(reply.body["errors"][0]["extensions"]["field"], field, "{variables}: {}", reply.body);
    }
    assert_eq!(api.event_count().await, 0);
}

#[sqlx::test(migrations = "../../migrations")]
async fn data_after_the_json_body_is_a_400_that_runs_nothing(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    let token = api.token();
    let request = r#"{"query": "mutation { createEvent(input: {title: \"t\", status: INFO}) { id } }"}"#;

    for body in [format!("{request} xyz"), format!("{request}{request}")] {
        let reply = api.send(Rest::post("/graphql").bearer(&token).raw_body("application/json", &body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        assert_eq!(reply.codes(), ["BAD_REQUEST"], "{body}");
    }
    assert_eq!(api.event_count().await, 0);

    let reply =
        api.send(Rest::post("/graphql").bearer(&token).raw_body("application/json", &format!("{request}\n"))).await;
    assert!(reply.data()["createEvent"]["id"].is_string(), "trailing whitespace is fine");
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_header_http_cannot_carry_gets_a_graphql_shaped_400_instead_of_an_invocation_error(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    let mut fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let bearer = format!("Bearer {}", api.token());
    fixture["headers"]["Authorization"] = json!(bearer);
    fixture["multiValueHeaders"]["Authorization"] = json!([bearer]);
    for value in ["a\u{1}b", "a\r\nX-Injected: 1", "a\u{0}b"] {
        let mut event = fixture.clone();
        event["headers"]["X-Note"] = json!(value);
        event["multiValueHeaders"]["X-Note"] = json!([value]);
        let answer = api.invoke(&event).await;
        assert_eq!(answer["statusCode"], 400, "{value:?}: {answer}");
        assert_eq!(answer["headers"]["content-type"], "application/json", "{value:?}: {answer}");
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{value:?}: {body}");
    }
    assert_eq!(api.invoke(&fixture).await["statusCode"], 200, "the same event with clean headers");
}

// ---------- roles ----------

#[sqlx::test(migrations = "../../migrations")]
async fn every_field_serves_its_role_and_answers_403_forbidden_to_every_other(pool: PgPool) {
    let api = TestGraphql::new(pool).await;
    api.seed_day().await;
    let fields = [
        ("events", Role::Analyst, "{ events(first: 1) { nodes { id } } }"),
        ("event", Role::Analyst, "{ event(id: \"0190d4b2-0000-7000-8000-000000000000\") { id } }"),
        ("stats", Role::Analyst, "{ stats { total } }"),
        ("statusCounts", Role::Analyst, "{ statusCounts { count } }"),
        ("topSources", Role::Analyst, "{ topSources { count } }"),
        ("pipeline", Role::Analyst, "{ pipeline { received } }"),
        ("createEvent", Role::Producer, "mutation { createEvent(input: {title: \"role\", status: INFO}) { id } }"),
    ];
    // Admin-only fields, reached by an analyst (who may read the event itself).
    let diagnostics = [
        ("postedBy", "{ events(first: 1) { nodes { postedBy } } }"),
        ("recipients", "{ events(first: 1) { nodes { notifications { recipients } } } }"),
        ("lastError", "{ events(first: 1) { nodes { notifications { lastError } } } }"),
        ("deadLetters", "{ pipeline { deadLetters } }"),
    ];
    for held in [Role::Producer, Role::Analyst, Role::Admin] {
        let token = api.token_with_roles(&[held], TokenKind::Access);
        let ask = |query: &str| api.send(Rest::post("/graphql").bearer(&token).json(&json!({ "query": query })));
        for (field, needed, query) in fields {
            let reply = ask(query).await;
            if held == needed {
                assert_eq!(reply.status, StatusCode::OK, "{field} as {held}: {}", reply.body);
                assert!(reply.body.get("errors").is_none(), "{field} as {held}: {}", reply.body);
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{field} as {held}: {}", reply.body);
                assert_eq!(reply.codes(), ["FORBIDDEN"], "{field} as {held}");
            }
        }
    }
    // The newest event, which a one-event page shows, gets a notification to show.
    sqlx::query(
        "INSERT INTO notifications (event_id, channel, recipients, state, attempts, last_error)
         SELECT id, 'email', ARRAY['ops@example.com'], 'failed', 1, 'relay refused' FROM events
         ORDER BY received_at DESC, id DESC LIMIT 1",
    )
    .execute(api.pool())
    .await
    .unwrap();
    let analyst = api.token_with_roles(&[Role::Analyst], TokenKind::Access);
    let admin = api.token_with_roles(&[Role::Analyst, Role::Admin], TokenKind::Access);
    for (field, query) in diagnostics {
        let as_analyst = api.send(Rest::post("/graphql").bearer(&analyst).json(&json!({ "query": query }))).await;
        assert_eq!(as_analyst.status, StatusCode::FORBIDDEN, "{field}: {}", as_analyst.body);
        assert!(as_analyst.codes().iter().all(|code| *code == "FORBIDDEN"), "{field}: {}", as_analyst.body);
        let as_admin = api.send(Rest::post("/graphql").bearer(&admin).json(&json!({ "query": query }))).await;
        assert_eq!(as_admin.status, StatusCode::OK, "{field}: {}", as_admin.body);
        assert!(as_admin.body.get("errors").is_none(), "{field}: {}", as_admin.body);
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_token_whose_user_signed_out_everywhere_is_unauthenticated(pool: PgPool) {
    let api = TestGraphql::new(pool.clone()).await;
    let token = api.token();
    assert_eq!(api.query("{ statusCounts { count } }", json!({})).await.status, StatusCode::OK);
    PgUserStore::new(pool).end_sessions("analyst").await.unwrap();
    let reply =
        api.send(Rest::post("/graphql").bearer(&token).json(&json!({ "query": "{ statusCounts { count } }" }))).await;
    assert_eq!((reply.status, reply.codes()), (StatusCode::UNAUTHORIZED, vec!["UNAUTHENTICATED"]));
}
