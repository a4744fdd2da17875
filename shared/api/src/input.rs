//! Reading what a request carries: tenant (from the authorizer context), route key, path and
//! query parameters, JSON body with a size limit. Every failure is an `ApiError`; nothing here
//! panics on input.

use argus_models::tenant::validate_tenant_id;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde_json::Value;

use crate::ApiError;

/// Context keys the authorizer sets (see `authorizer`).
pub const CTX_TENANT: &str = "tenant_id";
pub const CTX_AUTH_ERROR: &str = "auth_error";

/// The caller's tenant, as the authorizer established it. Every tenant-scoped handler starts
/// here; there is no other way to obtain a tenant, so no handler can skip authentication.
pub fn tenant(req: &Request) -> Result<String, ApiError> {
    let fields = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().map(|a| &a.fields),
        _ => None,
    };
    let Some(fields) = fields else {
        return Err(ApiError::unauthorized("MISSING_API_KEY", "send your API key in the x-api-key header"));
    };
    match fields.get(CTX_TENANT).and_then(Value::as_str) {
        Some(tenant) if validate_tenant_id(tenant).is_ok() => Ok(tenant.to_string()),
        _ => {
            let code = fields.get(CTX_AUTH_ERROR).and_then(Value::as_str).unwrap_or("INVALID_API_KEY");
            let message = if code == "MISSING_API_KEY" {
                "send your API key in the x-api-key header"
            } else {
                "the API key is not valid"
            };
            Err(ApiError::unauthorized(code, message))
        }
    }
}

/// `"POST /sessions/{id}"`: the route API Gateway matched, without a trailing slash, so both
/// declared forms (`/sessions` and `/sessions/`) reach the same arm.
pub fn route_key(req: &Request) -> String {
    let key = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.clone().unwrap_or_default(),
        _ => String::new(),
    };
    match key.strip_suffix('/') {
        Some(trimmed) if trimmed.ends_with(|c: char| c != ' ') => trimmed.to_string(),
        _ => key,
    }
}

pub fn path_param(req: &Request, name: &str) -> Result<String, ApiError> {
    req.path_parameters_ref()
        .and_then(|params| params.first(name))
        .map(str::to_string)
        .ok_or_else(|| ApiError::new(400, "MISSING_PATH_PARAMETER", format!("path parameter {name} is missing")))
}

pub fn query(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref().and_then(|q| q.first(name)).map(str::to_string)
}

/// The body as JSON: `None` when empty (or only whitespace). Over `max_bytes` → 413; not JSON
/// → 400 with the line and column of the problem.
pub fn json_body(req: &Request, max_bytes: usize) -> Result<Option<Value>, ApiError> {
    let bytes: &[u8] = match req.body() {
        Body::Empty => return Ok(None),
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => return Ok(None),
    };
    if bytes.len() > max_bytes {
        return Err(ApiError::payload_too_large(max_bytes, bytes.len()));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes).map(Some).map_err(|err| {
        ApiError::new(400, "MALFORMED_JSON", format!("request body is not valid JSON: {err}"))
            .detail("line", err.line())
            .detail("column", err.column())
    })
}
