//! Issue 12, second part: stream status, `GET /query/events` and `POST /query/aggregate`,
//! answered from the rollups the aggregator keeps from the table's change stream (DynamoDB
//! Local's Streams, delivered by the local event source mapping), checked against a
//! brute-force fold over the raw events read back, after duplicates, redeliveries, updates,
//! soft deletes, restores and expiry.

use std::collections::{BTreeMap, BTreeSet};

use argus_core::keys::{rollup_pk, rollup_sk};
use argus_local::table_stream::StreamConsumer;
use argus_models::rollup::{DimKind, Level};
use argus_tests::{assert_envelope, eventually, Method, TestStack};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, DurationRound, Utc};
use futures::StreamExt;
use serde_json::{json, Value};

fn fmt(t: DateTime<Utc>) -> String {
    argus_models::time::format(&t)
}

fn parse(t: &str) -> DateTime<Utc> {
    argus_models::time::parse("t", t).unwrap()
}

/// `GET /streams/{id}/status`, with `status` checked against the clock: `active` while the
/// last arrival is under 5 minutes old, then `idle`. A slow run may cross that line, so the
/// expected value is taken from the time before and after the call (unchecked when the two
/// straddle it).
async fn stream_status(stack: &TestStack, key: &str, stream: &str) -> Value {
    let before = Utc::now();
    let (status, answer) = stack.get(&format!("/streams/{stream}/status"), key).await;
    let after = Utc::now();
    assert_eq!(status, 200, "{answer}");
    let last = parse(answer["last_event_timestamp"].as_str().expect("last_event_timestamp"));
    // The server compares whole seconds against 300: a second's margin either side.
    if after - last < Duration::seconds(299) {
        assert_eq!(answer["status"], "active", "{answer}");
    } else if before - last >= Duration::seconds(301) {
        assert_eq!(answer["status"], "idle", "{answer}");
    }
    answer
}

/// Delivers the whole change stream again, from its start, to the aggregator: what Lambda
/// does when it retries, or when a batch is delivered twice.
async fn redeliver_everything(stack: &TestStack) -> usize {
    let (binary, source) = stack.template.stream_consumers.get_key_value("argus-aggregator").unwrap();
    let endpoint = std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").unwrap();
    let mut consumer = StreamConsumer::new(binary, &stack.provisioned.table, &endpoint, source);
    let function = stack.functions.function(binary).unwrap().clone();
    let mut delivered = 0;
    loop {
        let report = consumer.drain_once(&function).await.unwrap();
        delivered += report.records;
        if report.records == 0 && report.filtered_out == 0 {
            return delivered;
        }
    }
}

/// `POST /ingest/batch`, every item stored (or a duplicate of a stored one), sent as a careful
/// client sends (the API's contract, README "Bulk"): items answered 503 or 429 with
/// `retryable` go again with the id they were given, and a whole answer of 5xx or 429 is sent
/// again when every event carries its id (a duplicate is then answered 200). At most 5 rounds,
/// 1 to 8 s apart. DynamoDB Local serves one request at a time: under the suite's load a batch
/// can reach the function's deadline, which the API reports as retryable, where AWS would not.
async fn ingest(stack: &TestStack, key: &str, stream: &str, events: &[Value]) {
    let mut pending: Vec<Value> = events.to_vec();
    for round in 0..5u32 {
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1 << (round - 1))).await;
        }
        let (status, report) = stack.post("/ingest/batch", key, json!({"stream_id": stream, "events": pending})).await;
        let resendable = pending.iter().all(|e| e["event_id"].is_string());
        if argus_tests::overloaded(status, &report) && resendable && round < 4 {
            eprintln!("batch resent after {status} {report}");
            continue;
        }
        assert!(status == 200 || status == 201, "{status} {report}");
        let results = report["results"].as_array().expect("results");
        assert_eq!(results.len(), pending.len(), "one result per event: {report}");
        let mut again = Vec::new();
        for result in results {
            let item = result["status"].as_u64().unwrap_or(0);
            if (item == 503 || item == 429) && result["error"]["details"]["retryable"] == true {
                let index = result["index"].as_u64().expect("index") as usize;
                let mut event = pending[index].clone();
                event["event_id"] = result["id"].clone();
                again.push(event);
            } else {
                assert!(item == 200 || item == 201, "{result}");
            }
        }
        if again.is_empty() {
            return;
        }
        pending = again;
    }
    panic!("events still not stored after 5 rounds");
}

async fn call(stack: &TestStack, method: Method, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    stack.call(method, path, Some(key), body.map(|b| b.to_string())).await
}

/// Every event of the stream in the window, through `GET /query/events` (all pages).
async fn query_all(stack: &TestStack, key: &str, query: &str) -> (Vec<Value>, u64) {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/query/events?{query}&limit=1000&cursor={c}"),
            None => format!("/query/events?{query}&limit=1000"),
        };
        let (status, page) = stack.get(&path, key).await;
        assert_eq!(status, 200, "{page}");
        let page_total = page["total_count"].as_u64().unwrap();
        assert_eq!(*total.get_or_insert(page_total), page_total, "total_count is the same on every page");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        assert_eq!(page["has_more"].as_bool().unwrap(), page["next_cursor"].is_string());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return (events, total.unwrap()),
        }
    }
}

/// The brute-force answer: a plain fold over raw events, written apart from the server's.
fn brute_force(events: &[Value], body: &Value) -> Vec<Value> {
    let start = parse(body["time_window"]["start"].as_str().unwrap());
    let end = parse(body["time_window"]["end"].as_str().unwrap());
    let interval = body["interval"].as_str().map(|i| match i {
        "minute" => 60,
        "hour" => 3_600,
        _ => 86_400,
    });
    let get = |event: &Value, field: &str| -> Value {
        if field == "*" {
            return event.clone();
        }
        match field.strip_prefix("data.") {
            Some(path) => path.split('.').fold(event["data"].clone(), |v, k| v[k].clone()),
            None => event[field].clone(),
        }
    };
    let mut rows: BTreeMap<(Option<i64>, Option<String>), Vec<&Value>> = BTreeMap::new();
    for event in events {
        let t = parse(event["timestamp"].as_str().unwrap());
        if t < start || t >= end {
            continue;
        }
        let bucket = interval.map(|s| t.timestamp().div_euclid(s) * s);
        let group = body["group_by"].as_str().and_then(|g| {
            let v = get(event, g);
            (!v.is_null()).then(|| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        });
        rows.entry((bucket, group)).or_default().push(event);
    }
    rows.into_iter()
        .map(|((bucket, group), events)| {
            let values: Vec<Value> = body["aggregations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let field = a["field"].as_str().unwrap_or("*");
                    let present: Vec<Value> = events.iter().map(|e| get(e, field)).filter(|v| !v.is_null()).collect();
                    let numbers: Vec<i64> = present.iter().filter_map(Value::as_i64).collect();
                    // Sums in millionths (the test data has at most 2 decimals): exact.
                    let millionths: Vec<i128> =
                        present.iter().filter_map(Value::as_f64).map(|v| (v * 1e6).round() as i128).collect();
                    let total: i128 = millionths.iter().sum();
                    let value = match a["operation"].as_str().unwrap() {
                        "count" => json!(present.len()),
                        "sum" if total % 1_000_000 == 0 => json!((total / 1_000_000) as i64),
                        "sum" => json!(decimal(total)),
                        "avg" if millionths.is_empty() => Value::Null,
                        "avg" => json!(decimal(total) / millionths.len() as f64),
                        "min" => numbers.iter().min().map_or(Value::Null, |n| json!(n)),
                        "max" => numbers.iter().max().map_or(Value::Null, |n| json!(n)),
                        "count_distinct" => {
                            json!(present.iter().map(|v| v.to_string()).collect::<BTreeSet<_>>().len())
                        }
                        other => panic!("{other}"),
                    };
                    json!({"field": field, "operation": a["operation"], "value": value})
                })
                .collect();
            let mut row = serde_json::Map::new();
            if body["group_by"].is_string() {
                row.insert("group".into(), group.map_or(Value::Null, Value::String));
            }
            if let Some(bucket) = bucket {
                row.insert("interval_start".into(), json!(fmt(DateTime::from_timestamp(bucket, 0).unwrap())));
            }
            row.insert("values".into(), Value::Array(values));
            Value::Object(row)
        })
        .filter(|row| row["values"].as_array().unwrap().iter().any(|v| v["operation"] != "count" || v["value"] != 0))
        .collect()
}

/// Millionths as the nearest double.
fn decimal(millionths: i128) -> f64 {
    let sign = if millionths < 0 { "-" } else { "" };
    let m = millionths.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000).parse().unwrap()
}

/// Compares avg values with a tolerance (float division), everything else exactly.
fn assert_rows_eq(got: &[Value], want: &[Value], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rows\n got {got:?}\nwant {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["group"], w["group"], "{what}");
        assert_eq!(g["interval_start"], w["interval_start"], "{what}");
        for (gv, wv) in g["values"].as_array().unwrap().iter().zip(w["values"].as_array().unwrap()) {
            if gv["operation"] == "avg" && gv["value"].is_number() {
                let (a, b) = (gv["value"].as_f64().unwrap(), wv["value"].as_f64().unwrap());
                assert!((a - b).abs() < 1e-9, "{what}: avg {a} != {b}");
            } else {
                assert_eq!(gv["value"], wv["value"], "{what}: {gv} vs {wv}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_and_total_counts_equal_a_fold_over_the_raw_events() {
    let stack = TestStack::start_with_changes().await;
    let key = stack.key("acme").await;
    let mut rng = fastrand::Rng::with_seed(12);
    let now = Utc::now();
    let types = ["click", "view", "buy", "scroll"];
    let categories = [Some("ui"), Some("api"), None];
    // 400 events over the last 3 hours, a third of them in the last 10 minutes.
    let events: Vec<Value> = (0..400)
        .map(|i| {
            let ago = if i % 3 == 0 { rng.i64(5_000..600_000) } else { rng.i64(5_000..3 * 3_600_000) };
            let mut event = json!({
                "event_id": uuid::Uuid::now_v7(),
                "event_type": types[rng.usize(..types.len())],
                "timestamp": fmt(now - Duration::milliseconds(ago)),
                "data": {"n": rng.i64(-50..500), "user": format!("u{}", rng.u8(..20))},
            });
            if let Some(category) = categories[rng.usize(..categories.len())] {
                event["category"] = json!(category);
            }
            event
        })
        .collect();
    for chunk in events.chunks(200) {
        ingest(&stack, &key, "web", chunk).await;
    }
    // A client retry of a whole batch: duplicates, nothing stored twice.
    ingest(&stack, &key, "web", &events[..100]).await;
    let stored_by = Utc::now();
    stack.drain_changes().await;

    let ids: Vec<String> = events.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    // Updates (type, category, timestamp, data), soft deletes, restores; some twice.
    let changes: Vec<(Method, String, Option<Value>)> = (0..100)
        .map(|i| {
            let id = &ids[rng.usize(..ids.len())];
            match i % 8 {
                0 | 1 => (Method::PATCH, format!("/events/{id}"), Some(json!({"name": types[rng.usize(..4)]}))),
                2 => (Method::PATCH, format!("/events/{id}"), Some(json!({"category": "moved"}))),
                3 => {
                    let t = fmt(now - Duration::milliseconds(rng.i64(5_000..3 * 3_600_000)));
                    (Method::PATCH, format!("/events/{id}"), Some(json!({"timestamp": t})))
                }
                4 => (Method::PATCH, format!("/events/{id}"), Some(json!({"data": {"n": rng.i64(0..9), "user": "z"}}))),
                5 | 6 => (Method::DELETE, format!("/events/{id}"), None),
                _ => (Method::POST, format!("/events/{id}/restore"), None),
            }
        })
        .collect();
    let mut half = changes.len() / 2;
    for (method, path, body) in changes {
        let (status, answer) = call(&stack, method, &path, &key, body).await;
        assert!([200, 204, 404].contains(&status), "{path}: {status} {answer}");
        half = half.saturating_sub(1);
        if half == 0 {
            // Part of the stream applied while changes are still being made.
            stack.drain_changes().await;
        }
    }
    // An expired event that TTL has not deleted yet (TTL lags by up to days): its expiry is
    // set into the past directly, as time passing would. Every read must leave it out.
    let expired = &ids[1];
    let (_, stored) = stack.get(&format!("/events/{expired}"), &key).await;
    let minute_end = parse(stored["timestamp"].as_str().unwrap()).timestamp().div_euclid(60) * 60 + 60;
    stack
        .backend
        .dynamodb
        .update_item()
        .table_name(&stack.backend.table)
        .key("PK", AttributeValue::S(format!("T#acme#EVENT#{expired}")))
        .key("SK", AttributeValue::S("#META".into()))
        .update_expression("SET expires_at = :at")
        .expression_attribute_values(":at", AttributeValue::N(minute_end.to_string()))
        .send()
        .await
        .unwrap();
    stack.drain_changes().await;
    // Redelivery: the whole stream once more, then twice at the same time.
    assert!(redeliver_everything(&stack).await > 400);
    let (a, b) = tokio::join!(redeliver_everything(&stack), redeliver_everything(&stack));
    assert!(a > 0 && b > 0);

    // The truth: every visible event of the stream, read back.
    let start = fmt(now - Duration::hours(4));
    let end = fmt(now + Duration::minutes(5));
    let (stored, total) = query_all(&stack, &key, &format!("stream_id=web&start_time={start}&end_time={end}")).await;
    assert_eq!(stored.len() as u64, total, "total_count equals the events listed");
    assert!(stored.len() > 300 && stored.len() < 400, "{}", stored.len());
    assert!(stored.iter().all(|e| e["event_id"] != json!(expired)), "the expired event is hidden");
    let distinct: BTreeSet<&str> = stored.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), stored.len(), "no event listed twice");

    // Windows: aligned to hours, to minutes, and with ragged edges; filters by type.
    let hour = now.duration_trunc(Duration::hours(1)).unwrap();
    let windows = [
        (now - Duration::hours(4), now + Duration::minutes(5)),
        (hour - Duration::hours(2), hour),
        (hour - Duration::minutes(97), now - Duration::minutes(3)),
        (now - Duration::milliseconds(3_700_123), now - Duration::milliseconds(60_456)),
        (now - Duration::seconds(400), now - Duration::seconds(380)),
    ];
    for (from, to) in windows {
        let window = json!({"start": fmt(from), "end": fmt(to)});
        let in_window: Vec<Value> = stored
            .iter()
            .filter(|e| {
                let t = parse(e["timestamp"].as_str().unwrap());
                t >= from && t < to
            })
            .cloned()
            .collect();
        let (_, page) = stack
            .get(&format!("/query/events?stream_id=web&start_time={}&end_time={}&limit=1", fmt(from), fmt(to)), &key)
            .await;
        assert_eq!(page["total_count"].as_u64(), Some(in_window.len() as u64), "{window}");
        let clicks = in_window.iter().filter(|e| e["event_type"] == "click").count() as u64;
        let (_, page) = stack
            .get(
                &format!("/query/events?stream_id=web&event_type=click&start_time={}&end_time={}", fmt(from), fmt(to)),
                &key,
            )
            .await;
        assert_eq!(page["total_count"].as_u64(), Some(clicks), "clicks in {window}");
        assert_eq!(page["events"].as_array().unwrap().len() as u64, clicks.min(100));

        let bodies = [
            json!({"aggregations": [{"field": "*", "operation": "count"}]}),
            json!({"aggregations": [{"operation": "count"}], "group_by": "event_type", "interval": "hour"}),
            json!({"aggregations": [{"operation": "count"}], "group_by": "category", "interval": "minute"}),
            json!({"aggregations": [{"operation": "count"}], "group_by": "category"}),
            json!({"aggregations": [
                {"field": "data.n", "operation": "sum"}, {"field": "data.n", "operation": "avg"},
                {"field": "data.n", "operation": "min"}, {"field": "data.n", "operation": "max"},
                {"field": "data.user", "operation": "count_distinct"}, {"field": "category", "operation": "count"}
            ], "group_by": "event_type"}),
            json!({"aggregations": [{"field": "data.n", "operation": "sum"}], "group_by": "data.user", "interval": "hour"}),
        ];
        for mut body in bodies {
            body["stream_id"] = json!("web");
            body["time_window"] = window.clone();
            let (status, answer) = stack.post("/query/aggregate", &key, body.clone()).await;
            assert_eq!(status, 200, "{body}: {answer}");
            let expected_source = if body["aggregations"][0]["operation"] == "count" && body["group_by"] != "data.user"
            {
                "rollups"
            } else {
                "raw"
            };
            assert_eq!(answer["source"], expected_source, "{body}");
            assert_eq!(answer["count_distinct"], "exact");
            assert_rows_eq(answer["results"].as_array().unwrap(), &brute_force(&stored, &body), &body.to_string());
        }
    }

    // Status: every stored event counted once, whatever was redelivered.
    let stream = stream_status(&stack, &key, "web").await;
    assert_eq!(stream["events_processed"], 400, "{stream}");
    assert_eq!(stream["errors"], json!({"total": 0, "last_hour": 0}));
    // Lag covers the last few minutes only: a slow run may have stored its last event earlier.
    match stream["lag_seconds"].as_f64() {
        Some(lag) => assert!(lag > 0.0, "{stream}"),
        None => assert!(Utc::now() - stored_by > Duration::minutes(3), "a recent lag is reported: {stream}"),
    }
}

/// A stream's summed fields: sum, avg and count of them come from the rollups, equal to a
/// fold over the raw events read back, through updates, soft deletes, restores and the change
/// stream delivered again (twice at once). Events stored before the field existed, and values
/// that cannot be summed exactly, send their windows to raw events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summed_fields_answer_sums_from_the_rollups_exactly() {
    let stack = TestStack::start_with_changes().await;
    let key = stack.key("acme").await;
    let mut rng = fastrand::Rng::with_seed(21);
    let now = Utc::now();
    let patch = |body: Value| call(&stack, Method::PATCH, "/streams/shop", &key, Some(body));
    // Stored before the fields are summed.
    let early =
        json!({"event_type": "buy", "timestamp": fmt(now - Duration::hours(30)), "data": {"amount": 5, "qty": 1}});
    ingest(&stack, &key, "shop", &[early]).await;

    for (body, field, code) in [
        (json!({"rollup_fields": "data.amount"}), "rollup_fields", "INVALID_TYPE"),
        (json!({"rollup_fields": ["event_type"]}), "rollup_fields[0]", "NOT_A_DATA_FIELD"),
        (json!({"rollup_fields": ["data.amount", "data.amount"]}), "rollup_fields[1]", "DUPLICATE_FIELD"),
        (
            json!({"rollup_fields": (0..9).map(|i| format!("data.f{i}")).collect::<Vec<_>>()}),
            "rollup_fields",
            "TOO_MANY_FIELDS",
        ),
    ] {
        let (status, answer) = patch(body.clone()).await;
        let details = assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
        assert_eq!(
            (details["field"].as_str(), details["fields"][0]["code"].as_str()),
            (Some(field), Some(code)),
            "{body}"
        );
    }
    let (status, stream) = patch(json!({"rollup_fields": ["data.amount", "data.qty"]})).await;
    assert_eq!(status, 200, "{stream}");
    let since = parse(stream["rollup_fields"][0]["since"].as_str().unwrap());
    assert_eq!(stream["rollup_fields"][1]["field"], "data.qty");
    assert!(since > now + Duration::seconds(60), "after every writer's cache has the field: {stream}");
    // Fields are only added: the same list keeps its `since`; one left out is a 409.
    let (status, again) = patch(json!({"rollup_fields": ["data.qty", "data.amount"]})).await;
    assert_eq!((status, &again["rollup_fields"]), (200, &stream["rollup_fields"]));
    let (status, answer) = patch(json!({"rollup_fields": ["data.qty"]})).await;
    let details = assert_envelope(status, &answer, 409, "ROLLUP_FIELDS_CANNOT_BE_REMOVED");
    assert_eq!(details["missing"], json!(["data.amount"]));
    assert_eq!(details["field"], "rollup_fields");
    // Writers stamp each event with the fields they know (here at once: one process, and the
    // PATCH refreshed its cache; in AWS within the settings cache's minute, by `since`).

    // 300 events over 8 hours: whole and decimal amounts, some without one, quantities.
    let types = ["buy", "refund", "tip"];
    let hour = now.duration_trunc(Duration::hours(1)).unwrap();
    let events: Vec<Value> = (0..300)
        .map(|_| {
            let mut data = json!({"qty": rng.i64(1..6)});
            match rng.u8(..10) {
                0 => {}
                1..=4 => data["amount"] = json!(rng.i64(-50..500)),
                _ => data["amount"] = json!(rng.i64(-5_000..50_000) as f64 / 100.0),
            }
            let mut event = json!({
                "event_id": uuid::Uuid::now_v7(),
                "event_type": types[rng.usize(..types.len())],
                "timestamp": fmt(hour - Duration::hours(10) + Duration::milliseconds(rng.i64(0..8 * 3_600_000))),
                "data": data,
            });
            if rng.bool() {
                event["category"] = json!(["web", "app"][rng.usize(..2)]);
            }
            event
        })
        .collect();
    for chunk in events.chunks(100) {
        ingest(&stack, &key, "shop", chunk).await;
    }
    stack.drain_changes().await;
    let ids: Vec<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    for i in 0..80 {
        let id = ids[rng.usize(..ids.len())];
        let (method, path, body) = match i % 6 {
            0 | 1 => (
                Method::PATCH,
                format!("/events/{id}"),
                Some(json!({"data": {"amount": rng.i64(0..99) as f64 / 4.0, "qty": 2}})),
            ),
            2 => (Method::PATCH, format!("/events/{id}"), Some(json!({"name": types[rng.usize(..3)]}))),
            3 | 4 => (Method::DELETE, format!("/events/{id}"), None),
            _ => (Method::POST, format!("/events/{id}/restore"), None),
        };
        let (status, answer) = call(&stack, method, &path, &key, body).await;
        assert!([200, 204, 404].contains(&status), "{path}: {status} {answer}");
    }
    stack.drain_changes().await;
    let (a, b) = tokio::join!(redeliver_everything(&stack), redeliver_everything(&stack));
    assert!(a > 300 && b > 300);

    let (from, to) = (hour - Duration::hours(10), hour - Duration::hours(2));
    let query = format!("stream_id=shop&start_time={}&end_time={}", fmt(from), fmt(to));
    let (stored, total) = query_all(&stack, &key, &query).await;
    assert_eq!(stored.len() as u64, total);
    assert!(stored.len() > 200, "{}", stored.len());
    let amounts = [
        json!({"field": "data.amount", "operation": "sum"}),
        json!({"field": "data.amount", "operation": "avg"}),
        json!({"field": "data.amount", "operation": "count"}),
        json!({"operation": "count"}),
    ];
    let windows = [
        (from, to),
        (from + Duration::milliseconds(17_250), to - Duration::minutes(7) - Duration::milliseconds(300)),
        (from + Duration::hours(3), from + Duration::hours(3) + Duration::seconds(40)),
    ];
    for (start, end) in windows {
        let bodies = [
            json!({"aggregations": amounts, "group_by": "event_type", "interval": "hour"}),
            json!({"aggregations": [{"field": "data.qty", "operation": "sum"}, {"field": "data.amount", "operation": "sum"}]}),
            json!({"aggregations": amounts, "group_by": "category", "interval": "minute"}),
            json!({"aggregations": [{"field": "data.amount", "operation": "avg"}], "interval": "day"}),
        ];
        for mut body in bodies {
            body["stream_id"] = json!("shop");
            body["time_window"] = json!({"start": fmt(start), "end": fmt(end)});
            let (status, answer) = stack.post("/query/aggregate", &key, body.clone()).await;
            assert_eq!(status, 200, "{body}: {answer}");
            assert_eq!(answer["source"], "rollups", "{body}");
            let in_window: Vec<Value> = stored
                .iter()
                .filter(|e| (start..end).contains(&parse(e["timestamp"].as_str().unwrap())))
                .cloned()
                .collect();
            assert_rows_eq(answer["results"].as_array().unwrap(), &brute_force(&in_window, &body), &body.to_string());
        }
    }
    // The early event was stored before `since`: its window is folded from raw events.
    let body = json!({"stream_id": "shop", "aggregations": amounts, "time_window": {"start": fmt(now - Duration::hours(31)), "end": fmt(now)}});
    let (status, answer) = stack.post("/query/aggregate", &key, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["source"], "raw");
    let (everything, _) = query_all(
        &stack,
        &key,
        &format!("stream_id=shop&start_time={}&end_time={}", fmt(now - Duration::hours(31)), fmt(now)),
    )
    .await;
    assert_rows_eq(answer["results"].as_array().unwrap(), &brute_force(&everything, &body), "with the early event");
    // A value that is not a number: the cells cannot answer its window, the raw fold names it.
    let odd = json!({"event_type": "buy", "timestamp": fmt(from + Duration::minutes(90)), "data": {"amount": "ten"}});
    ingest(&stack, &key, "shop", &[odd]).await;
    stack.drain_changes().await;
    let body = json!({"stream_id": "shop", "aggregations": [{"field": "data.amount", "operation": "sum"}], "time_window": {"start": fmt(from), "end": fmt(to)}});
    let (status, answer) = stack.post("/query/aggregate", &key, body).await;
    let details = assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
    assert_eq!(details["fields"][0]["code"], "FIELD_NOT_NUMERIC", "{answer}");
    let body = json!({"stream_id": "shop", "aggregations": [{"field": "data.qty", "operation": "sum"}], "time_window": {"start": fmt(from), "end": fmt(to)}});
    let (status, answer) = stack.post("/query/aggregate", &key, body).await;
    assert_eq!((status, &answer["source"]), (200, &json!("rollups")), "another field still answers from the rollups");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_status_counts_arrivals_and_error_records_exactly_once() {
    let stack = TestStack::start_with_changes().await.with_processor().await;
    let key = stack.key("acme").await;
    let (status, body) = stack.get("/streams/none/status", &key).await;
    assert_envelope(status, &body, 404, "NOT_FOUND");

    let now = Utc::now();
    let posting_from = Utc::now();
    let mut last_valid_post = posting_from;
    for i in 0..12 {
        last_valid_post = Utc::now();
        let event = json!({"stream_id": "pay", "event_type": "charge", "timestamp": fmt(now - Duration::seconds(i)), "data": {"i": i}});
        let (status, answer) = stack.post("/ingest/events", &key, event).await;
        assert_eq!(status, 202, "{answer}");
    }
    // Two events the processor refuses: error records counted against the stream they name.
    for _ in 0..2 {
        let bad = json!({"stream_id": "pay", "event_type": "charge", "timestamp": fmt(now), "data": {}});
        let (status, answer) = stack.post("/ingest/events", &key, bad).await;
        assert_eq!(status, 202, "accepted now, validated by the processor: {answer}");
    }
    let posted_to = Utc::now();
    eventually(30, "12 events and 2 error records counted", || async {
        stack.drain_changes().await;
        let (_, s) = stack.get("/streams/pay/status", &key).await;
        (s["events_processed"] == 12 && s["errors"]["total"] == 2).then_some(())
    })
    .await;
    let counted_at = Utc::now();
    redeliver_everything(&stack).await;
    let (a, b) = tokio::join!(redeliver_everything(&stack), redeliver_everything(&stack));
    assert!(a > 0 && b > 0);
    let asked_at = Utc::now();
    let s = stream_status(&stack, &key, "pay").await;
    assert_eq!(s["events_processed"], 12, "{s}");
    assert_eq!(s["errors"], json!({"total": 2, "last_hour": 2}), "{s}");
    assert_eq!(s["stream_id"], "pay");
    // The last arrival is one of the posts (not a redelivery).
    let last = parse(s["last_event_timestamp"].as_str().unwrap());
    assert!(last >= posting_from - Duration::seconds(1) && last <= posted_to + Duration::seconds(1), "{s}");
    // At most 12 stored in the last minute; some, while the last post (stored after it) is recent.
    let rate = s["processing_rate"].as_f64().unwrap();
    assert!(rate <= 12.0 / 60.0 + 1e-9, "{s}");
    // The last valid event was stored after its post began.
    if asked_at - last_valid_post < Duration::seconds(55) {
        assert!(rate > 0.0, "{s}");
    }
    // Received → stored, p95 over the last minutes as a power-of-two bucket's upper bound: at
    // most twice as long as the whole posting and counting took.
    let longest = (counted_at - posting_from).num_milliseconds() as f64 / 1000.0;
    match s["lag_seconds"].as_f64() {
        Some(lag) => assert!(lag > 0.0 && lag <= 2.0 * longest + 0.002, "{s}"),
        None => assert!(asked_at - last_valid_post > Duration::minutes(3), "a recent lag is reported: {s}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_events_pages_by_offset_up_to_its_cap_and_by_cursor_past_it() {
    let stack = TestStack::start_with_changes().await;
    let key = stack.key("acme").await;
    let now = Utc::now();
    let events: Vec<Value> = (0..250)
        .map(|i| json!({"event_type": if i % 5 == 0 { "rare" } else { "common" }, "timestamp": fmt(now - Duration::seconds(i * 7)), "data": {"i": i}}))
        .collect();
    ingest(&stack, &key, "feed", &events).await;
    stack.drain_changes().await;
    let (status, first) = stack.get("/query/events?stream_id=feed&limit=100", &key).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["total_count"].as_u64(), first["has_more"].as_bool()), (Some(250), Some(true)));
    let page = first["events"].as_array().unwrap();
    assert_eq!(page.len(), 100);
    assert_eq!(page[0]["data"]["i"], 0, "newest first");
    for field in ["event_id", "timestamp", "event_type", "data"] {
        assert!(!page[0][field].is_null(), "{field}");
    }
    let (_, third) = stack.get("/query/events?stream_id=feed&limit=100&offset=200", &key).await;
    let third = third["events"].as_array().unwrap().clone();
    assert_eq!(third.len(), 50);
    assert_eq!(third[0]["data"]["i"], 200);
    // The cursor reaches the same events.
    let mut cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = stack.get(&format!("/query/events?stream_id=feed&limit=100&cursor={cursor}"), &key).await;
    assert_eq!(second["events"][0]["data"]["i"], 100);
    cursor = second["next_cursor"].as_str().unwrap().to_string();
    let (status, last) = stack.get(&format!("/query/events?stream_id=feed&limit=100&cursor={cursor}"), &key).await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(last["events"].as_array().unwrap(), &third);
    assert_eq!(last["has_more"], false);
    assert!(last["next_cursor"].is_null());

    let (_, rare) = stack.get("/query/events?stream_id=feed&event_type=rare&limit=1000", &key).await;
    assert_eq!(rare["total_count"], 50);
    assert_eq!(rare["events"].as_array().unwrap().len(), 50);

    // Bad input: 400 with the envelope, naming the parameter.
    for (query, code) in [
        ("stream_id=feed&offset=10001", "OFFSET_TOO_LARGE"),
        ("stream_id=feed&offset=-1", "VALIDATION_FAILED"),
        ("stream_id=feed&limit=1001", "INVALID_LIMIT"),
        ("limit=10", "VALIDATION_FAILED"),
        ("stream_id=feed&start_time=2026-01-02T00:00:00Z&end_time=2026-01-01T00:00:00Z", "VALIDATION_FAILED"),
        ("stream_id=feed&start_time=yesterday", "VALIDATION_FAILED"),
        ("stream_id=feed&cursor=AAAA", "INVALID_CURSOR"),
        ("stream_id=feed&offset=5&cursor=x", "VALIDATION_FAILED"),
    ] {
        let (status, body) = stack.get(&format!("/query/events?{query}"), &key).await;
        assert!(status == 400, "{query}: {status} {body}");
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
    }
    let (status, body) = stack.get("/query/events?stream_id=nothing-here", &key).await;
    assert_envelope(status, &body, 404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_refuses_bad_requests_with_the_field_named() {
    let stack = TestStack::start_with_changes().await;
    let key = stack.key("acme").await;
    let now = Utc::now();
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"event_type": format!("t{i}"), "timestamp": fmt(now - Duration::seconds(i)), "data": {"n": i, "s": "text"}}))
        .collect();
    ingest(&stack, &key, "agg", &events).await;
    stack.drain_changes().await;
    let window = json!({"start": fmt(now - Duration::hours(1)), "end": fmt(now + Duration::minutes(1))});
    let base = json!({"stream_id": "agg", "time_window": window, "aggregations": [{"operation": "count"}]});
    let with = |patch: Value| {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (body, field) in [
        (with(json!({"aggregations": [{"field": "*", "operation": "median"}]})), "aggregations[0].operation"),
        (with(json!({"aggregations": [{"field": "event_type", "operation": "sum"}]})), "aggregations[0].field"),
        (with(json!({"time_window": {"start": fmt(now), "end": fmt(now - Duration::hours(1))}})), "time_window.end"),
        (
            with(json!({"time_window": {"start": "2000-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"}})),
            "time_window.end",
        ),
        (with(json!({"interval": "week"})), "interval"),
        (with(json!({"group_by": 7})), "group_by"),
        (with(json!({"aggregations": []})), "aggregations"),
        (json!({"time_window": window, "aggregations": [{"operation": "count"}]}), "stream_id"),
    ] {
        let (status, answer) = stack.post("/query/aggregate", &key, body.clone()).await;
        let details = assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
        assert_eq!(details["field"], field, "{body}: {answer}");
    }
    // A data field that holds text where a number is needed: found while folding.
    let (status, answer) = stack
        .post("/query/aggregate", &key, with(json!({"aggregations": [{"field": "data.s", "operation": "sum"}]})))
        .await;
    let details = assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
    assert_eq!(details["fields"][0]["code"], "FIELD_NOT_NUMERIC");
    // Groups are capped, on both paths.
    let (status, answer) = stack.post("/query/aggregate", &key, with(json!({"group_by": "event_type"}))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"].as_array().unwrap().len(), 30);
    let (status, body) = stack.post("/query/aggregate", &key, json!("not an object")).await;
    assert_envelope(status, &body, 400, "VALIDATION_FAILED");
    let (status, body) = stack.call(Method::POST, "/query/aggregate", Some(&key), Some("{".into())).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = stack.post("/query/aggregate", &key, with(json!({"stream_id": "unknown"}))).await;
    assert_envelope(status, &body, 404, "NOT_FOUND");
}

/// Adds `n` events to a rollup cell of stream `big` (tenant acme), as the aggregator would.
async fn add_to_cell(
    stack: &TestStack,
    level: Level,
    kind: DimKind,
    at: chrono::DateTime<Utc>,
    value: &str,
    n: u64,
) -> Result<(), String> {
    let bucket = level.bucket(at.timestamp());
    stack
        .backend
        .dynamodb
        .update_item()
        .table_name(&stack.backend.table)
        .key("PK", AttributeValue::S(rollup_pk("acme", "big", level, kind, bucket)))
        .key("SK", AttributeValue::S(rollup_sk(level, bucket, Some(90), value)))
        .update_expression("ADD n :n")
        .expression_attribute_values(":n", AttributeValue::N(n.to_string()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))
}

/// The raw fallback's cap: the rollups tell the size of the window before anything is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_fallback_past_its_cap_is_a_400_that_says_so() {
    let stack = TestStack::start_with_changes().await;
    let key = stack.key("acme").await;
    let now = Utc::now();
    // Cells say 20,001 events: written as the aggregator would, without storing 20,001 events.
    ingest(&stack, &key, "big", &[json!({"event_type": "x", "timestamp": fmt(now), "data": {"n": 1}})]).await;
    stack.drain_changes().await;
    for level in [Level::Minute, Level::Hour] {
        add_to_cell(&stack, level, DimKind::All, now, "", 20_000).await.unwrap();
    }
    let window = json!({"start": fmt(now - Duration::hours(1)), "end": fmt(now + Duration::hours(1))});
    let (status, answer) = stack
        .post("/query/aggregate", &key, json!({"stream_id": "big", "time_window": window, "aggregations": [{"field": "data.n", "operation": "max"}]}))
        .await;
    let details = assert_envelope(status, &answer, 400, "WINDOW_TOO_LARGE_FOR_RAW");
    assert_eq!(details["events_in_window"], 20_001);
    assert_eq!(details["max_raw_events"], 20_000);
    assert_eq!(details["field"], "time_window");
    let (status, answer) = stack
        .post(
            "/query/aggregate",
            &key,
            json!({"stream_id": "big", "time_window": window, "aggregations": [{"operation": "count"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["results"][0]["values"][0]["value"], 20_001);

    // Groups are capped on the rollups path too: 1,001 event types counted in the window.
    let cells = (0..=argus_models::analytics::MAX_GROUPS)
        .flat_map(|i| [Level::Minute, Level::Hour].map(|level| (level, format!("type{i}"))));
    let stack_ref = &stack;
    let writes = cells
        .map(|(level, value)| async move { add_to_cell(stack_ref, level, DimKind::EventType, now, &value, 1).await });
    let written: Vec<_> = futures::stream::iter(writes).buffer_unordered(8).collect().await;
    for result in written {
        result.expect("cell written");
    }
    let (status, answer) = stack
        .post(
            "/query/aggregate",
            &key,
            json!({"stream_id": "big", "time_window": window, "aggregations": [{"operation": "count"}], "group_by": "event_type"}),
        )
        .await;
    let details = assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
    assert_eq!(details["fields"][0]["code"], "TOO_MANY_GROUPS", "{answer}");
    assert_eq!(details["field"], "group_by");

    // The partial minutes at a window's edges are counted within a cap (100,000 in the API).
    let edge = argus_core::rollups::RawWindow {
        tenant: "acme",
        stream: "big",
        shards: argus_models::stream::DEFAULT_WRITE_SHARDS,
        from: now - Duration::seconds(1),
        to: now + Duration::seconds(1),
        event_type: None,
    };
    assert!(matches!(edge.count(&stack.backend, 1).await, Ok(1)));
    assert!(matches!(edge.count(&stack.backend, 0).await, Err(argus_core::rollups::RawError::Limit)));
}

/// The shard of an event's index key (`…#NN`).
async fn index_shards(stack: &TestStack, id: &str) -> (u32, u32) {
    let item = stack
        .backend
        .dynamodb
        .get_item()
        .table_name(&stack.backend.table)
        .key("PK", AttributeValue::S(format!("T#acme#EVENT#{id}")))
        .key("SK", AttributeValue::S("#META".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_else(|| panic!("event {id} stored"));
    let shard = |attr: &str| item[attr].as_s().unwrap().rsplit('#').next().unwrap().parse::<u32>().unwrap();
    (shard("GSI4PK"), shard("GSI3PK"))
}

/// A stream past 8,000 events/s spreads its events over more index shards: `write_shards`
/// only grows, and every reader (query pages, total_count, aggregates, the tenant's listing,
/// exports) finds the events written before and after the change, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_spread_over_more_write_shards_keeps_every_event_readable() {
    let stack = TestStack::start_with_changes().await.with_processor().await;
    let key = stack.key("acme").await;
    let start = Utc::now().duration_trunc(Duration::minutes(1)).unwrap() - Duration::minutes(40);
    let event = |i: usize| json!({"stream_id": "hot", "event_type": format!("t{}", i % 3), "timestamp": fmt(start + Duration::milliseconds(i as i64 * 2_900 + 7)), "data": {"i": i}});
    let before: Vec<Value> = (0..400).map(event).collect();
    ingest(&stack, &key, "hot", &before).await;
    let (status, stream) = stack.get("/streams/hot", &key).await;
    assert_eq!((status, &stream["write_shards"]), (200, &json!(8)), "{stream}");

    // Only 8, 16, 32 or 64, and never fewer than now.
    for bad in [json!(12), json!(128), json!("64"), json!(0)] {
        let (status, answer) =
            call(&stack, Method::PATCH, "/streams/hot", &key, Some(json!({"write_shards": bad}))).await;
        assert_eq!(assert_envelope(status, &answer, 400, "VALIDATION_FAILED")["field"], "write_shards", "{answer}");
    }
    let (status, answer) = call(&stack, Method::PATCH, "/streams/hot", &key, Some(json!({"write_shards": 64}))).await;
    assert_eq!((status, &answer["write_shards"]), (200, &json!(64)), "{answer}");
    let (status, answer) = call(&stack, Method::PATCH, "/streams/hot", &key, Some(json!({"write_shards": 16}))).await;
    let details = assert_envelope(status, &answer, 409, "WRITE_SHARDS_CANNOT_DECREASE");
    assert_eq!(details, json!({"field": "write_shards", "current": 64, "requested": 16}));
    let (status, answer) = call(&stack, Method::PATCH, "/streams/hot", &key, Some(json!({"write_shards": 64}))).await;
    assert_eq!(status, 200, "the same count again is no change: {answer}");

    // After: through the bulk path and through the queue and processor. The aggregator runs
    // between chunks: each of its batches adds to one counter sub-partition of 8.
    let after: Vec<Value> = (400..800).map(event).collect();
    for chunk in after[..380].chunks(20) {
        ingest(&stack, &key, "hot", chunk).await;
        stack.drain_changes().await;
    }
    for single in &after[380..] {
        let (status, answer) = stack.post("/ingest/events", &key, single.clone()).await;
        assert_eq!(status, 202, "{answer}");
    }
    let query = format!("stream_id=hot&start_time={}&end_time={}", fmt(start), fmt(Utc::now() + Duration::minutes(1)));
    // total_count comes from the rollups: the aggregator applies the change stream first.
    let (listed, total) = eventually(60, "800 events stored and counted", || async {
        stack.drain_changes().await;
        let (listed, total) = query_all(&stack, &key, &query).await;
        (listed.len() == 800 && total == 800).then_some((listed, total))
    })
    .await;
    assert_eq!(total, 800);
    let ids: Vec<String> = listed.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 800, "each event once");
    let times: Vec<&str> = listed.iter().map(|e| e["timestamp"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first across all 64 shards");

    // Where they went: the first 400 within 8 shards (GSI3: 16), the rest across 64 (GSI3: 64).
    let by_i: BTreeMap<u64, String> = listed
        .iter()
        .map(|e| (e["data"]["i"].as_u64().unwrap(), e["event_id"].as_str().unwrap().to_string()))
        .collect();
    let (mut high_stream, mut high_tenant) = (0, 0);
    for (i, id) in &by_i {
        let (stream_shard, tenant_shard) = index_shards(&stack, id).await;
        if *i < 400 {
            assert!(stream_shard < 8 && tenant_shard < 16, "event {i}: shards {stream_shard}/{tenant_shard}");
        } else {
            assert!(stream_shard < 64 && tenant_shard < 64);
            high_stream += usize::from(stream_shard >= 8);
            high_tenant += usize::from(tenant_shard >= 16);
        }
    }
    assert!(high_stream > 250 && high_tenant > 200, "spread over the new shards: {high_stream}, {high_tenant}");

    // Small pages walk the 64 shards (each asked for a share, not the whole page): every event once, in order.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/query/events?{query}&limit=100&cursor={c}"),
            None => format!("/query/events?{query}&limit=100"),
        };
        let (status, page) = stack.get(&path, &key).await;
        assert_eq!(status, 200, "{page}");
        walked.extend(page["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(walked, ids, "pages of 100 give the same events in the same order");

    // The tenant's fan-out went to 64 with it: another stream's events (with a category) now
    // spread over 64 GSI3 and GSI2 shards too, and the category listing finds every one.
    let cold: Vec<Value> = (0..200)
        .map(|i| json!({"event_type": "view", "category": "ui", "timestamp": fmt(start + Duration::seconds(i)), "data": {"c": i}}))
        .collect();
    ingest(&stack, &key, "cold", &cold).await;
    let by_category = stack.all_pages("/events?category=ui", &key, 70).await;
    assert_eq!(by_category.len(), 200);
    let (mut wide_tenant, mut wide_category) = (0, 0);
    for event in &by_category {
        let item = stack
            .backend
            .dynamodb
            .get_item()
            .table_name(&stack.backend.table)
            .key("PK", AttributeValue::S(format!("T#acme#EVENT#{}", event["id"].as_str().unwrap())))
            .key("SK", AttributeValue::S("#META".into()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        let shard = |attr: &str| item[attr].as_s().unwrap().rsplit('#').next().unwrap().parse::<u32>().unwrap();
        wide_tenant += usize::from(shard("GSI3PK") >= 16);
        wide_category += usize::from(shard("GSI2PK") >= 4);
    }
    assert!(wide_tenant > 100 && wide_category > 150, "{wide_tenant} {wide_category}");

    // The tenant's listing (GSI3, now 64 shards) finds them all too.
    let tenant_listing = stack.all_pages("/events?stream=hot", &key, 150).await;
    let tenant_ids: BTreeSet<String> = tenant_listing.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!((tenant_listing.len(), tenant_ids), (800, ids.iter().cloned().collect()));

    // Aggregates: whole minutes from the rollups, the unaligned edges read raw across the shards.
    stack.drain_changes().await;
    let window = json!({"start": fmt(start + Duration::seconds(31)), "end": fmt(start + Duration::seconds(2_200))});
    let body = json!({"stream_id": "hot", "time_window": window, "aggregations": [{"operation": "count"}], "group_by": "event_type"});
    let (status, answer) = stack.post("/query/aggregate", &key, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let all: Vec<Value> = before.iter().chain(after.iter()).cloned().collect();
    assert_rows_eq(answer["results"].as_array().unwrap(), &brute_force(&all, &body), "count by type");
    let raw =
        json!({"stream_id": "hot", "time_window": window, "aggregations": [{"field": "data.i", "operation": "sum"}]});
    let (status, answer) = stack.post("/query/aggregate", &key, raw.clone()).await;
    assert_eq!((status, answer["source"].as_str()), (200, Some("raw")), "{answer}");
    assert_rows_eq(answer["results"].as_array().unwrap(), &brute_force(&all, &raw), "raw sum");

    // The stream's counters went to several sub-partitions, and every reader adds them up.
    let mut stored_per_part = Vec::new();
    for k in 0..8 {
        let pk = if k == 0 { "T#acme#STAT#hot".to_string() } else { format!("T#acme#STAT#hot#{k}") };
        let total = stack
            .backend
            .dynamodb
            .get_item()
            .table_name(&stack.backend.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S("TOTAL".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item;
        let stored = total.and_then(|t| t.get("stored").and_then(|n| n.as_n().ok()).map(|n| n.parse::<u64>().unwrap()));
        stored_per_part.push(stored.unwrap_or(0));
    }
    assert_eq!(stored_per_part.iter().sum::<u64>(), 800, "{stored_per_part:?}");
    assert!(stored_per_part[1..].iter().any(|n| *n > 0), "sub-partitions above 0 used: {stored_per_part:?}");
    let (_, status) = stack.get("/streams/hot/status", &key).await;
    assert_eq!(status["events_processed"], 800, "{status}");
    // Redelivered, twice at once: still exact.
    let (a, b) = tokio::join!(redeliver_everything(&stack), redeliver_everything(&stack));
    assert!(a > 0 && b > 0);
    let (_, status) = stack.get("/streams/hot/status", &key).await;
    assert_eq!(status["events_processed"], 800, "{status}");
    let (status, answer) = stack.post("/query/aggregate", &key, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_rows_eq(answer["results"].as_array().unwrap(), &brute_force(&all, &body), "count by type, redelivered");
    let (_, total) = query_all(&stack, &key, &query).await;
    assert_eq!(total, 800);

    // An export of the window reads every shard too.
    let (status, created) = stack
        .post(
            "/exports",
            &key,
            json!({"stream_id": "hot", "time_window": {"start": fmt(start), "end": fmt(Utc::now() + Duration::minutes(1))}, "format": "ndjson", "compression": "none"}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["export_id"].as_str().unwrap().to_string();
    let done = eventually(120, "the export", || async {
        let (_, body) = stack.get(&format!("/exports/{id}"), &key).await;
        (body["status"] == "completed").then_some(body)
    })
    .await;
    assert_eq!(done["events_exported"], 800, "{done}");
    let mut exported = BTreeSet::new();
    for file in done["files"].as_array().unwrap() {
        let text = stack.http.get(file["url"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
        for line in text.lines() {
            let row: Value = serde_json::from_str(line).unwrap();
            assert!(exported.insert(row["event_id"].as_str().unwrap().to_string()), "exported once");
        }
    }
    assert_eq!(exported, ids.iter().cloned().collect::<BTreeSet<_>>());
}
