//! Serving an HTTP service on Lambda as `lambda_http::run` does, except that an API Gateway event
//! which is not a valid HTTP request still gets an HTTP answer.
//!
//! `lambda_http::run` has the runtime deserialise the event straight into its request type. API
//! Gateway passes on header values that the `http` crate refuses (control characters), and
//! `lambda_http` unwraps its parse of the Host header; either way the invocation fails and API
//! Gateway answers 502, on every route, before any token is looked at. Here the runtime hands over
//! the raw event, `lambda_http`'s own conversion is tried on it, and a failure becomes a 400.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    task::{Context, Poll},
};

use axum::response::Response;
use lambda_http::{
    Adapter, Body, BoxFuture, Error, IntoResponse, LambdaEvent, Request, Service,
    aws_lambda_events::apigw::ApiGatewayProxyResponse, lambda_runtime::Diagnostic, request::LambdaRequest,
};
use serde::Serialize;
use serde_json::value::RawValue;

/// What the client is told when its request could not be read.
pub const MALFORMED_REQUEST: &str = "the request cannot be read: a header, the method, the path or the query string \
                                     is not valid HTTP (control characters are not allowed in headers, for instance)";

/// Renders the answer to an event that is not a valid HTTP request, in its API's error shape.
pub type Refusal = fn(&str) -> Response;

/// Serves `service` on the Lambda runtime, as `lambda_http::run` does, answering events that are not
/// valid HTTP requests with `refuse`.
pub async fn run_http<S, R, E>(service: S, refuse: Refusal) -> Result<(), Error>
where
    S: Service<Request, Response = R, Error = E>,
    S::Future: Send + 'static,
    R: IntoResponse + 'static,
    E: std::fmt::Debug + Into<Diagnostic> + Send + 'static,
{
    lambda_http::lambda_runtime::run(ApiGatewayService::new(service, refuse)).await
}

/// The service [`run_http`] runs: a raw API Gateway event in, an API Gateway proxy response out.
pub struct ApiGatewayService<R: 'static, S> {
    adapter: Adapter<'static, R, S>,
    refuse: Refusal,
}

/// The proxy response: `lambda_http`'s own for a request it could read, else the refusal.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ProxyResponse<T> {
    Served(T),
    /// Valid for REST (v1) and HTTP (v2) APIs alike: the origin of an unreadable event is unknown.
    Refused(Box<ApiGatewayProxyResponse>),
}

impl<R, S, E> ApiGatewayService<R, S>
where
    S: Service<Request, Response = R, Error = E>,
    S::Future: Send + 'static,
    R: IntoResponse + 'static,
{
    /// `service` behind `lambda_http`'s conversions, with `refuse` for events they cannot convert.
    pub fn new(service: S, refuse: Refusal) -> Self {
        Self { adapter: Adapter::from(service), refuse }
    }
}

type Served<R, S> = <Adapter<'static, R, S> as Service<LambdaEvent<LambdaRequest>>>::Response;

impl<R, S, E> Service<LambdaEvent<Box<RawValue>>> for ApiGatewayService<R, S>
where
    S: Service<Request, Response = R, Error = E>,
    S::Future: Send + 'static,
    R: IntoResponse + 'static,
    E: Send + 'static,
{
    type Response = ProxyResponse<Served<R, S>>;
    type Error = E;
    type Future = BoxFuture<'static, Result<Self::Response, E>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.adapter.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<Box<RawValue>>) -> Self::Future {
        let LambdaEvent { payload, context } = event;
        let request = match serde_json::from_str::<LambdaRequest>(payload.get()) {
            Ok(request) => request,
            Err(error) => {
                // lambda_http's error names no value, so it cannot leak a header such as Authorization.
                tracing::info!(%error, "refused an event that is not a valid HTTP request");
                return refused(self.refuse);
            }
        };
        // The adapter converts the event before it returns its future, and that conversion unwraps
        // URL parses (the Host header with the path, for one).
        match catch_unwind(AssertUnwindSafe(|| self.adapter.call(LambdaEvent::new(request, context)))) {
            Ok(served) => Box::pin(async move { served.await.map(ProxyResponse::Served) }),
            Err(_) => {
                tracing::info!("refused an event that lambda_http could not turn into a request");
                refused(self.refuse)
            }
        }
    }
}

fn refused<T: Send + 'static, E: Send + 'static>(refuse: Refusal) -> BoxFuture<'static, Result<ProxyResponse<T>, E>> {
    let response = refuse(MALFORMED_REQUEST);
    Box::pin(async move { Ok(ProxyResponse::Refused(Box::new(proxy_response(response).await))) })
}

async fn proxy_response(response: Response) -> ApiGatewayProxyResponse {
    let (parts, body) = response.into_parts();
    // A refusal is a small JSON document built in memory; reading it cannot fail.
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let mut proxy = ApiGatewayProxyResponse::default();
    proxy.status_code = parts.status.as_u16().into();
    proxy.headers = parts.headers;
    proxy.body = Some(Body::Text(String::from_utf8_lossy(&body).into_owned()));
    proxy
}

#[cfg(test)]
mod tests {
    use lambda_http::{Context, service_fn};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::handlers::rest::malformed_request;

    const REST_EVENT: &str = include_str!("../../../../../events/ingest-list-events-rest.json");
    const HTTP_EVENT: &str = include_str!("../../../../../events/ingest-create-event-http.json");

    /// Answers 200 with the path it was asked for, as the router sees it.
    async fn echo_path(event: &Value) -> Value {
        let echo = service_fn(|request: Request| async move {
            Ok::<_, std::convert::Infallible>(json!({ "path": request.uri().path() }))
        });
        let payload = serde_json::value::to_raw_value(event).unwrap();
        let answer = ApiGatewayService::new(echo, malformed_request)
            .oneshot(LambdaEvent::new(payload, Context::default()))
            .await
            .unwrap();
        serde_json::to_value(answer).unwrap()
    }

    fn with_header(fixture: &str, name: &str, value: &str) -> Value {
        let mut event: Value = serde_json::from_str(fixture).unwrap();
        event["headers"][name] = json!(value);
        if event.get("multiValueHeaders").is_some() {
            event["multiValueHeaders"][name] = json!([value]);
        }
        event
    }

    fn assert_refused(answer: &Value, case: &str) {
        assert_eq!(answer["statusCode"], 400, "{case}: {answer}");
        assert_eq!(answer["headers"]["content-type"], "application/json", "{case}: {answer}");
        assert_eq!(answer["isBase64Encoded"], false, "{case}: {answer}");
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "malformed_request", "{case}: {body}");
        assert_eq!(body["error"]["message"], MALFORMED_REQUEST, "{case}: {body}");
    }

    #[tokio::test]
    async fn a_readable_event_is_served_as_lambda_http_serves_it_in_its_origin_shape() {
        let rest = echo_path(&serde_json::from_str(REST_EVENT).unwrap()).await;
        assert_eq!(rest["statusCode"], 200, "{rest}");
        assert_eq!(rest["body"], r#"{"path":"/Prod/api/events"}"#, "lambda_http's stage prefix: {rest}");
        assert_eq!(rest["multiValueHeaders"]["content-type"], json!(["application/json"]), "REST (v1) shape: {rest}");

        let http = echo_path(&serde_json::from_str(HTTP_EVENT).unwrap()).await;
        assert_eq!(http["statusCode"], 200, "{http}");
        assert_eq!(http["body"], r#"{"path":"/live/api/events"}"#, "{http}");
        assert_eq!(http["headers"]["content-type"], "application/json", "HTTP (v2) shape: {http}");
    }

    #[tokio::test]
    async fn an_event_http_cannot_represent_is_refused_with_a_400_in_either_api() {
        for fixture in [REST_EVENT, HTTP_EVENT] {
            for (name, value) in [("X-Note", "a\u{1}b"), ("X-Note", "a\r\nSet-Cookie: x=1"), ("X-Note", "a\0b")] {
                assert_refused(&echo_path(&with_header(fixture, name, value)).await, &format!("{name}: {value:?}"));
            }
            assert_refused(&echo_path(&with_header(fixture, "Bad Name", "v")).await, "a space in a header name");
        }
        // lambda_http unwraps its parse of the Host header and path into a URL.
        assert_refused(&echo_path(&with_header(REST_EVENT, "Host", "exa mple.com")).await, "a space in Host");
        assert_refused(&echo_path(&json!({ "hello": "world" })).await, "not an API Gateway event");
    }
}
