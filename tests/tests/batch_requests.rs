//! `POST /batch`: several API calls in one request.

use argus_tests::{assert_envelope, Method, TestStack};
use serde_json::{json, Value};

async fn batch(stack: &TestStack, key: &str, body: Value) -> (u16, Value) {
    stack.call(Method::POST, "/batch", Some(key), Some(body.to_string())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_and_an_event_referencing_it_in_one_call() {
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("acme").await;
    let (status, body) = batch(&stack, &key, json!({"requests": [
        {"id": "a", "method": "POST", "path": "/sessions", "body": {"metadata": {"via": "batch"}}},
        {"id": "b", "method": "POST", "path": "/events", "depends_on": ["a"],
         "body": {"session_id": "${a.body.id}", "category": "page", "name": "view", "data": {"p": "/"}, "timestamp": "2021-06-15 00:00:00"}},
        {"id": "c", "method": "GET", "path": "/sessions/${a.body.id}", "depends_on": ["a"]},
        {"id": "d", "method": "GET", "path": "/sessions?limit=5"}
    ]})).await;
    assert_eq!(status, 200, "{body}");
    let responses = body["responses"].as_array().unwrap();
    let ids: Vec<&str> = responses.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"], "request order");
    assert_eq!(responses[0]["status"], 201);
    let session = responses[0]["body"]["id"].as_str().unwrap();
    assert_eq!(responses[1]["status"], 202);
    assert_eq!(responses[1]["body"]["status"], "accepted");
    assert_eq!(responses[2]["status"], 200);
    assert_eq!(responses[2]["body"], responses[0]["body"], "exactly what the route answers on its own");
    assert_eq!(stack.get(&format!("/sessions/{session}"), &key).await.1, responses[0]["body"]);
    let event_id = responses[1]["body"]["id"].as_str().unwrap();
    argus_tests::eventually(10, "the event", || async {
        let (status, event) = stack.get(&format!("/events/{event_id}"), &key).await;
        (status == 200 && event["session_id"] == session).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dependency_is_424_and_independent_requests_still_run() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let (status, body) = batch(
        &stack,
        &key,
        json!({"requests": [
            {"id": "bad", "method": "POST", "path": "/sessions", "body": {"metadata": "not an object"}},
            {"id": "child", "method": "GET", "path": "/sessions/${bad.body.id}", "depends_on": ["bad"]},
            {"id": "grandchild", "method": "GET", "path": "/sessions", "depends_on": ["child"]},
            {"id": "free", "method": "POST", "path": "/sessions"},
            {"id": "missing", "method": "GET", "path": "/sessions/00000000-0000-7000-8000-000000000000"}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<u64> =
        body["responses"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [400, 424, 424, 201, 404]);
    assert_eq!(body["responses"][1]["body"]["error"]["code"], "FAILED_DEPENDENCY");
    assert_eq!(body["responses"][1]["body"]["error"]["details"]["dependency"], "bad");
    assert_eq!(body["responses"][0]["body"]["error"]["code"], "VALIDATION_FAILED");
    let (_, list) = stack.get("/sessions", &key).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "only the independent create ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_batches_are_rejected_whole() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let cases = [
        (
            json!({"requests": [{"id": "a", "method": "GET", "path": "/sessions", "depends_on": ["nope"]}]}),
            "depends_on",
            0,
        ),
        (
            json!({"requests": [
            {"id": "a", "method": "GET", "path": "/sessions"},
            {"id": "b", "method": "GET", "path": "/sessions", "depends_on": ["c"]},
            {"id": "c", "method": "GET", "path": "/sessions", "depends_on": ["b"]}]}),
            "depends_on",
            1,
        ),
        (
            json!({"requests": [{"id": "a", "method": "POST", "path": "/sessions"}, {"id": "a", "method": "POST", "path": "/sessions"}]}),
            "id",
            1,
        ),
        (
            json!({"requests": [{"id": "a", "method": "POST", "path": "/sessions"}, {"id": "b", "method": "GET", "path": "/sessions/${a.body.id}"}]}),
            "body",
            1,
        ),
        (json!({"requests": [{"id": "a", "method": "POST", "path": "/batch", "body": {}}]}), "path", 0),
        (json!({"requests": [{"id": "a", "method": "GET", "path": "/nowhere"}]}), "path", 0),
        (json!({"requests": [{"id": "a", "method": "DELETE", "path": "/sessions"}]}), "method", 0),
    ];
    for (body, field, index) in cases {
        let (status, answer) = batch(&stack, &key, body).await;
        let details = assert_envelope(status, &answer, 400, "INVALID_BATCH");
        assert_eq!((details["field"].as_str(), details["index"].as_u64()), (Some(field), Some(index)), "{answer}");
    }
    let (_, list) = stack.get("/sessions", &key).await;
    assert_eq!(list["items"], json!([]), "nothing ran");
    let too_many: Vec<Value> =
        (0..101).map(|i| json!({"id": format!("r{i}"), "method": "GET", "path": "/sessions"})).collect();
    let (status, answer) = batch(&stack, &key, json!({"requests": too_many})).await;
    assert_eq!(assert_envelope(status, &answer, 413, "BATCH_TOO_LARGE")["max_items"], 100);
    let (status, answer) = batch(&stack, &key, json!({"nope": 1})).await;
    assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
    // Sub-requests run as the caller's tenant only.
    let other = stack.key("other").await;
    let (_, mine) =
        batch(&stack, &key, json!({"requests": [{"id": "a", "method": "POST", "path": "/sessions"}]})).await;
    let id = mine["responses"][0]["body"]["id"].as_str().unwrap();
    let (_, theirs) =
        batch(&stack, &other, json!({"requests": [{"id": "x", "method": "GET", "path": format!("/sessions/{id}")}]}))
            .await;
    assert_eq!(theirs["responses"][0]["status"], 404);
}

/// `POST /batch` runs every route's handler inside the batch function, so that function needs
/// the read grants of all of them (the IAM contract checks each one is exercised).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_requests_read_every_listing_of_the_routes() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let items: Vec<Value> = ["page", "click", "page"]
        .iter()
        .enumerate()
        .map(|(i, category)| json!({"session_id": session, "category": category, "name": format!("n{i}"), "data": {"i": i}, "timestamp": "2021-06-15T00:00:00Z"}))
        .collect();
    let (status, created) = stack.post("/batch/events", &key, json!(items)).await;
    assert_eq!(status, 200, "{created}");
    let (status, body) = batch(
        &stack,
        &key,
        json!({"requests": [
            {"id": "by-category", "method": "GET", "path": "/events?category=page"},
            {"id": "all", "method": "GET", "path": "/events"},
            {"id": "by-session", "method": "GET", "path": format!("/events?session={session}")},
            {"id": "errors-of-session", "method": "GET", "path": format!("/errors?session={session}")},
            {"id": "errors", "method": "GET", "path": "/errors"}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let responses = body["responses"].as_array().unwrap();
    let counts: Vec<usize> = responses.iter().map(|r| r["body"]["items"].as_array().map_or(99, Vec::len)).collect();
    assert_eq!(counts, [2, 3, 3, 0, 0], "{body}");
    assert!(responses.iter().all(|r| r["status"] == 200), "{body}");
}

/// DataStream's read routes run inside a batch too, with the batch function's own grants
/// (the local runner enforces its policy: a missing index grant would be a 503 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_queries_run_as_sub_requests() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let now = chrono::Utc::now();
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"event_type": "view", "timestamp": argus_models::time::format(&(now - chrono::Duration::seconds(i))), "data": {"i": i}}))
        .collect();
    let (status, report) = stack.post("/ingest/batch", &key, json!({"stream_id": "web", "events": events})).await;
    assert!(status == 200 || status == 201, "{report}");
    let window = format!(
        "stream_id=web&start_time={}&end_time={}",
        argus_models::time::format(&(now - chrono::Duration::hours(1))),
        argus_models::time::format(&(now + chrono::Duration::minutes(1)))
    );
    let (status, body) = batch(
        &stack,
        &key,
        json!({"requests": [
            {"id": "query", "method": "GET", "path": format!("/query/events?{}&limit=3", window.replace(':', "%3A"))},
            {"id": "status", "method": "GET", "path": "/streams/web/status"},
            {"id": "stream", "method": "GET", "path": "/streams/web"}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let responses = body["responses"].as_array().unwrap();
    assert!(responses.iter().all(|r| r["status"] == 200), "{body}");
    assert_eq!(responses[0]["body"]["events"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(responses[0]["body"]["has_more"], true);
    assert_eq!(responses[2]["body"]["write_shards"], 8);
}
