//! Async batch jobs: POST /batch/jobs → SQS chunks → processor → counters and per-item results.

use argus_tests::{assert_envelope, eventually, Method, TestStack};
use aws_lambda_events::sqs::SqsEvent;
use serde_json::{json, Value};

fn items(session: &str, count: usize, bad_every: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            let data = if bad_every > 0 && i % bad_every == 0 { json!({}) } else { json!({"i": i}) };
            json!({"session_id": session, "category": "import", "name": format!("n{i}"), "data": data, "timestamp": "2021-06-15T00:00:00Z"})
        })
        .collect()
}

async fn wait_completed(stack: &TestStack, key: &str, job: &str, seconds: u64) -> Value {
    eventually(seconds, "the job to complete", || async {
        let (status, body) = stack.get(&format!("/batch/jobs/{job}"), key).await;
        assert_eq!(status, 200, "{body}");
        body["completed_at"].is_string().then_some(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_thousand_item_job_completes_with_exact_counters_and_results() {
    let stack = TestStack::start_with_processor().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let body = json!({"operation": "create_events", "items": items(&session, 20_000, 1000)});
    let started = std::time::Instant::now();
    let (status, accepted) = stack.call(Method::POST, "/batch/jobs", Some(&key), Some(body.to_string())).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["total"], 20_000);
    let job = accepted["job_id"].as_str().unwrap();
    assert_eq!(accepted["status_url"], format!("/batch/jobs/{job}"));

    let done = wait_completed(&stack, &key, job, 240).await;
    eprintln!("20,000-item job completed in {:?}", started.elapsed());
    assert_eq!(done["status"], "completed_with_errors");
    assert_eq!(
        (done["total"].as_u64(), done["succeeded"].as_u64(), done["failed"].as_u64()),
        (Some(20_000), Some(19_980), Some(20))
    );
    for field in ["created_at", "updated_at", "completed_at"] {
        assert!(done[field].as_str().is_some_and(|t| t.ends_with('Z')), "{field}");
    }
    let stored = stack.all_pages(&format!("/events?session={session}"), &key, 1000).await;
    assert_eq!(stored.len(), 19_980);

    let failed = stack.all_pages(&format!("/batch/jobs/{job}/results?status=failed"), &key, 7).await;
    let failed_indexes: Vec<u64> = failed.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(failed_indexes, (0..20).map(|i| i * 1000).collect::<Vec<u64>>(), "index order");
    assert!(failed.iter().all(|r| r["status"] == 400 && r["error"]["details"]["fields"][0]["code"] == "DATA_EMPTY"));
    let all = stack.all_pages(&format!("/batch/jobs/{job}/results/"), &key, 1000).await;
    assert_eq!(all.len(), 20_000);
    assert!(all.iter().enumerate().all(|(i, r)| r["index"] == i));
    assert_eq!(all.iter().filter(|r| r["status"] == 201 && r["id"].is_string()).count(), 19_980);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_delivered_twice_counts_once() {
    let stack = TestStack::start().await; // no drainer: the test delivers messages itself
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let body = json!({"operation": "create_events", "items": items(&session, 350, 50)});
    let (status, accepted) = stack.call(Method::POST, "/batch/jobs", Some(&key), Some(body.to_string())).await;
    assert_eq!(status, 202);
    let job = accepted["job_id"].as_str().unwrap().to_string();
    let (_, queued) = stack.get(&format!("/batch/jobs/{job}"), &key).await;
    assert_eq!((queued["status"].as_str(), queued["succeeded"].as_u64()), (Some("queued"), Some(0)));

    let mut bodies = Vec::new();
    while bodies.len() < 4 {
        let out = stack
            .backend
            .sqs
            .receive_message()
            .queue_url(&stack.backend.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        bodies.extend(out.messages.unwrap_or_default().into_iter().map(|m| m.body.unwrap()));
    }
    assert_eq!(bodies.len(), 4, "350 items → chunks of 100");
    let event = |bodies: &[String]| -> SqsEvent {
        let records: Vec<Value> = bodies.iter().enumerate().map(|(i, b)| json!({"messageId": format!("m{i}"), "body": b, "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}})).collect();
        serde_json::from_value(json!({"Records": records})).unwrap()
    };
    // First chunk twice (redelivery), the rest once, chunk 0 a third time after completion.
    for batch in [
        vec![bodies[0].clone()],
        vec![bodies[0].clone(), bodies[1].clone()],
        vec![bodies[2].clone(), bodies[3].clone()],
        vec![bodies[0].clone()],
    ] {
        let response =
            argus_api::processor::handle(&stack.function_backend("argus-processor"), event(&batch), None).await;
        assert!(response.batch_item_failures.is_empty());
    }
    let (_, done) = stack.get(&format!("/batch/jobs/{job}"), &key).await;
    assert_eq!(done["status"], "completed_with_errors");
    assert_eq!((done["succeeded"].as_u64(), done["failed"].as_u64()), (Some(343), Some(7)));
    let stored = stack.all_pages(&format!("/events?session={session}"), &key, 1000).await;
    assert_eq!(stored.len(), 343, "no event written twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_requests_are_checked_and_scoped() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    for (body, field) in [
        (json!({"operation": "drop_tables", "items": [{}]}), "operation"),
        (json!({"operation": "create_events"}), "items"),
        (json!({"operation": "create_events", "items": []}), "items"),
    ] {
        let (status, answer) = stack.call(Method::POST, "/batch/jobs", Some(&key), Some(body.to_string())).await;
        assert_eq!(assert_envelope(status, &answer, 400, "VALIDATION_FAILED")["field"], field);
    }
    let (status, answer) = stack.get(&format!("/batch/jobs/{}", uuid::Uuid::now_v7()), &key).await;
    assert_envelope(status, &answer, 404, "NOT_FOUND");
    let (status, accepted) = stack
        .call(
            Method::POST,
            "/batch/jobs",
            Some(&key),
            Some(json!({"operation": "create_events", "items": [{"x": 1}]}).to_string()),
        )
        .await;
    assert_eq!(status, 202);
    let job = accepted["job_id"].as_str().unwrap();
    let other = stack.key("other").await;
    let (status, answer) = stack.get(&format!("/batch/jobs/{job}"), &other).await;
    assert_envelope(status, &answer, 404, "NOT_FOUND");
    let (status, answer) = stack.get(&format!("/batch/jobs/{job}/results?status=odd"), &key).await;
    assert_envelope(status, &answer, 400, "INVALID_FILTER");
    let mut down = stack.backend.clone();
    down.queue_url = format!("{}-gone", stack.backend.queue_url);
    let api = TestStack::serve(down, stack.provisioned.clone(), stack.template.clone()).await;
    let (status, answer) = api
        .call(
            Method::POST,
            "/batch/jobs",
            Some(&key),
            Some(json!({"operation": "create_events", "items": [{"x": 1}]}).to_string()),
        )
        .await;
    assert_envelope(status, &answer, 503, "SERVICE_UNAVAILABLE");
}

/// Receives `count` chunk messages of the queue and deletes them there (the test delivers them).
async fn take_chunks(stack: &TestStack, count: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while bodies.len() < count && std::time::Instant::now() < deadline {
        let out = stack
            .backend
            .sqs
            .receive_message()
            .queue_url(&stack.backend.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for message in out.messages.unwrap_or_default() {
            stack
                .backend
                .sqs
                .delete_message()
                .queue_url(&stack.backend.queue_url)
                .receipt_handle(message.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
            bodies.push(message.body.unwrap());
        }
    }
    assert_eq!(bodies.len(), count);
    // In chunk order.
    bodies.sort_by_key(|b| serde_json::from_str::<Value>(b).unwrap()["chunk"].as_u64());
    bodies
}

fn sqs_event(bodies: &[String], receive_count: u32) -> SqsEvent {
    let records: Vec<Value> = bodies.iter().enumerate().map(|(i, b)| json!({"messageId": format!("m{i}"), "body": b, "attributes": {"ApproximateReceiveCount": receive_count.to_string()}, "messageAttributes": {}})).collect();
    serde_json::from_value(json!({"Records": records})).unwrap()
}

/// Issue 9, defect 2: a chunk whose message is lost (dead-lettered, or never processed) no
/// longer leaves its job open forever: the scheduled sweeper gives it up (503 per item, counted
/// once) and the job completes, every item accounted for. A late delivery changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_chunk_is_given_up_by_the_sweeper_and_the_job_completes() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let body = json!({"operation": "create_events", "items": items(&session, 250, 0)});
    let (status, accepted) = stack.call(Method::POST, "/batch/jobs", Some(&key), Some(body.to_string())).await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["job_id"].as_str().unwrap().to_string();
    let chunks = take_chunks(&stack, 3).await;
    let processor = stack.function_backend("argus-processor");
    let response = argus_api::processor::handle(&processor, sqs_event(&chunks[..2], 1), None).await;
    assert!(response.batch_item_failures.is_empty());

    let sweeper = stack.functions.function("argus-sweeper").unwrap().clone();
    let invoke = |event: Value| {
        let sweeper = sweeper.clone();
        async move {
            let deadline = std::time::Instant::now() + sweeper.timeout();
            argus_api::dispatch::invoke_json("argus-sweeper", &sweeper.backend, &event.to_string(), Some(deadline))
                .await
                .unwrap()
        }
    };
    // Not stale yet: the default (13 minutes) leaves it alone.
    assert_eq!(invoke(json!({})).await["chunks_given_up"], 0);
    let (_, running) = stack.get(&format!("/batch/jobs/{job}"), &key).await;
    assert_eq!(running["status"], "running");

    let report = invoke(json!({"stale_after_seconds": 0})).await;
    assert_eq!(
        (report["chunks_given_up"].as_u64(), report["items_given_up"].as_u64()),
        (Some(1), Some(50)),
        "{report}"
    );
    let (_, done) = stack.get(&format!("/batch/jobs/{job}"), &key).await;
    assert_eq!(done["status"], "completed_with_errors", "{done}");
    assert_eq!((done["succeeded"].as_u64(), done["failed"].as_u64()), (Some(200), Some(50)));
    let failed = stack.all_pages(&format!("/batch/jobs/{job}/results?status=failed"), &key, 100).await;
    let indexes: Vec<u64> = failed.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, (200..250).collect::<Vec<u64>>());
    assert!(failed.iter().all(|r| r["status"] == 503 && r["error"]["code"] == "RETRY_LATER"));

    // Completed jobs leave the open list; the lost chunk arriving late is counted nowhere.
    assert_eq!(invoke(json!({"stale_after_seconds": 0})).await["jobs_checked"], 0);
    let response = argus_api::processor::handle(&processor, sqs_event(&chunks[2..], 5), None).await;
    assert!(response.batch_item_failures.is_empty());
    let (_, after) = stack.get(&format!("/batch/jobs/{job}"), &key).await;
    assert_eq!((after["succeeded"].as_u64(), after["failed"].as_u64()), (Some(200), Some(50)));
}

/// Issue 9, defect 2: the write that completes a job fails after its last chunk was counted.
/// The chunk's redelivery used to return early (already counted) and leave the job open; it now
/// completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_completion_write_is_made_by_the_redelivery() {
    use argus_tests::fault_proxy::{FaultProxy, Faults};
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let body = json!({"operation": "create_events", "items": items(&session, 30, 0)});
    let (status, accepted) = stack.call(Method::POST, "/batch/jobs", Some(&key), Some(body.to_string())).await;
    assert_eq!(status, 202);
    let job = accepted["job_id"].as_str().unwrap().to_string();
    let chunk = take_chunks(&stack, 1).await;

    let proxy = FaultProxy::start(
        &std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").unwrap(),
        Faults { always_fail_marker: Some("completed_at = :now".into()), ..Faults::default() },
    )
    .await;
    let mut failing = stack.function_backend("argus-processor");
    failing.dynamodb = proxy.dynamodb_client();
    let response = argus_api::processor::handle(&failing, sqs_event(&chunk, 1), None).await;
    assert_eq!(response.batch_item_failures.len(), 1, "the failed completion fails the message");
    let (_, counted) = stack.get(&format!("/batch/jobs/{job}"), &key).await;
    assert_eq!((counted["status"].as_str(), counted["succeeded"].as_u64()), (Some("running"), Some(30)));

    let response =
        argus_api::processor::handle(&stack.function_backend("argus-processor"), sqs_event(&chunk, 2), None).await;
    assert!(response.batch_item_failures.is_empty());
    let (_, done) = stack.get(&format!("/batch/jobs/{job}"), &key).await;
    assert_eq!((done["status"].as_str(), done["succeeded"].as_u64()), (Some("completed"), Some(30)));
}
