//! Sessions, authentication, tenant isolation, error envelope and pagination, through the local
//! runner against DynamoDB Local and the SQS endpoint.

use std::collections::HashSet;

use argus_tests::{assert_envelope, Method, TestStack};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_and_both_slash_forms() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;

    let (status, created) = stack.call(Method::POST, "/sessions", Some(&key), None).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    let created_at = created["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z') && chrono_like(created_at), "{created_at}");
    assert!(created.get("metadata").is_none());

    let (status, with_meta) = stack.post("/sessions/", &key, json!({"metadata": {"app": "web", "n": 1}})).await;
    assert_eq!(status, 201);
    assert_eq!(with_meta["metadata"], json!({"app": "web", "n": 1}));

    for path in [format!("/sessions/{id}"), format!("/sessions/{id}/")] {
        let (status, got) = stack.get(&path, &key).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(got, created);
    }
    let (status, got) = stack.get(&format!("/sessions/{}", with_meta["id"].as_str().unwrap()), &key).await;
    assert_eq!((status, &got["metadata"]["app"]), (200, &json!("web")));

    for path in ["/sessions", "/sessions/"] {
        let (status, list) = stack.get(path, &key).await;
        assert_eq!(status, 200);
        assert_eq!(list["items"].as_array().unwrap().len(), 2, "{path}");
        assert_eq!(list["next_cursor"], Value::Null);
        // Newest first.
        assert_eq!(list["items"][0]["id"], with_meta["id"]);
    }
}

fn chrono_like(ts: &str) -> bool {
    // 2026-11-23T05:54:36.176Z
    ts.len() == 24 && &ts[4..5] == "-" && &ts[10..11] == "T"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    let stack = TestStack::start().await;
    let (key_a, key_b) = (stack.key("tenant-a").await, stack.key("tenant-b").await);
    let (_, a_session) = stack.call(Method::POST, "/sessions", Some(&key_a), None).await;
    let (_, b_session) = stack.call(Method::POST, "/sessions", Some(&key_b), None).await;
    let a_id = a_session["id"].as_str().unwrap();

    // B asking for A's session gets exactly what a missing id gets.
    let (status, body) = stack.get(&format!("/sessions/{a_id}"), &key_b).await;
    let details = assert_envelope(status, &body, 404, "NOT_FOUND");
    assert_eq!(details["id"], a_id);
    let missing = uuid::Uuid::now_v7();
    let (status, missing_body) = stack.get(&format!("/sessions/{missing}"), &key_b).await;
    assert_eq!(status, 404);
    assert_eq!(missing_body["error"]["code"], body["error"]["code"]);

    let (_, list_a) = stack.get("/sessions", &key_a).await;
    let ids_a: Vec<&Value> = list_a["items"].as_array().unwrap().iter().map(|s| &s["id"]).collect();
    assert_eq!(ids_a, vec![&a_session["id"]]);
    let (_, list_b) = stack.get("/sessions", &key_b).await;
    let ids_b: Vec<&Value> = list_b["items"].as_array().unwrap().iter().map(|s| &s["id"]).collect();
    assert_eq!(ids_b, vec![&b_session["id"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_and_revoked_keys_get_401() {
    let stack = TestStack::start().await;
    // No credential (or an empty key): the authorizer sees every request (it has no identity
    // source) and the handler answers 401 with the envelope.
    let (status, body) = stack.call(Method::GET, "/sessions", None, None).await;
    assert_envelope(status, &body, 401, "MISSING_API_KEY");
    let (status, body) = stack.call(Method::POST, "/sessions", Some(""), None).await;
    assert_envelope(status, &body, 401, "MISSING_API_KEY");
    for wrong in ["nope", "argus_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &"k".repeat(4000), "' OR 1=1 --"] {
        let (status, body) = stack.get("/sessions", wrong).await;
        assert_envelope(status, &body, 401, "INVALID_API_KEY");
    }

    // Revocation takes effect when the authorizer instance's memory of the key expires
    // (ARGUS_GRANT_CACHE_SECONDS, 15 s; this stack is given 3 s to keep the test short).
    assert_eq!(stack.template.authorizer_ttl_seconds, 0, "API Gateway caches nothing (README)");
    assert!(stack.template.authorizer_identity_headers.is_empty());
    assert_eq!(argus_core::apikeys::DEFAULT_GRANT_CACHE.as_secs(), 15, "the README states this delay");
    let mut backend = stack.backend.clone();
    let remembered_for = std::time::Duration::from_secs(3);
    backend.grants = std::sync::Arc::new(argus_core::apikeys::GrantCache::new(remembered_for));
    let api = TestStack::serve(backend, stack.provisioned.clone(), stack.template.clone()).await;
    let key = stack.key("acme").await;
    let asked = std::time::Instant::now();
    assert_eq!(api.get("/sessions", &key).await.0, 200);
    let key_id = argus_core::apikeys::key_id_of(&key);
    argus_core::apikeys::revoke_key(&stack.backend, "acme", &key_id).await.unwrap();
    let (status, _) = api.get("/sessions", &key).await;
    // Remembered from the first call's read, which came after `asked`: checked while that is
    // surely within the TTL (a loaded emulator can make the revocation itself take longer).
    if asked.elapsed() < remembered_for {
        assert_eq!(status, 200, "still remembered: revocation waits for the TTL");
    }
    tokio::time::sleep(remembered_for + std::time::Duration::from_millis(100)).await;
    let (status, body) = api.get("/sessions", &key).await;
    assert_envelope(status, &body, 401, "INVALID_API_KEY");

    // An unknown key is never remembered: the same key created a moment later works at once.
    let chosen = "argus_chosen_key_for_the_lockout_test_000000";
    let (status, body) = stack.get("/sessions", chosen).await;
    assert_envelope(status, &body, 401, "INVALID_API_KEY");
    argus_local::seed_tenant(&stack.backend, "acme", Some(chosen.into())).await.unwrap();
    let (status, body) = stack.get("/sessions", chosen).await;
    assert_eq!(status, 200, "the new key works at once: {body}");

    // Health needs no key.
    assert_eq!(stack.call(Method::GET, "/health", None, None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_class_uses_the_envelope() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let send = |method: Method, path: &'static str, body: Option<String>| {
        let stack = &stack;
        let key = key.clone();
        async move { stack.call(method, path, Some(&key), body).await }
    };

    let (s, b) = send(Method::POST, "/sessions", Some("{\"metadata\": ".into())).await;
    let d = assert_envelope(s, &b, 400, "MALFORMED_JSON");
    assert!(d["line"].is_number());
    let (s, b) = send(Method::POST, "/sessions", Some("[1,2]".into())).await;
    assert_eq!(assert_envelope(s, &b, 400, "VALIDATION_FAILED")["field"], "body");
    let (s, b) = send(Method::POST, "/sessions", Some(r#"{"metadata": "text"}"#.into())).await;
    let d = assert_envelope(s, &b, 400, "VALIDATION_FAILED");
    assert_eq!(d["field"], "metadata");
    assert_eq!(d["fields"][0]["code"], "INVALID_TYPE");
    let (s, b) = send(Method::POST, "/sessions", Some(r#"{"metadata": {}, "evil": "<script>"}"#.into())).await;
    assert_eq!(assert_envelope(s, &b, 400, "VALIDATION_FAILED")["field"], "evil");
    let (s, b) = send(Method::POST, "/sessions", Some("\u{0}\u{1}\u{fffd}".into())).await;
    assert_envelope(s, &b, 400, "MALFORMED_JSON");

    let big = json!({"metadata": {"blob": "x".repeat(70 * 1024)}}).to_string();
    let (s, b) = send(Method::POST, "/sessions", Some(big)).await;
    let d = assert_envelope(s, &b, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(d["max_bytes"], 64 * 1024);
    // Past Lambda's 6 MB invoke limit the function never runs: API Gateway answers itself,
    // without our envelope (docs/limits.md). Past HTTP API's 10 MB, API Gateway refuses it.
    let huge = "x".repeat(7 * 1024 * 1024);
    let (s, b) = send(Method::POST, "/sessions", Some(huge)).await;
    assert_eq!((s, b), (500, json!({"message": "Internal Server Error"})));
    let huger = "x".repeat(11 * 1024 * 1024);
    let (s, b) = send(Method::POST, "/sessions", Some(huger)).await;
    assert_eq!((s, b), (413, json!({"message": "Request Entity Too Large"})));

    let (s, b) = send(Method::GET, "/nowhere", None).await;
    assert_envelope(s, &b, 404, "ROUTE_NOT_FOUND");
    let (s, b) = send(Method::GET, "/sessions/a/b/c", None).await;
    assert_envelope(s, &b, 404, "ROUTE_NOT_FOUND");
    let (s, b) = send(Method::DELETE, "/sessions", None).await;
    let d = assert_envelope(s, &b, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(d["allowed"], json!(["POST", "GET"]));
    let (s, b) = send(Method::PUT, "/sessions/", None).await;
    assert_envelope(s, &b, 405, "METHOD_NOT_ALLOWED");
    let (s, b) = send(Method::POST, "/health", None).await;
    assert_envelope(s, &b, 405, "METHOD_NOT_ALLOWED");

    for path in ["/sessions/not-a-uuid", "/sessions/..%2F..%2Fetc", "/sessions/%F0%9F%98%80", "/sessions/%00"] {
        let (s, b) = stack.get(path, &key).await;
        assert_envelope(s, &b, 404, "NOT_FOUND");
    }
    let (s, b) = stack.get(&format!("/sessions/{}", "a".repeat(5000)), &key).await;
    assert_envelope(s, &b, 404, "NOT_FOUND");

    for limit in ["0", "1001", "abc", "-5"] {
        let (s, b) = stack.get(&format!("/sessions?limit={limit}"), &key).await;
        assert_eq!(assert_envelope(s, &b, 400, "INVALID_LIMIT")["field"], "limit");
    }
    for cursor in ["garbage", "eyJ4IjoxfQ", "%22%27"] {
        let (s, b) = stack.get(&format!("/sessions?cursor={cursor}"), &key).await;
        assert_envelope(s, &b, 400, "INVALID_CURSOR");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_walks_every_page_without_gaps_or_duplicates() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let other = stack.key("noise").await;
    let mut created = Vec::new();
    for i in 0..53 {
        let (status, body) = stack.call(Method::POST, "/sessions", Some(&key), None).await;
        assert_eq!(status, 201);
        created.push(body["id"].as_str().unwrap().to_string());
        if i % 5 == 0 {
            stack.call(Method::POST, "/sessions", Some(&other), None).await;
        }
    }
    for page_size in [1usize, 7, 53, 100] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/sessions?limit={page_size}&cursor={c}"),
                None => format!("/sessions?limit={page_size}"),
            };
            let (status, page) = stack.get(&path, &key).await;
            assert_eq!(status, 200, "{page}");
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= page_size);
            seen.extend(items.iter().map(|s| s["id"].as_str().unwrap().to_string()));
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(items.len(), page_size, "a page before the last is full");
                    cursor = Some(next.to_string());
                }
                None => break,
            }
            assert!(pages <= 60, "pagination does not terminate");
        }
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "duplicates with page size {page_size}");
        let mut newest_first = created.clone();
        newest_first.reverse();
        assert_eq!(seen, newest_first, "page size {page_size}");
        assert_eq!(pages, 53usize.div_ceil(page_size));
    }
}

/// `GET /health` until its components read `expected`. A check that answers after 3 s counts
/// as unhealthy, and DynamoDB Local, which serves one request at a time, can take that long
/// while another test's 1 MB pages are queued: a healthy component is given a few tries.
async fn health_until(stack: &TestStack, expected: Value) -> (u16, Value) {
    argus_tests::eventually(30, &format!("health {expected}"), || async {
        let (status, body) = stack.call(Method::GET, "/health", None, None).await;
        (body["components"] == expected).then_some((status, body))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_each_failing_component() {
    let stack = TestStack::start().await;
    let (status, body) = health_until(&stack, json!({"dynamodb": "healthy", "queue": "healthy"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy");
    let (status, _) = stack.call(Method::GET, "/health/", None, None).await;
    assert_eq!(status, 200);

    // DynamoDB down: a port where nothing listens.
    let dead = closed_port_url().await;
    let mut broken = stack.backend.clone();
    broken.dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&argus_core::aws::local_sdk_config()).endpoint_url(&dead).build(),
    );
    let down = TestStack::serve(broken, stack.provisioned.clone(), stack.template.clone()).await;
    let (status, body) = down.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["components"], json!({"dynamodb": "unhealthy", "queue": "healthy"}));

    // The queue gone.
    let mut no_queue = stack.backend.clone();
    no_queue.queue_url = format!("{}-missing", stack.backend.queue_url);
    let down = TestStack::serve(no_queue, stack.provisioned.clone(), stack.template.clone()).await;
    let (status, body) = health_until(&down, json!({"dynamodb": "healthy", "queue": "unhealthy"})).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "degraded");
}

async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorizer_failure_is_api_gateways_500_not_an_allow() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let mut broken = stack.backend.clone();
    broken.dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&argus_core::aws::local_sdk_config())
            .endpoint_url(closed_port_url().await)
            .build(),
    );
    let down = TestStack::serve(broken, stack.provisioned.clone(), stack.template.clone()).await;
    let (status, body) = down.get("/sessions", &key).await;
    // The authorizer Lambda fails: API Gateway answers itself (docs/limits.md), never an allow.
    assert_eq!((status, body), (500, json!({"message": "Internal Server Error"})));
}
