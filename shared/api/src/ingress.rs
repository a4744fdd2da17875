//! Where every request enters: an API Gateway HTTP API (payload 2.0) event becomes a `Request`
//! here, and nowhere else — in the Lambda functions, the local runner and `POST /batch` alike.
//!
//! `lambda_http`'s own conversion panics (`expect`/`unwrap`) on a path or query that is not a
//! valid URI, on a Host or X-Forwarded-Proto header that does not make one, on a URI over
//! 64 KiB and on a body flagged base64 that is not. With `panic = "abort"` that kills the whole
//! invocation. So the event is made safe first: path and query percent-encoded where they hold
//! characters a URI cannot, unusable Host / X-Forwarded-Proto headers dropped, the URI length
//! bounded, base64 checked. Then the checks every route shares: one value per query parameter,
//! a JSON (or form-typed) body, one API key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lambda_http::Request;
use serde_json::Value;

use crate::ApiError;

/// Longest path + query accepted (API Gateway's own request-line limit is 10,240 bytes).
pub const MAX_URI_BYTES: usize = 8192;

/// Largest body a gzip request may decompress to. Each route's own limit then applies to the
/// decompressed body (`input::json_body`); bulk routes allow this much for gzip bodies
/// (`batch::MAX_GZIP_BYTES`), five times what fits in Lambda's 6 MB uncompressed.
pub const MAX_DECOMPRESSED_BYTES: usize = 25 * 1024 * 1024;
/// A body decompressing to more than `RATIO_FLOOR_BYTES` must not expand more than this: no
/// JSON event stream compresses 200:1; a decompression bomb does.
pub const MAX_COMPRESSION_RATIO: usize = 200;
const RATIO_FLOOR_BYTES: usize = 1024 * 1024;
/// Largest decompressed body on the other routes (their own limits are lower still).
pub const MAX_DECOMPRESSED_SMALL_BYTES: usize = 2 * 1024 * 1024;
/// Set by ingress (never by the client: removed first) on a body it decompressed.
pub const DECODED_HEADER: &str = "x-argus-decoded-from";

/// The request an event describes, or the 4xx that says why there is none.
pub fn request_from_event(mut event: Value) -> Result<Request, ApiError> {
    make_convertible(&mut event)?;
    let request = lambda_http::request::from_str(&event.to_string())
        .map_err(|err| ApiError::new(400, "BAD_REQUEST", format!("the request could not be read: {err}")))?;
    check_request(&request)?;
    Ok(request)
}

/// Rewrites `event` so that `lambda_http`'s conversion cannot panic on it.
fn make_convertible(event: &mut Value) -> Result<(), ApiError> {
    let Some(fields) = event.as_object_mut() else {
        return Err(ApiError::new(400, "BAD_REQUEST", "the event is not an API Gateway request"));
    };
    let raw_path = fields.get("rawPath").and_then(Value::as_str).unwrap_or("/");
    let raw_query = fields.get("rawQueryString").and_then(Value::as_str).unwrap_or("");
    if raw_path.len() + raw_query.len() > MAX_URI_BYTES {
        return Err(ApiError::new(
            414,
            "URI_TOO_LONG",
            format!("path and query are {} bytes; the limit is {MAX_URI_BYTES}", raw_path.len() + raw_query.len()),
        )
        .detail("max_bytes", MAX_URI_BYTES));
    }
    let mut path = encode_uri_part(raw_path, false);
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let query = encode_uri_part(raw_query, true);
    fields.insert("rawPath".into(), Value::String(path.clone()));
    fields.insert("rawQueryString".into(), Value::String(query.clone()));

    if let Some(context) = fields.get_mut("requestContext").and_then(Value::as_object_mut) {
        // lambda_http prefixes the path with the stage; API Gateway's stage names are at most
        // 128 of [A-Za-z0-9_-], so anything else is not one.
        let stage_ok = context.get("stage").and_then(Value::as_str).is_none_or(|stage| {
            stage == "$default"
                || (stage.len() <= 128 && stage.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        });
        if !stage_ok {
            context.insert("stage".into(), Value::String("$default".into()));
        }
        let domain_ok = context.get("domainName").and_then(Value::as_str).is_none_or(|d| builds_uri(d, "https", &path));
        if !domain_ok {
            context.insert("domainName".into(), Value::String("localhost".into()));
        }
    }
    if let Some(headers) = fields.get_mut("headers").and_then(Value::as_object_mut) {
        // Names as the conversion will see them (lower case, repeated ones joined): a directly
        // invoked event may spell them `Host`.
        let mut lowered = serde_json::Map::new();
        for (name, value) in std::mem::take(headers) {
            let name = name.to_ascii_lowercase();
            match (lowered.get_mut(&name), value) {
                (Some(Value::String(existing)), Value::String(more)) => {
                    existing.push(',');
                    existing.push_str(&more);
                }
                (_, value) => {
                    lowered.insert(name, value);
                }
            }
        }
        *headers = lowered;
        let proto_ok = match headers.get("x-forwarded-proto") {
            None => true,
            Some(Value::String(proto)) => proto == "http" || proto == "https",
            Some(_) => false,
        };
        if !proto_ok {
            headers.remove("x-forwarded-proto");
        }
        let scheme = headers.get("x-forwarded-proto").and_then(Value::as_str).unwrap_or("https").to_string();
        let host_ok = match headers.get("host") {
            None => true,
            Some(Value::String(host)) => builds_uri(host, &scheme, &path),
            Some(_) => false,
        };
        if !host_ok {
            headers.remove("host");
        }
    }
    decode_content(fields)?;
    if fields.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        let body = fields.get("body").and_then(Value::as_str).unwrap_or("");
        let decoded = STANDARD
            .decode(body)
            .map_err(|_| ApiError::new(400, "BAD_REQUEST", "the request body is flagged base64 but is not"))?;
        // Text bodies travel as text: the handlers read either form.
        if let Ok(text) = String::from_utf8(decoded) {
            fields.insert("body".into(), Value::String(text));
            fields.insert("isBase64Encoded".into(), Value::Bool(false));
        }
    }
    Ok(())
}

/// Decompresses a `Content-Encoding: gzip` body in place (the header goes, `DECODED_HEADER`
/// says it was gzip). The output is capped while it streams, so a bomb costs at most the cap
/// in memory: 413. Any other encoding is 415.
/// Only a request the authorizer admitted (a tenant in its context) is decompressed, and only
/// the bulk routes get `MAX_DECOMPRESSED_BYTES`: anonymous callers, unmatched paths and small
/// routes never make a function inflate megabytes.
fn decode_content(fields: &mut serde_json::Map<String, Value>) -> Result<(), ApiError> {
    let context = fields.get("requestContext");
    let authenticated = context
        .and_then(|c| c.get("authorizer"))
        .and_then(|a| a.get("lambda"))
        .and_then(|l| l.get(crate::input::CTX_TENANT))
        .is_some_and(Value::is_string);
    let route = context.and_then(|c| c.get("routeKey")).and_then(Value::as_str).unwrap_or("");
    let bulk = matches!(
        route.trim_end_matches('/'),
        "POST /batch"
            | "POST /batch/jobs"
            | "POST /batch/events"
            | "PATCH /batch/events"
            | "DELETE /batch/events"
            | "POST /batch/events/restore"
            | "POST /ingest/batch"
    );
    let cap = if bulk { MAX_DECOMPRESSED_BYTES } else { MAX_DECOMPRESSED_SMALL_BYTES };
    let Some(headers) = fields.get_mut("headers").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    headers.remove(DECODED_HEADER);
    let encoding = match headers.get("content-encoding") {
        None => return Ok(()),
        Some(Value::String(value)) => value.trim().to_ascii_lowercase(),
        Some(_) => String::from("?"),
    };
    match encoding.as_str() {
        "" | "identity" => {
            headers.remove("content-encoding");
            return Ok(());
        }
        "gzip" | "x-gzip" => {}
        other => {
            return Err(ApiError::new(
                415,
                "UNSUPPORTED_CONTENT_ENCODING",
                format!(
                    "Content-Encoding {} is not supported: send gzip or no encoding",
                    other.chars().take(40).collect::<String>()
                ),
            )
            .detail("content_encoding", other.chars().take(40).collect::<String>())
            .detail("accepted", vec!["gzip", "identity"]));
        }
    }
    headers.remove("content-encoding");
    headers.insert(DECODED_HEADER.into(), Value::String("gzip".into()));
    if !authenticated {
        // Answered 401/404/405 without reading the body: none is kept.
        fields.insert("body".into(), Value::String(String::new()));
        fields.insert("isBase64Encoded".into(), Value::Bool(false));
        return Ok(());
    }
    let body = fields.get("body").and_then(Value::as_str).unwrap_or("");
    if body.is_empty() {
        return Ok(());
    }
    let compressed = if fields.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        STANDARD
            .decode(body)
            .map_err(|_| ApiError::new(400, "BAD_REQUEST", "the request body is flagged base64 but is not"))?
    } else {
        body.as_bytes().to_vec()
    };
    let decoded = gunzip(&compressed, cap)?;
    match String::from_utf8(decoded) {
        Ok(text) => {
            fields.insert("body".into(), Value::String(text));
            fields.insert("isBase64Encoded".into(), Value::Bool(false));
        }
        Err(err) => {
            fields.insert("body".into(), Value::String(STANDARD.encode(err.into_bytes())));
            fields.insert("isBase64Encoded".into(), Value::Bool(true));
        }
    }
    Ok(())
}

/// `compressed` (one or more gzip members) decompressed, at most `cap` bytes and at most
/// `MAX_COMPRESSION_RATIO` times its size past `RATIO_FLOOR_BYTES`.
pub fn gunzip(compressed: &[u8], cap: usize) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    let ratio_cap = compressed.len().saturating_mul(MAX_COMPRESSION_RATIO).max(RATIO_FLOOR_BYTES);
    let limit = cap.min(ratio_cap);
    let mut decoded = Vec::new();
    let mut reader = flate2::read::MultiGzDecoder::new(compressed).take(limit as u64 + 1);
    reader
        .read_to_end(&mut decoded)
        .map_err(|err| ApiError::new(400, "MALFORMED_GZIP", format!("the body is not valid gzip: {err}")))?;
    if decoded.len() > limit {
        let (code, message) = if limit < cap {
            (
                "DECOMPRESSION_RATIO_EXCEEDED",
                format!("the body expands more than {MAX_COMPRESSION_RATIO}:1; refused as a decompression bomb"),
            )
        } else {
            ("PAYLOAD_TOO_LARGE", format!("the body decompresses to more than {cap} bytes"))
        };
        return Err(ApiError::new(413, code, message)
            .detail("max_decompressed_bytes", cap)
            .detail("max_compression_ratio", MAX_COMPRESSION_RATIO));
    }
    Ok(decoded)
}

/// Whether `lambda_http` builds a valid URI from this host (as it does: through `url::Url`,
/// then `http::Uri`). Unusable hosts are dropped; the domain name or no host is used instead.
/// Only host characters are allowed first: `url` silently strips tabs and newlines, so a host
/// of "\n" would otherwise merge with the path.
fn builds_uri(host: &str, scheme: &str, path: &str) -> bool {
    let plain = !host.is_empty()
        && host.len() <= 260
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
    if !plain {
        return false;
    }
    match url::Url::parse(&format!("{scheme}://{host}{path}")) {
        Ok(url) => lambda_http::http::Uri::try_from(url.as_str()).is_ok() && url.host_str().is_some(),
        Err(_) => false,
    }
}

/// Percent-encodes every byte a URI path (or query) cannot hold as is; valid escapes stay.
pub fn encode_uri_part(raw: &str, query: bool) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    for (i, &byte) in bytes.iter().enumerate() {
        let allowed = byte.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@/".contains(&byte)
            || (query && byte == b'?')
            || (byte == b'%'
                && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit));
        if allowed {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Media types a body may declare: JSON, or none, or the form type `curl --data` sends by
/// default (the_eye's own examples send exactly that; the body is still read as JSON).
fn json_media_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media_type.is_empty()
        || media_type == "application/json"
        || media_type == "application/x-www-form-urlencoded"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

/// The checks every route shares. Not on API Gateway's `$default` route: an unknown path or
/// method is a 404/405 whatever the request holds.
pub fn check_request(req: &Request) -> Result<(), ApiError> {
    if crate::input::route_key(req) == "$default" {
        return Ok(());
    }
    // A repeated parameter is ambiguous: first-wins would silently drop what the client meant.
    if let Some(query) = req.uri().query() {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in form_urlencoded::parse(query.as_bytes()) {
            if !seen.insert(name.clone()) {
                return Err(ApiError::new(
                    400,
                    "DUPLICATE_QUERY_PARAMETER",
                    format!("query parameter {name} is given more than once"),
                )
                .detail("parameter", name.into_owned()));
            }
        }
    }
    // API Gateway joins repeated headers with commas; no API key holds one.
    if let Some(key) = req.headers().get(crate::authorizer::API_KEY_HEADER) {
        if key.as_bytes().contains(&b',') || req.headers().get_all(crate::authorizer::API_KEY_HEADER).iter().count() > 1
        {
            return Err(ApiError::new(400, "MULTIPLE_API_KEYS", "send exactly one x-api-key header"));
        }
    }
    let has_body = match req.body() {
        lambda_http::Body::Text(text) => !text.trim().is_empty(),
        lambda_http::Body::Binary(bytes) => !bytes.iter().all(u8::is_ascii_whitespace),
        _ => false,
    };
    if has_body {
        let content_type = req.headers().get(lambda_http::http::header::CONTENT_TYPE);
        let declared = content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default();
        if !json_media_type(&declared) {
            return Err(ApiError::new(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                format!("request bodies are JSON; got Content-Type {declared}"),
            )
            .detail("content_type", declared)
            .detail("accepted", "application/json"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(path: &str, query: &str, headers: Value) -> Value {
        json!({
            "version": "2.0", "routeKey": "GET /sessions/{id}", "rawPath": path, "rawQueryString": query,
            "headers": headers,
            "requestContext": {"http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": ""},
                "domainName": "example.com", "stage": "$default", "requestId": "r", "routeKey": "GET /sessions/{id}",
                "accountId": "1", "apiId": "a", "time": "", "timeEpoch": 0},
            "isBase64Encoded": false
        })
    }

    /// Strings a client (or a `${ref}` value) can put in a path, query or header.
    fn hostile_strings() -> Vec<String> {
        let mut strings: Vec<String> = [
            " ",
            "\"",
            "<",
            ">",
            "\n",
            "\r\n",
            "\t",
            "\\",
            "^",
            "`",
            "{",
            "}",
            "|",
            "#",
            "?",
            "%",
            "%zz",
            "%2",
            "%00",
            "\u{0}",
            "\u{7f}",
            "é",
            "💥",
            "[",
            "]",
            "/../..",
            "//",
            "@",
            ":",
            "a b?c=d&e",
            "${x}",
            "\u{202e}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        strings.push("x".repeat(70_000));
        strings.push("%".repeat(3000));
        strings
    }

    #[test]
    fn no_path_query_or_header_value_makes_the_conversion_panic() {
        for s in hostile_strings() {
            let cases = [
                event(&format!("/sessions/{s}"), "", json!({})),
                event(&s, "", json!({})),
                event("/sessions/a", &format!("cursor={s}"), json!({})),
                event("/sessions/a", &s, json!({})),
                event("/sessions/a", "", json!({"host": s})),
                event("/sessions/a", "", json!({"x-forwarded-proto": s})),
                event("/sessions/a", "", json!({"host": s, "x-forwarded-proto": "http"})),
                event("/sessions/a", "", json!({"Host": s, "X-Forwarded-Proto": s})),
            ];
            for case in cases {
                // Either a request or a 4xx: never a panic (this test would abort).
                if let Err(err) = request_from_event(case) {
                    assert!((400..500).contains(&err.status), "{s:?}: {}", err.status);
                }
            }
            let mut bad_domain = event("/sessions/a", "", json!({}));
            bad_domain["requestContext"]["domainName"] = json!(s);
            bad_domain["requestContext"]["stage"] = json!(s);
            let _ = request_from_event(bad_domain);
        }
    }

    /// Random strings from an alphabet of URI-breaking characters, in every place at once.
    #[test]
    fn random_hostile_events_convert_or_answer_4xx() {
        let alphabet: Vec<char> = " \"<>\\^`{}|#?%/.:@[]\n\r\t\u{0}\u{7f}aZ9-_~=&+é💥".chars().collect();
        let mut rng = fastrand::Rng::with_seed(10);
        let mut text = |max: usize| -> String {
            let len = rng.usize(0..max);
            (0..len).map(|_| alphabet[rng.usize(0..alphabet.len())]).collect()
        };
        for _ in 0..5_000 {
            let mut case = event(&text(40), &text(40), json!({"host": text(12), "x-forwarded-proto": text(6)}));
            case["requestContext"]["domainName"] = json!(text(12));
            case["requestContext"]["stage"] = json!(text(6));
            if let Err(err) = request_from_event(case) {
                assert!((400..500).contains(&err.status));
            }
        }
    }

    #[test]
    fn hostile_values_are_encoded_not_lost() {
        let req = request_from_event(event("/sessions/a b\"<", "cursor=x y&limit=1", json!({"host": "a b"}))).unwrap();
        assert_eq!(req.uri().path(), "/sessions/a%20b%22%3C");
        use lambda_http::RequestExt;
        assert_eq!(req.query_string_parameters().first("cursor"), Some("x y"));
        assert_eq!(req.uri().host(), Some("example.com"));
    }

    #[test]
    fn gzip_bodies_are_decoded_and_bombs_and_unknown_encodings_refused() {
        use std::io::Write;
        let gzip = |bytes: &[u8]| {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        };
        let with_body = |encoding: &str, body: &[u8]| {
            let mut e =
                event("/batch/events", "", json!({"content-encoding": encoding, "x-argus-decoded-from": "spoofed"}));
            e["routeKey"] = json!("POST /batch/events");
            e["requestContext"]["routeKey"] = json!("POST /batch/events");
            e["requestContext"]["authorizer"] = json!({"lambda": {"tenant_id": "acme"}});
            e["body"] = json!(STANDARD.encode(body));
            e["isBase64Encoded"] = json!(true);
            e
        };
        let request = request_from_event(with_body("GZIP", &gzip(br#"{"items": []}"#))).unwrap();
        assert_eq!(request.headers().get(DECODED_HEADER).unwrap(), "gzip");
        assert!(request.headers().get("content-encoding").is_none());
        match request.body() {
            lambda_http::Body::Text(text) => assert_eq!(text, r#"{"items": []}"#),
            other => panic!("{other:?}"),
        }
        // Two members concatenated are one body.
        let mut two = gzip(b"[1,");
        two.extend(gzip(b"2]"));
        assert!(
            matches!(request_from_event(with_body("gzip", &two)).unwrap().body(), lambda_http::Body::Text(t) if t == "[1,2]")
        );
        // 64 MiB of zeros in ~64 KB: refused while streaming, at the ratio guard.
        let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
        let err = request_from_event(with_body("gzip", &bomb)).unwrap_err();
        assert_eq!((err.status, err.envelope.error.code.as_str()), (413, "DECOMPRESSION_RATIO_EXCEEDED"));
        assert_eq!(request_from_event(with_body("gzip", b"not gzip")).unwrap_err().status, 400);
        for encoding in ["br", "deflate", "gzip, gzip", "compress"] {
            let err = request_from_event(with_body(encoding, b"{}")).unwrap_err();
            assert_eq!(
                (err.status, err.envelope.error.code.as_str()),
                (415, "UNSUPPORTED_CONTENT_ENCODING"),
                "{encoding}"
            );
        }
        // Without a tenant (the authorizer refused, or no authorizer), nothing is inflated.
        let mut anonymous = with_body("gzip", &bomb);
        anonymous["requestContext"]["authorizer"] = json!({"lambda": {"auth_error": "MISSING_API_KEY"}});
        assert!(matches!(
            request_from_event(anonymous).unwrap().body(),
            lambda_http::Body::Empty | lambda_http::Body::Text(_)
        ));
        // The marker cannot be sent by a client.
        let plain = request_from_event(with_body("identity", b"{}")).unwrap();
        assert!(plain.headers().get(DECODED_HEADER).is_none());
    }

    #[test]
    fn over_long_uris_and_bad_base64_are_4xx() {
        let err = request_from_event(event(&format!("/{}", "a".repeat(MAX_URI_BYTES)), "", json!({}))).unwrap_err();
        assert_eq!((err.status, err.envelope.error.code.as_str()), (414, "URI_TOO_LONG"));
        let mut bad = event("/sessions/a", "", json!({}));
        bad["body"] = json!("not base64 !!");
        bad["isBase64Encoded"] = json!(true);
        assert_eq!(request_from_event(bad).unwrap_err().status, 400);
    }

    #[test]
    fn repeated_parameters_keys_and_foreign_bodies_are_refused() {
        let err = request_from_event(event("/sessions", "limit=5&limit=6", json!({}))).unwrap_err();
        assert_eq!(err.envelope.error.code, "DUPLICATE_QUERY_PARAMETER");
        assert_eq!(err.envelope.error.details["parameter"], "limit");
        let err = request_from_event(event("/sessions", "", json!({"x-api-key": "a,b"}))).unwrap_err();
        assert_eq!(err.envelope.error.code, "MULTIPLE_API_KEYS");

        let with_body = |content_type: Option<&str>| {
            let mut e = event("/sessions", "", json!({}));
            if let Some(ct) = content_type {
                e["headers"]["content-type"] = json!(ct);
            }
            e["body"] = json!("{}");
            request_from_event(e).map(|_| ()).map_err(|e| e.status)
        };
        assert_eq!(with_body(Some("text/xml")), Err(415));
        assert_eq!(with_body(Some("multipart/form-data; boundary=x")), Err(415));
        for accepted in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("application/vnd.argus+json"),
        ] {
            assert_eq!(with_body(accepted), Ok(()), "{accepted:?}");
        }
    }
}
