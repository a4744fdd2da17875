//! Reading what a request carries: tenant (from the authorizer context), route key, path and
//! query parameters, JSON body with a size limit. Every failure is an `ApiError`; nothing here
//! panics on input.

use argus_core::ratelimit::Charge;
use argus_models::access::{Scope, Scopes};
use argus_models::limits::{Limits, Tier};

use crate::ratelimit::RouteCharge;
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
/// Why a credential was refused (a token's `reason`).
pub const CTX_AUTH_REASON: &str = "auth_reason";
/// Whose rate-limit counters the request is charged to, and the limits in force.
pub const CTX_PRINCIPAL: &str = "principal";
pub const CTX_TIER: &str = "tier";
pub const CTX_REQUESTS_PER_HOUR: &str = "requests_per_hour";
pub const CTX_EVENTS_PER_HOUR: &str = "events_per_hour";
/// Set on the sub-requests of `POST /batch` (never by the authorizer): already charged.
pub const CTX_SUBREQUEST: &str = "subrequest";

fn authorizer_fields(req: &Request) -> Option<&std::collections::HashMap<String, Value>> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().map(|a| &a.fields),
        _ => None,
    }
}

const MISSING_CREDENTIALS: &str =
    "send your API key in the x-api-key header, or an access token as 'Authorization: Bearer <token>'";

/// The caller's tenant, as the authorizer established it. Every tenant-scoped handler starts
/// here; there is no other way to obtain a tenant, so no handler can skip authentication.
pub fn tenant(req: &Request) -> Result<String, ApiError> {
    let Some(fields) = authorizer_fields(req) else {
        return Err(ApiError::unauthorized("MISSING_API_KEY", MISSING_CREDENTIALS));
    };
    match fields.get(CTX_TENANT).and_then(Value::as_str) {
        Some(tenant) if validate_tenant_id(tenant).is_ok() => Ok(tenant.to_string()),
        _ => {
            let code = fields.get(CTX_AUTH_ERROR).and_then(Value::as_str).unwrap_or("INVALID_API_KEY");
            let reason = fields.get(CTX_AUTH_REASON).and_then(Value::as_str);
            Err(match code {
                "MISSING_API_KEY" => ApiError::unauthorized(code, MISSING_CREDENTIALS),
                "INVALID_TOKEN" => {
                    let reason = reason.unwrap_or("invalid");
                    ApiError::unauthorized(code, &format!("the access token is not valid ({reason})"))
                        .detail("reason", reason)
                }
                "TOKENS_NOT_ACCEPTED" => ApiError::unauthorized(
                    code,
                    "this deployment accepts no bearer tokens (no token issuer is configured): use an API key",
                ),
                _ => ApiError::unauthorized("INVALID_API_KEY", "the API key is not valid"),
            }
            .with_header("www-authenticate", "Bearer"))
        }
    }
}

/// The caller's scopes as the authorizer established them (absent: all three).
pub fn scopes(req: &Request) -> Scopes {
    authorizer_fields(req)
        .and_then(|f| f.get(CTX_SCOPES))
        .and_then(Value::as_str)
        .map(|text| Scopes::parse(text).unwrap_or_default())
        .unwrap_or_else(Scopes::all)
}

/// The caller's tenant, like [`tenant`], once the caller's key is found to have the scope the
/// route needs (`routes::ROUTES`; 403 `INSUFFICIENT_SCOPE` otherwise) and the request is
/// within its rate limits (429 `RATE_LIMITED`; see `ratelimit`).
pub async fn authenticated_tenant(backend: &argus_core::Backend, req: &Request) -> Result<String, ApiError> {
    Ok(authenticated_caller(backend, req).await?.tenant)
}

/// Who calls: the tenant, what its credential may do, and whose limits it spends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    pub scopes: Scopes,
    /// A key id, or `jwt-…` for a token's subject.
    pub principal: String,
    pub limits: Limits,
    /// A sub-request of `POST /batch` (charged with the batch).
    pub subrequest: bool,
}

/// The caller as the authorizer established it (no checks).
pub fn caller(req: &Request) -> Result<Caller, ApiError> {
    let tenant = tenant(req)?;
    let fields = authorizer_fields(req);
    let text = |name: &str| fields.and_then(|f| f.get(name)).and_then(Value::as_str);
    let number = |name: &str| text(name).and_then(|n| n.parse::<u64>().ok());
    // Without limits in the context (never from our authorizer), the strictest tier applies.
    let defaults = Tier::Standard.limits();
    Ok(Caller {
        principal: text(CTX_PRINCIPAL).unwrap_or("tenant").to_string(),
        limits: Limits {
            requests_per_hour: number(CTX_REQUESTS_PER_HOUR).unwrap_or(defaults.requests_per_hour),
            events_per_hour: number(CTX_EVENTS_PER_HOUR).unwrap_or(defaults.events_per_hour),
        },
        subrequest: text(CTX_SUBREQUEST) == Some("1"),
        scopes: scopes(req),
        tenant,
    })
}

/// The caller, once authenticated, allowed on this route, and charged for it.
pub async fn authenticated_caller(backend: &argus_core::Backend, req: &Request) -> Result<Caller, ApiError> {
    let caller = caller(req)?;
    let route = route_key(req);
    let (method, pattern) = route.split_once(' ').unwrap_or((route.as_str(), ""));
    if let Some(Err(scope)) = crate::routes::need_of(method, pattern).map(|need| caller.scopes.allows(need)) {
        return Err(insufficient_scope(scope, caller.scopes));
    }
    // A sub-request of `POST /batch` was charged with the batch.
    if caller.subrequest {
        return Ok(caller);
    }
    match crate::ratelimit::route_charge(method, pattern) {
        RouteCharge::Request => crate::ratelimit::charge(backend, &caller, Charge { requests: 1, events: 0 }).await?,
        RouteCharge::RequestAndEvent => {
            crate::ratelimit::charge(backend, &caller, Charge { requests: 1, events: 1 }).await?
        }
        RouteCharge::Deferred => crate::ratelimit::defer(&caller),
    }
    Ok(caller)
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

/// `?validate_only=true`: check everything, write nothing (`false` or absent: a normal call).
pub fn validate_only(req: &Request) -> Result<bool, ApiError> {
    match query(req, "validate_only").as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::new(
            400,
            "INVALID_PARAMETER",
            format!("validate_only is true or false, not '{}'", other.chars().take(40).collect::<String>()),
        )
        .detail("parameter", "validate_only")),
    }
}

/// The body's `sent_at` (the client's clock at sending), for correcting event timestamps.
pub fn sent_at(body: &Value) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    Ok(argus_models::event::parse_sent_at(body)?)
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

/// The invocation's deadline (Lambda's `Context.deadline`), when there is one. One already
/// past is now (every AWS call is then refused as out of time), never "no deadline".
pub fn invocation_deadline(req: &lambda_http::Request) -> Option<std::time::Instant> {
    use lambda_http::RequestExt;
    let context = req.lambda_context_ref()?;
    // 0: a context without a deadline (Context::default, outside Lambda).
    (context.deadline > 0).then(|| crate::dispatch::deadline_instant(context.deadline))
}

/// The deadline for the AWS calls of one request: the invocation's, less `ANSWER_RESERVE`.
pub fn work_deadline(req: &lambda_http::Request) -> Option<std::time::Instant> {
    invocation_deadline(req).map(|d| d.checked_sub(ANSWER_RESERVE).unwrap_or(d))
}

#[cfg(test)]
mod tests {
    use lambda_http::{Body, Context, Request, RequestExt};

    fn request_with_deadline(deadline_epoch_ms: u64) -> Request {
        let mut context = Context::default();
        context.deadline = deadline_epoch_ms;
        Request::new(Body::Empty).with_lambda_context(context)
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    }

    /// A deadline already past leaves no time (it used to mean "no deadline": unbounded work).
    #[test]
    fn a_past_deadline_is_out_of_time_not_unbounded() {
        let past = super::invocation_deadline(&request_with_deadline(now_ms() - 5_000)).expect("a deadline");
        assert!(past <= std::time::Instant::now());
        let work = super::work_deadline(&request_with_deadline(now_ms() - 5_000)).expect("a deadline");
        assert!(work <= std::time::Instant::now());
        let ahead = super::invocation_deadline(&request_with_deadline(now_ms() + 10_000)).expect("a deadline");
        let left = ahead.saturating_duration_since(std::time::Instant::now());
        assert!(left > std::time::Duration::from_secs(9) && left <= std::time::Duration::from_secs(10));
        assert!(super::invocation_deadline(&request_with_deadline(0)).is_none(), "no deadline set");
        assert!(super::invocation_deadline(&Request::new(Body::Empty)).is_none(), "no context");
    }
}
