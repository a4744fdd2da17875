//! Reading what a request carries: tenant (from the authorizer context), route key, path and
//! query parameters, JSON body with a size limit. Every failure is an `ApiError`; nothing here
//! panics on input.

use argus_models::access::{Scope, Scopes};
use argus_models::tenant::validate_tenant_id;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde_json::Value;

use crate::ApiError;

/// Context keys the authorizer sets (see `authorizer`).
pub const CTX_TENANT: &str = "tenant_id";
pub const CTX_AUTH_ERROR: &str = "auth_error";
/// The key's scopes, `ingest,read,manage` (absent: all, as for keys from before scopes).
pub const CTX_SCOPES: &str = "scopes";

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

/// The caller's scopes as the authorizer established them (absent: all three).
pub fn scopes(req: &Request) -> Scopes {
    let fields = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().map(|a| &a.fields),
        _ => None,
    };
    fields
        .and_then(|f| f.get(CTX_SCOPES))
        .and_then(Value::as_str)
        .map(|text| Scopes::parse(text).unwrap_or_default())
        .unwrap_or_else(Scopes::all)
}

/// The caller's tenant, like [`tenant`], once the caller's key is found to have the scope the
/// route needs (`routes::ROUTES`; 403 `INSUFFICIENT_SCOPE` naming it otherwise). A key the
/// authorizer found unknown is looked up again (one consistent read): API Gateway caches the
/// authorizer's answer per key for `ReauthorizeEvery`, and without this a key created just
/// after its first (failed) use would stay locked out until that answer expires.
pub async fn authenticated_tenant(backend: &argus_core::Backend, req: &Request) -> Result<String, ApiError> {
    Ok(authenticated_caller(backend, req).await?.tenant)
}

/// Who calls: the tenant and what its key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    pub scopes: Scopes,
}

/// Like [`authenticated_tenant`], with the key's scopes (for checks further in).
pub async fn authenticated_caller(backend: &argus_core::Backend, req: &Request) -> Result<Caller, ApiError> {
    let (tenant, granted) = match tenant(req) {
        Ok(tenant) => (tenant, scopes(req)),
        Err(err) if err.envelope.error.code == "INVALID_API_KEY" => {
            let key = req.headers().get(crate::authorizer::API_KEY_HEADER).and_then(|v| v.to_str().ok());
            match key.map(|k| argus_core::apikeys::grant_for_key(backend, k.trim())) {
                Some(lookup) => match lookup.await? {
                    Some(grant) => (grant.tenant, grant.scopes),
                    None => return Err(err),
                },
                None => return Err(err),
            }
        }
        Err(err) => return Err(err),
    };
    let route = route_key(req);
    let need = route.split_once(' ').and_then(|(method, pattern)| crate::routes::need_of(method, pattern));
    if let Some(Err(scope)) = need.map(|need| granted.allows(need)) {
        return Err(insufficient_scope(scope, granted));
    }
    Ok(Caller { tenant, scopes: granted })
}

/// 403 `INSUFFICIENT_SCOPE`: which scope the route needs and which the key has.
pub fn insufficient_scope(needed: Scope, granted: Scopes) -> ApiError {
    ApiError::new(
        403,
        "INSUFFICIENT_SCOPE",
        format!("this API key lacks the '{}' scope this route needs", needed.as_str()),
    )
    .detail("required_scope", needed.as_str())
    .detail("granted_scopes", granted.list().iter().map(|s| s.as_str()).collect::<Vec<_>>())
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
