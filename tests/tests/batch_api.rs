//! Bulk endpoints through the local runner against DynamoDB Local.

use std::time::Instant;

use argus_tests::{assert_envelope, Method, TestStack};
use serde_json::{json, Value};

fn event(session: &str, i: usize) -> Value {
    let category = ["page", "click"][i % 2];
    json!({"session_id": session, "category": category, "name": format!("e{i}"), "data": {"i": i}, "timestamp": format!("2021-06-15T{:02}:{:02}:{:02}Z", (i / 3600) % 24, (i / 60) % 60, i % 60)})
}

async fn bulk(stack: &TestStack, method: Method, path: &str, key: &str, body: Value) -> (u16, Value) {
    stack.call(method, path, Some(key), Some(body.to_string())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_in_one_call() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let items: Vec<Value> = (0..10_000).map(|i| event(&session, i)).collect();
    let started = Instant::now();
    let (status, report) =
        bulk(&stack, Method::POST, "/batch/events", &key, json!({"mode": "partial", "items": items})).await;
    let elapsed = started.elapsed();
    eprintln!("10,000-item POST /batch/events answered in {elapsed:?}: {} failed", report["failed"]);
    assert_eq!(status, 200, "{}", &report.to_string()[..500.min(report.to_string().len())]);
    assert!(elapsed < std::time::Duration::from_secs(29), "answered within the function's Timeout");
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 10_000);
    let mut ids = std::collections::HashSet::new();
    let mut resend = Vec::new();
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i, "results in request order");
        // DynamoDB Local on a loaded 2-core machine may not take 10,000 items (40,000 writes
        // with the indexes) before the deadline: what it could not is 503, with the id to resend.
        match result["status"].as_u64() {
            Some(201) => {}
            Some(503) => {
                let mut item = items[i].clone();
                item["id"] = result["id"].clone();
                resend.push(item);
            }
            other => panic!("item {i}: {other:?} {result}"),
        }
        ids.insert(result["id"].as_str().unwrap().to_string());
    }
    // The client's side of the contract: resend exactly the 503s, with their ids, until none
    // is left (`create_all` resends whole-call 503s too).
    let resent = stack.create_all(&key, &resend, 10_000).await;
    for (item, id) in resend.iter().zip(&resent) {
        assert_eq!(item["id"].as_str(), Some(id.as_str()), "stored under the id it was resent with");
    }

    let stored = stack.all_pages(&format!("/events?session={session}"), &key, 1000).await;
    assert_eq!(stored.len(), 10_000);
    let stored_ids: std::collections::HashSet<String> =
        stored.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(stored_ids, ids);
    let (_, by_category) = stack.get("/events?category=click&limit=1000", &key).await;
    assert_eq!(by_category["items"].as_array().unwrap().len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_batch_gives_per_item_statuses_in_order() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let existing_id = uuid::Uuid::now_v7().to_string();
    let mut first = event(&session, 0);
    first["id"] = json!(existing_id);
    let (status, _) = bulk(&stack, Method::POST, "/batch/events", &key, json!([first.clone()])).await;
    assert_eq!(status, 200);

    let mut conflicting = first.clone();
    conflicting["data"] = json!({"other": true});
    let mut bad_shape = event(&session, 3);
    bad_shape["name"] = json!(42);
    let mut empty_data = event(&session, 4);
    empty_data["data"] = json!({});
    let unknown_session = event(&uuid::Uuid::now_v7().to_string(), 5);
    let repeated_id = uuid::Uuid::now_v7().to_string();
    let mut repeat_a = event(&session, 6);
    repeat_a["id"] = json!(repeated_id);
    let mut repeat_b = repeat_a.clone();
    repeat_b["data"] = json!({"changed": 1});
    let items = json!([
        event(&session, 1),
        first,
        conflicting,
        bad_shape,
        empty_data,
        unknown_session,
        "not an object",
        repeat_a,
        repeat_b,
        event(&session, 9)
    ]);
    let (status, report) = bulk(&stack, Method::POST, "/batch/events/", &key, json!({"items": items})).await;
    assert_eq!(status, 200, "{report}");
    let statuses: Vec<u64> =
        report["results"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 200, 409, 400, 400, 400, 400, 201, 409, 201]);
    assert_eq!((report["succeeded"].as_u64(), report["failed"].as_u64()), (Some(4), Some(6)));
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[1]["duplicate"], true);
    assert_eq!(results[1]["id"], existing_id.as_str());
    assert_eq!(results[2]["error"]["code"], "ID_CONFLICT");
    assert_eq!(results[3]["error"]["details"]["field"], "name");
    assert_eq!(results[4]["error"]["details"]["fields"][0]["code"], "DATA_EMPTY");
    assert_eq!(results[5]["error"]["details"]["fields"][0]["code"], "SESSION_NOT_FOUND");
    assert_eq!(results[6]["error"]["details"]["field"], "body");
    for failed in results.iter().filter(|r| r["status"].as_u64() >= Some(400)) {
        assert!(failed["error"]["message"].is_string() && failed["error"]["details"].is_object());
        assert!(failed.get("id").is_none());
    }
    let (_, stored) = stack.get(&format!("/events/{existing_id}"), &key).await;
    assert_eq!(stored["data"], json!({"i": 0}), "a conflicting id never overwrites");
    let all = stack.all_pages(&format!("/events?session={session}"), &key, 100).await;
    assert_eq!(all.len(), 4, "1 earlier + 3 created");

    let (status, lean) =
        bulk(&stack, Method::POST, "/batch/events?return=failures", &key, json!([event(&session, 20), {"bad": 1}]))
            .await;
    assert_eq!(status, 200);
    assert_eq!(lean["results"].as_array().unwrap().len(), 1);
    assert_eq!(lean["results"][0]["index"], 1, "indexes keep their meaning");
    assert_eq!((lean["succeeded"].as_u64(), lean["failed"].as_u64()), (Some(1), Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_writes_all_or_nothing() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;

    let good: Vec<Value> = (0..100).map(|i| event(&session, i)).collect();
    let (status, body) =
        bulk(&stack, Method::POST, "/batch/events", &key, json!({"mode": "atomic", "items": good})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["ids"].as_array().unwrap().len(), 100);
    assert_eq!(count(&stack, &key, &session).await, 100);

    let mut with_bad: Vec<Value> = (100..110).map(|i| event(&session, i)).collect();
    with_bad[3]["data"] = json!([]);
    with_bad[7]["timestamp"] = json!("never");
    let (status, body) =
        bulk(&stack, Method::POST, "/batch/events", &key, json!({"mode": "atomic", "items": with_bad})).await;
    let details = assert_envelope(status, &body, 400, "VALIDATION_FAILED");
    let failed: Vec<u64> =
        details["failures"].as_array().unwrap().iter().map(|f| f["index"].as_u64().unwrap()).collect();
    assert_eq!(failed, [3, 7]);
    assert_eq!(count(&stack, &key, &session).await, 100, "nothing written");

    let too_many: Vec<Value> = (0..101).map(|i| event(&session, i)).collect();
    let (status, body) =
        bulk(&stack, Method::POST, "/batch/events", &key, json!({"mode": "atomic", "items": too_many})).await;
    assert_eq!(assert_envelope(status, &body, 400, "ATOMIC_LIMIT_EXCEEDED")["max_items"], 100);

    let taken = body_id(&stack, &key, &session).await;
    let mut reuse = event(&session, 500);
    reuse["id"] = json!(taken);
    let (status, body) = bulk(
        &stack,
        Method::POST,
        "/batch/events",
        &key,
        json!({"mode": "atomic", "items": [event(&session, 501), reuse]}),
    )
    .await;
    let details = assert_envelope(status, &body, 409, "ATOMIC_CONFLICT");
    assert_eq!(details["failures"][0]["index"], 1);
    assert_eq!(count(&stack, &key, &session).await, 100);

    let (status, body) =
        bulk(&stack, Method::POST, "/batch/events", &key, json!({"mode": "sometimes", "items": []})).await;
    assert_eq!(assert_envelope(status, &body, 400, "VALIDATION_FAILED")["field"], "mode");
}

async fn count(stack: &TestStack, key: &str, session: &str) -> usize {
    stack.all_pages(&format!("/events?session={session}"), key, 1000).await.len()
}

async fn body_id(stack: &TestStack, key: &str, session: &str) -> String {
    let (_, page) = stack.get(&format!("/events?session={session}&limit=1"), key).await;
    page["items"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_413_with_the_limits_in_details() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let small = json!({"session_id": session, "category": "c", "name": "n", "data": {"a": 1}, "timestamp": "2021-06-15T00:00:00Z"});
    let items: Vec<Value> = (0..10_001).map(|_| small.clone()).collect();
    let (status, body) = bulk(&stack, Method::POST, "/batch/events", &key, json!(items)).await;
    let details = assert_envelope(status, &body, 413, "BATCH_TOO_LARGE");
    assert_eq!((details["max_items"].as_u64(), details["max_bytes"].as_u64()), (Some(10_000), Some(5 * 1024 * 1024)));

    let blob = "x".repeat(60_000);
    let big: Vec<Value> = (0..90).map(|_| json!({"session_id": session, "category": "c", "name": "n", "data": {"b": blob}, "timestamp": "2021-06-15T00:00:00Z"})).collect();
    let (status, body) = bulk(&stack, Method::POST, "/batch/events", &key, json!(big)).await;
    let details = assert_envelope(status, &body, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!((details["max_items"].as_u64(), details["max_bytes"].as_u64()), (Some(10_000), Some(5 * 1024 * 1024)));

    for (body, field) in
        [(json!({}), "items"), (json!({"items": 5}), "items"), (json!(3), "body"), (json!([]), "items")]
    {
        let (status, answer) = bulk(&stack, Method::POST, "/batch/events", &key, body).await;
        assert_eq!(assert_envelope(status, &answer, 400, "VALIDATION_FAILED")["field"], field);
    }
    let (status, body) = stack.call(Method::POST, "/batch/events", Some(&key), Some("[{".into())).await;
    assert_envelope(status, &body, 400, "MALFORMED_JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_patch_delete_restore() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let items: Vec<Value> = (0..30).map(|i| event(&session, i)).collect();
    let (_, created) = bulk(&stack, Method::POST, "/batch/events", &key, json!(items)).await;
    let ids: Vec<String> =
        created["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let missing = uuid::Uuid::now_v7().to_string();

    let patch = json!({"items": [
        {"id": ids[0], "changes": {"name": "renamed"}},
        {"id": missing, "changes": {"name": "x"}},
        {"id": ids[1], "changes": {"data": {}}},
        {"id": ids[2], "changes": {"session_id": session}},
        {"id": ids[3]},
        {"id": ids[0], "changes": {"name": "again"}},
        {"id": "nope", "changes": {"name": "x"}},
    ]});
    let (status, report) = bulk(&stack, Method::PATCH, "/batch/events", &key, patch).await;
    assert_eq!(status, 200, "{report}");
    let statuses: Vec<u64> =
        report["results"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 404, 400, 400, 400, 400, 404]);
    assert_eq!(stack.get(&format!("/events/{}", ids[0]), &key).await.1["name"], "renamed");

    let atomic_bad = json!({"mode": "atomic", "items": [{"id": ids[4], "changes": {"name": "a"}}, {"id": missing, "changes": {"name": "b"}}]});
    let (status, body) = bulk(&stack, Method::PATCH, "/batch/events", &key, atomic_bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["failures"][0]["index"], 1);
    assert_eq!(stack.get(&format!("/events/{}", ids[4]), &key).await.1["name"], "e4", "nothing written");
    let atomic_ok = json!({"mode": "atomic", "items": [{"id": ids[4], "changes": {"name": "a"}}, {"id": ids[5], "changes": {"category": "nav"}}]});
    let (status, body) = bulk(&stack, Method::PATCH, "/batch/events", &key, atomic_ok).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ids"], json!([ids[4], ids[5]]));
    assert_eq!(stack.get(&format!("/events/{}", ids[5]), &key).await.1["category"], "nav");

    let (status, report) =
        bulk(&stack, Method::DELETE, "/batch/events", &key, json!({"ids": [ids[10], missing, ids[11], ids[10], 7]}))
            .await;
    assert_eq!(status, 200, "{report}");
    let statuses: Vec<u64> =
        report["results"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [204, 404, 204, 400, 400]);
    assert_eq!(stack.get(&format!("/events/{}", ids[10]), &key).await.0, 404);
    let (_, again) = bulk(&stack, Method::DELETE, "/batch/events/", &key, json!({"ids": [ids[10]]})).await;
    assert_eq!(again["results"][0]["status"], 404, "deleting twice is 404");
    let remaining = stack.all_pages(&format!("/events?session={session}"), &key, 100).await;
    assert_eq!(remaining.len(), 28);

    let (status, report) =
        bulk(&stack, Method::POST, "/batch/events/restore", &key, json!({"ids": [ids[10], missing]})).await;
    assert_eq!(status, 200);
    let statuses: Vec<u64> =
        report["results"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 404]);
    assert_eq!(stack.get(&format!("/events/{}", ids[10]), &key).await.0, 200);

    let other = stack.key("other").await;
    let (_, theirs) = bulk(&stack, Method::DELETE, "/batch/events", &other, json!({"ids": [ids[12]]})).await;
    assert_eq!(theirs["results"][0]["status"], 404, "another tenant's id is not found");
    assert_eq!(stack.get(&format!("/events/{}", ids[12]), &key).await.0, 200);
}

/// Issue 9, defect 5: bulk PATCH went around the stored-event size limit that single PATCH
/// enforces. Both now take one update path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_patch_enforces_the_stored_event_size_limit_like_single_patch() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let mut items = vec![event(&session, 0), event(&session, 1)];
    for item in &mut items {
        item["metadata"] = json!({"note": "m".repeat(30_000)});
    }
    let (status, created) = bulk(&stack, Method::POST, "/batch/events", &key, json!(items)).await;
    assert_eq!(status, 200, "{created}");
    let ids: Vec<String> =
        created["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    // Each change is small; the event it makes is over the 64 KiB stored-event limit.
    let grow = json!({"data": {"blob": "d".repeat(40_000)}});

    let (status, single) =
        stack.call(Method::PATCH, &format!("/events/{}", ids[0]), Some(&key), Some(grow.to_string())).await;
    assert_eq!(status, 400, "{single}");
    assert!(single.to_string().contains("TOO_LARGE"), "{single}");

    let (status, report) =
        bulk(&stack, Method::PATCH, "/batch/events", &key, json!({"items": [{"id": ids[1], "changes": grow}]})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["results"][0]["status"], 400, "{report}");
    assert!(report["results"][0].to_string().contains("TOO_LARGE"), "{report}");
    for id in &ids {
        let (_, stored) = stack.get(&format!("/events/{id}"), &key).await;
        assert!(stored["data"].get("blob").is_none(), "nothing grew: {id}");
    }
}

/// Issue 9, defect 8: a client-chosen id is written on condition that it is free, so of
/// concurrent creates with different content exactly one wins (201) and the others get 409
/// `ID_CONFLICT`; with the same content the others are duplicates (200), never doubles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_client_id_have_one_winner() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    for same_content in [false, true] {
        let id = uuid::Uuid::now_v7().to_string();
        let calls = (0..8).map(|i| {
            let data = if same_content { json!({"v": "same"}) } else { json!({"v": i}) };
            let item = json!({"id": id, "session_id": session, "category": "c", "name": "n", "data": data, "timestamp": "2021-06-15T00:00:00Z"});
            let (stack, key) = (&stack, key.clone());
            async move { bulk(stack, Method::POST, "/batch/events", &key, json!([item])).await }
        });
        let answers = futures::future::join_all(calls).await;
        let mut statuses: Vec<u64> = answers
            .iter()
            .map(|(status, report)| {
                assert_eq!(*status, 200, "{report}");
                report["results"][0]["status"].as_u64().unwrap()
            })
            .collect();
        statuses.sort();
        let expected_others = if same_content { 200 } else { 409 };
        let mut expected_statuses = [vec![201], vec![expected_others; 7]].concat();
        expected_statuses.sort();
        assert_eq!(statuses, expected_statuses, "same content: {same_content}");
        let winner = answers.iter().position(|(_, r)| r["results"][0]["status"] == 201).unwrap();
        let (_, stored) = stack.get(&format!("/events/{id}"), &key).await;
        let expected = if same_content { json!({"v": "same"}) } else { json!({"v": winner}) };
        assert_eq!(stored["data"], expected, "the winner's content is what is stored");
        if !same_content {
            let loser = answers.iter().find(|(_, r)| r["results"][0]["status"] == 409).unwrap();
            assert_eq!(loser.1["results"][0]["error"]["code"], "ID_CONFLICT");
        }
    }
}

/// `make test` runs the suite a second time with `ARGUS_TEST_FAULTS=steady`: this checks that
/// the faults are really there in that pass (and absent in the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steady_faults_pass_really_throttles() {
    let stack = TestStack::start().await;
    let Some(proxy) = &stack.proxy else {
        assert!(argus_tests::steady_faults().is_none());
        return;
    };
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let items: Vec<Value> = (0..500).map(|i| event(&session, i)).collect();
    let (status, report) = bulk(&stack, Method::POST, "/batch/events", &key, json!(items)).await;
    assert_eq!((status, report["succeeded"].as_u64()), (200, Some(500)), "{}", report["failed"]);
    // Client-chosen ids go through transactions, which the proxy cancels now and then (20 %:
    // a few rounds of 3 transactions make one all but certain). Throttles hit 3 % of calls:
    // the first rounds' 70-odd calls miss them about one time in ten, so rounds continue until
    // every kind of fault was seen (each round adds a dozen calls more).
    for _ in 0..20 {
        let with_ids: Vec<Value> = (0..300)
            .map(|i| {
                let mut item = event(&session, i);
                item["id"] = json!(uuid::Uuid::now_v7());
                item
            })
            .collect();
        let (status, report) = bulk(&stack, Method::POST, "/batch/events", &key, json!(with_ids)).await;
        assert_eq!((status, report["succeeded"].as_u64()), (200, Some(300)), "{}", report["failed"]);
        let stats = proxy.stats();
        if stats.transaction_conflicts > 0 && stats.throttles > 0 && stats.writes_held_back > 0 {
            break;
        }
    }
    let stats = proxy.stats();
    assert!(
        stats.writes_held_back > 0 && stats.throttles > 0 && stats.transaction_conflicts > 0,
        "faults were injected: {stats:?}"
    );
}

/// A bulk report must fit in Lambda's answer: 2,000 items each failing on 40 fields would
/// report about 8 MB (API Gateway's 500). Past the budget, failures keep index, status and code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_failure_report_is_compacted_to_fit_the_answer() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let changes: serde_json::Map<String, Value> =
        (0..40).map(|i| (format!("unknown_field_{i:02}"), json!(1))).collect();
    let items: Vec<Value> =
        (0..2_000).map(|_| json!({"id": uuid::Uuid::now_v7(), "changes": changes.clone()})).collect();
    let (status, report) = bulk(&stack, Method::PATCH, "/batch/events", &key, json!({"items": items})).await;
    assert_eq!(status, 200, "{}", report.to_string().chars().take(300).collect::<String>());
    assert_eq!(report["failed"], 2_000);
    assert!(report.to_string().len() < 4 * 1024 * 1024);
    let first = &report["results"][0];
    assert_eq!((first["index"].as_u64(), first["status"].as_u64()), (Some(0), Some(400)));
    assert!(first["error"]["code"].is_string());
    assert_eq!(first["error"]["details"]["compacted"], true);
}
