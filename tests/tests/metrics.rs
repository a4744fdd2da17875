//! The EMF records the handlers write (issue 11), parsed and checked: request counts and
//! latency by route and status class, events accepted, stored (with ingestion lag), rejected by
//! code, duplicates. Each test runs in its own process (nextest), so capturing is per test.

use argus_tests::{eventually, Method, TestStack};
use serde_json::{json, Value};

/// Records with `metric`, whose dimensions match `dims`.
fn records<'a>(all: &'a [Value], metric: &str, dims: &[(&str, &str)]) -> Vec<&'a Value> {
    all.iter().filter(|r| !r[metric].is_null() && dims.iter().all(|(k, v)| r[*k] == *v)).collect()
}

fn sum(records: &[&Value], metric: &str) -> f64 {
    records
        .iter()
        .map(|r| r[metric].as_f64().unwrap_or_else(|| r[metric].as_array().map_or(0.0, |a| a.len() as f64)))
        .sum()
}

/// How many values of `metric` the records hold: EMF writes one value as a number, several as
/// an array (so a sum of the field would add milliseconds when the values land in separate
/// records, one per processor invocation).
fn count_values(records: &[&Value], metric: &str) -> usize {
    records.iter().map(|r| r[metric].as_array().map_or(usize::from(r[metric].is_number()), Vec::len)).sum()
}

/// Every record is valid EMF: each metric and dimension the directive names is a member.
fn assert_emf(record: &Value) {
    let directive = &record["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Argus", "{record}");
    assert!(record["_aws"]["Timestamp"].is_i64(), "{record}");
    for set in directive["Dimensions"].as_array().unwrap() {
        for name in set.as_array().unwrap() {
            assert!(record[name.as_str().unwrap()].is_string(), "dimension {name} missing: {record}");
        }
    }
    for metric in directive["Metrics"].as_array().unwrap() {
        assert!(!record[metric["Name"].as_str().unwrap()].is_null(), "{record}");
        assert!(["Count", "Milliseconds"].contains(&metric["Unit"].as_str().unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_write_emf_for_requests_and_events() {
    argus_core::metrics::capture();
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("metered").await;
    let session = stack.session(&key).await;
    let event = |name: &str, data: Value| json!({"session_id": session, "category": "c", "name": name, "data": data, "timestamp": "2021-06-15 00:00:00"});
    // Three accepted: two stored, one an error record (empty data) once processed.
    let mut ids = Vec::new();
    for body in [event("a", json!({"k": 1})), event("b", json!({"k": 2})), event("c", json!({}))] {
        let (status, accepted) = stack.post("/events", &key, body).await;
        assert_eq!(status, 202);
        ids.push(accepted["id"].as_str().unwrap().to_string());
    }
    let (status, _) = stack.post("/events", &key, json!({"nope": 1})).await;
    assert_eq!(status, 400);
    eventually(15, "processing", || async {
        let stored = stack.get(&format!("/events/{}", ids[1]), &key).await.0 == 200
            && stack.get(&format!("/events/{}", ids[0]), &key).await.0 == 200;
        let recorded = stack.get(&format!("/errors?event_id={}", ids[2]), &key).await.1["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty());
        (stored && recorded).then_some(())
    })
    .await;
    // Bulk: one stored, one refused (missing session), one duplicate of an earlier id.
    let mut duplicate = event("a", json!({"k": 1}));
    duplicate["id"] = json!(ids[0]);
    let mut unknown = event("x", json!({"k": 1}));
    unknown["session_id"] = json!("0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b");
    let (status, report) = stack
        .call(
            Method::POST,
            "/batch/events",
            Some(&key),
            Some(json!([event("d", json!({"k": 4})), unknown, duplicate]).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{report}");

    let all = argus_core::metrics::take_captured();
    all.iter().for_each(assert_emf);

    let created =
        records(&all, "Requests", &[("Route", "POST /events"), ("StatusClass", "2xx"), ("Function", "argus-events")]);
    assert_eq!(sum(&created, "Requests"), 3.0);
    assert!(created.iter().all(|r| r["Latency"].as_f64().is_some_and(|ms| ms >= 0.0)));
    let refused = records(&all, "Requests", &[("Route", "POST /events"), ("StatusClass", "4xx")]);
    assert_eq!(sum(&refused, "Requests"), 1.0);
    let dims = &created[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
    assert_eq!(dims, &json!([["Service"], ["Service", "Function"], ["Service", "Function", "Route", "StatusClass"]]));

    let accepted = records(&all, "EventsAccepted", &[("Function", "argus-events")]);
    assert_eq!(sum(&accepted, "EventsAccepted"), 3.0);
    let processor = records(&all, "EventsAccepted", &[("Function", "argus-processor")]);
    assert_eq!(sum(&processor, "EventsAccepted"), 3.0);
    let stored = records(&all, "EventsStored", &[("Function", "argus-processor")]);
    assert_eq!(sum(&stored, "EventsStored"), 2.0);
    let lag = records(&all, "IngestionLag", &[("Function", "argus-processor")]);
    assert_eq!(count_values(&lag, "IngestionLag"), 2, "one lag value per stored event");
    let rejected =
        records(&all, "EventsRejectedByCode", &[("Function", "argus-processor"), ("ErrorCode", "DATA_EMPTY")]);
    assert_eq!(sum(&rejected, "EventsRejectedByCode"), 1.0);

    let bulk = records(&all, "EventsAccepted", &[("Function", "argus-batch")]);
    assert_eq!(sum(&bulk, "EventsAccepted"), 3.0);
    assert_eq!(sum(&records(&all, "EventsStored", &[("Function", "argus-batch")]), "EventsStored"), 1.0);
    assert_eq!(sum(&records(&all, "EventsDuplicate", &[("Function", "argus-batch")]), "EventsDuplicate"), 1.0);
    let by_code =
        records(&all, "EventsRejectedByCode", &[("Function", "argus-batch"), ("ErrorCode", "SESSION_NOT_FOUND")]);
    assert_eq!(sum(&by_code, "EventsRejectedByCode"), 1.0, "{all:?}");
    // Client-chosen values never become dimensions.
    for record in &all {
        let sets = record["_aws"]["CloudWatchMetrics"][0]["Dimensions"].to_string();
        assert!(!sets.contains("tenant") && !sets.contains("stream"), "{record}");
    }
}
