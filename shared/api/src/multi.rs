//! `POST /batch`: several API calls in one request. Each sub-request is dispatched in-process to
//! the same handler its route's Lambda runs, as the same API Gateway event, with the caller's
//! tenant. `depends_on` orders them (independent ones run concurrently); `${id.body.path}`
//! references take values from earlier responses.

use std::collections::{HashMap, HashSet};

use argus_core::Backend;
use lambda_http::Body;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::apigw::{http_api_event, match_path, IncomingRequest};
use crate::routes::{match_route, RouteMatch, ROUTES};
use crate::ApiError;

pub const MAX_SUB_REQUESTS: usize = 100;
const MAX_ID_LEN: usize = 64;
const MAX_PATH_LEN: usize = 2048;
/// Sub-requests of one batch running at once: each listing fans out to every shard, so this
/// bounds one batch's concurrent DynamoDB queries (8 × the shards of the widest listing, 16, or up
/// to 64 for a tenant with a stream at 64 write shards, × at most 2 pages).
pub const MAX_CONCURRENT_SUB_REQUESTS: usize = 8;
/// Items the GET sub-requests of one batch may read together (each listing counts its `limit`,
/// each single read one): five full pages. One batch cannot take a table's read capacity.
pub const MAX_BATCH_READ_ITEMS: usize = 5_000;

#[derive(Debug, Clone)]
struct SubRequest {
    id: String,
    method: String,
    path: String,
    body: Option<Value>,
    depends_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubResponse {
    pub id: String,
    pub status: u16,
    pub body: Value,
}

fn invalid(index: usize, id: Option<&str>, field: &str, message: impl Into<String>) -> ApiError {
    let mut error = ApiError::new(400, "INVALID_BATCH", message).detail("index", index).detail("field", field);
    if let Some(id) = id {
        error = error.detail("id", id);
    }
    error
}

fn parse(body: &Value) -> Result<Vec<SubRequest>, ApiError> {
    let Some(list) = body.get("requests").and_then(Value::as_array) else {
        return Err(ApiError::invalid_field("requests", "REQUIRED", "an array of requests is required"));
    };
    if list.is_empty() {
        return Err(ApiError::invalid_field("requests", "EMPTY_BATCH", "send at least one request"));
    }
    if list.len() > MAX_SUB_REQUESTS {
        return Err(ApiError::new(
            413,
            "BATCH_TOO_LARGE",
            format!("a batch holds 1 to {MAX_SUB_REQUESTS} requests, got {}", list.len()),
        )
        .detail("field", "requests")
        .detail("max_items", MAX_SUB_REQUESTS));
    }
    let mut parsed = Vec::with_capacity(list.len());
    let mut ids = HashSet::new();
    for (index, raw) in list.iter().enumerate() {
        let id = match raw.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() && id.chars().count() <= MAX_ID_LEN && !id.contains(['.', '$', '{', '}']) => {
                id.to_string()
            }
            _ => {
                return Err(invalid(
                    index,
                    None,
                    "id",
                    format!("each request needs an id: 1 to {MAX_ID_LEN} characters, no '.', '$', braces"),
                ))
            }
        };
        if !ids.insert(id.clone()) {
            return Err(invalid(index, Some(&id), "id", format!("duplicate id {id}")));
        }
        let method = raw.get("method").and_then(Value::as_str).unwrap_or_default().to_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            return Err(invalid(index, Some(&id), "method", "method is GET, POST, PUT, PATCH or DELETE"));
        }
        let path = match raw.get("path").and_then(Value::as_str) {
            Some(path) if path.starts_with('/') && path.chars().count() <= MAX_PATH_LEN => path.to_string(),
            _ => {
                return Err(invalid(
                    index,
                    Some(&id),
                    "path",
                    format!("path is required, starts with '/' and holds at most {MAX_PATH_LEN} characters"),
                ))
            }
        };
        let route_path = path.split('?').next().unwrap_or_default();
        // Bulk inside a batch would step around the bulk limits: bulk calls go on their own.
        let normalized = crate::routes::normalize(route_path);
        // Webhook management and exports run on their own functions (whose queues and grants
        // the batch function does not hold).
        let own_function = |prefix: &str| normalized == prefix || normalized.starts_with(&format!("{prefix}/"));
        if route_path.starts_with("/batch")
            || normalized == "/ingest/batch"
            || normalized == "/health"
            || own_function("/webhooks")
            || own_function("/exports")
        {
            return Err(invalid(
                index,
                Some(&id),
                "path",
                "batches cannot contain /batch, /ingest/batch, /health, /webhooks or /exports requests",
            ));
        }
        match match_route(&method, route_path) {
            RouteMatch::Found { .. } => {}
            RouteMatch::MethodNotAllowed { allowed } => {
                return Err(invalid(
                    index,
                    Some(&id),
                    "method",
                    format!("{method} is not allowed on {route_path}; allowed: {}", allowed.join(", ")),
                ));
            }
            RouteMatch::NotFound => {
                return Err(invalid(index, Some(&id), "path", format!("no route for {method} {route_path}")))
            }
        }
        let depends_on = match raw.get("depends_on") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(deps)) if deps.iter().all(Value::is_string) => {
                // A dependency named twice is one dependency (not a cycle).
                let mut seen = HashSet::new();
                deps.iter().filter_map(Value::as_str).filter(|d| seen.insert(*d)).map(str::to_string).collect()
            }
            Some(_) => return Err(invalid(index, Some(&id), "depends_on", "depends_on is an array of request ids")),
        };
        let body = raw.get("body").cloned().filter(|b| !b.is_null());
        parsed.push(SubRequest { id, method, path, body, depends_on });
    }
    Ok(parsed)
}

/// Items a sub-request may read: a listing its `limit` (the default page without one, the
/// largest page when it is a reference or invalid), a single read one, a write none (writes are
/// bounded by the request's own size).
fn read_cost(request: &SubRequest) -> usize {
    use argus_core::page::{DEFAULT_PAGE, MAX_PAGE};
    if request.method != "GET" {
        return 0;
    }
    let (path, query) = request.path.split_once('?').unwrap_or((request.path.as_str(), ""));
    let RouteMatch::Found { path: pattern, .. } = match_route("GET", path) else {
        return 1;
    };
    if pattern.ends_with("{id}") {
        return 1;
    }
    match form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "limit") {
        None => DEFAULT_PAGE,
        Some((_, value)) => value.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)).unwrap_or(MAX_PAGE),
    }
}

fn check_read_budget(requests: &[SubRequest]) -> Result<(), ApiError> {
    let costs: Vec<usize> = requests.iter().map(read_cost).collect();
    let total: usize = costs.iter().sum();
    if total <= MAX_BATCH_READ_ITEMS {
        return Ok(());
    }
    let costliest: Vec<Value> = requests
        .iter()
        .zip(&costs)
        .filter(|(_, cost)| **cost > 1)
        .map(|(r, cost)| json!({"id": r.id, "read_items": cost}))
        .take(10)
        .collect();
    Err(ApiError::new(
        413,
        "BATCH_TOO_COSTLY",
        format!("the batch's reads may return {total} items; one batch reads at most {MAX_BATCH_READ_ITEMS}: split it or lower the limits"),
    )
    .detail("read_items", total)
    .detail("max_read_items", MAX_BATCH_READ_ITEMS)
    .detail("costliest", costliest))
}

/// Checks dependencies (known, acyclic) and references (only to transitive dependencies) and
/// returns the execution order as levels: each level depends only on earlier ones.
fn plan(requests: &[SubRequest]) -> Result<Vec<Vec<usize>>, ApiError> {
    let index_of: HashMap<&str, usize> = requests.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
    for (index, request) in requests.iter().enumerate() {
        for dep in &request.depends_on {
            if dep == &request.id || !index_of.contains_key(dep.as_str()) {
                return Err(invalid(
                    index,
                    Some(&request.id),
                    "depends_on",
                    format!("depends_on names unknown request {dep}"),
                ));
            }
        }
    }
    // Kahn's algorithm, level by level.
    let mut remaining: Vec<usize> = requests.iter().map(|r| r.depends_on.len()).collect();
    let mut done = vec![false; requests.len()];
    let mut levels = Vec::new();
    let mut placed = 0;
    while placed < requests.len() {
        let level: Vec<usize> = (0..requests.len()).filter(|&i| !done[i] && remaining[i] == 0).collect();
        if level.is_empty() {
            let stuck = (0..requests.len()).find(|&i| !done[i]).unwrap_or(0);
            return Err(invalid(stuck, Some(&requests[stuck].id), "depends_on", "depends_on forms a cycle"));
        }
        for &i in &level {
            done[i] = true;
            placed += 1;
            for (j, other) in requests.iter().enumerate() {
                if other.depends_on.contains(&requests[i].id) {
                    remaining[j] -= 1;
                }
            }
        }
        levels.push(level);
    }
    // References must point at (transitive) dependencies.
    for (index, request) in requests.iter().enumerate() {
        let ancestors = ancestors(requests, &index_of, index);
        let mut references = Vec::new();
        collect_references(&Value::String(request.path.clone()), &mut references)
            .map_err(|m| invalid(index, Some(&request.id), "path", m))?;
        if let Some(body) = &request.body {
            collect_references(body, &mut references).map_err(|m| invalid(index, Some(&request.id), "body", m))?;
        }
        for reference in references {
            if !ancestors.contains(reference.source.as_str()) {
                return Err(invalid(
                    index,
                    Some(&request.id),
                    "body",
                    format!("reference to {} which this request does not depend on", reference.source),
                ));
            }
        }
    }
    Ok(levels)
}

fn ancestors<'a>(requests: &'a [SubRequest], index_of: &HashMap<&str, usize>, start: usize) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    let mut stack: Vec<usize> = vec![start];
    while let Some(i) = stack.pop() {
        for dep in &requests[i].depends_on {
            if let Some(&j) = index_of.get(dep.as_str()) {
                if seen.insert(requests[j].id.as_str()) {
                    stack.push(j);
                }
            }
        }
    }
    seen
}

#[derive(Debug, PartialEq)]
struct Reference {
    source: String,
    /// Field path inside the source's body.
    path: Vec<String>,
    /// The `${...}` text.
    text: String,
}

/// Finds `${id.body.a.b}` references in every string of `value`.
fn collect_references(value: &Value, out: &mut Vec<Reference>) -> Result<(), String> {
    match value {
        Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let end = after.find('}').ok_or_else(|| format!("unterminated reference in {text:?}"))?;
                let inner = &after[..end];
                let mut parts = inner.split('.');
                let (Some(source), Some("body")) = (parts.next(), parts.next()) else {
                    return Err(format!("references look like ${{<id>.body.<field>}}, got ${{{inner}}}"));
                };
                let path: Vec<String> = parts.map(str::to_string).collect();
                if source.is_empty() || path.is_empty() || path.iter().any(String::is_empty) {
                    return Err(format!("references look like ${{<id>.body.<field>}}, got ${{{inner}}}"));
                }
                out.push(Reference { source: source.to_string(), path, text: format!("${{{inner}}}") });
                rest = &after[end + 1..];
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| collect_references(v, out)),
        Value::Object(map) => map.values().try_for_each(|v| collect_references(v, out)),
        _ => Ok(()),
    }
}

/// Replaces references with values from earlier responses. A string that is exactly one
/// reference takes the value's JSON type; inside a longer string the value is spliced as text.
fn substitute(value: &Value, responses: &HashMap<String, SubResponse>) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => {
            let mut references = Vec::new();
            collect_references(value, &mut references)?;
            if references.is_empty() {
                return Ok(value.clone());
            }
            let resolve = |r: &Reference| resolve(r, responses);
            if references.len() == 1 && references[0].text == *text {
                return resolve(&references[0]);
            }
            let mut out = text.clone();
            for reference in &references {
                let replacement = match resolve(reference)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out = out.replacen(&reference.text, &replacement, 1);
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, responses)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, responses)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

/// The path with its references resolved. A value spliced into the path is one path segment,
/// into the query one parameter value: percent-encoded, so it cannot add segments or parameters.
fn substitute_path(path: &str, responses: &HashMap<String, SubResponse>) -> Result<String, String> {
    const COMPONENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let (route, query) = match path.split_once('?') {
        Some((route, query)) => (route, Some(query)),
        None => (path, None),
    };
    let encode_part = |part: &str| -> Result<String, String> {
        let mut references = Vec::new();
        collect_references(&Value::String(part.to_string()), &mut references)?;
        let mut out = part.to_string();
        for reference in &references {
            let value = match resolve(reference, responses)? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out =
                out.replacen(&reference.text, &percent_encoding::utf8_percent_encode(&value, COMPONENT).to_string(), 1);
        }
        Ok(out)
    };
    let mut resolved = encode_part(route)?;
    if let Some(query) = query {
        resolved.push('?');
        resolved.push_str(&encode_part(query)?);
    }
    Ok(resolved)
}

fn resolve(reference: &Reference, responses: &HashMap<String, SubResponse>) -> Result<Value, String> {
    let mut current =
        &responses.get(&reference.source).ok_or_else(|| format!("{} has no response", reference.source))?.body;
    for part in &reference.path {
        current = match current {
            Value::Object(map) => map.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("{} is not in the response of {}", reference.text, reference.source))?;
    }
    Ok(current.clone())
}

fn envelope(code: &str, message: String, details: Value) -> Value {
    json!({"error": {"code": code, "message": message, "details": details}})
}

/// Runs one sub-request through its route's handler, as the route's Lambda would.
async fn execute(
    backend: &Backend,
    caller: &crate::input::Caller,
    request: &SubRequest,
    responses: &HashMap<String, SubResponse>,
) -> SubResponse {
    let respond = |status: u16, body: Value| SubResponse { id: request.id.clone(), status, body };
    for dep in &request.depends_on {
        if let Some(dependency) = responses.get(dep) {
            if dependency.status >= 400 {
                return respond(
                    424,
                    envelope(
                        "FAILED_DEPENDENCY",
                        format!("not run: {dep} answered {}", dependency.status),
                        json!({"dependency": dep, "status": dependency.status}),
                    ),
                );
            }
        }
    }
    let resolved = substitute_path(&request.path, responses)
        .and_then(|path| request.body.as_ref().map(|b| substitute(b, responses)).transpose().map(|body| (path, body)));
    let (path, body) = match resolved {
        Ok(resolved) => resolved,
        Err(message) => return respond(400, envelope("UNRESOLVED_REFERENCE", message, json!({}))),
    };
    let (raw_path, raw_query) = path.split_once('?').unwrap_or((path.as_str(), ""));
    let RouteMatch::Found { method, path: pattern } = match_route(&request.method, raw_path) else {
        return respond(
            404,
            envelope(
                "ROUTE_NOT_FOUND",
                format!("no route for {} {raw_path}", request.method),
                json!({"path": raw_path}),
            ),
        );
    };
    let Some(binary) = ROUTES.iter().find(|(m, p, _, _)| *m == method && *p == pattern).map(|(_, _, b, _)| *b) else {
        return respond(404, envelope("ROUTE_NOT_FOUND", "no route".into(), json!({})));
    };
    let params = match_path(pattern, crate::routes::normalize(raw_path)).unwrap_or_default();
    let body_text = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = lambda_http::http::HeaderMap::new();
    headers.insert("content-type", lambda_http::http::HeaderValue::from_static("application/json"));
    let incoming = IncomingRequest {
        method: &request.method,
        raw_path,
        raw_query,
        headers: &headers,
        body: body_text.as_bytes(),
        source_ip: "127.0.0.1".into(),
    };
    let event = http_api_event(
        &incoming,
        &format!("{method} {pattern}"),
        &params,
        // The caller's own scopes: each sub-request's route checks them as if called directly.
        Some(&json!({
            crate::input::CTX_TENANT: caller.tenant,
            crate::input::CTX_SCOPES: caller.scopes.text(),
            crate::input::CTX_PRINCIPAL: caller.principal,
            crate::input::CTX_REQUESTS_PER_HOUR: caller.limits.requests_per_hour.to_string(),
            crate::input::CTX_EVENTS_PER_HOUR: caller.limits.events_per_hour.to_string(),
            crate::input::CTX_SUBREQUEST: "1",
        })),
    );
    let response = match crate::ingress::request_from_event(event) {
        // Under an Idempotency-Key each sub-request derives its own ids (from its `id`), so two
        // creating sub-requests never share one, and a rerun derives the same again.
        Ok(req) => {
            argus_core::keyed_ids::scope(
                argus_core::keyed_ids::child_seed(&request.id),
                // Boxed: the handlers' futures nest in the batch's own.
                Box::pin(crate::dispatch::invoke_http(binary, backend, req)),
            )
            .await
        }
        Err(err) => return respond(err.status, serde_json::to_value(&*err.envelope).unwrap_or(Value::Null)),
    };
    let Some(response) = response else {
        return respond(500, envelope("INTERNAL_ERROR", "internal error".into(), json!({})));
    };
    let status = response.status().as_u16();
    let body = match response.into_body() {
        Body::Text(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Body::Binary(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    respond(status, body)
}

/// Validates the whole batch (400 naming the sub-request on any structural error), then runs it.
pub async fn run(backend: &Backend, caller: &crate::input::Caller, body: &Value) -> Result<Vec<SubResponse>, ApiError> {
    let requests = parse(body)?;
    let levels = plan(&requests)?;
    check_read_budget(&requests)?;
    // Each sub-request counts as a request (and a single-event one as an event too), charged
    // here at once; the sub-requests themselves charge nothing.
    let events = requests
        .iter()
        .filter(|r| match match_route(&r.method, r.path.split_once('?').map_or(r.path.as_str(), |(p, _)| p)) {
            RouteMatch::Found { method, path } => {
                crate::ratelimit::route_charge(method, path) == crate::ratelimit::RouteCharge::RequestAndEvent
            }
            _ => false,
        })
        .count() as u64;
    let charge = argus_core::ratelimit::Charge { requests: requests.len() as u64, events };
    crate::ratelimit::charge(backend, caller, charge).await?;
    let mut responses: HashMap<String, SubResponse> = HashMap::new();
    for level in levels {
        use futures::StreamExt;
        // Collected first: a lazy `map` in the stream's state is not `Send` for every lifetime.
        let pending: Vec<_> = level.iter().map(|&i| execute(backend, caller, &requests[i], &responses)).collect();
        let done: Vec<SubResponse> =
            futures::stream::iter(pending).buffer_unordered(MAX_CONCURRENT_SUB_REQUESTS).collect().await;
        for response in done {
            responses.insert(response.id.clone(), response);
        }
    }
    let mut ordered: Vec<SubResponse> = requests.iter().filter_map(|r| responses.remove(&r.id)).collect();
    cap_answer(&mut ordered, MAX_ANSWER_BYTES);
    Ok(ordered)
}

/// The bodies of one `POST /batch` answer stop at this size: Lambda answers at most 6 MB, and the
/// answer is escaped once more inside Lambda's JSON.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Past `max_bytes`, a sub-response keeps its status (its request ran) but its body becomes a
/// `RESPONSE_TOO_LARGE` envelope: the client asks for that resource on its own.
fn cap_answer(responses: &mut [SubResponse], max_bytes: usize) {
    let mut used = 0usize;
    for response in responses.iter_mut() {
        let text = response.body.to_string();
        // Twice-escaped size: quotes and backslashes double, control characters grow most.
        let bytes: usize = text
            .bytes()
            .map(|b| match b {
                b'"' | b'\\' => 2,
                0..=0x1f => 6,
                _ => 1,
            })
            .sum();
        if used + bytes <= max_bytes {
            used += bytes;
            continue;
        }
        response.body = envelope(
            "RESPONSE_TOO_LARGE",
            format!(
                "the request ran ({}), but its answer did not fit in this batch's {max_bytes} bytes; request it on its own",
                response.status
            ),
            json!({"status": response.status, "bytes": bytes, "max_bytes": max_bytes}),
        );
        used += response.body.to_string().len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(requests: Value) -> Result<Vec<Vec<usize>>, ApiError> {
        plan(&parse(&json!({ "requests": requests }))?)
    }

    #[test]
    fn a_dependency_named_twice_is_not_a_cycle() {
        let levels = batch(json!([
            {"id": "a", "method": "POST", "path": "/sessions"},
            {"id": "b", "method": "GET", "path": "/sessions/${a.body.id}", "depends_on": ["a", "a"]}
        ]))
        .unwrap();
        assert_eq!(levels, vec![vec![0], vec![1]]);
    }

    #[test]
    fn an_answer_over_its_budget_keeps_statuses_and_drops_bodies_that_do_not_fit() {
        let mut responses: Vec<SubResponse> = (0..5)
            .map(|i| SubResponse { id: format!("r{i}"), status: 200, body: json!({"blob": "x".repeat(400)}) })
            .collect();
        cap_answer(&mut responses, 1000);
        let kept = responses.iter().filter(|r| r.body.get("blob").is_some()).count();
        assert_eq!(kept, 2);
        assert!(responses.iter().all(|r| r.status == 200));
        assert_eq!(responses[4].body["error"]["code"], "RESPONSE_TOO_LARGE");
        assert_eq!(responses[4].body["error"]["details"]["status"], 200);
    }

    #[test]
    fn plans_levels_and_rejects_bad_graphs() {
        let levels = batch(json!([
            {"id": "a", "method": "POST", "path": "/sessions"},
            {"id": "b", "method": "POST", "path": "/events", "depends_on": ["a"], "body": {"session_id": "${a.body.id}"}},
            {"id": "c", "method": "GET", "path": "/sessions"},
            {"id": "d", "method": "GET", "path": "/events/${b.body.id}", "depends_on": ["b"]}
        ]))
        .unwrap();
        assert_eq!(levels, vec![vec![0, 2], vec![1], vec![3]]);

        let field = |r: Result<Vec<Vec<usize>>, ApiError>| r.unwrap_err().envelope.error.details["field"].clone();
        assert_eq!(
            field(batch(json!([{"id": "a", "method": "GET", "path": "/sessions", "depends_on": ["zz"]}]))),
            "depends_on"
        );
        assert_eq!(
            field(batch(json!([
                {"id": "a", "method": "GET", "path": "/sessions", "depends_on": ["b"]},
                {"id": "b", "method": "GET", "path": "/sessions", "depends_on": ["a"]}
            ]))),
            "depends_on"
        );
        assert_eq!(
            field(batch(
                json!([{"id": "a", "method": "GET", "path": "/sessions"}, {"id": "a", "method": "GET", "path": "/sessions"}])
            )),
            "id"
        );
        assert_eq!(field(batch(json!([{"id": "a", "method": "POST", "path": "/batch/events"}]))), "path");
        assert_eq!(field(batch(json!([{"id": "a", "method": "GET", "path": "/health"}]))), "path");
        assert_eq!(field(batch(json!([{"id": "a", "method": "TRACE", "path": "/sessions"}]))), "method");
        assert_eq!(
            field(batch(
                json!([{"id": "a", "method": "GET", "path": "/sessions/${b.body.id}"}, {"id": "b", "method": "GET", "path": "/sessions"}])
            )),
            "body"
        );
        assert_eq!(
            field(batch(json!([{"id": "a", "method": "POST", "path": "/events", "body": {"x": "${a.nope}"}}]))),
            "body"
        );
    }

    #[test]
    fn substitutes_typed_and_spliced_values() {
        let responses = HashMap::from([(
            "a".to_string(),
            SubResponse { id: "a".into(), status: 201, body: json!({"id": "s-1", "n": 3, "list": [{"x": true}]}) },
        )]);
        let out = substitute(&json!({"id": "${a.body.id}", "n": "${a.body.n}", "text": "n=${a.body.n}/${a.body.id}", "deep": "${a.body.list.0.x}"}), &responses).unwrap();
        assert_eq!(out, json!({"id": "s-1", "n": 3, "text": "n=3/s-1", "deep": true}));
        assert!(substitute(&json!("${a.body.missing}"), &responses).is_err());
    }
}
