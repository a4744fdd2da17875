//! The API key authorizer (API Gateway HTTP API, REQUEST type, simple responses).
//!
//! HTTP APIs cannot customise the body of an authorizer's deny (it is always
//! `{"message":"Forbidden"}`, status 403). To answer an unknown key with 401 and our envelope,
//! the authorizer *allows* the request with `auth_error` in its context instead of a tenant, and
//! [`crate::input::tenant`], the only way a handler obtains a tenant, turns that into the 401.

use argus_core::{apikeys, Backend, ServiceError};
use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerSimpleResponse;
use serde_json::json;

use crate::input::{CTX_AUTH_ERROR, CTX_SCOPES, CTX_TENANT};

pub const API_KEY_HEADER: &str = "x-api-key";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Granted(apikeys::KeyGrant),
    Rejected { code: &'static str },
}

pub async fn authorize(backend: &Backend, api_key: Option<&str>) -> Result<AuthDecision, ServiceError> {
    let Some(key) = api_key.map(str::trim).filter(|k| !k.is_empty()) else {
        return Ok(AuthDecision::Rejected { code: "MISSING_API_KEY" });
    };
    Ok(match apikeys::grant_for_key(backend, key).await? {
        Some(grant) => AuthDecision::Granted(grant),
        None => AuthDecision::Rejected { code: "INVALID_API_KEY" },
    })
}

/// The context handed to every handler in `requestContext.authorizer.lambda`.
pub fn context(decision: &AuthDecision) -> serde_json::Value {
    match decision {
        AuthDecision::Granted(grant) => json!({ CTX_TENANT: grant.tenant, CTX_SCOPES: grant.scopes.text() }),
        AuthDecision::Rejected { code } => json!({ CTX_AUTH_ERROR: code }),
    }
}

pub fn simple_response(decision: &AuthDecision) -> ApiGatewayV2CustomAuthorizerSimpleResponse {
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    response.is_authorized = true;
    response.context = context(decision);
    response
}

/// The header API Gateway passes as identity source, from the authorizer event's headers.
pub fn api_key_from_headers(headers: &lambda_http::http::HeaderMap) -> Option<&str> {
    headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok())
}

/// The authorizer Lambda's whole work: event in, simple response out. A DynamoDB failure is an
/// error (API Gateway then answers 500), never an allow.
pub async fn handle(
    backend: &Backend,
    event: &aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request,
) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse, ServiceError> {
    let decision = authorize(backend, api_key_from_headers(&event.headers)).await?;
    Ok(simple_response(&decision))
}
