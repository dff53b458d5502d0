//! The admin function's events: CloudFormation's custom-resource requests, which migrate the schema
//! as the stack deploys, and commands invoked directly (`aws lambda invoke`), which run
//! [`crate::admin`]'s commands inside the VPC, where no operator's shell reaches the database.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_lambda_events::cloudformation::{
    CloudFormationCustomResourceRequest, CloudFormationCustomResourceResponse,
    CloudFormationCustomResourceResponseStatus,
};
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use sqlx::{PgPool, migrate::MigrateError};

use crate::{
    admin::{self, AdminError, Command},
    auth::{PasswordError, generate_password},
    handlers::lazy::Lazy,
    store::UserError,
};

/// The migrations resource's physical id: one schema per stack, the same across updates, so that
/// CloudFormation never takes an update for a replacement.
pub const MIGRATIONS_RESOURCE_ID: &str = "eventstream-migrations";
/// How long one PUT of the response may take; it is a few hundred bytes to S3.
const PUT_TIMEOUT: Duration = Duration::from_secs(5);
const PUT_ATTEMPTS: u32 = 3;
/// Kept back from the function's time limit for answering CloudFormation: every PUT attempt and
/// the pauses between them. A function that times out answers nothing, and the stack waits an hour.
const RESPONSE_MARGIN: Duration = Duration::from_secs(20);
/// CloudFormation takes a response of at most 4,096 bytes; the ids take about 500 of them.
const MAX_REASON_CHARS: usize = 1_000;

/// The function's state, built once per cold start.
pub struct AdminState {
    pool: PgPool,
    http: ureq::Agent,
}

impl AdminState {
    pub fn new(pool: PgPool) -> Self {
        let http = ureq::Agent::config_builder().timeout_global(Some(PUT_TIMEOUT)).build().into();
        Self { pool, http }
    }
}

/// What a direct invocation answers.
#[derive(Debug, Serialize)]
pub struct CommandReply {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password create-user or set-password generated: shown this once, stored only as a hash.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose_password")]
    pub password: Option<SecretString>,
    pub message: String,
}

/// What the function answers: a command's reply, or the response it gave CloudFormation.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AdminResponse {
    Command(CommandReply),
    CustomResource(CloudFormationCustomResourceResponse),
}

/// Why an invocation failed; the function error's message names the problem.
#[derive(Debug, thiserror::Error)]
pub enum AdminFunctionError {
    #[error("the payload is not an admin command")]
    BadCommand(#[source] serde_path_to_error::Error<serde_json::Error>),
    #[error(
        "a payload never carries a password (invocation payloads can be logged): create-user and set-password \
         generate one and return it once"
    )]
    PasswordInPayload,
    #[error(transparent)]
    Command(#[from] AdminError),
    /// CloudFormation was not told the outcome: the invocation fails, so that Lambda's retry of an
    /// asynchronous invocation tries again.
    #[error("CloudFormation's response URL did not take the response")]
    Undelivered(#[source] ureq::Error),
}

impl From<AdminFunctionError> for Diagnostic {
    fn from(error: AdminFunctionError) -> Self {
        let error_type = match &error {
            AdminFunctionError::BadCommand(_) | AdminFunctionError::PasswordInPayload => "Admin.BadCommand",
            AdminFunctionError::Command(command) => match command {
                AdminError::InvalidUsername
                | AdminError::NoRoles(_)
                | AdminError::Password(PasswordError::Unacceptable) => "Admin.InvalidInput",
                AdminError::User(UserError::UsernameTaken(_)) => "Admin.UsernameTaken",
                AdminError::User(UserError::NotFound(_)) => "Admin.UserNotFound",
                AdminError::User(UserError::Store(_)) => "Admin.StoreError",
                AdminError::Migrate(_) => "Admin.MigrationFailed",
                AdminError::Password(PasswordError::Hash(_)) | AdminError::PasswordInput(_) => "Admin.PasswordError",
            },
            AdminFunctionError::Undelivered(_) => "Admin.ResponseUndelivered",
        };
        Diagnostic { error_type: error_type.into(), error_message: error_chain(&error) }
    }
}

/// Why a custom-resource request failed, as CloudFormation's `Reason` says it.
#[derive(Debug, thiserror::Error)]
enum CustomResourceError {
    #[error("the request cannot be read")]
    Unreadable(#[source] serde_json::Error),
    #[error("the request type is not Create, Update or Delete")]
    UnknownRequestType,
    #[error("applying migrations")]
    Migrate(#[source] MigrateError),
    #[error("the migrations did not finish within the function's time limit; raise the admin function's Timeout")]
    OutOfTime,
}

/// The fields of a request that its response echoes, read leniently from a request that does not
/// parse, so that even it gets its answer.
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Echo {
    #[serde(rename = "ResponseURL")]
    response_url: String,
    stack_id: String,
    request_id: String,
    logical_resource_id: String,
    physical_resource_id: Option<String>,
}

/// Handles one invocation: a custom-resource request when the payload has CloudFormation's
/// `RequestType` and `ResponseURL`, else an admin command.
/// [`handle`] on the state built on the first invocation (when the configuration names secrets).
/// Not a [`Lazy`] service: that needs a `Send` future, which the compiler cannot prove for this one.
pub async fn handle_lazily(state: &Lazy<AdminState>, event: LambdaEvent<Value>) -> Result<AdminResponse, Diagnostic> {
    let state = state.get().await.map_err(|error| {
        tracing::error!(error = %error_chain(&error), "no state to run on; the next invocation tries again");
        Diagnostic::from(&error)
    })?;
    handle(state, event).await.map_err(Diagnostic::from)
}

pub async fn handle(state: &AdminState, event: LambdaEvent<Value>) -> Result<AdminResponse, AdminFunctionError> {
    let (payload, context) = event.into_parts();
    if payload.get("RequestType").is_some() && payload.get("ResponseURL").is_some() {
        state.custom_resource(payload, &context).await.map(AdminResponse::CustomResource)
    } else {
        state.command(payload).await.map(AdminResponse::Command)
    }
}

impl AdminState {
    /// Runs a command from a direct invocation; create-user and set-password get a generated password.
    async fn command(&self, payload: Value) -> Result<CommandReply, AdminFunctionError> {
        if payload.get("password").is_some() {
            return Err(AdminFunctionError::PasswordInPayload);
        }
        let command: Command = serde_path_to_error::deserialize(payload).map_err(AdminFunctionError::BadCommand)?;
        let username = command.username().map(str::to_owned);
        let password = command.sets_password().then(generate_password);
        let message =
            admin::execute(&self.pool, command, || password.clone().context("no password was generated")).await?;
        tracing::info!(user = username.as_deref(), %message, "admin command done");
        Ok(CommandReply { username, password, message })
    }

    /// Migrates on Create and Update, does nothing on Delete (the data outlives the stack), and
    /// always tells CloudFormation the outcome; the invocation fails only if that telling failed.
    async fn custom_resource(
        &self,
        payload: Value,
        context: &Context,
    ) -> Result<CloudFormationCustomResourceResponse, AdminFunctionError> {
        let echo: Echo = serde_json::from_value(payload.clone()).unwrap_or_default();
        let (physical_resource_id, outcome) =
            match serde_json::from_value::<CloudFormationCustomResourceRequest>(payload) {
                Ok(CloudFormationCustomResourceRequest::Create(_)) => {
                    (MIGRATIONS_RESOURCE_ID.to_owned(), self.migrate_before(context.deadline()).await)
                }
                Ok(CloudFormationCustomResourceRequest::Update(request)) => {
                    (request.physical_resource_id, self.migrate_before(context.deadline()).await)
                }
                Ok(CloudFormationCustomResourceRequest::Delete(request)) => (request.physical_resource_id, Ok(())),
                Ok(_) => (echoed_id(&echo), Err(CustomResourceError::UnknownRequestType)),
                Err(error) => (echoed_id(&echo), Err(CustomResourceError::Unreadable(error))),
            };
        let mut response = CloudFormationCustomResourceResponse::default();
        match outcome {
            Ok(()) => response.status = CloudFormationCustomResourceResponseStatus::Success,
            Err(error) => {
                let reason = error_chain(&error);
                tracing::error!(%reason, logical_resource_id = %echo.logical_resource_id, "custom resource failed");
                let log_stream = &context.env_config.log_stream;
                let reason = if log_stream.is_empty() { reason } else { format!("{reason} (log stream {log_stream})") };
                response.status = CloudFormationCustomResourceResponseStatus::Failed;
                response.reason = Some(reason.chars().take(MAX_REASON_CHARS).collect());
            }
        }
        response.physical_resource_id = physical_resource_id;
        response.stack_id = echo.stack_id;
        response.request_id = echo.request_id;
        response.logical_resource_id = echo.logical_resource_id;
        self.deliver(&echo.response_url, &response).await?;
        tracing::info!(status = ?response.status, logical_resource_id = %response.logical_resource_id, "CloudFormation answered");
        Ok(response)
    }

    /// Applies the pending migrations, giving up in time to answer CloudFormation before `deadline`.
    async fn migrate_before(&self, deadline: SystemTime) -> Result<(), CustomResourceError> {
        let time_left = deadline.duration_since(SystemTime::now()).unwrap_or_default();
        match tokio::time::timeout(time_left.saturating_sub(RESPONSE_MARGIN), admin::migrate(&self.pool)).await {
            Ok(migrated) => migrated.map_err(CustomResourceError::Migrate),
            Err(_) => Err(CustomResourceError::OutOfTime),
        }
    }

    /// PUTs the response to the pre-signed URL as CloudFormation's own helper does (an empty
    /// Content-Type, which the URL was signed with), trying again after a failure.
    async fn deliver(
        &self,
        url: &str,
        response: &CloudFormationCustomResourceResponse,
    ) -> Result<(), AdminFunctionError> {
        let body = serde_json::to_vec(response).expect("a response of strings serialises");
        let mut attempt = 1;
        loop {
            let (http, url, body) = (self.http.clone(), url.to_owned(), body.clone());
            let sent = tokio::task::spawn_blocking(move || {
                http.put(&url).header("Content-Type", "").send(&body[..]).map(drop)
            })
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
            match sent {
                Ok(()) => return Ok(()),
                Err(error) if attempt < PUT_ATTEMPTS => {
                    // The URL is a credential for the response object: never logged.
                    tracing::warn!(%error, attempt, "the response PUT failed; trying again");
                    tokio::time::sleep(Duration::from_secs(attempt.into())).await;
                    attempt += 1;
                }
                Err(error) => return Err(AdminFunctionError::Undelivered(error)),
            }
        }
    }
}

/// A request that cannot be read still needs a non-empty physical id in its answer.
fn echoed_id(echo: &Echo) -> String {
    echo.physical_resource_id.clone().unwrap_or_else(|| MIGRATIONS_RESOURCE_ID.to_owned())
}

/// The error and its sources, `outer: inner: innermost`; a source that its error's message already
/// ends with (sqlx and serde put theirs in) is said once.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !chain.ends_with(&cause_text) {
            chain.push_str(": ");
            chain.push_str(&cause_text);
        }
        source = cause.source();
    }
    chain
}

fn expose_password<S: Serializer>(password: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    password.as_ref().map(ExposeSecret::expose_secret).serialize(serializer)
}
