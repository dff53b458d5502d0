//! The REST API: the ingest function's routes (events, health) and the login function's (tokens),
//! axum routers served through `lambda_http`. Login is a function of its own so that a flood of
//! logins, each an argon2 run, cannot take the instances that store events.

mod error;
mod events;
mod extract;
mod health;
mod tokens;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use lambda_http::Request;
use sqlx::PgPool;
use tower::Service;

pub use error::ApiError;

use crate::{
    auth::{Authenticator, Sessions, TokenCodec},
    bus::AmqpBus,
    config::{JwtConfig, LoginThrottleConfig},
    handlers::http::{Authenticating, MAX_BODY_BYTES, lambda_service, with_correlation_id},
    pipeline::Intake,
    store::{PgEventStore, PgSessionStore, PgUserStore},
};

/// The REST API's [`Refusal`](crate::handlers::http::lambda::Refusal): 400 `malformed_request`.
pub fn malformed_request(message: &str) -> Response {
    ApiError::MalformedRequest(message.to_owned()).into_response()
}

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

impl Authenticating for AppState {
    type Rejection = ApiError;

    fn authenticator(&self) -> &Authenticator {
        &self.authenticator
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

/// The ingest function's routes, without the Lambda path handling; see [`service`]. Every request
/// has a correlation id ([`with_correlation_id`]); an invalid `X-Correlation-Id` is a 400
/// `invalid_field` naming the header.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/api/health", get(health::check))
        .route("/api/events", post(events::create).get(events::list))
        .route("/api/events/batch", post(events::create_batch))
        .route("/api/events/{id}", get(events::get));
    with_json_errors(routes, state).layer(middleware::from_fn(|request, next| {
        with_correlation_id(|error| ApiError::from(error).into_response(), request, next)
    }))
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
