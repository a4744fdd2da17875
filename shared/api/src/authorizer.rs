//! The authorizer (API Gateway HTTP API, REQUEST type, simple responses): API keys
//! (`x-api-key`) and OAuth 2.0 / OIDC access tokens (`Authorization: Bearer <JWT>`).
//!
//! HTTP APIs cannot customise the body of an authorizer's deny (it is always
//! `{"message":"Forbidden"}`, status 403). To answer a bad credential with 401 and our envelope,
//! the authorizer *allows* the request with `auth_error` in its context instead of a tenant, and
//! [`crate::input::tenant`], the only way a handler obtains a tenant, turns that into the 401.
//!
//! The authorizer has no identity source and API Gateway caches nothing: an HTTP API authorizer
//! with identity sources is skipped (401, API Gateway's own body) when any source is absent, and
//! a request carries one kind of credential or the other. This process remembers granted keys
//! for a few seconds instead (`apikeys::GrantCache`).

use argus_core::{apikeys, Backend, ServiceError};
use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerSimpleResponse;
use serde_json::json;

use argus_models::limits::LimitSettings;

use crate::input::{
    CTX_AUTH_ERROR, CTX_AUTH_REASON, CTX_EVENTS_PER_HOUR, CTX_PRINCIPAL, CTX_REQUESTS_PER_HOUR, CTX_SCOPES, CTX_TENANT,
    CTX_TIER,
};

pub const API_KEY_HEADER: &str = "x-api-key";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Granted(apikeys::KeyGrant),
    Rejected { code: &'static str, reason: Option<&'static str> },
}

fn rejected(code: &'static str) -> AuthDecision {
    AuthDecision::Rejected { code, reason: None }
}

/// An API key, when the request has one.
pub async fn authorize(backend: &Backend, api_key: Option<&str>) -> Result<AuthDecision, ServiceError> {
    let Some(key) = api_key.map(str::trim).filter(|k| !k.is_empty()) else {
        return Ok(rejected("MISSING_API_KEY"));
    };
    Ok(match apikeys::grant_for_key(backend, key).await? {
        Some(grant) => AuthDecision::Granted(grant),
        None => rejected("INVALID_API_KEY"),
    })
}

/// The request's credential: `x-api-key` when present, else `Authorization: Bearer <JWT>`.
pub async fn authorize_headers(
    backend: &Backend,
    headers: &lambda_http::http::HeaderMap,
) -> Result<AuthDecision, ServiceError> {
    let api_key = api_key_from_headers(headers).map(str::trim).filter(|k| !k.is_empty());
    if api_key.is_some() {
        return authorize(backend, api_key).await;
    }
    let Some(authorization) = headers.get(lambda_http::http::header::AUTHORIZATION) else {
        return Ok(rejected("MISSING_API_KEY"));
    };
    let invalid = |reason| AuthDecision::Rejected { code: "INVALID_TOKEN", reason: Some(reason) };
    let Some(token) = authorization
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return Ok(invalid("not_a_bearer_token"));
    };
    let Some(verifier) = &backend.jwt else {
        return Ok(rejected("TOKENS_NOT_ACCEPTED"));
    };
    let now = argus_models::time::now().timestamp();
    match verifier.verify(token, now).await? {
        Ok(token) => {
            // A token's limits are its tenant's (no per-subject settings).
            let tenant_settings = apikeys::tenant_limit_settings(backend, &token.tenant).await?;
            let (tier, limits) = LimitSettings::resolve(&LimitSettings::default(), &tenant_settings);
            Ok(AuthDecision::Granted(apikeys::KeyGrant {
                tenant: token.tenant,
                scopes: token.scopes,
                principal: token.principal,
                tier,
                limits,
            }))
        }
        Err(rejection) => Ok(invalid(rejection.reason())),
    }
}

/// The context handed to every handler in `requestContext.authorizer.lambda`. Limits travel as
/// strings: a context number is a JSON number, and an unlimited key's limit is beyond 2^53.
pub fn context(decision: &AuthDecision) -> serde_json::Value {
    match decision {
        AuthDecision::Granted(grant) => json!({
            CTX_TENANT: grant.tenant,
            CTX_SCOPES: grant.scopes.text(),
            CTX_PRINCIPAL: grant.principal,
            CTX_TIER: grant.tier.as_str(),
            CTX_REQUESTS_PER_HOUR: grant.limits.requests_per_hour.to_string(),
            CTX_EVENTS_PER_HOUR: grant.limits.events_per_hour.to_string(),
        }),
        AuthDecision::Rejected { code, reason: Some(reason) } => {
            json!({ CTX_AUTH_ERROR: code, CTX_AUTH_REASON: reason })
        }
        AuthDecision::Rejected { code, reason: None } => json!({ CTX_AUTH_ERROR: code }),
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

/// Kept before the authorizer's deadline to answer: its reads stop this early. API Gateway's
/// 10 s wait for an authorizer also covers the invoke and a cold start, which the function's
/// `Timeout` (also 10 s) does not: the reserve leaves room for them.
pub const ANSWER_RESERVE: std::time::Duration = std::time::Duration::from_millis(1_500);

/// [`authorize_headers`] within the invocation's `deadline` (less [`ANSWER_RESERVE`]): a slow
/// DynamoDB or issuer makes it fail in time, never outlive its timeout.
pub async fn authorize_within(
    backend: &Backend,
    headers: &lambda_http::http::HeaderMap,
    deadline: Option<std::time::Instant>,
) -> Result<AuthDecision, ServiceError> {
    let work_deadline = deadline.map(|d| d.checked_sub(ANSWER_RESERVE).unwrap_or(d));
    argus_core::deadline::scope(work_deadline, Box::pin(authorize_headers(backend, headers))).await
}

/// The authorizer Lambda's whole work: event in, simple response out. A DynamoDB failure or
/// the deadline is an error (API Gateway then answers 500), never an allow.
pub async fn handle(
    backend: &Backend,
    event: &aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request,
    deadline: Option<std::time::Instant>,
) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse, ServiceError> {
    let decision = authorize_within(backend, &event.headers, deadline).await?;
    Ok(simple_response(&decision))
}
