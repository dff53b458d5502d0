//! The REST API: the ingest function's routes (events, health) and the login function's (tokens),
//! axum routers served through `lambda_http`. Login is a function of its own so that a flood of
//! logins, each an argon2 run, cannot take the instances that store events.

mod error;
mod events;
pub(crate) mod extract;
mod health;
pub mod lambda;
mod tokens;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::Uri,
    routing::{get, post},
};
use lambda_http::{Request, RequestExt, request::RequestContext};
use sqlx::PgPool;
use tower::{Service, ServiceBuilder};

pub use error::ApiError;

use crate::{
    auth::{Authenticator, Sessions, TokenCodec},
    bus::AmqpBus,
    config::{JwtConfig, LoginThrottleConfig},
    intake::Intake,
    store::{PgEventStore, PgSessionStore, PgUserStore},
};

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What the ingest handlers share, built once per cold start.
#[derive(Clone)]
pub struct AppState {
    pub events: PgEventStore,
    pub authenticator: Authenticator,
    pub intake: Intake,
}

impl AppState {
    pub fn new(pool: PgPool, jwt: &JwtConfig, bus: AmqpBus) -> Self {
        let events = PgEventStore::new(pool.clone());
        Self {
            intake: Intake::new(events.clone(), Arc::new(bus)),
            events,
            authenticator: Authenticator::new(Arc::new(TokenCodec::new(jwt)), PgUserStore::new(pool)),
        }
    }
}

/// What the login function keeps between invocations.
#[derive(Clone)]
pub struct LoginState {
    pub sessions: Sessions,
}

impl LoginState {
    pub fn new(pool: PgPool, jwt: &JwtConfig, throttle: LoginThrottleConfig) -> Self {
        let tokens = Arc::new(TokenCodec::new(jwt));
        Self { sessions: Sessions::new(tokens, PgUserStore::new(pool.clone()), PgSessionStore::new(pool), throttle) }
    }
}

/// The login function's routes, without the Lambda path handling; see [`login_service`].
pub fn login_router(state: LoginState) -> Router {
    let routes =
        Router::new().route("/api/token", post(tokens::obtain)).route("/api/token/refresh", post(tokens::refresh));
    with_json_errors(routes, state)
}

/// The service the login function serves.
pub fn login_service(
    state: LoginState,
) -> impl Service<Request, Response = axum::response::Response, Error = std::convert::Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    lambda_service(login_router(state))
}

/// The ingest function's routes, without the Lambda path handling; see [`service`].
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/api/health", get(health::check))
        .route("/api/events", post(events::create).get(events::list))
        .route("/api/events/batch", post(events::create_batch))
        .route("/api/events/{id}", get(events::get));
    with_json_errors(routes, state)
}

/// What every REST function answers alike: JSON 404 and 405, and the body limit.
fn with_json_errors<S: Clone + Send + Sync + 'static>(routes: Router<S>, state: S) -> Router {
    routes
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The service `lambda_http::run` serves: the router behind the API Gateway path rewrite.
pub fn service(
    state: AppState,
) -> impl Service<Request, Response = axum::response::Response, Error = std::convert::Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    lambda_service(router(state))
}

/// `router` as a service for `lambda_http::run`, routing on the path the client asked for.
pub fn lambda_service(
    router: Router,
) -> impl Service<Request, Response = axum::response::Response, Error = std::convert::Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    ServiceBuilder::new().map_request(route_on_resource_path).service(router)
}

/// Routes on the path the client asked for, without the API Gateway stage.
///
/// `lambda_http` prefixes the stage (`/Prod/api/events`) unless `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH`
/// is set, and cannot tell a stage prefix from a first path segment of the same name. The event
/// itself can: a REST (v1) event's `path` never holds the stage, an HTTP (v2) event's `rawPath`
/// holds it for every stage but `$default`.
fn route_on_resource_path(mut request: Request) -> Request {
    let raw_path = request.raw_http_path();
    if raw_path.is_empty() {
        return request;
    }
    let path = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => match context.stage.as_deref() {
            Some(stage) if stage != "$default" => strip_stage(raw_path, stage),
            _ => raw_path,
        },
        _ => raw_path,
    };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut parts = request.uri().clone().into_parts();
    match path_and_query.parse() {
        Ok(path_and_query) => parts.path_and_query = Some(path_and_query),
        Err(error) => {
            tracing::warn!(%error, path, "raw path is not a valid URI path; routing on the rewritten one");
            return request;
        }
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

fn strip_stage<'a>(path: &'a str, stage: &str) -> &'a str {
    match path.strip_prefix('/').and_then(|rest| rest.strip_prefix(stage)) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_is_stripped_only_as_a_whole_leading_segment() {
        assert_eq!(strip_stage("/Prod/api/events", "Prod"), "/api/events");
        assert_eq!(strip_stage("/Prod", "Prod"), "/");
        assert_eq!(strip_stage("/Production/api", "Prod"), "/Production/api");
        assert_eq!(strip_stage("/api/events", "Prod"), "/api/events");
        assert_eq!(strip_stage("/api/api/events", "api"), "/api/events");
    }
}
