//! Cold starts with secrets in the environment and with secrets in Secrets Manager, side by side:
//! what reading them on the first invocation costs, and that the init does not pay it.
//!
//! `cargo run --release -p bench --bin bench-secrets -- --help` lists the options; BENCHMARKS.md
//! holds the figures.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail, ensure};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::config::Credentials;
use axum::body::Bytes;
use bench::{
    machine,
    requests::rest_event,
    runtime::{self, Function},
    timing::{Latencies, millis},
};
use clap::Parser;
use serde_json::{Value, json};
use uuid::Uuid;

/// Cold starts of a function binary against a Lambda Runtime API served here, with its secrets
/// as values in the environment and as Secrets Manager ARNs (LocalStack), in turn.
///
/// Needs PostgreSQL, RabbitMQ and LocalStack (scripts/up, or scripts/test --rust's services).
/// Makes three secrets of its own on LocalStack's Secrets Manager (the JWT signing key, and the
/// PostgreSQL and RabbitMQ logins as RDS and Amazon MQ keep them), deleted at the end. Then, for
/// --cold-starts rounds, starts the ingest bootstrap once with the values (JWT_SECRET, and
/// DATABASE_URL and AMQP_URL with their users and passwords) and once with the ARNs
/// (JWT_SECRET_ARN, DATABASE_SECRET_ARN, AMQP_SECRET_ARN, and the URLs without users), each with
/// the variables Lambda sets, and measures:
///
///   - init: from the process's start to its first /invocation/next, as Lambda's Init Duration;
///   - first invocation: GET /api/health (a database round trip), from handing the event over to
///     the response, as Lambda's Duration: with ARNs it includes reading the secrets and building
///     the state;
///   - second invocation: the same, warm.
///
/// The logs of the last round's processes are in .local/bench_secrets/. Target: init at most
/// 20 ms in both columns.
#[derive(Debug, Parser)]
#[command(name = "bench-secrets", verbatim_doc_comment)]
struct Args {
    /// The function binary; by default target/release/ingest (cargo build --release -p ingest).
    #[arg(long)]
    bootstrap: Option<PathBuf>,

    /// Cold starts of each kind.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    cold_starts: u32,

    /// PostgreSQL server and database, without user and password.
    #[arg(long, default_value = "postgres://127.0.0.1:5432/postgres")]
    database_url: String,

    /// The PostgreSQL user; PostgreSQL on 127.0.0.1 trusts it, the password only travels.
    #[arg(long, default_value = "postgres")]
    database_user: String,

    /// RabbitMQ, without user and password; the guest login is put in the URL or the secret.
    #[arg(long, default_value = "amqp://127.0.0.1:5672/%2f")]
    amqp_url: String,

    /// LocalStack.
    #[arg(long, env = "AWS_ENDPOINT_URL", default_value = "http://127.0.0.1:4566")]
    endpoint: String,
}

/// How a cold start was given its secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Environment,
    SecretsManager,
}

/// One cold start's figures.
struct ColdStart {
    init: Duration,
    first: Duration,
    second: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bootstrap = args.bootstrap.clone().unwrap_or_else(|| root.join("target/release/ingest"));
    ensure!(bootstrap.is_file(), "no function binary at {}: cargo build --release -p ingest", bootstrap.display());
    let bootstrap = bootstrap.canonicalize()?;
    let region = "us-east-1";
    let aws = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&args.endpoint)
        .region(Region::new(region))
        .credentials_provider(Credentials::new("test", "test", None, None, "bench-secrets"))
        .load()
        .await;
    let client = aws_sdk_secretsmanager::Client::new(&aws);

    println!("{}", machine::summary());
    println!("bootstrap {} ({:.2} MB)", bootstrap.display(), std::fs::metadata(&bootstrap)?.len() as f64 / 1_048_576.0);

    let run = Uuid::now_v7().simple().to_string();
    let key = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let database_password = Uuid::new_v4().simple().to_string();
    let secrets = [
        ("jwt", key.clone()),
        ("database", login(&args.database_user, &database_password)),
        ("amqp", login("guest", "guest")),
    ];
    let mut arns = BTreeMap::new();
    for (what, value) in &secrets {
        let name = format!("eventstream-bench/{what}-{run}");
        let created = client.create_secret().name(&name).secret_string(value).send().await;
        let arn = created.with_context(|| format!("CreateSecret {name} on {}", args.endpoint))?.arn;
        arns.insert(*what, arn.context("CreateSecret returned no ARN")?);
    }
    let outcome = rounds(&args, &bootstrap, region, &key, &database_password, &arns, &root).await;
    for arn in arns.values() {
        let _ = client.delete_secret().secret_id(arn).force_delete_without_recovery(true).send().await;
    }
    let results = outcome?;

    println!();
    println!(
        "{:<28} {:>18} {:>26} {:>22}",
        "secrets from", "init p50 / max", "1st invocation p50 / max", "2nd invocation p50"
    );
    for kind in [Kind::Environment, Kind::SecretsManager] {
        let of = |figure: fn(&ColdStart) -> Duration| {
            Latencies::new(results.iter().filter(|(k, _)| *k == kind).map(|(_, start)| figure(start)).collect())
        };
        let (init, first, second) = (of(|s| s.init), of(|s| s.first), of(|s| s.second));
        let label = match kind {
            Kind::Environment => "environment (values)",
            Kind::SecretsManager => "Secrets Manager (3 ARNs)",
        };
        println!(
            "{label:<28} {:>8.1} / {:>5.1} ms {:>14.1} / {:>6.1} ms {:>19.1} ms",
            millis(init.percentile(0.5)),
            millis(init.max()),
            millis(first.percentile(0.5)),
            millis(first.max()),
            millis(second.percentile(0.5))
        );
    }
    Ok(())
}

/// A login secret as RDS and Amazon MQ keep one.
fn login(username: &str, password: &str) -> String {
    json!({ "username": username, "password": password, "engine": "postgres" }).to_string()
}

/// `--cold-starts` rounds of one cold start of each kind, alternating, so drift hits both alike.
async fn rounds(
    args: &Args,
    bootstrap: &Path,
    region: &str,
    key: &str,
    database_password: &str,
    arns: &BTreeMap<&str, String>,
    root: &Path,
) -> anyhow::Result<Vec<(Kind, ColdStart)>> {
    let with_login = |url: &str, user: &str, password: &str| -> anyhow::Result<String> {
        let (scheme, rest) = url.split_once("://").context("a URL with a scheme")?;
        Ok(format!("{scheme}://{user}:{password}@{rest}"))
    };
    let common = [("RUST_LOG", "info".to_string()), ("AMQP_QUEUE_PREFIX", "bench-secrets-".to_string())];
    let mut environment: BTreeMap<String, String> = common.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    environment.extend([
        ("JWT_SECRET".into(), key.to_string()),
        ("DATABASE_URL".into(), with_login(&args.database_url, &args.database_user, database_password)?),
        ("AMQP_URL".into(), with_login(&args.amqp_url, "guest", "guest")?),
    ]);
    let mut secrets_manager: BTreeMap<String, String> =
        common.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    secrets_manager.extend([
        ("JWT_SECRET_ARN".into(), arns["jwt"].clone()),
        ("DATABASE_URL".into(), args.database_url.clone()),
        ("DATABASE_SECRET_ARN".into(), arns["database"].clone()),
        ("AMQP_URL".into(), args.amqp_url.clone()),
        ("AMQP_SECRET_ARN".into(), arns["amqp"].clone()),
        // As Lambda gives the function its role's credentials.
        ("AWS_ENDPOINT_URL".into(), args.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_SESSION_TOKEN".into(), "test".into()),
    ]);
    let function = Function::local("eventstream-ingest", 128, Duration::from_secs(10));
    let health = Bytes::from(health_event());
    let logs = root.join(".local/bench_secrets");
    let mut results = Vec::new();
    for round in 0..args.cold_starts {
        for (kind, variables) in [(Kind::Environment, &environment), (Kind::SecretsManager, &secrets_manager)] {
            let (runtimes, processes) =
                runtime::start(&function, bootstrap, variables, region, 1, &logs.join(format!("{kind:?}"))).await?;
            let runtime = &runtimes[0];
            let init = runtime.init_duration().context("the instance never polled")?;
            let mut invocations = Vec::new();
            for _ in 0..2 {
                let (elapsed, response) = runtime.invoke(health.clone()).await?;
                let response: Value = serde_json::from_slice(&response)?;
                if response["statusCode"] != 200 {
                    bail!("round {round}, {kind:?}: GET /api/health answered {response}");
                }
                invocations.push(elapsed);
            }
            drop(processes);
            results.push((kind, ColdStart { init, first: invocations[0], second: invocations[1] }));
        }
    }
    Ok(results)
}

/// `GET /api/health` as API Gateway's REST (v1) proxy event: no token, one database round trip.
fn health_event() -> String {
    let mut event: Value = serde_json::from_str(&rest_event("/api/health", "", "")).expect("rest_event is JSON");
    event["httpMethod"] = json!("GET");
    event["requestContext"]["httpMethod"] = json!("GET");
    event["body"] = Value::Null;
    event.to_string()
}
