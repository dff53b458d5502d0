//! Extractors that turn a malformed or unauthorised request into an [`ApiError`] instead of
//! axum's plain text.

use std::marker::PhantomData;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, header, request::Parts},
};
use lambda_http::request::RequestContext;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::{
    auth::Claims,
    domain::Role,
    handlers::http::{Authenticating, Caller, MAX_BODY_BYTES, is_json},
};

/// A JSON request body; errors name the path of the field that failed to parse.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES }
            } else {
                ApiError::MalformedJson { message: rejection.body_text(), field: None }
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::MalformedJson { message: "the request body is empty".into(), field: None });
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            ApiError::MalformedJson { message: error.into_inner().to_string(), field: (path != ".").then_some(path) }
        })?;
        // A second value or stray text after the first would otherwise be dropped without a word.
        deserializer.end().map_err(|error| ApiError::MalformedJson { message: error.to_string(), field: None })?;
        Ok(JsonBody(value))
    }
}

/// A role an endpoint requires, as a type, so a handler's signature says who may call it.
pub trait RequiredRole {
    const ROLE: Role;
}

/// May post events.
pub struct Producer;
/// May read events.
pub struct Analyst;

impl RequiredRole for Producer {
    const ROLE: Role = Role::Producer;
}

impl RequiredRole for Analyst {
    const ROLE: Role = Role::Analyst;
}

/// An authenticated caller whose token carries the role `R`; any other caller gets 403.
#[derive(Debug)]
pub struct Authorized<R> {
    pub caller: Claims,
    role: PhantomData<R>,
}

impl<S: Authenticating<Rejection = ApiError> + Send + Sync, R: RequiredRole> FromRequestParts<S> for Authorized<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Caller(claims) = Caller::from_request_parts(parts, state).await?;
        if !claims.has_role(R::ROLE) {
            return Err(ApiError::Forbidden(R::ROLE));
        }
        Ok(Authorized { caller: claims, role: PhantomData })
    }
}

/// The address the request came from, as API Gateway saw it; `unknown` when the event has none.
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let address = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.clone(),
            Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
            _ => None,
        };
        Ok(ClientAddress(address.filter(|address| !address.is_empty()).unwrap_or_else(|| "unknown".into())))
    }
}
