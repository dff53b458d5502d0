//! The graphql function's HTTP side: `POST /graphql` runs a query for a caller with a valid access
//! token, `GET /graphql` serves GraphiQL. The schema itself is in [`crate::graphql`].

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware,
    response::{Html, IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use sqlx::PgPool;

use super::http::{Authenticating, Caller, MAX_BODY_BYTES, Unauthenticated, is_json, with_correlation_id};
use crate::{
    auth::{AuthError, Authenticator, TokenCodec},
    bus::AmqpBus,
    config::JwtConfig,
    domain::CorrelationId,
    graphql::{EventStreamSchema, Services, code},
    pipeline::Intake,
    store::{PgAnalyticsStore, PgEventStore, PgUserStore},
};

/// The most server time one GraphQL request may take.
pub const REQUEST_TIME_LIMIT: Duration = Duration::from_secs(1);

/// The GraphiQL page: it signs in through the REST API and sends the access token with every query.
const GRAPHIQL_PAGE: &str = include_str!("../graphql/graphiql.html");

/// What the graphql function keeps between invocations.
#[derive(Clone)]
pub struct GraphqlState {
    schema: EventStreamSchema,
    services: Services,
    authenticator: Authenticator,
}

impl GraphqlState {
    /// Builds the schema; done once per cold start.
    pub fn new(pool: PgPool, jwt: &JwtConfig, bus: AmqpBus) -> Self {
        let events = PgEventStore::new(pool.clone());
        let services = Services {
            intake: Intake::new(events.clone(), Arc::new(bus)),
            events,
            analytics: PgAnalyticsStore::new(pool.clone()),
        };
        let authenticator = Authenticator::new(Arc::new(TokenCodec::new(jwt)), PgUserStore::new(pool));
        Self { schema: services.clone().schema(), services, authenticator }
    }
}

impl Authenticating for GraphqlState {
    type Rejection = Refused;

    fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }
}

/// The routes of the graphql function. Every request has a correlation id
/// ([`with_correlation_id`]), which `createEvent` stores; an invalid `X-Correlation-Id` is a 400.
pub fn router(state: GraphqlState) -> Router {
    Router::new()
        .route("/graphql", get(graphiql).post(execute))
        .fallback(|| async {
            Refused::new(StatusCode::NOT_FOUND, code::BAD_REQUEST, "no such route; GraphQL is at /graphql")
        })
        .method_not_allowed_fallback(|| async {
            Refused::new(StatusCode::METHOD_NOT_ALLOWED, code::BAD_REQUEST, "use POST to run a query, GET for GraphiQL")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .layer(middleware::from_fn(|request, next| {
            with_correlation_id(
                |error| failure(StatusCode::BAD_REQUEST, code::BAD_REQUEST, &error.to_string()),
                request,
                next,
            )
        }))
}

/// The page carries its own Content-Security-Policy in a meta tag (scripts pinned by URL and hash); the
/// headers add what a meta tag cannot say.
async fn graphiql() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(GRAPHIQL_PAGE),
    )
}

async fn execute(
    State(state): State<GraphqlState>,
    Caller(caller): Caller,
    Extension(correlation_id): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !is_json(headers.get(header::CONTENT_TYPE)) {
        return failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::BAD_REQUEST,
            "send the query as JSON, with Content-Type: application/json",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("the request body is larger than {MAX_BODY_BYTES} bytes");
            return failure(StatusCode::PAYLOAD_TOO_LARGE, code::BAD_REQUEST, &message);
        }
        Err(rejection) => return failure(StatusCode::BAD_REQUEST, code::BAD_REQUEST, &rejection.body_text()),
    };
    let request = match serde_json::from_slice::<async_graphql::Request>(&body) {
        Ok(request) if request.query.trim().is_empty() => {
            return failure(StatusCode::BAD_REQUEST, code::BAD_REQUEST, "the request has no `query`");
        }
        Ok(request) => request,
        Err(error) => {
            let message =
                format!("the body is not a GraphQL request ({{\"query\": ..., \"variables\": ...}}): {error}");
            return failure(StatusCode::BAD_REQUEST, code::BAD_REQUEST, &message);
        }
    };
    let execution = state.schema.execute(state.services.request(request, caller).data(correlation_id));
    // Each statement has its own timeout, but a request may run several: bound the whole of it, so
    // no request holds an instance and its connections longer than this. Dropping the execution
    // cancels its statements.
    let Ok(response) = tokio::time::timeout(REQUEST_TIME_LIMIT, execution).await else {
        tracing::warn!(limit = ?REQUEST_TIME_LIMIT, "query stopped at the request time limit");
        let message = format!(
            "the query ran longer than {} ms; narrow its ranges or searches, or ask for fewer aggregates",
            REQUEST_TIME_LIMIT.as_millis()
        );
        return failure(StatusCode::SERVICE_UNAVAILABLE, code::TIMEOUT, &message);
    };
    // A field the caller's roles do not allow fails alone, in `errors`; the status says so too.
    let forbidden = response.errors.iter().any(|error| {
        error.extensions.as_ref().and_then(|extensions| extensions.get("code"))
            == Some(&async_graphql::Value::from(code::FORBIDDEN))
    });
    let status = if forbidden { StatusCode::FORBIDDEN } else { StatusCode::OK };
    (status, Json(response)).into_response()
}

/// The graphql function's [`Refusal`](super::http::lambda::Refusal): 400 `BAD_REQUEST`, shaped as
/// a GraphQL response.
pub fn malformed_request(message: &str) -> Response {
    failure(StatusCode::BAD_REQUEST, code::BAD_REQUEST, message)
}

/// A request refused before it reached the schema.
pub struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, message: &str) -> Self {
        Self { status, code, message: message.to_owned() }
    }
}

impl From<Unauthenticated> for Refused {
    fn from(refusal: Unauthenticated) -> Self {
        match refusal {
            Unauthenticated::MissingToken => {
                Refused::new(StatusCode::UNAUTHORIZED, code::UNAUTHENTICATED, &refusal.to_string())
            }
            Unauthenticated::Refused(AuthError::Store(error)) => {
                tracing::error!(error = ?error, "token check failed");
                Refused::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    code::UNAVAILABLE,
                    "a service the API depends on is unavailable, try again",
                )
            }
            Unauthenticated::Refused(error) => {
                tracing::info!(%error, "token refused");
                Refused::new(
                    StatusCode::UNAUTHORIZED,
                    code::UNAUTHENTICATED,
                    "the token is invalid, expired or revoked",
                )
            }
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        failure(self.status, self.code, &self.message)
    }
}

/// A request refused before it reached the schema, in the shape of a GraphQL response.
fn failure(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
