//! Function binary name → handler, for callers that host several functions in one process
//! (the local runner, the fixture test). Lambda binaries call their handler directly.

use argus_core::Backend;
use lambda_http::{Body, Request, Response};

/// Invokes the HTTP function named by its binary (as in template.yaml's `BuildProperties`).
/// `None` if no HTTP function has that name.
pub async fn invoke_http(binary: &str, backend: &Backend, req: Request) -> Option<Response<Body>> {
    Some(match binary {
        "argus-sessions" => crate::sessions::handle(backend, req).await,
        "argus-health" => crate::health::handle(backend, req).await,
        "argus-events" => crate::events::handle(backend, req).await,
        "argus-errors" => crate::errors::handle(backend, req).await,
        "argus-streams" => crate::streams::handle(backend, req).await,
        "argus-batch" => crate::batch::handle(backend, req).await,
        "argus-webhooks" => crate::webhooks::handle(backend, req).await,
        "argus-exports" => crate::exports::handle(backend, req).await,
        _ => return None,
    })
}

/// One request from outside, as Lambda's loop runs it: [`invoke_http`] within the rate-limit
/// scope that settles its charge and adds the `RateLimit-*` headers (`ratelimit::scoped`).
/// Sub-requests of `POST /batch` call [`invoke_http`] directly: the batch is charged whole.
pub async fn invoke_http_request(binary: &str, backend: &Backend, req: Request) -> Option<Response<Body>> {
    let mut found = true;
    // Boxed: every handler's future in one is too big to pass through a worker's stack.
    let work_deadline = crate::input::work_deadline(&req);
    let response = crate::ratelimit::scoped(backend, work_deadline, async {
        match Box::pin(invoke_http(binary, backend, req)).await {
            Some(response) => response,
            None => {
                found = false;
                Response::default()
            }
        }
    })
    .await;
    found.then_some(response)
}

/// A function whose handler lives outside this crate (the export and archive functions link
/// Parquet and Avro, which no other function should): the process hosting several functions
/// registers it, and [`invoke_json`] finds it by binary name.
pub type JsonHandler =
    fn(
        Backend,
        serde_json::Value,
        Option<std::time::Instant>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<serde_json::Value, String>> + Send>>;

fn registry() -> &'static std::sync::RwLock<std::collections::BTreeMap<String, JsonHandler>> {
    static REGISTRY: std::sync::OnceLock<std::sync::RwLock<std::collections::BTreeMap<String, JsonHandler>>> =
        std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Registers `handler` as the function `binary` for [`invoke_json`].
pub fn register(binary: &str, handler: JsonHandler) {
    if let Ok(mut registry) = registry().write() {
        registry.insert(binary.to_string(), handler);
    }
}

fn registered(binary: &str) -> Option<JsonHandler> {
    registry().read().ok().and_then(|r| r.get(binary).copied())
}

/// Invokes any function by binary name with a raw Lambda event (JSON), returning the JSON the
/// function would return, as `sam local invoke -e event.json` does. HTTP functions answer in
/// the API Gateway payload 2.0 response shape (`statusCode`, `headers`, `body`).
/// `deadline` is the invocation's (Lambda's `Context.deadline`), as the runner sets it from the
/// function's `Timeout`.
pub async fn invoke_json(
    binary: &str,
    backend: &Backend,
    event: &str,
    deadline: Option<std::time::Instant>,
) -> Result<serde_json::Value, String> {
    if let Some(handler) = registered(binary) {
        let event: serde_json::Value = serde_json::from_str(event).map_err(|e| format!("not JSON: {e}"))?;
        return handler(backend.clone(), event, deadline).await;
    }
    if binary == "argus-authorizer" {
        let event = serde_json::from_str(event).map_err(|e| format!("not an authorizer event: {e}"))?;
        let response = crate::authorizer::handle(backend, &event, deadline).await.map_err(|e| e.to_string())?;
        return serde_json::to_value(response).map_err(|e| e.to_string());
    }
    if binary == "argus-sweeper" {
        let event: serde_json::Value = serde_json::from_str(event).map_err(|e| format!("not JSON: {e}"))?;
        return crate::sweeper::handle(backend, &event, deadline).await;
    }
    if binary == "argus-aggregator" {
        let event: serde_json::Value = serde_json::from_str(event).map_err(|e| format!("not JSON: {e}"))?;
        return Ok(crate::aggregator::handle(backend, &event, deadline).await);
    }
    if binary == "argus-notifier" {
        let event = serde_json::from_str(event).map_err(|e| format!("not an SQS event: {e}"))?;
        let response = crate::notifier::handle(backend, event, deadline).await;
        return serde_json::to_value(response).map_err(|e| e.to_string());
    }
    if binary == "argus-processor" {
        let event = serde_json::from_str(event).map_err(|e| format!("not an SQS event: {e}"))?;
        let response = crate::processor::handle(backend, event, deadline).await;
        return serde_json::to_value(response).map_err(|e| e.to_string());
    }
    let event: serde_json::Value = serde_json::from_str(event).map_err(|e| format!("not JSON: {e}"))?;
    let context = deadline.map(context_with_deadline);
    Box::pin(invoke_http_event(binary, backend, event, context)).await.ok_or_else(|| format!("no function {binary}"))
}

/// One invocation of an HTTP function as Lambda runs it: the API Gateway event in (made safe
/// and checked by `ingress`), the payload 2.0 response out. `None` if no HTTP function has that
/// name.
pub async fn invoke_http_event(
    binary: &str,
    backend: &Backend,
    event: serde_json::Value,
    context: Option<lambda_http::Context>,
) -> Option<serde_json::Value> {
    let started = std::time::Instant::now();
    let route = event_route(&event);
    let response = match crate::ingress::request_from_event(event) {
        Ok(mut request) => {
            if let Some(context) = context {
                request = lambda_http::RequestExt::with_lambda_context(request, context);
            }
            Box::pin(invoke_http_request(binary, backend, request)).await?
        }
        Err(err) => err.into_response(),
    };
    observe(binary, &route, &response, started);
    Some(response_payload(response))
}

/// The event's route key as API Gateway matched it (`POST /events`, `$default`): the `Route`
/// metric dimension, bounded by the template's routes (never the concrete path).
pub fn event_route(event: &serde_json::Value) -> String {
    route_dimension(event.get("routeKey").and_then(serde_json::Value::as_str).unwrap_or("$default"))
}

/// A route key without its trailing slash: both declared forms are one route.
pub fn route_dimension(key: &str) -> String {
    match key.strip_suffix('/') {
        Some(trimmed) if !trimmed.ends_with(' ') => trimmed.to_string(),
        _ => key.to_string(),
    }
}

/// Records one answered request in the metrics.
pub fn observe(function: &str, route: &str, response: &Response<Body>, started: std::time::Instant) {
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    argus_core::metrics::request(function, route, response.status().as_u16(), latency_ms, None);
}

/// A response in API Gateway's payload 2.0 shape (`statusCode`, `headers`, `body`).
pub fn response_payload(response: Response<Body>) -> serde_json::Value {
    use base64::Engine;
    let (parts, body) = response.into_parts();
    let mut headers = serde_json::Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        // Payload 2.0 carries each cookie apart: joined with commas they would break.
        if name == lambda_http::http::header::SET_COOKIE {
            cookies.push(serde_json::Value::String(value));
            continue;
        }
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.to_string(), value.into());
            }
        }
    }
    let (body, base64) = match body {
        Body::Text(text) => (text, false),
        Body::Binary(bytes) => (base64::engine::general_purpose::STANDARD.encode(bytes), true),
        _ => (String::new(), false),
    };
    let mut payload = serde_json::json!({"statusCode": parts.status.as_u16(), "headers": headers, "body": body, "isBase64Encoded": base64});
    if !cookies.is_empty() {
        payload["cookies"] = serde_json::Value::Array(cookies);
    }
    payload
}

/// Lambda's `Context.deadline` (epoch milliseconds) as an `Instant`, so retries stop in time.
pub fn deadline_instant(deadline_epoch_ms: u64) -> std::time::Instant {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    std::time::Instant::now() + std::time::Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms))
}

/// A Lambda context whose deadline (epoch milliseconds) is `deadline`.
pub fn context_with_deadline(deadline: std::time::Instant) -> lambda_http::Context {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut context = lambda_http::Context::default();
    context.deadline = now_ms + deadline.saturating_duration_since(std::time::Instant::now()).as_millis() as u64;
    context
}
