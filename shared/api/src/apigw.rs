//! An HTTP request → the API Gateway HTTP API payload 2.0 event Lambda receives. Used by the
//! local runner for every request and by `POST /batch` for its sub-requests.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

/// What the runner knows of one incoming request.
pub struct IncomingRequest<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a lambda_http::http::HeaderMap,
    pub body: &'a [u8],
    pub source_ip: String,
}

/// Builds the event for `route_key` (`"POST /sessions"` or `"$default"`), with the path
/// parameters the route captured and the authorizer's context.
pub fn http_api_event(
    req: &IncomingRequest<'_>,
    route_key: &str,
    path_parameters: &Map<String, Value>,
    authorizer_context: Option<&Value>,
) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in req.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == lambda_http::http::header::COOKIE {
            cookies.extend(value.split(';').map(|c| c.trim().to_string()));
            continue;
        }
        // API Gateway lower-cases names and joins repeated headers with commas.
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    let mut query = Map::new();
    for (key, value) in form_urlencoded::parse(req.raw_query.as_bytes()) {
        match query.get_mut(key.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                query.insert(key.into_owned(), Value::String(value.into_owned()));
            }
        }
    }
    let now = chrono::Utc::now();
    let mut context = json!({
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": "127.0.0.1",
        "domainPrefix": "local",
        "http": {
            "method": req.method,
            "path": req.raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": req.source_ip,
            "userAgent": req.headers.get(lambda_http::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or(""),
        },
        "requestId": uuid::Uuid::new_v4().to_string(),
        "routeKey": route_key,
        "stage": "$default",
        "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        "timeEpoch": now.timestamp_millis(),
    });
    if let Some(authorizer) = authorizer_context {
        context["authorizer"] = json!({ "lambda": authorizer });
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": req.raw_path,
        "rawQueryString": req.raw_query,
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !path_parameters.is_empty() {
        event["pathParameters"] = Value::Object(path_parameters.clone());
    }
    if !req.body.is_empty() {
        // Text bodies pass as-is; anything else is base64, as API Gateway does.
        match std::str::from_utf8(req.body) {
            Ok(text) => event["body"] = json!(text),
            Err(_) => {
                event["body"] = json!(STANDARD.encode(req.body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

/// Matches a concrete path against a declared route path, capturing `{name}` segments.
/// Exact, as API Gateway matches: `/sessions/` and `/sessions` are different routes.
pub fn match_path(pattern: &str, path: &str) -> Option<Map<String, Value>> {
    let mut params = Map::new();
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.len() > 2 && p.starts_with('{') && p.ends_with('}') => {
                if s.is_empty() {
                    return None;
                }
                let value = percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
                params.insert(p[1..p.len() - 1].to_string(), Value::String(value));
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_matching_is_exact_and_captures() {
        assert_eq!(match_path("/sessions", "/sessions"), Some(Map::new()));
        assert_eq!(match_path("/sessions", "/sessions/"), None);
        let params = match_path("/sessions/{id}/", "/sessions/a%20b/").unwrap();
        assert_eq!(params["id"], "a b");
        assert_eq!(match_path("/sessions/{id}", "/sessions/"), None);
        assert_eq!(match_path("/sessions/{id}", "/sessions/a/b"), None);
    }

    #[test]
    fn event_converts_into_a_lambda_http_request() {
        use lambda_http::RequestExt;
        let mut headers = lambda_http::http::HeaderMap::new();
        headers.insert("x-api-key", "k".parse().unwrap());
        headers.append("x-multi", "1".parse().unwrap());
        headers.append("x-multi", "2".parse().unwrap());
        let incoming = IncomingRequest {
            method: "GET",
            raw_path: "/sessions/abc",
            raw_query: "limit=5&cursor=a%2Bb",
            headers: &headers,
            body: b"",
            source_ip: "127.0.0.1".into(),
        };
        let params = match_path("/sessions/{id}", "/sessions/abc").unwrap();
        let event = http_api_event(&incoming, "GET /sessions/{id}", &params, Some(&json!({"tenant_id": "dev"})));
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        assert_eq!(req.method(), "GET");
        assert_eq!(req.uri().path(), "/sessions/abc");
        assert_eq!(req.path_parameters().first("id"), Some("abc"));
        assert_eq!(req.query_string_parameters().first("cursor"), Some("a+b"));
        assert_eq!(req.headers()["x-multi"], "1,2");
    }
}
