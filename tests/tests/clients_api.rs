//! What clients need from the server (issue 15): gzip request bodies, `?validate_only=true`,
//! clock-skew correction with `sent_at`, and `GET /limits`, against the local stack.

use std::io::Write;

use argus_tests::{assert_envelope, Method, TestStack};
use chrono::{Duration, Utc};
use serde_json::{json, Value};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn send(
    stack: &TestStack,
    method: Method,
    path: &str,
    key: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = stack
        .http
        .request(method, format!("{}{path}", stack.base_url))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn event(session: &str, i: usize, timestamp: &str) -> Value {
    json!({"session_id": session, "category": "import", "name": "row",
        "timestamp": timestamp, "data": {"line": i, "text": "x".repeat(600)}})
}

/// A larger event: 2,000 of them are over 6 MB of JSON, compressing like real data (a few
/// times, not the hundreds of times of a repeated character, which is refused as a bomb).
fn big_event(session: &str, i: usize, timestamp: &str) -> Value {
    let text: String = (0..420).map(|k| format!("{} ", (i * 7_919 + k * 104_729) % 1_000_003)).collect();
    json!({"session_id": session, "category": "import", "name": "row",
        "timestamp": timestamp, "data": {"line": i, "text": text}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_carry_more_than_the_uncompressed_limit_and_bombs_are_refused() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    // Few, large events: the point is the bytes, and 2,000 writes finish well within the
    // function's deadline even on a loaded machine.
    let items: Vec<Value> = (0..2_000).map(|i| big_event(&session, i, "2026-12-01T00:00:00Z")).collect();
    let body = serde_json::to_vec(&json!({"items": items})).unwrap();
    assert!(body.len() > 5 * 1024 * 1024, "over the uncompressed limit: {}", body.len());
    // Uncompressed, it cannot pass: past 6 MB it does not even fit Lambda's invoke payload
    // (API Gateway's own 500), below that our 413.
    let (status, answer) = send(&stack, Method::POST, "/batch/events", &key, None, body.clone()).await;
    assert!(
        status == 413 || (status == 500 && answer == json!({"message": "Internal Server Error"})),
        "{status} {answer}"
    );
    let compressed = gzip(&body);
    assert!(compressed.len() * 2 < body.len(), "{} → {}", body.len(), compressed.len());
    let (status, mut answer) = send(&stack, Method::POST, "/batch/events", &key, Some("gzip"), compressed).await;
    assert_eq!(status, 200, "{answer}");
    // Items the function could not write before its deadline come back 503 with their id:
    // sent again with it, as clients do, until every one is stored.
    let mut stored = answer["succeeded"].as_u64().unwrap();
    let mut sent = items.clone();
    for _ in 0..5 {
        let again: Vec<Value> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == 503)
            .map(|r| {
                let mut item = sent[r["index"].as_u64().unwrap() as usize].clone();
                item["id"] = r["id"].clone();
                item
            })
            .collect();
        if again.is_empty() {
            break;
        }
        let body = gzip(&serde_json::to_vec(&json!({"items": again})).unwrap());
        sent = again;
        answer = send(&stack, Method::POST, "/batch/events", &key, Some("gzip"), body).await.1;
        stored += answer["succeeded"].as_u64().unwrap();
    }
    assert_eq!(stored, 2_000, "{answer}");

    // A small route's own limit applies to the decompressed body.
    let big_single = serde_json::to_vec(&json!({"session_id": session, "category": "c", "name": "n",
        "timestamp": "2026-12-01T00:00:00Z", "data": {"x": "y".repeat(2_000_000)}}))
    .unwrap();
    let (status, answer) = send(&stack, Method::POST, "/events", &key, Some("gzip"), gzip(&big_single)).await;
    assert_eq!(status, 413, "{answer}");

    // 64 MiB of spaces in ~64 KB: refused while decompressing, memory bounded.
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
    let (status, answer) = send(&stack, Method::POST, "/batch/events", &key, Some("gzip"), bomb).await;
    assert_envelope(status, &answer, 413, "DECOMPRESSION_RATIO_EXCEEDED");
    let (status, answer) =
        send(&stack, Method::POST, "/batch/events", &key, Some("gzip"), b"{\"items\":[]}".to_vec()).await;
    assert_envelope(status, &answer, 400, "MALFORMED_GZIP");
    for encoding in ["br", "deflate", "zstd"] {
        let (status, answer) = send(&stack, Method::POST, "/batch/events", &key, Some(encoding), gzip(b"{}")).await;
        assert_envelope(status, &answer, 415, "UNSUPPORTED_CONTENT_ENCODING");
    }
    // Every POST route takes gzip: a session.
    let (status, answer) = send(&stack, Method::POST, "/sessions", &key, Some("gzip"), gzip(b"{}")).await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_checks_everything_and_writes_nothing() {
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let id = uuid::Uuid::now_v7().to_string();
    let mut valid = event(&session, 0, "2026-12-01T00:00:00Z");
    valid["id"] = json!(id);
    valid["stream"] = json!("never-created");
    let items = json!({"items": [valid, event(&unknown, 1, "2026-12-01T00:00:00Z"), {"name": 5}]});
    let (status, report) = stack.post("/batch/events?validate_only=true", &key, items).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["validate_only"], true);
    let statuses: Vec<u64> =
        report["results"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses[0], 200);
    assert_eq!(report["results"][0]["id"], json!(id));
    assert!(statuses[1] >= 400 && statuses[2] == 400, "{report}");
    assert_eq!((report["succeeded"].as_u64(), report["failed"].as_u64()), (Some(1), Some(2)));

    // Single events: the session lookup happens now, nothing is queued.
    let single = event(&session, 2, "2026-12-01T00:00:00Z");
    let (status, answer) = stack.post("/events?validate_only=true", &key, single).await;
    assert_eq!((status, &answer["valid"]), (200, &json!(true)), "{answer}");
    let (status, answer) =
        stack.post("/events?validate_only=true", &key, event(&unknown, 3, "2026-12-01T00:00:00Z")).await;
    assert!((400..500).contains(&status), "{answer}");
    assert_eq!(answer["error"]["details"]["validate_only"], true);
    let ds = json!({"stream_id": "never-created", "event_type": "click", "data": {"a": 1}});
    let (status, answer) = stack.post("/ingest/events?validate_only=true", &key, ds.clone()).await;
    assert_eq!((status, &answer["valid"]), (200, &json!(true)), "{answer}");
    let batch = json!({"stream_id": "never-created", "events": [ds, {"event_type": ""}]});
    let (status, answer) = stack.post("/ingest/batch?validate_only=true", &key, batch).await;
    assert_eq!((status, answer["succeeded"].as_u64(), answer["failed"].as_u64()), (200, Some(1), Some(1)), "{answer}");
    let job = json!({"operation": "create_events", "items": [event(&session, 4, "2026-12-01T00:00:00Z"), event(&unknown, 5, "2026-12-01T00:00:00Z")]});
    let (status, answer) = stack.post("/batch/jobs?validate_only=true", &key, job).await;
    assert_eq!((status, answer["succeeded"].as_u64(), answer["failed"].as_u64()), (200, Some(1), Some(1)), "{answer}");
    let (status, answer) = stack.post("/batch/events?validate_only=maybe", &key, json!({"items": []})).await;
    assert_envelope(status, &answer, 400, "INVALID_PARAMETER");

    // Nothing was written or queued: no event, no job, no new stream.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(stack.queue_depth().await, 0);
    assert!(stack.all_pages("/events", &key, 100).await.is_empty());
    let streams = stack.all_pages("/streams", &key, 100).await;
    assert!(streams.iter().all(|s| s["stream_id"] != "never-created"), "{streams:?}");

    // A dry run under an Idempotency-Key does not take the key: the real call then runs.
    let keyed = json!({"items": [event(&session, 9, "2026-12-01T00:00:00Z")]}).to_string();
    let headers = [("idempotency-key", "import-2026-12-02")];
    let path = "/batch/events?validate_only=true";
    let (_, _, dry) = stack.call_with_headers(Method::POST, path, &key, &headers, Some(keyed.clone())).await;
    assert_eq!(dry["validate_only"], true, "{dry}");
    let (_, _, real) = stack.call_with_headers(Method::POST, "/batch/events", &key, &headers, Some(keyed)).await;
    assert_eq!(real["results"][0]["status"], 201, "{real}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_at_corrects_client_clocks_and_retries_stay_duplicates() {
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    // A device whose clock is 1 hour behind: it says the event happened 10 s before sending.
    let device_now = Utc::now() - Duration::hours(1);
    let happened = device_now - Duration::seconds(10);
    let fmt = |t: chrono::DateTime<Utc>| argus_models::time::format(&t);
    let id = uuid::Uuid::now_v7().to_string();
    let mut item = event(&session, 0, &fmt(happened));
    item["id"] = json!(id);
    let body = |sent: chrono::DateTime<Utc>| json!({"sent_at": fmt(sent), "items": [item.clone()]});
    let (status, report) = stack.post("/batch/events", &key, body(device_now)).await;
    assert_eq!(report["results"][0]["status"], 201, "{status} {report}");
    let (_, stored) = stack.get(&format!("/events/{id}"), &key).await;
    let timestamp = argus_models::time::parse("t", stored["timestamp"].as_str().unwrap()).unwrap();
    let off = (Utc::now() - Duration::seconds(10) - timestamp).num_milliseconds().abs();
    assert!(off < 3_000, "corrected to ~10 s before receipt: {stored}");
    assert_eq!(stored["client_timestamp"], json!(fmt(happened)));
    // The retry is sent a little later (another sent_at): the same event, a duplicate.
    let (_, report) = stack.post("/batch/events", &key, body(device_now + Duration::seconds(2))).await;
    assert_eq!(
        (report["results"][0]["status"].as_u64(), &report["results"][0]["duplicate"]),
        (Some(200), &json!(true)),
        "{report}"
    );

    // Single events: per-event sent_at, corrected before queueing.
    let mut single = event(&session, 1, &fmt(happened));
    single["sent_at"] = json!(fmt(device_now));
    let (status, accepted) = stack.post("/events", &key, single).await;
    assert_eq!(status, 202, "{accepted}");
    let path = format!("/events/{}", accepted["id"].as_str().unwrap());
    let stored = argus_tests::eventually(20, "the event is stored", || async {
        let (status, body) = stack.get(&path, &key).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(stored["client_timestamp"], json!(fmt(happened)));
    // Without sent_at, a timestamp an hour in the future stays refused; bad sent_at is a 400.
    let mut bad = event(&session, 2, &fmt(happened));
    bad["sent_at"] = json!("yesterday");
    let (status, answer) = stack.post("/events", &key, bad).await;
    assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
    let (_, report) = stack
        .post(
            "/batch/events",
            &key,
            json!({"sent_at": "0001-01-01T00:00:00Z", "items": [event(&session, 3, "9999-01-01T00:00:00Z")]}),
        )
        .await;
    assert_eq!(report["results"][0]["status"], 400, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_tell_a_client_how_to_size_its_batches() {
    let stack = TestStack::start().await;
    let key = argus_core::apikeys::create_scoped_key(
        &stack.backend,
        "acme",
        None,
        argus_models::access::Scopes::of(&[argus_models::access::Scope::Ingest]),
    )
    .await
    .unwrap()
    .secret;
    let (status, limits) = stack.get("/limits", &key).await;
    assert_eq!(status, 200, "{limits}");
    assert_eq!(limits["bulk"]["max_items"], 10_000);
    assert_eq!(limits["bulk"]["max_bytes"], 5 * 1024 * 1024);
    assert_eq!(limits["request"]["content_encodings"], json!(["gzip", "identity"]));
    assert_eq!(limits["rate_limits"]["requests_per_hour"]["limit"], 1_000);
    assert_eq!(limits["rate_limits"]["requests_per_hour"]["remaining"], 999);
    let (_, again) = stack.get("/limits", &key).await;
    assert_eq!(again["rate_limits"]["requests_per_hour"]["remaining"], 998);
    assert!(again["rate_limits"]["reset_seconds"].as_u64().is_some_and(|s| (1..=3600).contains(&s)));
}
