//! `Idempotency-Key`: replay, reuse, in-flight, expiry, limits, concurrency.

use argus_tests::{assert_envelope, Method, TestStack};
use serde_json::{json, Value};

const KEY_HEADER: &str = "idempotency-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_returns_the_stored_answer_and_runs_nothing_twice() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let body = Some(json!({"metadata": {"a": 1}}).to_string());
    let (status, headers, first) =
        stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, "create-1")], body.clone()).await;
    assert_eq!(status, 201);
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, again) =
        stack.call_with_headers(Method::POST, "/sessions/", &key, &[(KEY_HEADER, "create-1")], body.clone()).await;
    assert_eq!(status, 201);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, first, "the same body, the same id");
    let (_, list) = stack.get("/sessions", &key).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "executed once");

    // Another tenant's identical key is another key.
    let other = stack.key("other").await;
    let (status, headers, theirs) =
        stack.call_with_headers(Method::POST, "/sessions", &other, &[(KEY_HEADER, "create-1")], body).await;
    assert_eq!(status, 201);
    assert!(headers.get("idempotent-replayed").is_none());
    assert_ne!(theirs["id"], first["id"]);

    // Errors (4xx) are stored and replayed too; a different key runs again.
    let bad = Some("{oops".to_string());
    let (s1, _, b1) =
        stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, "bad-1")], bad.clone()).await;
    let (s2, h2, b2) = stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, "bad-1")], bad).await;
    assert_eq!((s1, s2), (400, 400));
    assert_eq!(b1, b2);
    assert_eq!(h2["idempotent-replayed"], "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_bulk_creates_are_idempotent() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let event = json!({"session_id": session, "category": "c", "name": "n", "data": {"a": 1}, "timestamp": "2021-06-15T00:00:00Z"});
    let (s1, _, first) =
        stack.call_with_headers(Method::POST, "/events", &key, &[(KEY_HEADER, "ev-1")], Some(event.to_string())).await;
    let (s2, h2, second) =
        stack.call_with_headers(Method::POST, "/events", &key, &[(KEY_HEADER, "ev-1")], Some(event.to_string())).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(stack.queue_depth().await, 1, "queued once");

    let items: Vec<Value> = (0..3000).map(|i| json!({"session_id": session, "category": "c", "name": format!("n{i}"), "data": {"i": i}, "timestamp": "2021-06-15T00:00:00Z"})).collect();
    let body = Some(json!(items).to_string());
    let (s1, _, first) =
        stack.call_with_headers(Method::POST, "/batch/events", &key, &[(KEY_HEADER, "bulk-1")], body.clone()).await;
    let (s2, h2, second) =
        stack.call_with_headers(Method::POST, "/batch/events", &key, &[(KEY_HEADER, "bulk-1")], body).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(first, second, "a large answer (stored in parts) replays whole");
    let stored = stack.all_pages(&format!("/events?session={session}"), &key, 1000).await;
    assert_eq!(stored.len(), 3000, "written once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_in_flight_expiry_and_bad_keys() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let (status, _, _) = stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, "k1")], None).await;
    assert_eq!(status, 201);
    let (status, _, body) = stack
        .call_with_headers(
            Method::POST,
            "/sessions",
            &key,
            &[(KEY_HEADER, "k1")],
            Some(json!({"metadata": {"x": 1}}).to_string()),
        )
        .await;
    assert_envelope(status, &body, 422, "IDEMPOTENCY_KEY_REUSED");
    let (status, _, body) = stack.call_with_headers(Method::POST, "/events", &key, &[(KEY_HEADER, "k1")], None).await;
    assert_envelope(status, &body, 422, "IDEMPOTENCY_KEY_REUSED");

    // In flight: a holder that has not finished.
    let fingerprint = argus_core::idempotency::fingerprint("POST /sessions?", b"");
    let held = argus_core::idempotency::begin(&stack.backend, "acme", "k2", &fingerprint).await.unwrap();
    assert!(matches!(held, argus_core::idempotency::Begin::Proceed(_)));
    let (status, headers, body) =
        stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, "k2")], None).await;
    assert_envelope(status, &body, 409, "IDEMPOTENCY_IN_PROGRESS");
    assert_eq!(headers["retry-after"], "1");

    // A crashed holder's lock expires, but the key stays its request's: another request is
    // 422 (the same request takes it over: `a_rerun_after_the_holder_died_creates_nothing_twice`).
    // An expired record (TTL not yet applied) is a new key.
    for (record_key, locked_until, expires_at) in [("k2", 1u64, 4_000_000_000u64), ("k3", 1, 1)] {
        use aws_sdk_dynamodb::types::AttributeValue;
        let pk = format!("T#acme#IDEM#{}", sha256_hex(record_key));
        stack
            .backend
            .dynamodb
            .put_item()
            .table_name(&stack.backend.table)
            .item("PK", AttributeValue::S(pk))
            .item("SK", AttributeValue::S("#META".into()))
            .item(
                "state",
                AttributeValue::S(if record_key == "k2" { "in_progress".into() } else { "completed".into() }),
            )
            .item("fingerprint", AttributeValue::S("something else".into()))
            .item("locked_until", AttributeValue::N(locked_until.to_string()))
            .item("expires_at", AttributeValue::N(expires_at.to_string()))
            .item("status", AttributeValue::N("201".into()))
            .item("body", AttributeValue::S("{}".into()))
            .item("parts", AttributeValue::N("0".into()))
            .send()
            .await
            .unwrap();
        let (status, headers, body) =
            stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, record_key)], None).await;
        if record_key == "k2" {
            assert_envelope(status, &body, 422, "IDEMPOTENCY_KEY_REUSED");
            continue;
        }
        assert_eq!(status, 201, "{record_key}");
        assert!(headers.get("idempotent-replayed").is_none());
    }

    let long = "k".repeat(256);
    let (status, _, body) =
        stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, &long)], None).await;
    assert_envelope(status, &body, 400, "INVALID_IDEMPOTENCY_KEY");
    let max = "k".repeat(255);
    let (status, _, _) = stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, &max)], None).await;
    assert_eq!(status, 201);
}

fn sha256_hex(text: &str) -> String {
    // Same derivation as argus_core::idempotency (SHA-256 of the key, hex).
    argus_core::apikeys::hash_key(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_create_once() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let calls = (0..8).map(|_| stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, "race")], None));
    let answers = futures::future::join_all(calls).await;
    let created: Vec<&Value> = answers.iter().filter(|(s, _, _)| *s == 201).map(|(_, _, b)| b).collect();
    assert!(!created.is_empty());
    assert!(created.iter().all(|b| b["id"] == created[0]["id"]), "every 201 is the same session");
    assert!(answers.iter().all(|(s, _, _)| *s == 201 || *s == 409));
    let (_, list) = stack.get("/sessions", &key).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

/// A request that fails transiently gives its key back, on each route that takes one: a retry
/// with the same key runs again instead of waiting out the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_gives_its_key_back_on_every_idempotent_route() {
    use argus_tests::fault_proxy::{FaultProxy, Faults};
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;

    // POST /sessions: the session's own write fails (its key holds `#SESSION#`), the key's not.
    let proxy = FaultProxy::start(
        &std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").unwrap(),
        Faults { always_fail_marker: Some("#SESSION#".into()), ..Faults::default() },
    )
    .await;
    let mut failing = stack.backend.clone();
    failing.dynamodb = proxy.dynamodb_client();
    let down = TestStack::serve(failing, stack.provisioned.clone(), stack.template.clone()).await;
    let (status, _, body) = down.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, "s-1")], None).await;
    assert_envelope(status, &body, 503, "SERVICE_UNAVAILABLE");
    let (status, _, body) =
        stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, "s-1")], None).await;
    assert_eq!(status, 201, "the key was given back: {body}");

    // POST /events: the queue is gone.
    let mut no_queue = stack.backend.clone();
    no_queue.queue_url = format!("{}-gone", stack.backend.queue_url);
    let down = TestStack::serve(no_queue, stack.provisioned.clone(), stack.template.clone()).await;
    let event = json!({"session_id": session, "category": "c", "name": "n", "data": {"a": 1}, "timestamp": "2021-06-15T00:00:00Z"}).to_string();
    let (status, _, body) =
        down.call_with_headers(Method::POST, "/events", &key, &[(KEY_HEADER, "e-1")], Some(event.clone())).await;
    assert_envelope(status, &body, 503, "SERVICE_UNAVAILABLE");
    let (status, _, body) =
        stack.call_with_headers(Method::POST, "/events", &key, &[(KEY_HEADER, "e-1")], Some(event)).await;
    assert_eq!(status, 202, "the key was given back: {body}");
}

/// Makes the key's record look like its holder died before storing the answer and its lock ran
/// out: the next request with the key takes it over and runs the work again.
async fn holder_died(stack: &TestStack, tenant: &str, idempotency_key: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    stack
        .backend
        .dynamodb
        .update_item()
        .table_name(&stack.backend.table)
        .key("PK", AttributeValue::S(format!("T#{tenant}#IDEM#{}", sha256_hex(idempotency_key))))
        .key("SK", AttributeValue::S("#META".into()))
        .update_expression("SET #state = :running, locked_until = :zero REMOVE body, #status, parts")
        .expression_attribute_names("#state", "state")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":running", AttributeValue::S("in_progress".into()))
        .expression_attribute_values(":zero", AttributeValue::N("0".into()))
        .send()
        .await
        .unwrap();
}

/// Issue 9, defects 6 and 7: when a keyed request's holder dies after doing its work but before
/// storing the answer, the rerun after the lock expires must not do the work twice. The ids a
/// keyed request creates derive from the key, so the rerun finds its own records: one session,
/// one event, one copy of each bulk item, and the *same* job, continued, with exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_the_holder_died_creates_nothing_twice() {
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("acme").await;

    let (status, _, first) = stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, "s")], None).await;
    assert_eq!(status, 201);
    holder_died(&stack, "acme", "s").await;
    let (status, headers, again) =
        stack.call_with_headers(Method::POST, "/sessions", &key, &[(KEY_HEADER, "s")], None).await;
    assert_eq!(status, 201, "{again}");
    assert!(headers.get("idempotent-replayed").is_none(), "it ran again");
    assert_eq!(again["id"], first["id"], "the rerun found the session it made");
    assert_eq!(stack.all_pages("/sessions", &key, 100).await.len(), 1);
    let session = first["id"].as_str().unwrap().to_string();

    let event = json!({"session_id": session, "category": "c", "name": "n", "data": {"a": 1}, "timestamp": "2021-06-15T00:00:00Z"}).to_string();
    let (status, _, first) =
        stack.call_with_headers(Method::POST, "/events", &key, &[(KEY_HEADER, "e")], Some(event.clone())).await;
    assert_eq!(status, 202);
    holder_died(&stack, "acme", "e").await;
    let (status, _, again) =
        stack.call_with_headers(Method::POST, "/events", &key, &[(KEY_HEADER, "e")], Some(event)).await;
    assert_eq!((status, &again["id"]), (202, &first["id"]));

    let items: Vec<Value> = (0..30).map(|i| json!({"session_id": session, "category": "bulk", "name": format!("b{i}"), "data": {"i": i}, "timestamp": "2021-06-15T00:00:00Z"})).collect();
    let (status, _, first) = stack
        .call_with_headers(Method::POST, "/batch/events", &key, &[(KEY_HEADER, "b")], Some(json!(items).to_string()))
        .await;
    assert_eq!(status, 200);
    holder_died(&stack, "acme", "b").await;
    let (status, _, again) = stack
        .call_with_headers(Method::POST, "/batch/events", &key, &[(KEY_HEADER, "b")], Some(json!(items).to_string()))
        .await;
    assert_eq!(status, 200);
    let ids = |report: &Value| -> Vec<Value> {
        report["results"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect()
    };
    assert_eq!(ids(&again), ids(&first), "the rerun wrote the same ids");

    let job_items: Vec<Value> = (0..150).map(|i| json!({"session_id": session, "category": "job", "name": format!("j{i}"), "data": {"i": i}, "timestamp": "2021-06-15T00:00:00Z"})).collect();
    let job_body = json!({"operation": "create_events", "items": job_items}).to_string();
    let (status, _, first) =
        stack.call_with_headers(Method::POST, "/batch/jobs", &key, &[(KEY_HEADER, "j")], Some(job_body.clone())).await;
    assert_eq!(status, 202);
    holder_died(&stack, "acme", "j").await;
    let (status, _, again) =
        stack.call_with_headers(Method::POST, "/batch/jobs", &key, &[(KEY_HEADER, "j")], Some(job_body)).await;
    assert_eq!((status, &again["job_id"]), (202, &first["job_id"]), "the same job, continued");
    let job = first["job_id"].as_str().unwrap().to_string();
    let done = argus_tests::eventually(60, "the job to complete", || async {
        let (_, body) = stack.get(&format!("/batch/jobs/{job}"), &key).await;
        body["completed_at"].is_string().then_some(body)
    })
    .await;
    assert_eq!(
        (done["total"].as_u64(), done["succeeded"].as_u64(), done["failed"].as_u64()),
        (Some(150), Some(150), Some(0))
    );

    argus_tests::eventually(30, "every event stored", || async {
        let all = stack.all_pages(&format!("/events?session={session}"), &key, 1000).await;
        (all.len() == 1 + 30 + 150).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let all = stack.all_pages(&format!("/events?session={session}"), &key, 1000).await;
    assert_eq!(all.len(), 1 + 30 + 150, "nothing created twice");
}

/// A keyed `POST /batch`: each creating sub-request derives its own ids (never one for all), and
/// a rerun after the holder died derives the same ones again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_batch_gives_each_sub_request_its_own_ids_and_the_rerun_the_same() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let body = json!({"requests": [
        {"id": "a", "method": "POST", "path": "/sessions", "body": {"metadata": {"n": 1}}},
        {"id": "b", "method": "POST", "path": "/sessions", "body": {"metadata": {"n": 2}}}
    ]})
    .to_string();
    let ids = |answer: &Value| -> Vec<Value> {
        answer["responses"].as_array().unwrap().iter().map(|r| r["body"]["id"].clone()).collect()
    };
    let (status, _, first) =
        stack.call_with_headers(Method::POST, "/batch", &key, &[(KEY_HEADER, "m")], Some(body.clone())).await;
    assert_eq!(status, 200, "{first}");
    assert!(first["responses"].as_array().unwrap().iter().all(|r| r["status"] == 201), "{first}");
    assert_ne!(ids(&first)[0], ids(&first)[1], "two sessions, two ids");
    holder_died(&stack, "acme", "m").await;
    let (status, _, again) =
        stack.call_with_headers(Method::POST, "/batch", &key, &[(KEY_HEADER, "m")], Some(body)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(ids(&again), ids(&first), "the rerun found both");
    assert_eq!(stack.all_pages("/sessions", &key, 100).await.len(), 2);
}
