//! Issue 12, first part: streams and their settings, DataStream Pro's ingestion routes on the
//! one event model, and retention (TTL `expires_at`, expired events hidden, refused when they
//! arrive already past it), against DynamoDB Local and the SQS endpoint.

use argus_core::pipeline::QueuedEvent;
use argus_tests::{assert_envelope, eventually, Method, TestStack};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use serde_json::{json, Value};

const DAY: i64 = 86_400;

fn ts(ago: Duration) -> String {
    argus_models::time::format(&(Utc::now() - ago))
}

/// Events expire counted from the end of their timestamp's minute.
fn minute_end(timestamp: &str) -> i64 {
    epoch_of(timestamp).div_euclid(60) * 60 + 60
}

fn epoch_of(timestamp: &str) -> i64 {
    argus_models::time::parse("t", timestamp).unwrap().timestamp()
}

async fn stored_event(stack: &TestStack, key: &str, id: &str) -> Value {
    eventually(10, "the event to be stored", || async {
        let (status, body) = stack.get(&format!("/events/{id}"), key).await;
        (status == 200).then_some(body)
    })
    .await
}

async fn error_code_for(stack: &TestStack, key: &str, event_id: &str) -> String {
    eventually(10, "the error record", || async {
        let (_, body) = stack.get(&format!("/errors?event_id={event_id}"), key).await;
        body["items"].as_array().and_then(|items| items.first()).map(|r| r["code"].as_str().unwrap().to_string())
    })
    .await
}

/// The event's stored item, read straight from the table.
async fn event_item(stack: &TestStack, tenant: &str, id: &str) -> std::collections::HashMap<String, AttributeValue> {
    stack
        .backend
        .dynamodb
        .get_item()
        .table_name(&stack.backend.table)
        .key("PK", AttributeValue::S(format!("T#{tenant}#EVENT#{id}")))
        .key("SK", AttributeValue::S("#META".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the event's item")
}

fn number(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> i64 {
    item[name].as_n().unwrap().parse().unwrap()
}

async fn patch(stack: &TestStack, path: &str, key: &str, body: Value) -> (u16, Value) {
    stack.call(Method::PATCH, path, Some(key), Some(body.to_string())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datastream_event_is_accepted_stored_without_session_and_listed() {
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("acme").await;
    let timestamp = ts(Duration::minutes(1));
    let sample = json!({
        "stream_id": "user-events", "timestamp": timestamp, "event_type": "page_view",
        "data": {"user_id": "u1", "page": "/home"}, "metadata": {"source": "web"}
    });
    let (status, accepted) = stack.post("/ingest/events", &key, sample.clone()).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    assert!(accepted["processing_time_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{accepted}");
    let id = accepted["event_id"].as_str().unwrap();

    let stored = stored_event(&stack, &key, id).await;
    assert_eq!(stored["session_id"], Value::Null);
    assert_eq!(stored["category"], Value::Null);
    assert_eq!(stored["name"], "page_view");
    assert_eq!(stored["stream"], "user-events");
    assert_eq!(stored["data"], sample["data"]);
    assert_eq!(stored["metadata"], sample["metadata"]);
    assert_eq!(epoch_of(stored["timestamp"].as_str().unwrap()), epoch_of(&timestamp));

    // Listed by stream and in the tenant's listing; in no session's or category's index.
    let by_stream = stack.all_pages("/events?stream=user-events", &key, 10).await;
    assert_eq!(by_stream.iter().map(|e| e["id"].as_str().unwrap()).collect::<Vec<_>>(), [id]);
    let item = event_item(&stack, "acme", id).await;
    for absent in ["GSI1PK", "GSI2PK", "session_id", "category"] {
        assert!(!item.contains_key(absent), "{absent} is set on a sessionless event");
    }
    assert_eq!(number(&item, "expires_at"), minute_end(&timestamp) + 90 * DAY, "the default retention");

    // The stream exists now, with the default settings.
    let (status, stream) = stack.get("/streams/user-events", &key).await;
    assert_eq!(status, 200, "{stream}");
    assert_eq!(stream["retention_days"], 90);
    let listed = stack.all_pages("/streams", &key, 10).await;
    assert!(listed.iter().any(|s| s["stream_id"] == "user-events"), "{listed:?}");

    // Without timestamp: the time received. Content errors and an unknown session (sessions are
    // optional, but a session named must exist) become error records.
    let (status, no_time) = stack
        .post("/ingest/events", &key, json!({"stream_id": "user-events", "event_type": "x", "data": {"a": 1}}))
        .await;
    assert_eq!(status, 202);
    let stored = stored_event(&stack, &key, no_time["event_id"].as_str().unwrap()).await;
    assert!((epoch_of(stored["timestamp"].as_str().unwrap()) - Utc::now().timestamp()).abs() < 60, "{stored}");
    let unknown_session = uuid::Uuid::now_v7().to_string();
    for (body, code) in [
        (json!({"stream_id": "s", "event_type": "x", "data": {}}), "DATA_EMPTY"),
        (
            json!({"stream_id": "s", "event_type": "x", "data": {"a": 1}, "session_id": unknown_session}),
            "SESSION_NOT_FOUND",
        ),
    ] {
        let (status, accepted) = stack.post("/ingest/events", &key, body).await;
        assert_eq!(status, 202, "{accepted}");
        assert_eq!(error_code_for(&stack, &key, accepted["event_id"].as_str().unwrap()).await, code);
    }
    // An existing session links the event to it.
    let session = stack.session(&key).await;
    let (_, accepted) = stack
        .post(
            "/ingest/events",
            &key,
            json!({"stream_id": "s", "event_type": "x", "data": {"a": 1}, "session_id": session}),
        )
        .await;
    let stored = stored_event(&stack, &key, accepted["event_id"].as_str().unwrap()).await;
    assert_eq!(stored["session_id"], session.as_str());
    assert_eq!(stack.all_pages(&format!("/events?session={session}"), &key, 10).await.len(), 1);

    // Shape errors name DataStream's fields; nothing is queued.
    let (status, body) = stack
        .post("/ingest/events", &key, json!({"stream_id": "a b", "event_type": "", "timestamp": 5, "event_id": "x"}))
        .await;
    let details = assert_envelope(status, &body, 400, "VALIDATION_FAILED");
    let fields: Vec<&str> =
        details["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["event_id", "stream_id", "event_type", "data", "timestamp"], "{body}");
    let (status, body) = stack.post("/ingest/events", &key, json!({"event_type": "x", "data": {"a": 1}})).await;
    assert_eq!(assert_envelope(status, &body, 400, "VALIDATION_FAILED")["field"], "stream_id");
    // A client id without a timestamp: each retry would be another event (its arrival time).
    let (status, body) = stack
        .post(
            "/ingest/events",
            &key,
            json!({"stream_id": "s", "event_id": uuid::Uuid::now_v7(), "event_type": "x", "data": {"a": 1}}),
        )
        .await;
    assert_eq!(assert_envelope(status, &body, 400, "VALIDATION_FAILED")["field"], "timestamp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_batch_answers_per_item_like_batch_events_and_is_idempotent() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let recent = ts(Duration::hours(1));
    let ids = [uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string()];
    let batch = json!({"stream_id": "clicks", "events": [
        {"event_id": ids[0], "event_type": "click", "timestamp": recent, "data": {"x": 1}},
        {"timestamp": recent, "data": {"x": 2}},
        {"event_type": "click", "timestamp": recent, "data": {}},
        {"event_id": ids[1], "stream_id": "other", "event_type": "view", "timestamp": recent, "data": {"x": 4}},
        "not an event",
    ]});
    let (status, report) = stack.post("/ingest/batch", &key, batch.clone()).await;
    assert_eq!(status, 200, "{report}");
    let statuses: Vec<u64> =
        report["results"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 400, 400, 201, 400], "{report}");
    assert_eq!(report["results"][1]["error"]["details"]["field"], "event_type");
    assert_eq!(report["results"][2]["error"]["details"]["fields"][0]["code"], "DATA_EMPTY");
    assert_eq!((report["succeeded"].as_u64(), report["failed"].as_u64()), (Some(2), Some(3)));
    let (_, first) = stack.get(&format!("/events/{}", ids[0]), &key).await;
    assert_eq!((first["stream"].as_str(), first["name"].as_str()), (Some("clicks"), Some("click")));
    let (_, own) = stack.get(&format!("/events/{}", ids[1]), &key).await;
    assert_eq!(own["stream"], "other", "an item's own stream_id wins");

    // The same batch again (a client retry): the client ids are duplicates, nothing twice.
    let (_, again) = stack.post("/ingest/batch", &key, batch).await;
    assert_eq!(again["results"][0]["status"], 200);
    assert_eq!(again["results"][0]["duplicate"], true);
    assert_eq!(again["results"][3]["duplicate"], true);
    assert_eq!(stack.all_pages("/events?stream=clicks", &key, 10).await.len(), 1);

    // Atomic: nothing written when one item fails.
    let (status, body) = stack
        .post(
            "/ingest/batch",
            &key,
            json!({"stream_id": "atomic", "mode": "atomic", "events": [
                {"event_type": "a", "data": {"x": 1}}, {"event_type": "b", "data": {}}
            ]}),
        )
        .await;
    assert_envelope(status, &body, 400, "VALIDATION_FAILED");
    assert!(stack.all_pages("/events?stream=atomic", &key, 10).await.is_empty());
    let (status, body) = stack
        .post(
            "/ingest/batch",
            &key,
            json!({"stream_id": "atomic", "mode": "atomic", "events": [{"event_type": "a", "data": {"x": 1}}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The batch's own fields, and the bulk limits.
    for (body, field) in [
        (json!({"events": [{"event_type": "a", "data": {"x": 1}}]}), "stream_id"),
        (json!({"stream_id": "s", "events": {}}), "events"),
        (json!({"stream_id": "bad/id", "events": []}), "stream_id"),
        (json!([]), "body"),
    ] {
        let (status, answer) = stack.post("/ingest/batch", &key, body).await;
        assert_eq!(assert_envelope(status, &answer, 400, "VALIDATION_FAILED")["field"], field, "{answer}");
    }
    let spread: Vec<Value> =
        (0..101).map(|i| json!({"stream_id": format!("s{i}"), "event_type": "x", "data": {"a": 1}})).collect();
    let (status, answer) = stack.post("/ingest/batch", &key, json!({"stream_id": "s", "events": spread})).await;
    assert_eq!(assert_envelope(status, &answer, 400, "TOO_MANY_STREAMS")["max_streams"], 100);
    let (status, answer) = stack.post("/ingest/batch", &key, json!({"stream_id": "s", "events": []})).await;
    let details = assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
    assert_eq!(
        (details["field"].as_str(), details["fields"][0]["code"].as_str()),
        (Some("events"), Some("EMPTY_BATCH"))
    );
    let many: Vec<Value> = (0..10_001).map(|_| json!(1)).collect();
    let (status, answer) = stack.post("/ingest/batch", &key, json!({"stream_id": "s", "events": many})).await;
    assert_envelope(status, &answer, 413, "BATCH_TOO_LARGE");
    // Bulk calls go on their own, never inside POST /batch.
    let (status, answer) = stack
        .post(
            "/batch",
            &key,
            json!({"requests": [{"id": "b", "method": "POST", "path": "/ingest/batch", "body": {"stream_id": "s", "events": [1]}}]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_sets_the_ttl_hides_expired_events_and_refuses_events_past_it() {
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("acme").await;
    let (status, stream) = patch(&stack, "/streams/short", &key, json!({"retention_days": 7})).await;
    assert_eq!(status, 200, "{stream}");
    assert_eq!((stream["stream_id"].as_str(), stream["retention_days"].as_u64()), (Some("short"), Some(7)));

    let day_old = ts(Duration::days(1));
    let too_old = ts(Duration::days(7) + Duration::minutes(2));
    let (_, report) = stack
        .post(
            "/ingest/batch",
            &key,
            json!({"stream_id": "short", "events": [
                {"event_type": "kept", "timestamp": day_old, "data": {"a": 1}},
                {"event_type": "late", "timestamp": too_old, "data": {"a": 1}},
            ]}),
        )
        .await;
    assert_eq!(report["results"][0]["status"], 201, "{report}");
    assert_eq!(report["results"][1]["status"], 400);
    assert_eq!(report["results"][1]["error"]["details"]["fields"][0]["code"], "TIMESTAMP_BEYOND_RETENTION");
    let kept = report["results"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(number(&event_item(&stack, "acme", &kept).await, "expires_at"), minute_end(&day_old) + 7 * DAY);

    // Through the queue, the same rule ends as an error record.
    let (_, accepted) = stack
        .post(
            "/ingest/events",
            &key,
            json!({"stream_id": "short", "event_type": "late", "timestamp": too_old, "data": {"a": 1}}),
        )
        .await;
    assert_eq!(
        error_code_for(&stack, &key, accepted["event_id"].as_str().unwrap()).await,
        "TIMESTAMP_BEYOND_RETENTION"
    );

    // A longer retention applies to events stored from now on; stored ones keep their expiry,
    // until an update stores them again.
    let (_, stream) = patch(&stack, "/streams/short/", &key, json!({"retention_days": 30})).await;
    assert_eq!(stream["retention_days"], 30);
    let (_, report) = stack
        .post(
            "/ingest/batch",
            &key,
            json!({"stream_id": "short", "events": [{"event_type": "new", "timestamp": too_old, "data": {"a": 1}}]}),
        )
        .await;
    assert_eq!(report["results"][0]["status"], 201, "{report}");
    let newer = report["results"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(number(&event_item(&stack, "acme", &newer).await, "expires_at"), minute_end(&too_old) + 30 * DAY);
    assert_eq!(number(&event_item(&stack, "acme", &kept).await, "expires_at"), minute_end(&day_old) + 7 * DAY);
    let (status, _) = patch(&stack, &format!("/events/{kept}"), &key, json!({"name": "renamed"})).await;
    assert_eq!(status, 200);
    assert_eq!(number(&event_item(&stack, "acme", &kept).await, "expires_at"), minute_end(&day_old) + 30 * DAY);
    // A PATCH moving the timestamp past retention is refused like a new event.
    let (status, body) =
        patch(&stack, &format!("/events/{kept}"), &key, json!({"timestamp": ts(Duration::days(31))})).await;
    assert_eq!(
        assert_envelope(status, &body, 400, "VALIDATION_FAILED")["fields"][0]["code"],
        "TIMESTAMP_BEYOND_RETENTION"
    );

    // Time passes: TTL deletion lags, so an item past `expires_at` is still in the table. Every
    // read and change treats it as gone.
    stack
        .backend
        .dynamodb
        .update_item()
        .table_name(&stack.backend.table)
        .key("PK", AttributeValue::S(format!("T#acme#EVENT#{kept}")))
        .key("SK", AttributeValue::S("#META".into()))
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(":past", AttributeValue::N((Utc::now().timestamp() - 1).to_string()))
        .send()
        .await
        .unwrap();
    for path in [format!("/events/{kept}"), format!("/events/{kept}?include_deleted=true")] {
        let (status, body) = stack.get(&path, &key).await;
        assert_envelope(status, &body, 404, "NOT_FOUND");
    }
    let listed: Vec<String> = stack
        .all_pages("/events?stream=short&include_deleted=true", &key, 10)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec![newer]);
    assert_eq!(stack.all_pages("/events", &key, 10).await.len(), 1);
    let (status, _) = patch(&stack, &format!("/events/{kept}"), &key, json!({"name": "x"})).await;
    assert_eq!(status, 404);
    let (status, _) = stack.call(Method::DELETE, &format!("/events/{kept}"), Some(&key), None).await;
    assert_eq!(status, 404);
    let (status, _) = stack.call(Method::POST, &format!("/events/{kept}/restore"), Some(&key), None).await;
    assert_eq!(status, 404);
    let (_, bulk) = stack
        .call(
            Method::PATCH,
            "/batch/events",
            Some(&key),
            Some(json!([{"id": kept, "changes": {"name": "x"}}]).to_string()),
        )
        .await;
    assert_eq!(bulk["results"][0]["status"], 404, "{bulk}");
    let (_, bulk) = stack.call(Method::DELETE, "/batch/events", Some(&key), Some(json!([kept]).to_string())).await;
    assert_eq!(bulk["results"][0]["status"], 404, "{bulk}");

    // The expired event's id is free again: a new event may take it, even before TTL runs.
    let reuse = json!({"stream_id": "short", "events": [{"event_id": kept, "event_type": "again", "timestamp": ts(Duration::hours(1)), "data": {"b": 2}}]});
    let (_, report) = stack.post("/ingest/batch", &key, reuse.clone()).await;
    assert_eq!(report["results"][0]["status"], 201, "{report}");
    let (status, again) = stack.get(&format!("/events/{kept}"), &key).await;
    assert_eq!((status, again["name"].as_str()), (200, Some("again")));
    let (_, report) = stack.post("/ingest/batch", &key, reuse).await;
    assert_eq!(report["results"][0]["duplicate"], true, "{report}");
}

/// Events stored before streams had settings have no `expires_at`: they never expire, and a
/// change keeps it so (no retention check, no TTL added), single and bulk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_without_an_expiry_keep_none_when_changed() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let payload = json!({"session_id": session, "category": "c", "name": "old", "data": {"a": 1}, "timestamp": "2016-01-01T00:00:00Z", "stream": "legacy"});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let input = argus_models::event::EventInput::parse(&payload).unwrap();
        let id = argus_models::ids::new_id();
        let now = argus_models::time::format(&Utc::now());
        let item = argus_core::events::event_item(
            "acme",
            &id,
            &input,
            &now,
            &now,
            None,
            argus_core::keys::IndexShards::new(8, 0),
        )
        .unwrap();
        stack.backend.dynamodb.put_item().table_name(&stack.backend.table).set_item(Some(item)).send().await.unwrap();
        ids.push(id.to_string());
    }
    let (status, changed) = patch(&stack, &format!("/events/{}", ids[0]), &key, json!({"name": "renamed"})).await;
    assert_eq!(status, 200, "{changed}");
    let (_, bulk) = stack
        .call(
            Method::PATCH,
            "/batch/events",
            Some(&key),
            Some(json!([{"id": ids[1], "changes": {"name": "renamed"}}]).to_string()),
        )
        .await;
    assert_eq!(bulk["results"][0]["status"], 200, "{bulk}");
    for id in &ids {
        assert!(!event_item(&stack, "acme", id).await.contains_key("expires_at"), "{id} was given an expiry");
    }
    // An event with an expiry whose stream this process never looked up: the events function
    // reads (BatchGetItem) and here creates the stream's settings, as each Lambda's cold cache does.
    let mut input = argus_models::event::EventInput::parse(&payload).unwrap();
    input.stream = "never-cached".into();
    input.timestamp = Utc::now();
    let id = argus_models::ids::new_id();
    let now = argus_models::time::format(&Utc::now());
    let item = argus_core::events::event_item(
        "acme",
        &id,
        &input,
        &now,
        &now,
        Some(90),
        argus_core::keys::IndexShards::new(8, 0),
    )
    .unwrap();
    stack.backend.dynamodb.put_item().table_name(&stack.backend.table).set_item(Some(item)).send().await.unwrap();
    let (status, changed) = patch(&stack, &format!("/events/{id}"), &key, json!({"name": "renamed"})).await;
    assert_eq!(status, 200, "{changed}");
    let (status, stream) = stack.get("/streams/never-cached", &key).await;
    assert_eq!((status, stream["retention_days"].as_u64()), (200, Some(90)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_settings_are_validated_listed_by_page_and_kept_per_tenant() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let other = stack.key("globex").await;
    for (body, code) in [
        (json!({"retention_days": 0}), "OUT_OF_RANGE"),
        (json!({"retention_days": 3651}), "OUT_OF_RANGE"),
        (json!({"retention_days": 2.5}), "OUT_OF_RANGE"),
        (json!({"retention_days": "30"}), "INVALID_TYPE"),
        (json!({"retention_days": null}), "INVALID_TYPE"),
        (json!({"name": "x"}), "NOT_CHANGEABLE"),
        (json!({}), "EMPTY_PATCH"),
        (json!([]), "INVALID_TYPE"),
    ] {
        let (status, answer) = patch(&stack, "/streams/web", &key, body.clone()).await;
        let details = assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
        assert_eq!(details["fields"][0]["code"], code, "{body}: {answer}");
    }
    let (status, answer) = stack.call(Method::PATCH, "/streams/web", Some(&key), Some("{".into())).await;
    assert_envelope(status, &answer, 400, "MALFORMED_JSON");
    let (status, answer) = patch(&stack, "/streams/a%20b", &key, json!({"retention_days": 5})).await;
    assert_eq!(assert_envelope(status, &answer, 400, "VALIDATION_FAILED")["field"], "stream_id");
    for path in ["/streams/web", "/streams/a%20b", &format!("/streams/{}", "x".repeat(101))] {
        let (status, answer) = stack.get(path, &key).await;
        assert_envelope(status, &answer, 404, "NOT_FOUND");
    }

    // Five streams, newest first, every one exactly once across pages.
    let names = ["s1", "s2", "s3", "s4", "s5"];
    for name in names {
        let (status, answer) = patch(&stack, &format!("/streams/{name}"), &key, json!({"retention_days": 10})).await;
        assert_eq!(status, 200, "{answer}");
    }
    // (The test key's tenant also has `TestStack::key`'s historic streams, set up first.)
    let listed: Vec<String> = stack
        .all_pages("/streams", &key, 2)
        .await
        .iter()
        .map(|s| s["stream_id"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<&str> = names.iter().rev().copied().collect();
    expected.extend(argus_tests::HISTORIC_STREAMS.iter().rev());
    assert_eq!(listed, expected);
    // Setting it again changes the settings, not the listing order or created_at.
    let (_, before) = stack.get("/streams/s1", &key).await;
    let (_, after) = patch(&stack, "/streams/s1", &key, json!({"retention_days": 11})).await;
    assert_eq!(after["created_at"], before["created_at"]);
    assert_eq!(after["retention_days"], 11);
    assert_eq!(stack.all_pages("/streams", &key, 100).await.len(), expected.len());

    // Another tenant has none of these.
    assert!(stack
        .all_pages("/streams", &other, 10)
        .await
        .iter()
        .all(|s| !names.contains(&s["stream_id"].as_str().unwrap())));
    let (status, answer) = stack.get("/streams/s1", &other).await;
    assert_envelope(status, &answer, 404, "NOT_FOUND");

    // Cursors: another listing's, or altered, are refused.
    let (_, page) = stack.get("/streams?limit=1", &key).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let mut altered = cursor.to_string();
    altered.insert(4, 'A');
    for bad in [altered.as_str(), "abc"] {
        let (status, answer) = stack.get(&format!("/streams?cursor={bad}"), &key).await;
        assert_envelope(status, &answer, 400, "INVALID_CURSOR");
    }
    let (status, answer) = stack.get(&format!("/events?cursor={cursor}"), &key).await;
    assert_envelope(status, &answer, 400, "INVALID_CURSOR");
}

/// A stream is created once however many writers name it first at the same moment, and a
/// DataStream event delivered twice (in one batch, and in two concurrent invocations) is
/// stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_use_races_and_redelivery_store_one_stream_and_one_event() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let calls = (0..8).map(|i| {
        let body = json!({"stream_id": "raced", "events": [{"event_type": format!("e{i}"), "data": {"i": i}}]});
        stack.post("/ingest/batch", &key, body)
    });
    for (status, report) in futures::future::join_all(calls).await {
        assert_eq!((status, report["results"][0]["status"].as_u64()), (200, Some(201)), "{report}");
    }
    let streams = stack.all_pages("/streams", &key, 100).await;
    assert_eq!(streams.iter().filter(|s| s["stream_id"] == "raced").count(), 1);
    assert_eq!(stack.all_pages("/events?stream=raced", &key, 100).await.len(), 8);

    let payload = json!({"stream_id": "redelivered", "event_type": "x", "data": {"a": 1}});
    let mut event = argus_models::datastream::parse_event(&payload, None, &Utc::now()).unwrap();
    let id = argus_models::ids::new_id();
    event.id = Some(id);
    let message = QueuedEvent {
        v: 1,
        tenant: "acme".into(),
        received_at: argus_models::time::format(&Utc::now()),
        event,
        payload,
        client_id: false,
    };
    let body = serde_json::to_string(&message).unwrap();
    let record = |n: usize| json!({"messageId": format!("m{n}"), "receiptHandle": format!("rh{n}"), "body": body, "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q", "awsRegion": "us-east-1"});
    let twice_in_one_batch: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_value(json!({"Records": [record(1), record(2)]})).unwrap();
    let once: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(json!({"Records": [record(3)]})).unwrap();
    let processor = stack.function_backend("argus-processor");
    let (a, b) = tokio::join!(
        argus_api::processor::handle(&processor, twice_in_one_batch, None),
        argus_api::processor::handle(&processor, once, None)
    );
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    let stored = stack.all_pages("/events?stream=redelivered", &key, 10).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"], id.to_string());
    assert!(stack.all_pages(&format!("/errors?event_id={id}"), &key, 10).await.is_empty());
}
