//! The request's correlation id: the client's `X-Correlation-Id`, else API Gateway's request id,
//! else a new UUID v7. It is put in the request's extensions for the handlers, on a span around
//! the request so every log line of it carries the id, and in the response's `X-Correlation-Id`.

use axum::{
    extract::Request,
    http::{Extensions, HeaderMap, HeaderValue},
    middleware::Next,
    response::Response,
};
use lambda_http::request::RequestContext;
use tracing::Instrument;

use crate::domain::{CorrelationId, FieldError};

/// The header a client may send its own id in, and the response echoes.
pub const CORRELATION_ID_HEADER: &str = "X-Correlation-Id";

/// Renders a refused `X-Correlation-Id` in the API's own error shape.
pub type InvalidCorrelationId = fn(FieldError) -> Response;

/// The id for a request with these headers and extensions; an `X-Correlation-Id` that is not a
/// valid id is an error naming the header, never silently replaced.
pub fn correlation_id(headers: &HeaderMap, extensions: &Extensions) -> Result<CorrelationId, FieldError> {
    if let Some(value) = headers.get(CORRELATION_ID_HEADER) {
        // A value that is not visible ASCII fails like any other invalid id.
        return CorrelationId::parse(CORRELATION_ID_HEADER, value.to_str().unwrap_or(" "));
    }
    let request_id = match extensions.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(context)) => context.request_id.as_deref(),
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.as_deref(),
        _ => None,
    };
    // An HTTP API's request ids end in `=`: not an id the pipeline can carry, so a new one.
    Ok(CorrelationId::or_generate(request_id))
}

/// Middleware (`axum::middleware::from_fn`) that resolves the id, runs the request with it and
/// echoes it; an invalid header is answered by `refuse`, before anything else runs.
pub async fn with_correlation_id(refuse: InvalidCorrelationId, mut request: Request, next: Next) -> Response {
    let id = match correlation_id(request.headers(), request.extensions()) {
        Ok(id) => id,
        Err(error) => return refuse(error),
    };
    let header = HeaderValue::from_str(id.as_str()).expect("a correlation id is a valid header value");
    let span = tracing::info_span!("request", correlation_id = %id);
    request.extensions_mut().insert(id);
    let mut response = next.run(request).instrument(span).await;
    response.headers_mut().insert(CORRELATION_ID_HEADER, header);
    response
}

#[cfg(test)]
mod tests {
    use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;

    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(CORRELATION_ID_HEADER, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn api_gateway(request_id: &str) -> Extensions {
        let mut context = ApiGatewayProxyRequestContext::default();
        context.request_id = Some(request_id.into());
        let mut extensions = Extensions::new();
        extensions.insert(RequestContext::ApiGatewayV1(context));
        extensions
    }

    #[test]
    fn the_clients_id_comes_first_then_api_gateways_then_a_new_one() {
        let gateway = api_gateway("c6af9ac6-7b61-11e6-9a41-93e8deadbeef");
        assert_eq!(correlation_id(&headers(Some("req-1")), &gateway).unwrap().as_str(), "req-1");
        assert_eq!(correlation_id(&headers(None), &gateway).unwrap().as_str(), "c6af9ac6-7b61-11e6-9a41-93e8deadbeef");
        let generated = correlation_id(&headers(None), &Extensions::new()).unwrap();
        assert_eq!(uuid::Uuid::parse_str(generated.as_str()).unwrap().get_version_num(), 7);
        let http_api = correlation_id(&headers(None), &api_gateway("JlSTAi8xoAMEJbw=")).unwrap();
        assert!(CorrelationId::is_valid(http_api.as_str()));
    }

    #[test]
    fn an_invalid_header_is_refused_naming_it() {
        for invalid in ["", "two words", "a/b", &"x".repeat(129)] {
            let error = correlation_id(&headers(Some(invalid)), &Extensions::new()).unwrap_err();
            assert_eq!(error.field, "X-Correlation-Id");
        }
        let mut non_ascii = HeaderMap::new();
        non_ascii.insert(CORRELATION_ID_HEADER, HeaderValue::from_bytes(b"caf\xe9").unwrap());
        assert!(correlation_id(&non_ascii, &Extensions::new()).is_err());
    }
}
