//! The queries the benchmark times: the everyday ones, the costliest the limits accept, and
//! hostile ones the limits must refuse.

use chrono::{DateTime, TimeDelta, Utc};
use eventstream::graphql::{
    MAX_ALIASES, MAX_DEPTH, MAX_FRAGMENTS, MAX_OPERATIONS, MAX_PAGE_SIZE, MAX_QUERY_BYTES, MAX_STATS_BUCKETS,
    MAX_TOKENS, code,
};
use serde_json::{Value, json};

use crate::{rfc3339, thousands};

const STATS_FIELDS: &str = "start success info warning error total";
const EVENT_PAGE_FIELDS: &str =
    "edges { cursor node { id title status source receivedAt pipelineState } } pageInfo { hasNextPage endCursor }";

/// Every field of an event, its history included: what a page may cost at most per event.
const EVERY_EVENT_FIELD: &str = "id title description status source occurredAt receivedAt attributes pipelineState \
    pipelineUpdatedAt postedBy routing { handler ruleId routedAt } processing { handler processedAt } \
    notifications { channel recipients state attempts lastError createdAt sentAt }";
const EVERY_PIPELINE_FIELD: &str = "states { state count } received dispatched processed \
    oldestUndispatchedAgeSeconds emailsSent emailsFailed emailsPending deadLetters";
/// Each in 70% of the seeded events: the costliest searches the limits accept (shorter ones, which
/// the trigram index cannot serve, are refused), a page cheap and its `totalCount` not.
const COMMON_SEARCHES: [&str; 3] = ["finished", "finishe", "inished"];
/// In the title of 70% of the seeded events (every success).
const COMMON_SEARCH: &str = "finished";

/// A query the limits must refuse, and the code they must refuse it with.
pub struct Refusal {
    pub name: String,
    pub query: String,
    pub code: &'static str,
}

/// One query as a client sends it, and how to describe its answer in a few words.
pub struct Case {
    pub name: String,
    pub query: String,
    pub variables: Value,
    pub describe: fn(&Value) -> String,
}

/// The everyday queries: time series, counts, health and pages, over the seed's windows.
pub fn cases(until: DateTime<Utc>, since_all: DateTime<Utc>, deep_cursor: &str, deep_offset: i64) -> Vec<Case> {
    let window = |span: TimeDelta| json!({ "since": rfc3339(until - span), "until": rfc3339(until) });
    let stats = |bucket: &str, source: bool| {
        let (declare, pass) = if source { (", $source: String", ", source: $source") } else { ("", "") };
        format!(
            "query($since: DateTime, $until: DateTime{declare}) {{ stats(since: $since, until: $until, \
             bucket: {bucket}{pass}) {{ {STATS_FIELDS} }} }}"
        )
    };
    let mut with_source = window(TimeDelta::hours(24));
    with_source["source"] = json!("source-004");
    vec![
        Case {
            name: "stats 24 h by HOUR".into(),
            query: stats("HOUR", false),
            variables: window(TimeDelta::hours(24)),
            describe: describe_stats,
        },
        Case {
            name: "stats 30 days by DAY".into(),
            query: stats("DAY", false),
            variables: json!({ "since": rfc3339(since_all), "until": rfc3339(until) }),
            describe: describe_stats,
        },
        Case {
            name: "stats 1 h by MINUTE".into(),
            query: stats("MINUTE", false),
            variables: window(TimeDelta::hours(1)),
            describe: describe_stats,
        },
        Case {
            name: "stats 24 h by HOUR, one source".into(),
            query: stats("HOUR", true),
            variables: with_source,
            describe: describe_stats,
        },
        Case {
            name: "statusCounts 30 days".into(),
            query: "query($since: DateTime, $until: DateTime) { statusCounts(since: $since, until: $until) \
                    { status count } }"
                .into(),
            variables: json!({ "since": rfc3339(since_all), "until": rfc3339(until) }),
            describe: |data| format!("{} events", sum(&data["statusCounts"], "count")),
        },
        Case {
            name: "topSources(limit: 10), all time".into(),
            query: "{ topSources(limit: 10) { source count } }".into(),
            variables: json!({}),
            describe: |data| {
                let top = &data["topSources"][0];
                let count = top["count"].as_i64().unwrap_or(0);
                format!("{} sources, top {} with {}", len(&data["topSources"]), top["source"], thousands(count))
            },
        },
        Case {
            name: "pipeline".into(),
            query: "{ pipeline { received dispatched processed oldestUndispatchedAgeSeconds emailsSent \
                    emailsFailed emailsPending deadLetters } }"
                .into(),
            variables: json!({}),
            describe: |data| {
                let p = &data["pipeline"];
                let count = |field: &str| thousands(p[field].as_i64().unwrap_or(0));
                format!("{} dispatched, {} processed", count("dispatched"), count("processed"))
            },
        },
        Case {
            name: "events(first: 50), first page".into(),
            query: format!("{{ events(first: 50) {{ {EVENT_PAGE_FIELDS} }} }}"),
            variables: json!({}),
            describe: describe_page,
        },
        Case {
            name: format!("events(first: 50), after {}", thousands(deep_offset)),
            query: format!("query($after: String) {{ events(first: 50, after: $after) {{ {EVENT_PAGE_FIELDS} }} }}"),
            variables: json!({ "after": deep_cursor }),
            describe: describe_page,
        },
        Case {
            name: "events(ERROR, first: 50) + totalCount".into(),
            query: format!(
                "{{ events(first: 50, filter: {{ statuses: [ERROR] }}) {{ totalCount {EVENT_PAGE_FIELDS} }} }}"
            ),
            variables: json!({}),
            describe: describe_page,
        },
    ]
}

/// The most a request can make the database do within the limits: every rationed field at its cap,
/// over the widest range each accepts, and pages that read every event.
pub fn costliest(until: DateTime<Utc>) -> Vec<Case> {
    // `stats` refuses a range of more than MAX_STATS_BUCKETS buckets, counting one at each end.
    let widest = |bucket: TimeDelta| rfc3339(until - bucket * (MAX_STATS_BUCKETS as i32 - 2));
    let aggregates = format!(
        "stats(since: \"{}\", until: \"{}\", bucket: DAY) {{ {STATS_FIELDS} }} statusCounts {{ status count }} \
         topSources(limit: 100) {{ source count }} pipeline {{ {EVERY_PIPELINE_FIELD} }}",
        widest(TimeDelta::days(1)),
        rfc3339(until)
    );
    let [a, b, c] = COMMON_SEARCHES;
    let searches = format!(
        "a: events(first: {MAX_PAGE_SIZE}, filter: {{ search: \"{a}\" }}) {{ totalCount nodes {{ id }} }} \
         b: events(first: {MAX_PAGE_SIZE}, filter: {{ search: \"{b}\" }}) {{ nodes {{ id }} }} \
         c: events(first: {MAX_PAGE_SIZE}, filter: {{ search: \"{c}\" }}) {{ nodes {{ id }} }}"
    );
    let case =
        |name: &str, query: String| Case { name: name.into(), query, variables: json!({}), describe: describe_fields };
    vec![
        case("every aggregate once, widest ranges", format!("{{ {aggregates} }}")),
        case(
            "500 events, every field, + totalCount",
            format!(
                "{{ events(first: {MAX_PAGE_SIZE}) {{ totalCount edges {{ cursor node {{ {EVERY_EVENT_FIELD} }} }} \
                 pageInfo {{ hasNextPage endCursor }} }} }}"
            ),
        ),
        case("totalCount of every event", "{ events(first: 1) { totalCount } }".into()),
        case(
            "stats by MINUTE, 10,000 buckets",
            format!(
                "{{ stats(since: \"{}\", until: \"{}\", bucket: MINUTE) {{ {STATS_FIELDS} }} }}",
                widest(TimeDelta::minutes(1)),
                rfc3339(until)
            ),
        ),
        case(
            "search in 70% of events, 500 + totalCount",
            format!(
                "{{ events(first: {MAX_PAGE_SIZE}, filter: {{ search: \"{COMMON_SEARCH}\" }}) {{ totalCount nodes {{ id }} }} }}"
            ),
        ),
        case("3 pages of common searches + totalCount", format!("{{ {searches} }}")),
        case("all of it: every aggregate + the 3 searches", format!("{{ {aggregates} {searches} }}")),
    ]
}

/// Hostile queries, each with the code it must be refused with.
pub fn refusals() -> Vec<Refusal> {
    // `count` fragments, each spreading the next `fan_out` times.
    let fan_out = |count: usize, fan_out: usize, innermost: &str| {
        let mut query = String::from("{ ...F0 }");
        for i in 0..count {
            let body = if i + 1 == count { innermost.to_string() } else { format!("...F{} ", i + 1).repeat(fan_out) };
            query.push_str(&format!(" fragment F{i} on Query {{ {body} }}"));
        }
        query
    };
    let fields = |count: usize| format!("{{ {}}}", "a ".repeat(count));
    let aliased = |count: usize, selection: &str| (0..count).map(|i| format!("a{i}: {selection} ")).collect::<String>();
    let create = "createEvent(input: { title: \"Disk full\", status: ERROR }) { id }";
    let deep_levels = MAX_DEPTH / 2 + 1;
    let deep = (0..deep_levels).fold("id".to_string(), |inner, _| format!("events {{ nodes {{ {inner} }} }}"));
    let refusal = |name: String, query: String, code: &'static str| Refusal { name, query, code };
    vec![
        refusal(
            format!("fragment bomb: 3^{} spreads", MAX_FRAGMENTS - 1),
            fan_out(MAX_FRAGMENTS, 3, "pipeline { received }"),
            code::QUERY_TOO_COMPLEX,
        ),
        refusal("fragment bomb: 10^9 spreads, no field".into(), fan_out(10, 10, "...Missing"), code::QUERY_TOO_COMPLEX),
        refusal(
            format!("document of {} bytes", MAX_QUERY_BYTES + 1),
            format!(
                "{{ pipeline {{ received }} }}{}",
                " ".repeat(MAX_QUERY_BYTES + 1 - "{ pipeline { received } }".len())
            ),
            code::QUERY_TOO_LARGE,
        ),
        refusal(
            format!("{} fields in {} bytes", (MAX_QUERY_BYTES - 3) / 2, MAX_QUERY_BYTES - 1),
            fields(MAX_QUERY_BYTES / 2 - 2),
            code::QUERY_TOO_LARGE,
        ),
        refusal(
            format!("{} unknown fields (parsed, validated)", MAX_TOKENS - 2),
            fields(MAX_TOKENS - 2),
            code::GRAPHQL_VALIDATION_FAILED,
        ),
        refusal(
            "200 aliases of pipeline".into(),
            format!("{{ {} }}", aliased(200, "pipeline { received }")),
            code::QUERY_TOO_COMPLEX,
        ),
        refusal("stats aliased twice".into(), format!("{{ {} }}", aliased(2, "stats { total }")), code::FIELD_REPEATED),
        refusal(
            "every aggregate twice, by fragment".into(),
            "{ ...A ...A } fragment A on Query { stats { total } statusCounts { count } \
             topSources { count } pipeline { received } }"
                .into(),
            code::FIELD_REPEATED,
        ),
        refusal(
            "totalCount in 2 pages".into(),
            format!("{{ {} }}", aliased(2, "events(first: 1) { totalCount }")),
            code::FIELD_REPEATED,
        ),
        refusal(
            format!("createEvent aliased {MAX_ALIASES} times"),
            format!("mutation {{ {} }}", aliased(MAX_ALIASES, create)),
            code::FIELD_REPEATED,
        ),
        refusal(format!("{} levels deep", 2 * deep_levels + 1), format!("{{ {deep} }}"), code::QUERY_TOO_DEEP),
        refusal(
            "events(first: 100000)".into(),
            "{ events(first: 100000) { nodes { id } } }".into(),
            code::PAGE_TOO_LARGE,
        ),
        refusal(
            format!("{} operations", MAX_OPERATIONS + 1),
            (0..=MAX_OPERATIONS).map(|i| format!("query Q{i} {{ pipeline {{ received }} }} ")).collect(),
            code::QUERY_TOO_COMPLEX,
        ),
        refusal(
            "fragment cycle".into(),
            "{ ...A } fragment A on Query { ...B } fragment B on Query { pipeline { received } ...A }".into(),
            code::GRAPHQL_VALIDATION_FAILED,
        ),
    ]
}

/// Each top-level field of the answer in a few words: rows, or a page's events of its total.
fn describe_fields(data: &Value) -> String {
    let Some(fields) = data.as_object() else { return String::new() };
    fields
        .iter()
        .map(|(name, value)| match value {
            Value::Array(rows) => format!("{name} {}", rows.len()),
            Value::Object(page) if page.contains_key("nodes") || page.contains_key("edges") => {
                let events = page.get("nodes").or_else(|| page.get("edges")).map_or(0, len);
                match page.get("totalCount").and_then(Value::as_i64) {
                    Some(total) => format!("{name} {events} of {}", thousands(total)),
                    None => format!("{name} {events}"),
                }
            }
            Value::Object(page) if page.contains_key("totalCount") => {
                format!("{name} total {}", thousands(page["totalCount"].as_i64().unwrap_or(0)))
            }
            _ => name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_stats(data: &Value) -> String {
    format!("{} buckets, {} events", len(&data["stats"]), sum(&data["stats"], "total"))
}

fn describe_page(data: &Value) -> String {
    let page = &data["events"];
    match page["totalCount"].as_i64() {
        Some(total) => format!("{} events of {}", len(&page["edges"]), thousands(total)),
        None => format!("{} events", len(&page["edges"])),
    }
}

fn len(list: &Value) -> usize {
    list.as_array().map_or(0, Vec::len)
}

fn sum(list: &Value, field: &str) -> String {
    thousands(list.as_array().map_or(0, |items| items.iter().filter_map(|item| item[field].as_i64()).sum()))
}
