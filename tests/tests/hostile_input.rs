//! Hostile input through the whole stack: every route with hostile paths, queries and headers
//! (sent raw, as a client can, not as a polite HTTP library would encode them), `POST /batch`
//! sub-requests that are not valid URIs, and the request-level rules (one API key, JSON bodies,
//! one value per query parameter, the gateway's size limits). Never a 5xx, always the envelope.

use std::io::{Read, Write};

use argus_api::routes::ROUTES;
use argus_tests::{assert_envelope, Method, TestStack};
use serde_json::{json, Value};

/// Sends `request` as raw bytes and returns the status and the body (JSON, or `Null`). An answer
/// that says "overloaded" with a 5xx (`argus_tests::overloaded`: a 503, such as health's
/// `degraded`, or API Gateway's bare 500 for a timeout) is sent again (up to 3 times, 1, 2 and 4 s apart), as
/// a client would. DynamoDB Local, held up by another test's 1 MB pages, gives
/// those where AWS would not; one the input causes stays. Argus's own 500 (`INTERNAL_ERROR`,
/// always a bug) is never sent again. Every resend is printed.
fn raw(base_url: &str, request: &[u8]) -> (u16, Value) {
    let mut answer = raw_once(base_url, request);
    for pause in [1, 2, 4] {
        // A 429 is a 4xx here like any other: only a 5xx is sent again.
        if answer.0 < 500 || !argus_tests::overloaded(answer.0, &answer.1) {
            break;
        }
        eprintln!("resent after {} {}", answer.0, answer.1);
        std::thread::sleep(std::time::Duration::from_secs(pause));
        answer = raw_once(base_url, request);
    }
    answer
}

fn raw_once(base_url: &str, request: &[u8]) -> (u16, Value) {
    let addr = base_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    stream.write_all(request).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        out.push_str("host: 127.0.0.1\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// Never a 5xx; an error from Argus carries the envelope. (A target the HTTP parser itself
/// cannot read gets the parser's bare 400, as API Gateway's front door would answer: that one
/// never reached Argus.) Returns whether Argus answered.
fn assert_answered(what: &str, status: u16, body: &Value) -> bool {
    assert!(status < 500, "{what}: {status} {body}");
    if status >= 400 && !body.is_null() {
        assert!(body["error"]["code"].is_string(), "{what}: {status} without the envelope: {body}");
    }
    !body.is_null()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_hostile_paths_queries_and_headers_with_a_4xx() {
    let stack = TestStack::start().await;
    let key = stack.key("hostile").await;
    let base = stack.base_url.clone();
    // What an HTTP parser lets through to the router: bytes in the target that are not valid
    // in a URI, stray escapes, hostile Host / X-Forwarded-Proto values.
    let segments = ["a\"b", "<x>", "%zz", "%", "%00", "a{b}", "a|b", "a^b", "a`b", "é", "..", "%2F..%2F", "${x}"];
    let queries = ["cursor=a\"b", "limit=<1>", "cursor=%zz", "limit=5&limit=6", "x={}|^`", "cursor=%E9%", "a=%00"];
    let hosts = ["a b", "x/y", "\"", "[", "h:99999", "é", "-"];
    let protos = ["ftp", "a b", "https://x", "", "\u{7f}"];
    let keys = [key.as_str()];
    let mut reached = 0;
    for (method, pattern, _, _) in ROUTES {
        let body = if matches!(*method, "POST" | "PUT" | "PATCH") { "{}" } else { "" };
        let mut targets: Vec<String> = Vec::new();
        for segment in segments {
            targets.push(pattern.replace("{id}", segment));
        }
        for query in queries {
            targets.push(format!("{}?{query}", pattern.replace("{id}", "00000000-0000-0000-0000-000000000000")));
        }
        let plain = pattern.replace("{id}", "00000000-0000-0000-0000-000000000000");
        for target in &targets {
            let (status, answer) = raw(&base, &request(method, target, &[("x-api-key", keys[0])], body));
            reached += usize::from(assert_answered(&format!("{method} {target}"), status, &answer));
        }
        for host in hosts {
            let (status, answer) =
                raw(&base, &request(method, &plain, &[("x-api-key", keys[0]), ("host", host)], body));
            reached += usize::from(assert_answered(&format!("{method} {plain} host {host:?}"), status, &answer));
        }
        for proto in protos {
            let headers = [("x-api-key", keys[0]), ("x-forwarded-proto", proto)];
            let (status, answer) = raw(&base, &request(method, &plain, &headers, body));
            reached += usize::from(assert_answered(&format!("{method} {plain} proto {proto:?}"), status, &answer));
        }
    }
    assert!(reached > 300, "only {reached} hostile requests reached Argus");
    // The runner (and every function) is still there.
    assert_eq!(stack.call(Method::GET, "/health", None, None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_limits_answer_414_and_431_with_the_envelope() {
    let stack = TestStack::start().await;
    let key = stack.key("hostile").await;
    // (Past 65,534 bytes no URI parses at all: the HTTP parser answers a bare 414 itself, as
    // API Gateway's front door does. Below that, Argus answers.)
    let long_path = format!("/sessions/{}", "a".repeat(65_000));
    let (status, body) = raw(&stack.base_url, &request("GET", &long_path, &[("x-api-key", &key)], ""));
    assert_envelope(status, &body, 414, "URI_TOO_LONG");
    let long_query = format!("/events?cursor={}", "a".repeat(9_000));
    let (status, body) = raw(&stack.base_url, &request("GET", &long_query, &[("x-api-key", &key)], ""));
    assert_envelope(status, &body, 414, "URI_TOO_LONG");
    let big = "b".repeat(6_000);
    let headers = [("x-api-key", key.as_str()), ("x-one", big.as_str()), ("x-two", big.as_str())];
    let (status, body) = raw(&stack.base_url, &request("GET", "/sessions", &headers, ""));
    assert_envelope(status, &body, 431, "HEADERS_TOO_LARGE");
    let many: Vec<(String, String)> = (0..400).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let mut headers: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    headers.push(("x-api-key", &key));
    let (status, body) = raw(&stack.base_url, &request("GET", "/sessions", &headers, ""));
    assert!(status == 200 || body["error"]["code"] == "HEADERS_TOO_LARGE", "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_level_rules_one_key_json_bodies_one_value_per_parameter() {
    let stack = TestStack::start().await;
    let key = stack.key("hostile").await;
    let other = stack.key("hostile-other").await;

    // Two x-api-key headers: refused, whichever order and whether or not both are valid.
    for pair in [[key.as_str(), other.as_str()], [key.as_str(), "nope"], ["nope", key.as_str()]] {
        let headers = [("x-api-key", pair[0]), ("x-api-key", pair[1])];
        let (status, body) = raw(&stack.base_url, &request("GET", "/sessions", &headers, ""));
        assert_envelope(status, &body, 400, "MULTIPLE_API_KEYS");
    }

    // Bodies: JSON, none declared, or the form type curl --data sends; anything else 415.
    for content_type in ["text/xml", "text/plain", "multipart/form-data; boundary=x", "application/xml"] {
        let headers = [("x-api-key", key.as_str()), ("content-type", content_type)];
        let (status, body) = raw(&stack.base_url, &request("POST", "/sessions", &headers, "{}"));
        let details = assert_envelope(status, &body, 415, "UNSUPPORTED_MEDIA_TYPE");
        assert_eq!(details["content_type"], content_type);
    }
    for content_type in [None, Some("application/json; charset=utf-8"), Some("application/x-www-form-urlencoded")] {
        let mut headers = vec![("x-api-key", key.as_str())];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        let (status, body) = raw(&stack.base_url, &request("POST", "/sessions", &headers, r#"{"metadata":{"a":1}}"#));
        assert_eq!(status, 201, "{content_type:?}: {body}");
    }

    // A repeated query parameter is ambiguous: 400, on every listing.
    for path in ["/sessions?limit=5&limit=6", "/events?cursor=a&cursor=b", "/errors?limit=1&limit=1"] {
        let (status, body) = stack.get(path, &key).await;
        let details = assert_envelope(status, &body, 400, "DUPLICATE_QUERY_PARAMETER");
        assert!(details["parameter"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sub_requests_that_are_not_valid_uris_answer_and_references_cannot_inject() {
    let stack = TestStack::start().await;
    let key = stack.key("hostile").await;
    let batch = |body: Value| {
        let stack = &stack;
        let key = key.clone();
        async move { stack.call(Method::POST, "/batch", Some(&key), Some(body.to_string())).await }
    };
    let (status, body) = batch(json!({"requests": [
        {"id": "space", "method": "GET", "path": "/sessions/a b"},
        {"id": "quote", "method": "GET", "path": "/sessions/\"<>"},
        {"id": "newline", "method": "GET", "path": "/sessions/x\ny"},
        {"id": "query", "method": "GET", "path": "/events?cursor=a b\"<>\n"},
        {"id": "escape", "method": "GET", "path": "/sessions/%zz%"},
        {"id": "dup", "method": "GET", "path": "/sessions?limit=1&limit=2"},
        {"id": "ok", "method": "GET", "path": "/sessions?limit=1"}
    ]}))
    .await;
    assert_eq!(status, 200, "{body}");
    let responses = body["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 7, "every sub-request answered: {body}");
    for response in &responses[..6] {
        let status = response["status"].as_u64().unwrap();
        assert!((400..500).contains(&status), "{response}");
        assert!(response["body"]["error"]["code"].is_string(), "{response}");
    }
    assert_eq!(responses[0]["body"]["error"]["code"], "NOT_FOUND", "the id is 'a b', looked up as such");
    assert_eq!(responses[5]["body"]["error"]["code"], "DUPLICATE_QUERY_PARAMETER");
    assert_eq!(responses[6]["status"], 200);

    // Values spliced from earlier answers are one segment / one parameter value, whatever
    // they hold: they cannot walk to another route or add a parameter.
    let (status, body) = batch(json!({"requests": [
        {"id": "a", "method": "POST", "path": "/sessions",
         "body": {"metadata": {"walk": "x/../../events", "param": "5&cursor=zzz", "space": "a b\n\"<"}}},
        {"id": "walk", "method": "GET", "path": "/sessions/${a.body.metadata.walk}", "depends_on": ["a"]},
        {"id": "param", "method": "GET", "path": "/sessions?limit=${a.body.metadata.param}", "depends_on": ["a"]},
        {"id": "space", "method": "GET", "path": "/sessions/${a.body.metadata.space}?limit=${a.body.metadata.space}", "depends_on": ["a"]}
    ]}))
    .await;
    assert_eq!(status, 200, "{body}");
    let responses = body["responses"].as_array().unwrap();
    assert_eq!(responses[0]["status"], 201, "{body}");
    assert_envelope(responses[1]["status"].as_u64().unwrap() as u16, &responses[1]["body"], 404, "NOT_FOUND");
    assert_envelope(responses[2]["status"].as_u64().unwrap() as u16, &responses[2]["body"], 400, "INVALID_LIMIT");
    assert!(responses[3]["status"].as_u64().unwrap() < 500, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_cannot_read_more_than_its_budget() {
    let stack = TestStack::start().await;
    let key = stack.key("hostile").await;
    let listings = |n: usize| json!({"requests": (0..n).map(|i| json!({"id": format!("l{i}"), "method": "GET", "path": "/events?limit=1000"})).collect::<Vec<_>>()});
    let (status, body) = stack.call(Method::POST, "/batch", Some(&key), Some(listings(6).to_string())).await;
    let details = assert_envelope(status, &body, 413, "BATCH_TOO_COSTLY");
    assert_eq!(details["read_items"], 6000);
    assert_eq!(details["max_read_items"], argus_api::multi::MAX_BATCH_READ_ITEMS);
    // A reference counts as the largest page: it may resolve to anything.
    let mut with_reference = listings(4);
    with_reference["requests"].as_array_mut().unwrap().extend([
        json!({"id": "s", "method": "POST", "path": "/sessions"}),
        json!({"id": "r", "method": "GET", "path": "/errors?limit=${s.body.id}", "depends_on": ["s"]}),
        json!({"id": "one", "method": "GET", "path": "/sessions/${s.body.id}", "depends_on": ["s"]}),
    ]);
    let (status, body) = stack.call(Method::POST, "/batch", Some(&key), Some(with_reference.to_string())).await;
    assert_envelope(status, &body, 413, "BATCH_TOO_COSTLY");
    // Within the budget: every sub-request runs (at most 8 at a time) and answers.
    let mut within = listings(4);
    within["requests"].as_array_mut().unwrap().extend((0..90).map(
        |i| json!({"id": format!("g{i}"), "method": "GET", "path": "/sessions/00000000-0000-0000-0000-000000000000"}),
    ));
    let (status, body) = stack.call(Method::POST, "/batch", Some(&key), Some(within.to_string())).await;
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<u64> =
        body["responses"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 4);
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 90);
}

/// A job's items are checked when their chunk runs, but must be readable then: an item nested
/// past the depth limit refuses the job up front, naming the item and field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_an_item_past_the_depth_limit_is_refused_before_it_is_queued() {
    let stack = TestStack::start().await;
    let key = stack.key("hostile").await;
    let mut deep = json!(1);
    for _ in 0..=argus_models::validation::MAX_JSON_DEPTH {
        deep = json!([deep]);
    }
    let body = json!({"operation": "create_events", "items": [{"name": "fine"}, {"name": "deep", "data": deep}]});
    let (status, answer) = stack.post("/batch/jobs", &key, body).await;
    let details = assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
    assert_eq!(details["field"], "items.1.data");
    assert_eq!(details["fields"][0]["code"], "TOO_DEEP");
}

/// What the OpenAPI fuzzing found (issue 10): each answer as the contract says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_fuzzer_found_inconsistent() {
    let stack = TestStack::start().await;
    let key = stack.key("hostile").await;
    let field_error = |status: u16, body: &Value, code: &str, field: &str, field_code: &str| {
        let details = assert_envelope(status, body, 400, code);
        assert_eq!(details["field"], field, "{body}");
        assert_eq!(details["fields"][0]["code"], field_code, "{body}");
    };

    // An unknown `return` is refused before any work, on every bulk route.
    for (method, path) in [
        (Method::POST, "/batch/events"),
        (Method::PATCH, "/batch/events"),
        (Method::DELETE, "/batch/events"),
        (Method::POST, "/batch/events/restore"),
    ] {
        let (status, body) = stack.call(method, &format!("{path}?return=AAA"), Some(&key), Some("[null]".into())).await;
        field_error(status, &body, "VALIDATION_FAILED", "return", "INVALID_PARAMETER");
    }
    let (status, _) = stack.call(Method::DELETE, "/batch/events?return=all", Some(&key), Some("[null]".into())).await;
    assert_eq!(status, 200);

    // Sub-request ids are measured in characters, like every other length.
    let id: String = "é".repeat(40);
    let (status, body) =
        stack.post("/batch", &key, json!({"requests": [{"id": id, "method": "GET", "path": "/sessions"}]})).await;
    assert_eq!(status, 200, "{body}");

    // Timestamps have one strict shape: no two-digit years, single digits or signs.
    let session = stack.session(&key).await;
    for timestamp in ["21-06-15 00:00:00", "2021-6-15 0:0:0", "+2021-06-15T00:00:00", "2021-06-15  00:00:00"] {
        let event =
            json!({"session_id": session, "category": "c", "name": "n", "data": {"a": 1}, "timestamp": timestamp});
        let (status, body) = stack.post("/events", &key, event).await;
        field_error(status, &body, "VALIDATION_FAILED", "timestamp", "INVALID_TIMESTAMP");
    }

    // One UUID in two spellings is one id.
    let id = "0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b";
    let (status, body) =
        stack.call(Method::DELETE, "/batch/events", Some(&key), Some(json!([id, id.to_uppercase()]).to_string())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][1]["error"]["details"]["fields"][0]["code"], "DUPLICATE_ID", "{body}");

    // Validation answers carry `field` and `fields`, and empty lists answer alike everywhere.
    let (status, body) = stack.post("/batch", &key, json!({"requests": []})).await;
    field_error(status, &body, "VALIDATION_FAILED", "requests", "EMPTY_BATCH");
    let (status, body) = stack.post("/batch/jobs", &key, json!({"operation": "create_events", "items": []})).await;
    field_error(status, &body, "VALIDATION_FAILED", "items", "EMPTY_BATCH");
    assert_eq!(body["error"]["message"], "items: send at least one item");
    let (status, body) = stack.post("/batch/events", &key, json!({"items": []})).await;
    field_error(status, &body, "VALIDATION_FAILED", "items", "EMPTY_BATCH");
    let (status, body) = stack.get(&format!("/batch/jobs/{id}/results?status=x"), &key).await;
    field_error(status, &body, "INVALID_FILTER", "status", "INVALID_FILTER");

    // An unknown path or method is a 404/405 whatever the body's type.
    let headers = [("x-api-key", key.as_str()), ("content-type", "text/plain")];
    let (status, body) = raw(&stack.base_url, &request("DELETE", "/sessions", &headers, "x"));
    assert_envelope(status, &body, 405, "METHOD_NOT_ALLOWED");
    let headers = [("x-api-key", key.as_str()), ("content-type", "application/xml")];
    let (status, body) = raw(&stack.base_url, &request("POST", "/nope", &headers, "<a/>"));
    assert_envelope(status, &body, 404, "ROUTE_NOT_FOUND");

    // Two Idempotency-Key headers arrive joined by a comma: refused, like two API keys.
    let headers = [("x-api-key", key.as_str()), ("idempotency-key", "a"), ("idempotency-key", "b")];
    let (status, body) = raw(&stack.base_url, &request("POST", "/sessions", &headers, ""));
    assert_envelope(status, &body, 400, "INVALID_IDEMPOTENCY_KEY");
}

/// One batch holds at most `MAX_CONCURRENT_SUB_REQUESTS` sub-requests in flight: counted at a
/// slow DynamoDB (each read held 100 ms), not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_at_most_eight_sub_requests_at_once() {
    use argus_tests::fault_proxy::{FaultProxy, Faults};
    let stack = TestStack::start().await;
    let key = stack.key("hostile").await;
    let proxy = FaultProxy::start(
        &std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").expect("ARGUS_TEST_DYNAMODB_ENDPOINT"),
        Faults { latency: std::time::Duration::from_millis(100), ..Faults::default() },
    )
    .await;
    let mut backend = stack.backend.clone();
    backend.dynamodb = proxy.dynamodb_client();
    let slow = TestStack::serve(backend, stack.provisioned.clone(), stack.template.clone()).await;
    let requests: Vec<Value> = (0..40)
        .map(|i| json!({"id": format!("g{i}"), "method": "GET", "path": format!("/sessions/0190f0a2-5f5e-7c3a-9a1b-{i:012}")}))
        .collect();
    let (status, body) = slow.post("/batch", &key, json!({ "requests": requests })).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["responses"].as_array().unwrap().iter().all(|r| r["status"] == 404), "{body}");
    let most = proxy.stats().max_in_flight;
    let bound = argus_api::multi::MAX_CONCURRENT_SUB_REQUESTS as u64;
    assert!(most <= bound, "{most} DynamoDB calls at once from one batch (bound {bound})");
    assert!(most >= 2, "sub-requests run concurrently: {most}");
}
