//! What the HTTP functions (ingest and login with the REST API, graphql) share at the edge: serving
//! on Lambda, routing on the path the client asked for, the body limit, the JSON content type,
//! the caller's token and the request's correlation id.

mod caller;
mod correlation;
pub mod lambda;

use axum::{
    Router,
    http::{HeaderValue, Uri},
};
use lambda_http::{Request, RequestExt, request::RequestContext};
use tower::{Service, ServiceBuilder};

pub use caller::{Authenticating, Caller, Unauthenticated};
pub use correlation::{CORRELATION_ID_HEADER, InvalidCorrelationId, correlation_id, with_correlation_id};

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Whether a Content-Type says JSON: `application/json` or any `+json` type, parameters allowed.
pub fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(mime) =
        content_type.and_then(|value| value.to_str().ok()).and_then(|value| value.parse::<mime::Mime>().ok())
    else {
        return false;
    };
    mime.type_() == mime::APPLICATION && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
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
    fn json_content_types_are_recognised() {
        for accepted in ["application/json", "application/json; charset=utf-8", "application/problem+json"] {
            assert!(is_json(Some(&HeaderValue::from_static(accepted))), "{accepted}");
        }
        for refused in ["text/plain", "application/x-www-form-urlencoded", "json", ""] {
            assert!(!is_json(Some(&HeaderValue::from_static(refused))), "{refused}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn the_stage_is_stripped_only_as_a_whole_leading_segment() {
        assert_eq!(strip_stage("/Prod/api/events", "Prod"), "/api/events");
        assert_eq!(strip_stage("/Prod", "Prod"), "/");
        assert_eq!(strip_stage("/Production/api", "Prod"), "/Production/api");
        assert_eq!(strip_stage("/api/events", "Prod"), "/api/events");
        assert_eq!(strip_stage("/api/api/events", "api"), "/api/events");
    }
}
