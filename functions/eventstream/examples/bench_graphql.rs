//! Latency of the GraphQL analytics API over a large events table: seeds a benchmark database once,
//! then runs each query through the real schema (`schema.execute`, the same stores, pool and SQL the
//! graphql function uses) many times and prints p50, p95, p99 and max per query, with the
//! PostgreSQL plan of the `stats` query for reference. Then the costliest queries the limits still
//! accept, against a target of 1 s, and hostile queries the limits refuse, against a target of 20 ms.
//!
//! `scripts/bench-graphql --help` lists the options; BENCHMARKS.md holds the figures.

use std::{
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use async_graphql::{Request, Variables};
use chrono::{DateTime, SecondsFormat, SubsecRound, TimeDelta, Utc};
use clap::Parser;
use eventstream::{
    MIGRATOR,
    auth::{Claims, TokenCodec, TokenKind, TokenSubject},
    bus::{AmqpBus, Topology},
    config::{DEFAULT_STATEMENT_TIMEOUT, DatabaseConfig, JwtConfig},
    domain::{NewEvent, Role, Status},
    graphql::{
        EventStreamSchema, MAX_ALIASES, MAX_DEPTH, MAX_FRAGMENTS, MAX_OPERATIONS, MAX_PAGE_SIZE, MAX_QUERY_BYTES,
        MAX_STATS_BUCKETS, MAX_TOKENS, Services, code,
    },
    intake::Intake,
    store::{Cursor, PgAnalyticsStore, PgEventStore, lazy_pool},
};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row, migrate::MigrateDatabase, postgres::PgConnectOptions};
use uuid::Uuid;

/// Seed and time the GraphQL analytics queries over a large events table.
///
/// Creates the database when it is missing, applies the migrations, and seeds `--events` events
/// spread over the last `--days` days (status weights success 70%, info 10%, warning 15%, error 5%;
/// `--sources` sources, a few busy and many quiet, 2% of events without one) in one INSERT ... SELECT,
/// unless the table already holds exactly that seed. Then runs each query through the real schema,
/// one at a time on a pool of 2 connections as the graphql function has, and prints its latency:
/// `schema.execute` plus serialising the response to JSON, as the function does before answering.
///
/// Then the costliest queries the limits accept (every aggregate once over the widest range, 500-event
/// pages with every field, searches that read every event), each `--costly-iterations` times, against
/// a target of 1 s; and hostile queries (a fragment bomb, a document over 16 KiB, aliased aggregates,
/// ...), each `--iterations` times, against a target of 20 ms to be refused. The schema's pool has the
/// graphql function's defaults, its statement timeout included; seeding has none.
///
/// The time windows end when the events were seeded, so a rerun days later asks the same questions.
/// Seeding empties the events table and the tables that refer to it: the database's name must
/// contain "bench".
#[derive(Debug, Parser)]
#[command(name = "bench_graphql", verbatim_doc_comment)]
struct Args {
    /// The benchmark database; created when missing, its events table replaced when reseeded.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/eventstream_bench",
        hide_env_values = true
    )]
    database_url: String,

    /// How many events the table holds.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1..))]
    events: i64,

    /// Over how many days, ending now, the seeded events were received.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3650))]
    days: i64,

    /// How many distinct sources send them.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=999))]
    sources: i64,

    /// Timed runs of each query.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,

    /// Timed runs of each of the costliest queries the limits accept; two untimed runs come first.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    costly_iterations: u32,

    /// Untimed runs of each query first (warm caches, prepared statements, plan choice).
    #[arg(long, default_value_t = 20)]
    warmup: u32,

    /// How far into the newest-first list the deep page starts, in events.
    #[arg(long, default_value_t = 100_000)]
    deep_offset: i64,

    /// Only the queries whose name contains this text (e.g. "stats", "events(", "insert").
    #[arg(long)]
    only: Option<String>,

    /// Seed again even when the table already holds this seed.
    #[arg(long)]
    reseed: bool,

    /// Events per batch in the insert measurement (the ingest path's one-statement insert).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=500))]
    insert_batch: u32,

    /// Timed batches in the insert measurement; 0 skips it. The inserted events are deleted after.
    #[arg(long, default_value_t = 20)]
    insert_iterations: u32,

    /// Print the whole EXPLAIN (ANALYZE, BUFFERS) plans, not only their scans and times.
    #[arg(long)]
    plans: bool,
}

/// Bumped when the seed's shape changes, so an old seed is replaced.
const SEED_VERSION: &str = "bench seed v1";
/// The seed's events are posted by this user; its hash is not one any password matches.
const BENCH_USER: &str = "bench";
const BENCH_USER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2gtdXNlcg$no-password-matches-this";
const JWT_SECRET: &str = "bench-graphql-secret-of-32-bytes-or-more";
/// Only `createEvent` publishes, and it is not benchmarked: the bus never connects.
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// One INSERT ... SELECT: times evenly spread (with jitter) and stored in time order, as ingest
/// appends them (generate_series feeds the rows in order); ids shaped like UUID v7 from those times; statuses, sources and pipeline states
/// drawn per row. $1 start, $2 seconds between events, $3 how many, $4 sources, $5 user.
const SEED_SQL: &str = r#"
INSERT INTO events (id, title, description, status, source, occurred_at, received_at, attributes, user_id,
                    pipeline_state, pipeline_updated_at)
SELECT (substr(ms, 1, 8) || '-' || substr(ms, 9, 4) || '-7' || substr(r, 1, 3) || '-'
        || substr('89ab', 1 + (i % 4)::int, 1) || substr(r, 4, 3) || '-' || substr(r, 7, 12))::uuid,
       CASE status WHEN 'success' THEN 'Job ' || (i % 997) || ' finished'
                   WHEN 'info' THEN 'Report ' || (i % 31) || ' published'
                   WHEN 'warning' THEN 'Disk at ' || (80 + i % 20) || '% on host-' || (i % 40)
                   ELSE 'Task ' || (i % 997) || ' failed' END,
       CASE WHEN status IN ('warning', 'error') THEN 'Seeded event ' || i || ' for the GraphQL benchmark' ELSE '' END,
       status,
       source,
       received_at - interval '250 milliseconds',
       received_at,
       jsonb_build_object('host', 'host-' || (i % 40), 'run', i),
       $5,
       CASE WHEN status IN ('warning', 'error') THEN 'processed' ELSE 'dispatched' END,
       received_at + interval '1 second'
FROM (
    SELECT i, received_at, status,
           lpad(to_hex((extract(epoch FROM received_at) * 1000)::bigint), 12, '0') AS ms,
           md5(i::text) AS r,
           CASE WHEN source_draw < 0.02 THEN NULL
                -- squared: a few sources send most events, as in a real fleet
                ELSE 'source-' || lpad((1 + floor(power((source_draw - 0.02) / 0.98, 2) * $4))::int::text, 3, '0') END
               AS source
    FROM (
        SELECT i,
               $1 + make_interval(secs => (i - 1 + random()) * $2) AS received_at,
               CASE WHEN status_draw < 0.70 THEN 'success' WHEN status_draw < 0.80 THEN 'info'
                    WHEN status_draw < 0.95 THEN 'warning' ELSE 'error' END AS status,
               source_draw
        FROM (SELECT i, random() AS status_draw, random() AS source_draw FROM generate_series(1, $3::bigint) AS i) AS d
    ) AS timed
) AS e
"#;

/// A copy of `PgAnalyticsStore::stats`'s SQL, only to show its plan: the timed runs go through the
/// library. Checked against the library's source at start, so a drift is reported.
const STATS_SQL: &str = r#"
            WITH bucketed AS (
                SELECT date_bin(make_interval(secs => $3), received_at, TIMESTAMPTZ 'epoch') AS start,
                       count(*) FILTER (WHERE status = 'success') AS success,
                       count(*) FILTER (WHERE status = 'info') AS info,
                       count(*) FILTER (WHERE status = 'warning') AS warning,
                       count(*) FILTER (WHERE status = 'error') AS error
                FROM events
                WHERE received_at >= $1 AND received_at < $2 AND ($4::text IS NULL OR source = $4)
                GROUP BY 1
            ), buckets AS (
                SELECT generate_series(
                    date_bin(make_interval(secs => $3), $1, TIMESTAMPTZ 'epoch'),
                    $2 - interval '1 microsecond',
                    make_interval(secs => $3)
                ) AS start
            )
            SELECT buckets.start AS "start!",
                   coalesce(bucketed.success, 0) AS "success!",
                   coalesce(bucketed.info, 0) AS "info!",
                   coalesce(bucketed.warning, 0) AS "warning!",
                   coalesce(bucketed.error, 0) AS "error!"
            FROM buckets LEFT JOIN bucketed USING (start)
            ORDER BY buckets.start
"#;
const ANALYTICS_SOURCE: &str = include_str!("../src/store/analytics.rs");

/// The slowest an accepted query may answer (p99), and the slowest a hostile one may be refused.
const ACCEPTED_TARGET: Duration = Duration::from_secs(1);
const REFUSAL_TARGET: Duration = Duration::from_millis(20);
/// Untimed runs of each costliest query: each reads every event, so a few warm the caches.
const COSTLY_WARMUP: u32 = 2;

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
struct Refusal {
    name: String,
    query: String,
    code: &'static str,
}

/// One query as a client sends it, and how to describe its answer in a few words.
struct Case {
    name: String,
    query: String,
    variables: Value,
    describe: fn(&Value) -> String,
}

/// Latencies of one case, sorted.
struct Timings {
    sorted: Vec<Duration>,
}

impl Timings {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self { sorted: samples }
    }

    /// Nearest-rank percentile.
    fn percentile(&self, p: f64) -> Duration {
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    fn max(&self) -> Duration {
        *self.sorted.last().expect("at least one sample")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options =
        PgConnectOptions::from_str(&args.database_url).context("BENCH_DATABASE_URL is not a PostgreSQL URL")?;
    let database = options.get_database().unwrap_or_default().to_string();
    ensure!(
        database.contains("bench"),
        "refusing to seed database {database:?}: it is emptied when seeded, so its name must contain \"bench\""
    );

    print_machine();
    if !Postgres::database_exists(&args.database_url).await? {
        Postgres::create_database(&args.database_url).await.with_context(|| format!("creating {database}"))?;
        println!("created database {database}");
    }
    let database = |statement_timeout| DatabaseConfig {
        url: SecretString::from(args.database_url.clone()),
        max_connections: 2,
        statement_timeout,
    };
    // Seeding and its index builds take minutes; the schema gets the graphql function's pool.
    let admin = lazy_pool(&database(Duration::ZERO))?;
    let pool = lazy_pool(&database(DEFAULT_STATEMENT_TIMEOUT))?;
    MIGRATOR.run(&admin).await.context("applying the migrations")?;
    print_server(&pool).await?;

    let user = bench_user(&admin).await?;
    let until = ensure_seed(&admin, &args, user).await?;
    let since_all = until - TimeDelta::days(args.days);
    println!(
        "data: {} events over {} days from {} sources, seeded at {}; the queries' windows end there",
        thousands(args.events),
        args.days,
        args.sources,
        rfc3339(until)
    );

    let events = PgEventStore::new(pool.clone());
    let bus = AmqpBus::new(SecretString::from(AMQP_URL), Topology::ephemeral(), Duration::from_secs(2));
    let services = Services {
        events: events.clone(),
        analytics: PgAnalyticsStore::new(pool.clone()),
        intake: Intake::new(events.clone(), Arc::new(bus)),
    };
    let schema = services.clone().schema();
    let claims = bench_claims(user)?;

    let selected = |name: &str| args.only.as_deref().is_none_or(|only| name.contains(only));
    let deep_offset = args.deep_offset.min(args.events - 1);
    let deep_cursor = deep_cursor(&admin, deep_offset).await?;
    let cases: Vec<Case> =
        cases(until, since_all, &deep_cursor, deep_offset).into_iter().filter(|case| selected(&case.name)).collect();

    if !cases.is_empty() {
        println!(
            "\nGraphQL queries: {} warm-up then {} timed runs each, one at a time; schema.execute + JSON\n",
            args.warmup, args.iterations
        );
        print_header();
    }
    for case in &cases {
        let (timings, answer, timeouts) =
            run_case(&schema, &services, &claims, case, args.warmup, args.iterations).await?;
        print_row(&case.name, &timings, &with_timeouts((case.describe)(&answer), timeouts));
    }

    let costly: Vec<Case> = costliest_cases(until).into_iter().filter(|case| selected(&case.name)).collect();
    if !costly.is_empty() {
        println!(
            "\nThe costliest queries the limits accept: {COSTLY_WARMUP} warm-up then {} timed runs each; \
             target p99 <= {} ms\n",
            args.costly_iterations,
            ACCEPTED_TARGET.as_millis()
        );
        print_header();
        let mut worst: Option<(&str, Duration)> = None;
        for case in &costly {
            let (timings, answer, timeouts) =
                run_case(&schema, &services, &claims, case, COSTLY_WARMUP, args.costly_iterations).await?;
            print_row(&case.name, &timings, &with_timeouts((case.describe)(&answer), timeouts));
            let p99 = timings.percentile(99.0);
            if worst.is_none_or(|(_, slowest)| p99 > slowest) {
                worst = Some((&case.name, p99));
            }
        }
        if let Some((name, p99)) = worst {
            println!(
                "worst accepted: {name}, p99 {:.2} ms; target <= {} ms: {}",
                millis(p99),
                ACCEPTED_TARGET.as_millis(),
                verdict(p99 <= ACCEPTED_TARGET)
            );
        }
    }

    let refusals: Vec<Refusal> = refusals().into_iter().filter(|refusal| selected(&refusal.name)).collect();
    if !refusals.is_empty() {
        println!(
            "\nHostile queries, each refused: {} warm-up then {} timed runs each; target p99 < {} ms\n",
            args.warmup,
            args.iterations,
            REFUSAL_TARGET.as_millis()
        );
        print_header();
        let mut met = true;
        for refusal in &refusals {
            let timings = run_refusal(&schema, &services, &claims, refusal, args.warmup, args.iterations).await?;
            let p99 = timings.percentile(99.0);
            met &= p99 < REFUSAL_TARGET;
            print_row(
                &refusal.name,
                &timings,
                &format!(
                    "{}, target < {} ms: {}",
                    refusal.code,
                    REFUSAL_TARGET.as_millis(),
                    verdict(p99 < REFUSAL_TARGET)
                ),
            );
        }
        println!("every refusal under {} ms at p99: {}", REFUSAL_TARGET.as_millis(), verdict(met));
    }

    let insert = format!("insert {} events (ingest statement)", args.insert_batch);
    if args.insert_iterations > 0 && selected(&insert) {
        println!();
        let timings = time_inserts(&admin, &events, user, args.insert_batch, args.insert_iterations).await?;
        print_row(&insert, &timings, "rows deleted after");
    }

    if cases.iter().any(|case| case.name.starts_with("stats")) {
        print_plan_choices(&pool).await?;
        explain_stats(&args, until, since_all).await?;
    }
    Ok(())
}

fn cases(until: DateTime<Utc>, since_all: DateTime<Utc>, deep_cursor: &str, deep_offset: i64) -> Vec<Case> {
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
fn costliest_cases(until: DateTime<Utc>) -> Vec<Case> {
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
fn refusals() -> Vec<Refusal> {
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

/// Runs a case `warmup` times, then `iterations` timed times; returns the timings and the last answer.
async fn run_case(
    schema: &EventStreamSchema,
    services: &Services,
    claims: &Claims,
    case: &Case,
    warmup: u32,
    iterations: u32,
) -> anyhow::Result<(Timings, Value, u32)> {
    let variables = Variables::from_json(case.variables.clone());
    let mut samples = Vec::with_capacity(iterations as usize);
    let mut timeouts = 0;
    let mut body = Vec::new();
    for run in 0..warmup + iterations {
        let request = services.request(Request::new(case.query.as_str()).variables(variables.clone()), claims.clone());
        let started = Instant::now();
        let response = schema.execute(request).await;
        body = serde_json::to_vec(&response)?;
        let elapsed = started.elapsed();
        // A statement canceled by the pool's statement_timeout is a figure to report, not a failure.
        let timed_out = |error: &async_graphql::ServerError| {
            error.extensions.as_ref().and_then(|extensions| extensions.get("code"))
                == Some(&async_graphql::Value::from(code::TIMEOUT))
        };
        if !response.errors.iter().all(timed_out) {
            bail!("{} failed: {}", case.name, String::from_utf8_lossy(&body));
        }
        if run >= warmup {
            samples.push(elapsed);
            timeouts += u32::from(!response.errors.is_empty());
        }
    }
    let answer: Value = serde_json::from_slice(&body)?;
    Ok((Timings::new(samples), answer["data"].clone(), timeouts))
}

/// The answer in a few words, and how many runs the statement timeout cut short.
fn with_timeouts(answer: String, timeouts: u32) -> String {
    if timeouts == 0 { answer } else { format!("{answer}; TIMEOUT in {timeouts} runs") }
}

/// Times a query the limits must refuse; fails when it is answered, or refused with another code.
async fn run_refusal(
    schema: &EventStreamSchema,
    services: &Services,
    claims: &Claims,
    refusal: &Refusal,
    warmup: u32,
    iterations: u32,
) -> anyhow::Result<Timings> {
    let mut samples = Vec::with_capacity(iterations as usize);
    for run in 0..warmup + iterations {
        let request = services.request(Request::new(refusal.query.as_str()), claims.clone());
        let started = Instant::now();
        let response = schema.execute(request).await;
        let body = serde_json::to_vec(&response)?;
        let elapsed = started.elapsed();
        let answer: Value = serde_json::from_slice(&body)?;
        let codes: Vec<&str> = answer["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|error| error["extensions"]["code"].as_str()).collect())
            .unwrap_or_default();
        ensure!(
            !codes.is_empty() && codes.iter().all(|code| *code == refusal.code) && answer["data"].is_null(),
            "{} was not refused with {}: {}",
            refusal.name,
            refusal.code,
            String::from_utf8_lossy(&body)
        );
        if run >= warmup {
            samples.push(elapsed);
        }
    }
    Ok(Timings::new(samples))
}

/// Times the ingest path's insert (`PgEventStore::insert`, one statement per batch, every index
/// maintained); each batch is deleted after it is timed, and the table vacuumed at the end.
async fn time_inserts(
    pool: &PgPool,
    events: &PgEventStore,
    user: Uuid,
    batch: u32,
    iterations: u32,
) -> anyhow::Result<Timings> {
    let statuses = [Status::Success, Status::Success, Status::Info, Status::Warning, Status::Error];
    let batch: Vec<NewEvent> = (0..batch as usize)
        .map(|i| NewEvent {
            title: format!("Bench insert {i}"),
            description: String::new(),
            status: statuses[i % statuses.len()],
            source: Some(format!("source-{:03}", 1 + i % 50)),
            occurred_at: None,
            attributes: json!({ "batch": "bench", "n": i }),
        })
        .collect();
    let warmup = 2;
    let mut samples = Vec::new();
    for run in 0..warmup + iterations {
        let started = Instant::now();
        let inserted = events.insert(user, None, &batch).await?;
        let elapsed = started.elapsed();
        let ids: Vec<Uuid> = inserted.events.iter().map(|event| event.id).collect();
        sqlx::query("DELETE FROM events WHERE id = ANY($1)").bind(&ids).execute(pool).await?;
        if run >= warmup {
            samples.push(elapsed);
        }
    }
    sqlx::raw_sql("VACUUM events").execute(pool).await?;
    Ok(Timings::new(samples))
}

fn print_header() {
    println!("{:<48} {:>5} {:>9} {:>9} {:>9} {:>9}  answer", "query", "n", "p50 ms", "p95 ms", "p99 ms", "max ms");
}

fn print_row(name: &str, timings: &Timings, answer: &str) {
    println!(
        "{:<48} {:>5} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {answer}",
        name,
        timings.sorted.len(),
        millis(timings.percentile(50.0)),
        millis(timings.percentile(95.0)),
        millis(timings.percentile(99.0)),
        millis(timings.max()),
    );
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// The user the seed's events belong to, created when missing.
async fn bench_user(pool: &PgPool) -> anyhow::Result<Uuid> {
    sqlx::query(
        "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3) ON CONFLICT (username) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(BENCH_USER)
    .bind(BENCH_USER_HASH)
    .execute(pool)
    .await?;
    Ok(sqlx::query_scalar("SELECT id FROM users WHERE username = $1").bind(BENCH_USER).fetch_one(pool).await?)
}

/// Claims as the graphql function gets them: a token issued and verified by the same codec.
fn bench_claims(user: Uuid) -> anyhow::Result<Claims> {
    let tokens = TokenCodec::new(&JwtConfig {
        secret: SecretString::from(JWT_SECRET),
        issuer: "eventstream".into(),
        audience: "eventstream-api".into(),
        access_ttl: Duration::from_secs(3_600),
        refresh_ttl: Duration::from_secs(86_400),
    });
    let subject = TokenSubject { user_id: user, username: BENCH_USER, roles: &Role::ALL, token_version: 1 };
    Ok(tokens.verify(&tokens.issue(subject, TokenKind::Access, Uuid::now_v7()), TokenKind::Access)?)
}

/// Seeds the events table unless it already holds this seed; returns when it was seeded, the end of
/// the range its events were received in. The seed is described in the table's comment.
async fn ensure_seed(pool: &PgPool, args: &Args, user: Uuid) -> anyhow::Result<DateTime<Utc>> {
    let wanted = format!("{SEED_VERSION}: events={} days={} sources={}", args.events, args.days, args.sources);
    let comment: Option<String> =
        sqlx::query_scalar("SELECT obj_description('events'::regclass, 'pg_class')").fetch_one(pool).await?;
    if let Some(until) =
        comment.as_deref().and_then(|c| c.strip_prefix(&wanted)).and_then(|c| c.strip_prefix(" until="))
        && !args.reseed
    {
        let until: DateTime<Utc> = until.parse().context("the seed comment's time")?;
        // A previous run stopped during the insert measurement: drop what it left.
        sqlx::query("DELETE FROM events WHERE received_at > $1").bind(until).execute(pool).await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await?;
        if count == args.events {
            println!("seed: reusing the {} events already seeded", thousands(count));
            return Ok(until);
        }
    }

    println!("seed: inserting {} events (once; reruns reuse them)...", thousands(args.events));
    let started = Instant::now();
    // Microseconds, as PostgreSQL stores it, so a rerun reads back the same instant.
    let now = Utc::now().trunc_subsecs(6);
    let start = now - TimeDelta::days(args.days);
    let step = (now - start).as_seconds_f64() / args.events as f64;
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL maintenance_work_mem = '512MB'").execute(&mut *tx).await?;
    sqlx::query("TRUNCATE events CASCADE").execute(&mut *tx).await?;
    // Building the secondary indexes after the rows is several times faster than maintaining them.
    let indexes: Vec<(String, String)> = sqlx::query(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
         WHERE i.indrelid = 'events'::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect();
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {name}")).execute(&mut *tx).await?;
    }
    sqlx::query(SEED_SQL)
        .bind(start)
        .bind(step)
        .bind(args.events)
        .bind(args.sources)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    for (_, definition) in &indexes {
        sqlx::query(definition).execute(&mut *tx).await?;
    }
    sqlx::query(&format!("COMMENT ON TABLE events IS '{wanted} until={}'", rfc3339(now))).execute(&mut *tx).await?;
    tx.commit().await?;
    // Sets the visibility map (index-only scans) and the planner's statistics, as autovacuum would.
    sqlx::raw_sql("VACUUM (ANALYZE) events").execute(pool).await?;
    println!("seed: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(now)
}

/// The cursor of the event `offset` places into the newest-first list.
async fn deep_cursor(pool: &PgPool, offset: i64) -> anyhow::Result<String> {
    let row = sqlx::query("SELECT received_at, id FROM events ORDER BY received_at DESC, id DESC OFFSET $1 LIMIT 1")
        .bind(offset)
        .fetch_one(pool)
        .await?;
    Ok(Cursor { received_at: row.get(0), id: row.get(1) }.encode())
}

/// How often the pool's connections ran the stats statement with a plan for its values and with the
/// generic plan: PostgreSQL switches a prepared statement to the generic plan after five executions
/// when that plan's estimated cost is not higher.
async fn print_plan_choices(pool: &PgPool) -> anyhow::Result<()> {
    let mut connections = Vec::new();
    for _ in 0..pool.size() {
        connections.push(pool.acquire().await?);
    }
    let (mut custom, mut generic) = (0, 0);
    for connection in &mut connections {
        let row = sqlx::query(
            "SELECT coalesce(sum(custom_plans), 0)::bigint, coalesce(sum(generic_plans), 0)::bigint
             FROM pg_prepared_statements
             WHERE statement LIKE '%date_bin(make_interval%' AND statement NOT LIKE '%pg_prepared_statements%'",
        )
        .persistent(false)
        .fetch_one(&mut **connection)
        .await?;
        custom += row.get::<i64, _>(0);
        generic += row.get::<i64, _>(1);
    }
    println!(
        "
the stats statement on the pool's connections ran {custom} times with a custom plan, {generic} generic"
    );
    Ok(())
}

/// The plans PostgreSQL picks for the stats SQL: with the values known (a custom plan, what the first
/// executions of a prepared statement get) and as the generic plan a prepared statement may switch to.
async fn explain_stats(args: &Args, until: DateTime<Utc>, since_all: DateTime<Utc>) -> anyhow::Result<()> {
    let squash = |sql: &str| sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if !squash(ANALYTICS_SOURCE).contains(&squash(STATS_SQL)) {
        println!("\nwarning: PgAnalyticsStore::stats's SQL changed; update STATS_SQL in this example");
    }
    let mut connection = PgConnection::connect(&args.database_url).await?;
    let ranges =
        [("stats 24 h by HOUR", until - TimeDelta::hours(24), 3_600.0), ("stats 30 days by DAY", since_all, 86_400.0)];
    println!("\nEXPLAIN (ANALYZE, BUFFERS) of the stats SQL");
    for (name, since, bucket) in ranges {
        let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {STATS_SQL}"))
            .bind(since)
            .bind(until)
            .bind(bucket)
            .bind(None::<&str>)
            .persistent(false)
            .fetch_all(&mut connection)
            .await?;
        print_plan(&format!("{name}, custom plan"), &lines, args.plans);
    }
    sqlx::raw_sql(&format!(
        "SET plan_cache_mode = force_generic_plan;
         PREPARE bench_stats (timestamptz, timestamptz, float8, text) AS {STATS_SQL}"
    ))
    .execute(&mut connection)
    .await?;
    for (name, since, bucket) in ranges {
        let lines: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_stats('{}', '{}', {bucket}, NULL)",
            rfc3339(since),
            rfc3339(until)
        ))
        .persistent(false)
        .fetch_all(&mut connection)
        .await?;
        print_plan(&format!("{name}, generic plan"), &lines, args.plans);
    }
    connection.close().await?;
    Ok(())
}

/// The plan's scans and times, or all of it.
fn print_plan(title: &str, lines: &[String], full: bool) {
    println!("  {title}:");
    for line in lines {
        let keep = full
            || line.contains("Scan")
            || line.contains("Workers Launched")
            || line.contains("JIT:")
            || line.contains("Planning Time")
            || line.contains("Execution Time");
        if keep {
            println!("    {}", line.trim_end());
        }
    }
}

fn print_machine() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {cores} cores ({model}), {:.1} GiB memory, load average {} at start",
        memory_kib / 1024.0 / 1024.0,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
}

async fn print_server(pool: &PgPool) -> anyhow::Result<()> {
    let row = sqlx::query(
        "SELECT current_setting('server_version'), current_setting('shared_buffers'), current_setting('work_mem'),
                current_setting('max_parallel_workers_per_gather'), current_setting('jit'),
                current_setting('statement_timeout')",
    )
    .fetch_one(pool)
    .await?;
    println!(
        "PostgreSQL {}: shared_buffers {}, work_mem {}, max_parallel_workers_per_gather {}, jit {}; \
         the schema's pool: statement_timeout {}",
        row.get::<String, _>(0),
        row.get::<String, _>(1),
        row.get::<String, _>(2),
        row.get::<String, _>(3),
        row.get::<String, _>(4),
        row.get::<String, _>(5),
    );
    Ok(())
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn thousands(n: impl Into<i64>) -> String {
    let digits = n.into().unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
