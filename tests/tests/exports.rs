//! Issue 16: exports. Every format is read back with a reader Argus did not write (pyarrow,
//! fastavro, Python's csv, json and gzip: tests/export_reader.py) and compared event by event
//! with `GET /query/events` for the same window; a long export continues across invocations;
//! redelivered messages are harmless; bad requests get the envelope.

use argus_tests::{assert_envelope, eventually, Method, TestStack};
use chrono::{Duration, Utc};
use serde_json::{json, Value};

fn fmt(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn ingest(stack: &TestStack, key: &str, stream: &str, events: &[Value]) {
    for chunk in events.chunks(200) {
        for _ in 0..20 {
            let (status, report) =
                stack.post("/ingest/batch", key, json!({"stream_id": stream, "events": chunk})).await;
            if status == 503 || report["failed"].as_u64().unwrap_or(0) > 0 {
                // A loaded machine: what the deadline cut off is sent again (same ids).
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
            assert!(status == 200 || status == 201, "{status} {report}");
            break;
        }
    }
}

/// Every event of the window through `GET /query/events`, newest first.
async fn query_all(stack: &TestStack, key: &str, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/query/events?{query}&limit=1000&cursor={c}"),
            None => format!("/query/events?{query}&limit=1000"),
        };
        let (status, page) = stack.get(&path, key).await;
        assert_eq!(status, 200, "{page}");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return events,
        }
    }
}

/// Waits for the export to finish and returns its final status document.
async fn finished(stack: &TestStack, key: &str, id: &str) -> Value {
    eventually(120, "the export to finish", || async {
        let (status, body) = stack.get(&format!("/exports/{id}"), key).await;
        assert_eq!(status, 200, "{body}");
        matches!(body["status"].as_str(), Some("completed" | "failed")).then_some(body)
    })
    .await
}

/// Downloads every file of a completed export through its presigned URL and reads it with
/// the independent reader: (schema line, events in file order).
async fn read_back(stack: &TestStack, export: &Value) -> (Vec<Value>, Vec<Value>) {
    let format = export["format"].as_str().unwrap();
    let compression = export["compression"].as_str().unwrap();
    let python = std::env::var("ARGUS_WEBHOOK_RECEIVER_PYTHON").unwrap_or_else(|_| "python3".into());
    let reader = argus_stack::template::repo_root().join("tests/export_reader.py");
    let dir = std::env::temp_dir().join(format!("argus-export-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut schemas, mut events) = (Vec::new(), Vec::new());
    for (i, file) in export["files"].as_array().unwrap().iter().enumerate() {
        let url = file["url"].as_str().unwrap();
        assert!(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires="), "presigned: {url}");
        let response = stack.http.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        if status != 200 {
            panic!("{status} for {url}: {}", response.text().await.unwrap_or_default());
        }
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, file["bytes"].as_u64().unwrap(), "the recorded size is the file's");
        let path = dir.join(format!("file-{i}"));
        std::fs::write(&path, &bytes).unwrap();
        let out =
            std::process::Command::new(&python).arg(&reader).args([format, compression]).arg(&path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut lines = out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        schemas.push(serde_json::from_slice(lines.next().unwrap()).unwrap());
        let read: Vec<Value> = lines.map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert_eq!(read.len() as u64, file["events"].as_u64().unwrap(), "events per file");
        events.extend(read);
    }
    let _ = std::fs::remove_dir_all(&dir);
    (schemas, events)
}

async fn export(stack: &TestStack, key: &str, body: Value) -> Value {
    let (status, created) = stack.post("/exports", key, body).await;
    assert_eq!(status, 202, "{created}");
    let id = created["export_id"].as_str().unwrap().to_string();
    assert_eq!(created["status_url"], format!("/exports/{id}"));
    let done = finished(stack, key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    done
}

fn window(start: chrono::DateTime<Utc>, end: chrono::DateTime<Utc>) -> Value {
    json!({"start": fmt(start), "end": fmt(end)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_reads_back_as_the_query_api_answers() {
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("exporter").await;
    let session = stack.session(&key).await;
    let now = Utc::now();
    let mut rng = fastrand::Rng::with_seed(16);
    let types = ["click", "view", "buy"];
    // Text a CSV writer must quote, JSON a reader must not reinterpret, and every optional column.
    let hostile = ["a,b", "say \"hi\"", "line\nbreak\r\n", "=SUM(A1)", "日本語 🎉", "tab\there", ""];
    let events: Vec<Value> = (0..240)
        .map(|i| {
            let mut event = json!({
                "event_id": uuid::Uuid::now_v7(),
                "event_type": types[i % 3],
                "timestamp": fmt(now - Duration::milliseconds(rng.i64(1_000..6 * 3_600_000))),
                "data": {"n": i, "text": hostile[i % hostile.len()], "nested": {"list": [1, 2.5, null, true]}},
            });
            if i % 2 == 0 {
                event["category"] = json!(if i % 4 == 0 { "ui" } else { "api" });
            }
            if i % 5 == 0 {
                event["session_id"] = json!(session);
            }
            if i % 3 == 0 {
                event["metadata"] = json!({"source": hostile[(i + 1) % hostile.len()]});
            }
            event
        })
        .collect();
    ingest(&stack, &key, "shop", &events).await;
    // Soft-deleted events are in no export, as in no query.
    for event in events.iter().take(5) {
        let (status, body) = stack
            .call(Method::DELETE, &format!("/events/{}", event["event_id"].as_str().unwrap()), Some(&key), None)
            .await;
        assert_eq!(status, 204, "{body}");
    }
    let (start, end) = (now - Duration::hours(7), now + Duration::minutes(1));
    let query = format!("stream_id=shop&start_time={}&end_time={}", fmt(start), fmt(end));
    let expected = query_all(&stack, &key, &query).await;
    assert_eq!(expected.len(), 235);

    for (format, compression) in [
        ("ndjson", "gzip"),
        ("ndjson", "none"),
        ("csv", "none"),
        ("csv", "gzip"),
        ("parquet", "gzip"),
        ("parquet", "none"),
        ("avro", "gzip"),
        ("avro", "none"),
    ] {
        let done = export(
            &stack,
            &key,
            json!({"stream_id": "shop", "time_window": window(start, end), "format": format, "compression": compression}),
        )
        .await;
        assert_eq!(done["events_exported"], 235, "{format}/{compression}: {done}");
        let (schemas, read) = read_back(&stack, &done).await;
        assert_eq!(read, expected, "{format}/{compression}: the file holds exactly the query's events, in its order");
        match format {
            "parquet" => {
                assert_eq!(schemas[0]["schema"]["timestamp"], "timestamp[ms, tz=UTC]", "{schemas:?}");
                assert_eq!(schemas[0]["schema"]["data"], "string", "{schemas:?}");
            }
            "avro" => {
                assert_eq!(schemas[0]["schema"]["timestamp"]["logicalType"], "timestamp-millis", "{schemas:?}");
                assert_eq!(schemas[0]["codec"], if compression == "gzip" { "deflate" } else { "null" });
            }
            _ => {}
        }
    }

    // Filters select what the query selects.
    let done = export(
        &stack,
        &key,
        json!({"stream_id": "shop", "time_window": window(start, end), "format": "parquet",
               "filters": {"event_type": "click", "category": "ui"}}),
    )
    .await;
    let (_, read) = read_back(&stack, &done).await;
    let clicks: Vec<Value> = query_all(&stack, &key, &format!("{query}&event_type=click"))
        .await
        .into_iter()
        .filter(|e| e["category"] == "ui")
        .collect();
    assert!(!clicks.is_empty());
    assert_eq!(read, clicks);
    let done = export(
        &stack,
        &key,
        json!({"stream_id": "shop", "time_window": window(start, end), "format": "csv", "filters": {"session_id": session}}),
    )
    .await;
    let (_, read) = read_back(&stack, &done).await;
    assert_eq!(read.len(), expected.iter().filter(|e| e["session_id"] == json!(session)).count());

    // An empty window is one valid, empty file.
    let done = export(
        &stack,
        &key,
        json!({"stream_id": "shop", "time_window": window(now - Duration::days(30), now - Duration::days(29)), "format": "avro"}),
    )
    .await;
    let (_, read) = read_back(&stack, &done).await;
    assert!(read.is_empty());
    assert_eq!(done["files"].as_array().unwrap().len(), 1);

    // The listing, newest first; another tenant sees none of it.
    let (status, list) = stack.get("/exports?limit=100", &key).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 11, "{list}");
    assert_eq!(list["items"][0]["export_id"], done["export_id"]);
    let other = stack.key("someone-else").await;
    let (status, body) = stack.get(&format!("/exports/{}", done["export_id"].as_str().unwrap()), &other).await;
    assert_envelope(status, &body, 404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_export_continues_across_invocations_and_redelivery_is_harmless() {
    // Slices of a millisecond: each invocation writes one page of 100 events as one file and
    // queues the rest (as a slice that meets its deadline does).
    std::env::set_var("ARGUS_EXPORT_SLICE_MS", "1");
    std::env::set_var("ARGUS_EXPORT_FILE_EVENTS", "100");
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("long-export").await;
    let now = Utc::now();
    let events: Vec<Value> = (0..730)
        .map(|i| json!({"event_id": uuid::Uuid::now_v7(), "event_type": "tick", "timestamp": fmt(now - Duration::seconds(i)), "data": {"i": i}}))
        .collect();
    ingest(&stack, &key, "ticks", &events).await;
    let (start, end) = (now - Duration::hours(1), now + Duration::minutes(1));
    let (status, created) = stack
        .post("/exports", &key, json!({"stream_id": "ticks", "time_window": window(start, end), "format": "ndjson"}))
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["export_id"].as_str().unwrap();
    // The same message delivered again, twice at once: one invocation holds the lease, the
    // others find it held (or the export further along) and do nothing.
    let tenant_backend = stack.backend.clone();
    for _ in 0..2 {
        argus_core::exports::enqueue(&tenant_backend, "long-export", id).await.unwrap();
    }
    let done = finished(&stack, &key, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["events_exported"], 730);
    assert_eq!(done["files_written"], 8, "{done}");
    assert!(done["slices"].as_u64().unwrap() >= 8, "one slice per file at least: {done}");
    let (_, read) = read_back(&stack, &done).await;
    let expected =
        query_all(&stack, &key, &format!("stream_id=ticks&start_time={}&end_time={}", fmt(start), fmt(end))).await;
    assert_eq!(read.len(), 730);
    assert_eq!(read, expected, "every event once, in order, across 8 files");
    let files: Vec<&str> = done["files"].as_array().unwrap().iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert_eq!(files.first(), Some(&"part-00000.ndjson"));
    assert_eq!(files.last(), Some(&"part-00007.ndjson"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_export_requests_get_the_envelope() {
    let stack = TestStack::start().await;
    let key = stack.key("picky").await;
    ingest(&stack, &key, "s1", &[json!({"event_type": "x", "data": {"a": 1}})]).await;
    let now = Utc::now();
    let good = json!({"stream_id": "s1", "time_window": window(now - Duration::days(1), now), "format": "csv"});
    let cases = [
        (json!({"format": "xlsx"}), 400, "VALIDATION_FAILED", "format"),
        (json!({"compression": "brotli"}), 400, "VALIDATION_FAILED", "compression"),
        (json!({"time_window": window(now, now - Duration::days(1))}), 400, "VALIDATION_FAILED", "time_window.end"),
        (json!({"time_window": window(now - Duration::days(400), now)}), 400, "VALIDATION_FAILED", "time_window.end"),
        (json!({"time_window": "yesterday"}), 400, "VALIDATION_FAILED", "time_window"),
        (json!({"filters": {"user": "x"}}), 400, "VALIDATION_FAILED", "filters.user"),
        (json!({"stream_id": "nope"}), 404, "NOT_FOUND", ""),
    ];
    for (patch, expected_status, code, field) in cases {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = stack.post("/exports", &key, body).await;
        let details = assert_envelope(status, &answer, expected_status, code);
        if !field.is_empty() {
            assert_eq!(details["field"], field, "{answer}");
        }
    }
    let (status, answer) = stack.call(Method::POST, "/exports", Some(&key), Some("{not json".into())).await;
    assert_envelope(status, &answer, 400, "MALFORMED_JSON");
    let (status, answer) = stack.get("/exports/not-an-id", &key).await;
    assert_envelope(status, &answer, 404, "NOT_FOUND");
    let (status, answer) = stack.get(&format!("/exports/{}", uuid::Uuid::now_v7()), &key).await;
    assert_envelope(status, &answer, 404, "NOT_FOUND");
    let (status, answer) = stack.get("/exports?cursor=tampered", &key).await;
    assert_envelope(status, &answer, 400, "INVALID_CURSOR");
    let (status, answer) = stack.post("/exports?validate_only=true", &key, good.clone()).await;
    assert_envelope(status, &answer, 400, "VALIDATION_FAILED");

    // Five at once per tenant (nothing drains the queue here, so they stay queued); another
    // tenant is not affected.
    for _ in 0..5 {
        let (status, body) = stack.post("/exports", &key, good.clone()).await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, answer) = stack.post("/exports", &key, good.clone()).await;
    let details = assert_envelope(status, &answer, 409, "TOO_MANY_ACTIVE_EXPORTS");
    assert_eq!(details["max_active"], 5);
    // The same request again with its Idempotency-Key is answered from the first, not a second export.
    let other = stack.key("patient").await;
    ingest(&stack, &other, "s1", &[json!({"event_type": "x", "data": {"a": 1}})]).await;
    let keyed = |body: Value| {
        stack
            .http
            .post(format!("{}/exports", stack.base_url))
            .header("x-api-key", &other)
            .header("idempotency-key", "export-once")
            .body(body.to_string())
            .send()
    };
    let first: Value = keyed(good.clone()).await.unwrap().json().await.unwrap();
    let again = keyed(good.clone()).await.unwrap();
    assert_eq!(again.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["export_id"], again["export_id"]);
    let (_, list) = stack.get("/exports", &other).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

/// Archive files under `prefix`, each read with pyarrow: (key, events).
async fn archived(stack: &TestStack, prefix: &str) -> Vec<(String, Vec<Value>)> {
    let s3 = &stack.backend.exports.s3;
    let bucket = stack.provisioned.bucket("ExportsBucket").unwrap();
    let listed = s3.list_objects_v2().bucket(bucket).prefix(prefix).send().await.unwrap();
    let python = std::env::var("ARGUS_WEBHOOK_RECEIVER_PYTHON").unwrap_or_else(|_| "python3".into());
    let reader = argus_stack::template::repo_root().join("tests/export_reader.py");
    let mut files = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_string();
        let body = s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap();
        let path = std::env::temp_dir().join(format!("argus-archive-{}.parquet", uuid::Uuid::new_v4()));
        std::fs::write(&path, body.into_bytes()).unwrap();
        let out =
            std::process::Command::new(&python).arg(&reader).args(["parquet", "gzip"]).arg(&path).output().unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows = out
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .skip(1)
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        files.push((key, rows));
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_events_are_archived_as_parquet_by_tenant_stream_and_date() {
    let stack = TestStack::start_with_changes().await;
    let key = stack.key("archivist").await;
    let now = Utc::now();
    let events: Vec<Value> = (0..20)
        .map(|i| {
            json!({"event_id": uuid::Uuid::now_v7(), "event_type": "old", "timestamp": fmt(now - Duration::minutes(i * 7)),
                   "data": {"i": i, "text": "a,\"b\"\n"}, "category": if i % 2 == 0 { Some("even") } else { None }})
        })
        .collect();
    ingest(&stack, &key, "history", &events).await;
    let (start, end) = (now - Duration::days(1), now + Duration::minutes(1));
    let before =
        query_all(&stack, &key, &format!("stream_id=history&start_time={}&end_time={}", fmt(start), fmt(end))).await;
    assert_eq!(before.len(), 20);
    // One event deleted by its owner: it expires like the others but is not archived.
    let deleted = events[0]["event_id"].as_str().unwrap();
    let (status, _) = stack.call(Method::DELETE, &format!("/events/{deleted}"), Some(&key), None).await;
    assert_eq!(status, 204);
    // Time passes for 12 of them: their expiry moves into the past (as retention would).
    let expired: Vec<String> = events[..12].iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    for id in &expired {
        let pk = argus_core::keys::event_pk("archivist", &uuid::Uuid::parse_str(id).unwrap());
        stack
            .backend
            .dynamodb
            .update_item()
            .table_name(&stack.backend.table)
            .key("PK", aws_sdk_dynamodb::types::AttributeValue::S(pk))
            .key("SK", aws_sdk_dynamodb::types::AttributeValue::S(argus_core::keys::META.into()))
            .update_expression("SET expires_at = :past")
            .expression_attribute_values(
                ":past",
                aws_sdk_dynamodb::types::AttributeValue::N((now.timestamp() - 5).to_string()),
            )
            .send()
            .await
            .unwrap();
    }
    assert!(stack.expire_now().await >= 12, "the TTL service removes them");
    // The first delivery meets a failing write (a missing bucket): the batch fails whole and
    // the stream gives it again; nothing is skipped.
    let mut consumer = stack.stream_consumer("argus-archiver");
    let mut broken = stack.functions.function("argus-archiver").unwrap().clone();
    broken.backend.exports.bucket = "argus-missing-bucket".into();
    let report = consumer.drain_once(&broken).await.unwrap();
    assert!(report.records >= 12 && report.retried == 1, "{report:?}");
    assert!(archived(&stack, "archive/tenant=archivist/").await.is_empty());
    let archiver = stack.functions.function("argus-archiver").unwrap();
    assert!(TestStack::drain_consumer(&mut consumer, archiver).await >= 12, "the batch again, then written");
    let files = archived(&stack, "archive/tenant=archivist/").await;
    assert!(!files.is_empty());
    for (key, rows) in &files {
        let date = rows[0]["timestamp"].as_str().unwrap()[..10].to_string();
        assert!(key.starts_with(&format!("archive/tenant=archivist/stream=history/date={date}/")), "{key}");
        assert!(rows.iter().all(|r| r["timestamp"].as_str().unwrap().starts_with(&date)), "one date per file");
    }
    let mut rows: Vec<Value> = files.iter().flat_map(|(_, rows)| rows.clone()).collect();
    rows.sort_by_key(|r| r["event_id"].as_str().unwrap().to_string());
    let mut wanted: Vec<Value> = before
        .iter()
        .filter(|e| expired.contains(&e["event_id"].as_str().unwrap().to_string()) && e["event_id"] != deleted)
        .cloned()
        .collect();
    wanted.sort_by_key(|r| r["event_id"].as_str().unwrap().to_string());
    assert_eq!(rows.len(), 11);
    assert_eq!(rows, wanted, "archived exactly as the API showed them");
    // Gone from the table; the 8 others stay.
    let after =
        query_all(&stack, &key, &format!("stream_id=history&start_time={}&end_time={}", fmt(start), fmt(end))).await;
    assert_eq!(after.len(), 8);

    // The stream delivers the same records again (a retry): the same files are rewritten.
    let mut again = stack.stream_consumer("argus-archiver");
    TestStack::drain_consumer(&mut again, stack.functions.function("argus-archiver").unwrap()).await;
    let files_again = archived(&stack, "archive/tenant=archivist/").await;
    assert_eq!(files_again.len(), files.len(), "no second copy");

    // A record that is not a readable event (an old item without its fields) does not hold the
    // shard back: it is kept as it came under archive/_unreadable/, and the batch succeeds.
    let garbage = json!({"Records": [{
        "eventID": "e-garbage", "eventName": "REMOVE", "eventSource": "aws:dynamodb",
        "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
        "dynamodb": {"SequenceNumber": "9990001", "Keys": {"PK": {"S": "T#archivist#EVENT#x"}, "SK": {"S": "#META"}},
                     "OldImage": {"PK": {"S": "T#archivist#EVENT#x"}, "SK": {"S": "#META"}, "entity": {"S": "event"}}}}]});
    let answer = argus_api::dispatch::invoke_json("argus-archiver", &archiver.backend, &garbage.to_string(), None)
        .await
        .unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    let bucket = stack.provisioned.bucket("ExportsBucket").unwrap();
    let kept =
        stack.backend.exports.s3.get_object().bucket(bucket).key("archive/_unreadable/9990001.json").send().await;
    let kept: Value = serde_json::from_slice(&kept.unwrap().body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(kept["Records"][0]["eventID"], "e-garbage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_a_part_goes_up_in_parts_s3_accepts() {
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("big-export").await;
    let now = Utc::now();
    // 2,400 events of ~5 KB: a 12 MB NDJSON file, two parts of the multipart upload (every part
    // but the last at least 5 MiB, which the harness checks as S3 does).
    let filler: String = (0..5_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let events: Vec<Value> = (0..2_400)
        .map(|i| json!({"event_id": uuid::Uuid::now_v7(), "event_type": "big", "timestamp": fmt(now - Duration::seconds(i)), "data": {"i": i, "pad": filler}}))
        .collect();
    ingest(&stack, &key, "big", &events).await;
    let (start, end) = (now - Duration::hours(1), now + Duration::minutes(1));
    let done =
        export(&stack, &key, json!({"stream_id": "big", "time_window": window(start, end), "format": "ndjson"})).await;
    assert_eq!(done["files_written"], 1);
    assert!(done["bytes_written"].as_u64().unwrap() > 8 * 1024 * 1024, "{done}");
    let (_, read) = read_back(&stack, &done).await;
    let expected =
        query_all(&stack, &key, &format!("stream_id=big&start_time={}&end_time={}", fmt(start), fmt(end))).await;
    assert_eq!(read.len(), 2_400);
    assert_eq!(read, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_slices_retry_with_backoff_then_fail_the_export_with_a_reason() {
    use argus_core::exports::ExportMessage;
    use argus_export::worker::{run_slice, ExportTuning, SliceOutcome};
    let stack = TestStack::start().await;
    let key = stack.key("unlucky").await;
    ingest(&stack, &key, "s", &[json!({"event_type": "x", "data": {"a": 1}})]).await;
    let now = Utc::now();
    let body = json!({"stream_id": "s", "time_window": window(now - Duration::hours(1), now + Duration::minutes(1)), "format": "csv"});
    let tuning = ExportTuning::from_env();

    // S3 refuses every write (a bucket that does not exist): each slice fails, gives the lease
    // back and queues the export again after a backoff; the fifth failure ends it.
    let (status, created) = stack.post("/exports", &key, body.clone()).await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["status"], "queued");
    let message = ExportMessage { tenant: "unlucky".into(), export_id: created["export_id"].as_str().unwrap().into() };
    let mut broken = stack.function_backend("argus-exporter");
    broken.exports.bucket = "argus-missing-bucket".into();
    for attempt in 1..=4 {
        assert_eq!(
            run_slice(&broken, &message, None, &tuning).await.unwrap(),
            SliceOutcome::Retrying,
            "attempt {attempt}"
        );
    }
    assert_eq!(run_slice(&broken, &message, None, &tuning).await.unwrap(), SliceOutcome::Failed);
    let (_, failed) = stack.get(&format!("/exports/{}", message.export_id), &key).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "EXPORT_FAILED");
    assert!(failed["error"]["message"].as_str().unwrap().contains("5 times"), "{failed}");
    assert_eq!(failed["files"], json!([]));
    // A message for a finished export does nothing.
    let exporter = stack.function_backend("argus-exporter");
    assert_eq!(run_slice(&exporter, &message, None, &tuning).await.unwrap(), SliceOutcome::Skipped);

    // Slices that crash or time out (the lease taken, never given back, the message back after
    // the visibility timeout): the sixth attempt finds five without progress and ends it.
    let (_, created) = stack.post("/exports", &key, body.clone()).await;
    let message = ExportMessage { tenant: "unlucky".into(), export_id: created["export_id"].as_str().unwrap().into() };
    for _ in 0..5 {
        let lapsed = argus_models::time::now().timestamp_millis() as u64;
        assert!(argus_core::exports::claim(&exporter, &message, "crashed", lapsed).await.unwrap().is_some());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(run_slice(&exporter, &message, None, &tuning).await.unwrap(), SliceOutcome::Failed);
    let (_, failed) = stack.get(&format!("/exports/{}", message.export_id), &key).await;
    assert_eq!(failed["status"], "failed", "{failed}");

    // While one invocation holds the lease, a second delivery of the message does nothing.
    let (_, created) = stack.post("/exports", &key, body).await;
    let message = ExportMessage { tenant: "unlucky".into(), export_id: created["export_id"].as_str().unwrap().into() };
    let held = argus_models::time::now().timestamp_millis() as u64 + 60_000;
    assert!(argus_core::exports::claim(&exporter, &message, "holder", held).await.unwrap().is_some());
    assert_eq!(run_slice(&exporter, &message, None, &tuning).await.unwrap(), SliceOutcome::Skipped);
}
