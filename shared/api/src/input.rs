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

/// The caller's tenant, like [`tenant`], except that a key the authorizer found unknown is
/// looked up again (one consistent read). API Gateway caches the authorizer's answer per key
/// for `ReauthorizeEvery`: without this, a key created just after its first (failed) use would
/// stay locked out until that answer expires.
pub async fn authenticated_tenant(backend: &argus_core::Backend, req: &Request) -> Result<String, ApiError> {
    match tenant(req) {
        Err(err) if err.envelope.error.code == "INVALID_API_KEY" => {
            let key = req.headers().get(crate::authorizer::API_KEY_HEADER).and_then(|v| v.to_str().ok());
            match key.map(|k| argus_core::apikeys::tenant_for_key(backend, k.trim())) {
                Some(lookup) => match lookup.await? {
                    Some(tenant) => Ok(tenant),
                    None => Err(err),
                },
                None => Err(err),
            }
        }
        other => other,
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

/// Kept before the Lambda deadline to build and send the answer: AWS calls stop this early.
pub const ANSWER_RESERVE: std::time::Duration = std::time::Duration::from_secs(1);

/// The invocation's deadline (Lambda's `Context.deadline`), when there is one.
pub fn invocation_deadline(req: &lambda_http::Request) -> Option<std::time::Instant> {
    use lambda_http::RequestExt;
    let context = req.lambda_context_ref()?;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(std::time::Instant::now() + std::time::Duration::from_millis(context.deadline.checked_sub(now_ms)?))
}

/// The deadline for the AWS calls of one request: the invocation's, less `ANSWER_RESERVE`.
pub fn work_deadline(req: &lambda_http::Request) -> Option<std::time::Instant> {
    invocation_deadline(req).map(|d| d.checked_sub(ANSWER_RESERVE).unwrap_or(d))
}
