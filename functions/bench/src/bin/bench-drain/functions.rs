//! The functions as the benchmark runs them in-process: the bridge's configuration, the dispatch
//! function behind the bridge's own consumer, and the SQS handlers' environments.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::anyhow;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use bench::{database::function_pool, rabbitmq::function_bus};
use bridge::{
    BridgeConfig,
    dispatch::{DispatchFunction, InvokeFailure},
};
use eventstream::{
    bus::Topology,
    config::{AlertConfig, SmtpConfig, SmtpTls, SweepConfig, env_lookup},
    domain::Handler,
    handlers::{
        dispatch::{DispatchRequest, handle as dispatch},
        sqs::{handle_error_events, handle_warning_events},
    },
    mail::SmtpMailer,
    pipeline::{Alerting, DispatchReport, Dispatcher, WarningHandling},
};
use futures_util::future::BoxFuture;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use tokio::sync::Semaphore;

use crate::Args;

/// The functions' defaults: SMTP_TIMEOUT_MS and NOTIFICATION_CLAIM_TIMEOUT_SECONDS.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
const CLAIM_TIMEOUT: Duration = Duration::from_secs(300);
/// Only the emails' links use it.
const API_BASE_URL: &str = "http://127.0.0.1:4566/restapis/bench-drain/live/_user_request_";

/// The bridge's own configuration from the environment (its defaults, or BRIDGE_* when set), with
/// this run's broker, topology and SQS queues, and no Lambda function for dispatch.
pub fn bridge_config(
    args: &Args,
    topology: &Topology,
    warning_url: &str,
    error_url: &str,
) -> anyhow::Result<BridgeConfig> {
    let lookup = |name: &str| match name {
        "AMQP_URL" => Some(args.amqp_url.clone()),
        "WARNING_QUEUE_URL" => Some(warning_url.to_string()),
        "ERROR_QUEUE_URL" => Some(error_url.to_string()),
        "DISPATCH_FUNCTION" | "AMQP_QUEUE_PREFIX" | "AMQP_SECRET_ARN" => None,
        other => env_lookup(other),
    };
    // The bench's AMQP_URL carries its credentials: no secret to read.
    let mut config = BridgeConfig::from_lookup(&lookup)
        .and_then(|config| config.complete(&[]))
        .map_err(|error| anyhow!("the bridge's configuration: {error}"))?;
    config.topology = topology.clone();
    Ok(config)
}

/// The dispatch function's environments, invoked in-process: an invocation waits for an idle
/// one, as Lambda with this much reserved concurrency would run it.
pub struct InProcessDispatch {
    idle: Mutex<Vec<Dispatcher>>,
    available: Semaphore,
    pub stats: DispatchStats,
    started: Instant,
}

/// What the dispatch invocations did, as their reports count it.
#[derive(Default)]
pub struct DispatchStats {
    pub invocations: Busy,
    pub largest_payload: AtomicU64,
    pub failures: AtomicU64,
    pub routed: AtomicU64,
    pub finished: AtomicU64,
    pub already_routed: AtomicU64,
    pub parked: AtomicU64,
}

impl InProcessDispatch {
    /// --dispatch-instances environments, each with its own pool and RabbitMQ connection.
    pub fn new(args: &Args, topology: &Topology, started: Instant) -> anyhow::Result<Self> {
        let environments = (0..args.dispatch_instances)
            .map(|_| {
                Ok(Dispatcher::new(
                    function_pool(&args.database_url)?,
                    function_bus(&args.amqp_url, topology),
                    // The function's defaults (SWEEP_AFTER_SECONDS, SWEEP_LIMIT); a batch never sweeps.
                    SweepConfig { older_than: Duration::from_secs(60), limit: 1_000 },
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            available: Semaphore::new(environments.len()),
            idle: Mutex::new(environments),
            stats: DispatchStats::default(),
            started,
        })
    }
}

impl DispatchFunction for InProcessDispatch {
    fn name(&self) -> &str {
        "dispatch (in-process)"
    }

    fn invoke(&self, payload: Vec<u8>) -> BoxFuture<'_, Result<(), InvokeFailure>> {
        Box::pin(async move {
            self.stats.largest_payload.fetch_max(payload.len() as u64, Ordering::Relaxed);
            let _permit = self.available.acquire().await.expect("the semaphore is never closed");
            let state = self.idle.lock().expect("not poisoned").pop().expect("a permit stands for an idle environment");
            let begun = Instant::now();
            let outcome = invoke_dispatch(&state, &payload).await;
            self.idle.lock().expect("not poisoned").push(state);
            let stats = &self.stats;
            match outcome {
                Ok(report) => {
                    let events = report.routed + report.finished + report.already_routed + report.parked;
                    stats.invocations.add(self.started, begun, events as u64);
                    for (counter, value) in [
                        (&stats.routed, report.routed),
                        (&stats.finished, report.finished),
                        (&stats.already_routed, report.already_routed),
                        (&stats.parked, report.parked),
                    ] {
                        counter.fetch_add(value as u64, Ordering::Relaxed);
                    }
                    Ok(())
                }
                Err(failure) => {
                    stats.invocations.add(self.started, begun, 0);
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    Err(failure)
                }
            }
        })
    }
}

/// What the Lambda runtime does with an invocation: parse the payload as the handler's input,
/// run the handler, and turn its error into the function error the caller sees.
async fn invoke_dispatch(state: &Dispatcher, payload: &[u8]) -> Result<DispatchReport, InvokeFailure> {
    let request: DispatchRequest = serde_json::from_slice(payload).map_err(|error| InvokeFailure::Function {
        kind: "Runtime.UnmarshalError".into(),
        payload: error.to_string(),
    })?;
    dispatch(state, LambdaEvent::new(request, Context::default())).await.map_err(|error| {
        let diagnostic = Diagnostic::from(error);
        InvokeFailure::Function { kind: diagnostic.error_type, payload: diagnostic.error_message }
    })
}

/// Calls of one kind: how many, what they carried, the time they took together, and when the
/// first began and the last ended (from the start of the drain).
#[derive(Default)]
pub struct Busy {
    calls: AtomicU64,
    items: AtomicU64,
    micros: AtomicU64,
    span: Mutex<Option<(Duration, Duration)>>,
}

impl Busy {
    /// A call that began at `begun` and has just ended, carrying `items`; `origin` is the drain's start.
    pub fn add(&self, origin: Instant, begun: Instant, items: u64) {
        let now = Instant::now();
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.items.fetch_add(items, Ordering::Relaxed);
        self.micros.fetch_add(now.duration_since(begun).as_micros() as u64, Ordering::Relaxed);
        let (from, to) = (begun.duration_since(origin), now.duration_since(origin));
        let mut span = self.span.lock().expect("not poisoned");
        *span = Some(span.map_or((from, to), |(first, last)| (first.min(from), last.max(to))));
    }

    /// How many calls.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// What they carried, added up.
    pub fn items(&self) -> u64 {
        self.items.load(Ordering::Relaxed)
    }

    /// Their durations, added up.
    pub fn seconds(&self) -> f64 {
        self.micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// From the first call's start to the last one's end, or "never".
    pub fn span(&self) -> String {
        match *self.span.lock().expect("not poisoned") {
            Some((first, last)) => format!("{:.2}-{:.2} s", first.as_secs_f64(), last.as_secs_f64()),
            None => "never".into(),
        }
    }
}

/// A handler function's environment.
pub enum HandlerFunction {
    Warning(WarningHandling),
    Error(Alerting<SmtpMailer>),
}

impl HandlerFunction {
    /// The environment of `handler`'s function.
    pub fn new(handler: Handler, args: &Args) -> anyhow::Result<Self> {
        let pool = function_pool(&args.database_url)?;
        Ok(match handler {
            Handler::Warning => HandlerFunction::Warning(WarningHandling::new(pool)),
            Handler::Error => {
                HandlerFunction::Error(Alerting::new(pool, SmtpMailer::new(&smtp(args))?, alert()?, CLAIM_TIMEOUT))
            }
        })
    }

    /// Runs the handler as the Lambda runtime would with `event`.
    pub async fn invoke(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let event = LambdaEvent::new(event, Context::default());
        match self {
            HandlerFunction::Warning(warnings) => handle_warning_events(warnings, event).await,
            HandlerFunction::Error(alerting) => handle_error_events(alerting, event).await,
        }
    }
}

/// The SMTP sink, as the error handler reaches it: plain SMTP, no login.
pub fn smtp(args: &Args) -> SmtpConfig {
    SmtpConfig {
        host: args.smtp_host.clone(),
        port: args.smtp_port,
        tls: SmtpTls::None,
        login: None,
        timeout: SMTP_TIMEOUT,
    }
}

/// Who the alerts are from and to.
pub fn alert() -> anyhow::Result<AlertConfig> {
    Ok(AlertConfig {
        from: "EventStream <eventstream@localhost.test>".parse()?,
        recipients: vec!["ops@localhost.test".parse()?],
        api_base_url: API_BASE_URL.into(),
    })
}
