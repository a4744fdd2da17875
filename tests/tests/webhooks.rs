//! Webhooks (issue 13) end to end: registration, signed deliveries verified by the Standard
//! Webhooks reference library (tests/webhook_receiver.py), retries, Retry-After, 410,
//! timeouts, rotation, SSRF rules, redelivery, and the notifications that trigger them.

use std::collections::BTreeSet;
use std::time::Duration;

use argus_core::webhooks::outbox::NotifierMessage;
use argus_core::webhooks::WebhookSettings;
use argus_tests::receiver::Receiver;
use argus_tests::{assert_envelope, eventually, Method, TestStack};
use aws_lambda_events::sqs::SqsEvent;
use serde_json::{json, Value};

/// Attempts a second apart, short timeouts: the schedule's shape without its days.
fn fast(settings: &mut WebhookSettings) {
    settings.retry_schedule = vec![Duration::from_secs(1); 3];
    settings.attempt_timeout = Duration::from_secs(2);
    settings.error_window = Duration::from_secs(3);
}

const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn create(stack: &TestStack, key: &str, body: Value) -> Value {
    let (status, webhook) = stack.post("/webhooks", key, body).await;
    assert_eq!(status, 201, "{webhook}");
    webhook
}

async fn deliveries(stack: &TestStack, key: &str, id: &str) -> Vec<Value> {
    let (status, page) = stack.get(&format!("/webhooks/{id}/deliveries"), key).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn received(receiver: &Receiver, name: &str, count: usize, seconds: u64) -> Vec<Value> {
    eventually(seconds, &format!("{count} deliveries at {name}"), || async {
        let log = receiver.log(name).await;
        (log.len() >= count).then_some(log)
    })
    .await
}

fn sqs_event(bodies: &[String]) -> SqsEvent {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| json!({"messageId": format!("m{i}"), "receiptHandle": format!("rh{i}"), "body": body, "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q", "awsRegion": "us-east-1"}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_managed_and_bad_input_names_the_field() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let generated = create(
        &stack,
        &key,
        json!({"url": "https://hooks.example.com/argus", "events": ["stream.processing_error"], "stream_id": "pay"}),
    )
    .await;
    let secret = generated["secret"].as_str().unwrap();
    assert!(argus_models::webhook::check_secret("secret", secret).is_ok(), "{generated}");
    assert_eq!(generated["enabled"], true);
    assert_eq!(generated["stream_id"], "pay");
    let id = generated["webhook_id"].as_str().unwrap();
    let (status, shown) = stack.get(&format!("/webhooks/{id}"), &key).await;
    assert_eq!(status, 200);
    assert!(shown.get("secret").is_none() && !shown.to_string().contains(secret), "never shown again: {shown}");

    let own = create(
        &stack,
        &key,
        json!({"url": "https://hooks.example.com/b", "events": ["batch.job.completed"], "secret": SECRET_A}),
    )
    .await;
    assert_eq!(own["secret"], SECRET_A);
    assert_eq!(own["stream_id"], Value::Null, "all streams");
    let (_, list) = stack.get("/webhooks", &key).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");

    let (status, changed) = stack
        .call(
            Method::PATCH,
            &format!("/webhooks/{id}"),
            Some(&key),
            Some(json!({"events": ["batch.job.completed", "stream.threshold_exceeded"], "enabled": false}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["events"], json!(["stream.threshold_exceeded", "batch.job.completed"]));
    assert_eq!((changed["enabled"].clone(), changed["status"].clone()), (json!(false), json!("disabled")));
    assert!(changed["disabled_reason"].is_string());
    let (_, enabled) =
        stack.call(Method::PATCH, &format!("/webhooks/{id}"), Some(&key), Some(r#"{"enabled": true}"#.into())).await;
    assert_eq!((enabled["enabled"].clone(), enabled["disabled_reason"].clone()), (json!(true), Value::Null));

    // Bad input: 400 naming the field.
    for (body, field, code) in [
        (json!({"url": "https://a.example/", "events": ["stream.nope"]}), "events[0]", "UNKNOWN_EVENT_TYPE"),
        (json!({"url": "https://a.example/", "events": []}), "events", "EMPTY"),
        (json!({"url": "ftp://a.example/", "events": ["batch.job.completed"]}), "url", "INVALID_URL"),
        (json!({"events": ["batch.job.completed"]}), "url", "REQUIRED"),
        (
            json!({"url": "https://a.example/", "events": ["batch.job.completed"], "secret": "hunter2"}),
            "secret",
            "INVALID_SECRET",
        ),
        (
            json!({"url": "https://a.example/", "events": ["batch.job.completed"], "stream_id": "a b"}),
            "stream_id",
            "INVALID_CHARACTERS",
        ),
        (
            json!({"url": "https://a.example/", "events": ["batch.job.completed"], "thresholds": {"error_rate": 2}}),
            "thresholds.error_rate",
            "OUT_OF_RANGE",
        ),
        (json!([1]), "body", "INVALID_TYPE"),
    ] {
        let (status, answer) = stack.post("/webhooks", &key, body.clone()).await;
        let details = assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
        assert_eq!(details["field"], field, "{body} → {answer}");
        assert_eq!(details["fields"][0]["code"], code, "{body} → {answer}");
    }
    let (status, answer) = stack.call(Method::POST, "/webhooks", Some(&key), Some("{not json".into())).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) =
        stack.call(Method::PATCH, &format!("/webhooks/{id}"), Some(&key), Some(r#"{"secret": "x"}"#.into())).await;
    assert_eq!(assert_envelope(status, &answer, 400, "VALIDATION_FAILED")["field"], "secret");

    // Other tenants and unknown ids: 404.
    let other = stack.key("globex").await;
    for path in
        [format!("/webhooks/{id}"), "/webhooks/not-a-uuid".into(), format!("/webhooks/{}", uuid::Uuid::new_v4())]
    {
        let (status, answer) = stack.get(&path, &other).await;
        assert_envelope(status, &answer, 404, "NOT_FOUND");
    }
    let (status, _) = stack.call(Method::DELETE, &format!("/webhooks/{id}"), Some(&other), None).await;
    assert_eq!(status, 404);

    // At most 25 per tenant, counted in the same transaction as the creation.
    let creations = (0..30).map(|i| {
        stack.post(
            "/webhooks",
            &key,
            json!({"url": format!("https://h{i}.example/"), "events": ["batch.job.completed"]}),
        )
    });
    let answers = futures::future::join_all(creations).await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 23, "25 in all");
    let refused = answers.iter().find(|(status, _)| *status != 201).unwrap();
    assert_eq!(assert_envelope(refused.0, &refused.1, 409, "TOO_MANY_WEBHOOKS")["limit"], 25);
    let (status, _) = stack.call(Method::DELETE, &format!("/webhooks/{id}"), Some(&key), None).await;
    assert_eq!(status, 204);
    let (status, answer) = stack.get(&format!("/webhooks/{id}"), &key).await;
    assert_envelope(status, &answer, 404, "NOT_FOUND");
    create(&stack, &key, json!({"url": "https://again.example/", "events": ["batch.job.completed"]})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_send_is_signed_and_verified_by_the_reference_library() {
    let stack = TestStack::start_with_webhooks(false, fast).await.with_processor().await;
    let receiver = Receiver::start().await;
    receiver.endpoint("a", &[SECRET_A], json!([{"status": 204}])).await;
    let key = stack.key("acme").await;
    let webhook = create(
        &stack,
        &key,
        json!({"url": receiver.url("a"), "events": ["batch.job.completed"], "secret": SECRET_A, "stream_id": "pay"}),
    )
    .await;
    let id = webhook["webhook_id"].as_str().unwrap();
    let (status, queued) = stack.post(&format!("/webhooks/{id}/test"), &key, json!({})).await;
    assert_eq!(status, 202, "{queued}");
    let log = received(&receiver, "a", 1, 30).await;
    let call = &log[0];
    assert_eq!(call["verified"], true, "{call}");
    assert_eq!(call["headers"]["webhook-id"], queued["delivery_id"]);
    assert_eq!(call["headers"]["content-type"], "application/json");
    let body = &call["json"];
    assert_eq!(body["event"], "webhook.test");
    assert_eq!(body["stream_id"], "pay");
    assert_eq!(body["data"]["webhook_id"], id);
    assert!(argus_models::time::parse("timestamp", body["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(body.as_object().unwrap().len(), 4, "DataStream's four fields: {body}");
    let delivered = eventually(10, "the delivery recorded", || async {
        let items = deliveries(&stack, &key, id).await;
        (items.first().is_some_and(|d| d["status"] == "delivered")).then_some(items)
    })
    .await;
    assert_eq!(delivered[0]["delivery_id"], queued["delivery_id"]);
    let attempt = &delivered[0]["attempts"][0];
    assert_eq!((attempt["attempt"].clone(), attempt["status_code"].clone()), (json!(1), json!(204)));
    assert_eq!(attempt["outcome"], "success");

    // Two more sends, then the deliveries a page of one at a time: newest first, each once.
    let mut sent = vec![queued["delivery_id"].clone()];
    for _ in 0..2 {
        let (status, queued) = stack.post(&format!("/webhooks/{id}/test"), &key, json!({})).await;
        assert_eq!(status, 202, "{queued}");
        sent.push(queued["delivery_id"].clone());
    }
    let log = received(&receiver, "a", 3, 30).await;
    assert!(log.iter().all(|call| call["verified"] == true), "{log:?}");
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/webhooks/{id}/deliveries?limit=1&cursor={c}"),
            None => format!("/webhooks/{id}/deliveries?limit=1"),
        };
        let (status, page) = stack.get(&path, &key).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 1, "{page}");
        walked.extend(items.iter().map(|d| d["delivery_id"].clone()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    sent.reverse();
    assert_eq!(walked, sent, "newest first, every delivery once");
    let (status, page) = stack.get(&format!("/webhooks/{id}/deliveries?cursor=forged"), &key).await;
    assert_envelope(status, &page, 400, "INVALID_CURSOR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_backoff_honouring_retry_after() {
    let stack = TestStack::start_with_webhooks(false, fast).await.with_processor().await;
    let receiver = Receiver::start().await;
    receiver
        .endpoint(
            "r",
            &[SECRET_A],
            json!([{"status": 500}, {"status": 429, "headers": {"Retry-After": "3"}}, {"status": 302, "headers": {"Location": "https://elsewhere.example/"}}, {"status": 200}]),
        )
        .await;
    let key = stack.key("acme").await;
    let webhook =
        create(&stack, &key, json!({"url": receiver.url("r"), "events": ["batch.job.completed"], "secret": SECRET_A}))
            .await;
    let id = webhook["webhook_id"].as_str().unwrap();
    stack.post(&format!("/webhooks/{id}/test"), &key, json!({})).await;
    let log = received(&receiver, "r", 4, 60).await;
    assert!(log.iter().all(|call| call["verified"] == true), "{log:?}");
    let ids: Vec<&Value> = log.iter().map(|call| &call["headers"]["webhook-id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one webhook-id across retries: {ids:?}");
    let at: Vec<f64> = log.iter().map(|call| call["received_at_ms"].as_f64().unwrap()).collect();
    assert!(at[1] - at[0] >= 900.0, "the schedule's wait: {at:?}");
    assert!(at[2] - at[1] >= 2_900.0, "Retry-After: 3 honoured over the 1 s schedule: {at:?}");
    // The redirect was not followed: nothing went to its Location, and it counted as a failure.
    let recorded = eventually(10, "delivered", || async {
        let items = deliveries(&stack, &key, id).await;
        (items[0]["status"] == "delivered").then_some(items)
    })
    .await;
    let attempts = recorded[0]["attempts"].as_array().unwrap();
    let codes: Vec<&Value> = attempts.iter().map(|a| &a["status_code"]).collect();
    assert_eq!(codes, [&json!(500), &json!(429), &json!(302), &json!(200)]);
    assert_eq!(attempts[1]["retry_after_seconds"], 3);
    assert_eq!(attempts[2]["outcome"], "http_status");
    assert!(attempts.iter().all(|a| a["started_at"].is_string() && a["latency_ms"].is_u64()));
    assert_eq!(recorded[0]["next_attempt_at"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_and_endpoints_failing_for_days_are_disabled() {
    let stack = TestStack::start_with_webhooks(false, |s| {
        fast(s);
        s.retry_schedule = vec![Duration::from_secs(1); 2];
        // "Days" of failure, compressed: disabled once failing for 1.5 s.
        s.disable_after = Duration::from_millis(1_500);
    })
    .await
    .with_processor()
    .await;
    let receiver = Receiver::start().await;
    receiver.endpoint("gone", &[], json!([{"status": 410}])).await;
    receiver.endpoint("down", &[], json!([{"status": 503}])).await;
    let key = stack.key("acme").await;
    let gone = create(&stack, &key, json!({"url": receiver.url("gone"), "events": ["batch.job.completed"]})).await;
    let down = create(&stack, &key, json!({"url": receiver.url("down"), "events": ["batch.job.completed"]})).await;
    // A real notification (test sends never count against an endpoint's health, 410 aside).
    argus_core::webhooks::outbox::notify(
        &stack.function_backend("argus-notifier"),
        "acme",
        None,
        argus_models::webhook::EventType::JobCompleted,
        "job:health",
        json!({"job_id": "health"}),
        None,
    )
    .await
    .unwrap();
    let gone_id = gone["webhook_id"].as_str().unwrap();
    let shown = eventually(30, "410 disables the webhook", || async {
        let (_, w) = stack.get(&format!("/webhooks/{gone_id}"), &key).await;
        (w["enabled"] == false).then_some(w)
    })
    .await;
    assert!(shown["disabled_reason"].as_str().unwrap().contains("410"), "{shown}");
    let items = deliveries(&stack, &key, gone_id).await;
    assert_eq!(items[0]["status"], "failed");
    assert_eq!(items[0]["attempts"].as_array().unwrap().len(), 1, "no retry after 410");

    let down_id = down["webhook_id"].as_str().unwrap();
    let shown = eventually(30, "a webhook failing for the whole period is disabled", || async {
        let (_, w) = stack.get(&format!("/webhooks/{down_id}"), &key).await;
        (w["enabled"] == false).then_some(w)
    })
    .await;
    let reason = shown["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("every attempt failed since") && shown["failing_since"].is_string(), "{shown}");
    let items = eventually(10, "the delivery ends", || async {
        let items = deliveries(&stack, &key, down_id).await;
        (items[0]["status"] != "pending").then_some(items)
    })
    .await;
    // Its last attempt failed (no attempts left), or the webhook was disabled before it.
    let attempts = items[0]["attempts"].as_array().unwrap().len();
    match items[0]["status"].as_str() {
        Some("failed") => assert_eq!(attempts, 3, "{items:?}"),
        Some("abandoned") => {
            assert!(items[0]["final_reason"].as_str().unwrap().contains("disabled"), "{items:?}");
            assert!(attempts >= 2, "{items:?}");
        }
        other => panic!("{other:?}: {items:?}"),
    }
    assert_eq!(receiver.log("down").await.len(), attempts, "every attempt recorded");
    // Re-enabled by its owner: the failures so far are forgiven.
    let (status, _) = stack
        .call(Method::PATCH, &format!("/webhooks/{down_id}"), Some(&key), Some(r#"{"enabled": true}"#.into()))
        .await;
    assert_eq!(status, 200);
    let (_, w) = stack.get(&format!("/webhooks/{down_id}"), &key).await;
    assert_eq!((w["failing_since"].clone(), w["disabled_reason"].clone()), (Value::Null, Value::Null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_its_timeout_fails_and_is_retried() {
    let stack = TestStack::start_with_webhooks(false, |s| {
        fast(s);
        s.attempt_timeout = Duration::from_secs(1);
    })
    .await
    .with_processor()
    .await;
    let receiver = Receiver::start().await;
    receiver.endpoint("slow", &[SECRET_A], json!([{"status": 200, "delay_ms": 3000}, {"status": 200}])).await;
    let key = stack.key("acme").await;
    let webhook = create(
        &stack,
        &key,
        json!({"url": receiver.url("slow"), "events": ["batch.job.completed"], "secret": SECRET_A}),
    )
    .await;
    let id = webhook["webhook_id"].as_str().unwrap();
    stack.post(&format!("/webhooks/{id}/test"), &key, json!({})).await;
    let items = eventually(30, "delivered on the second attempt", || async {
        let items = deliveries(&stack, &key, id).await;
        (items.first().is_some_and(|d| d["status"] == "delivered")).then_some(items)
    })
    .await;
    let attempts = items[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(receiver.log("slow").await.iter().all(|call| call["verified"] == true), "both attempts signed");
    assert_eq!(attempts[0]["outcome"], "timeout");
    assert_eq!(attempts[0]["status_code"], Value::Null);
    let latency = attempts[0]["latency_ms"].as_u64().unwrap();
    assert!((1_000..2_500).contains(&latency), "cut at the 1 s timeout, not at the receiver's 3 s: {latency}");
    assert_eq!(attempts[1]["outcome"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_old_one_for_its_grace_period() {
    let stack = TestStack::start_with_webhooks(false, fast).await.with_processor().await;
    let receiver = Receiver::start().await;
    let key = stack.key("acme").await;
    let webhook = create(
        &stack,
        &key,
        json!({"url": receiver.url("rot"), "events": ["batch.job.completed"], "secret": SECRET_A}),
    )
    .await;
    let id = webhook["webhook_id"].as_str().unwrap();
    let (status, rotated) = stack.post(&format!("/webhooks/{id}/rotate-secret"), &key, json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let secret_b = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(secret_b, SECRET_A);
    assert!(rotated["previous_secret_expires_at"].is_string(), "{rotated}");

    // A receiver still holding the old secret, and one already holding the new one: both verify.
    let mut seen = 0;
    for secrets in [[SECRET_A], [secret_b.as_str()]] {
        receiver.endpoint("rot", &secrets, json!([{"status": 200}])).await;
        stack.post(&format!("/webhooks/{id}/test"), &key, json!({})).await;
        seen += 1;
        let log = received(&receiver, "rot", seen, 30).await;
        let call = &log[seen - 1];
        assert_eq!(call["verified"], true, "{secrets:?}: {call}");
        assert_eq!(call["headers"]["webhook-signature"].as_str().unwrap().split(' ').count(), 2);
    }
    // Rotated again with no grace: the middle secret stops signing at once.
    let (_, rotated) =
        stack.post(&format!("/webhooks/{id}/rotate-secret"), &key, json!({"grace_period_seconds": 0})).await;
    let secret_c = rotated["secret"].as_str().unwrap().to_string();
    for (secrets, verified) in [([secret_b.as_str()], false), ([secret_c.as_str()], true)] {
        receiver.endpoint("rot", &secrets, json!([{"status": 200}])).await;
        stack.post(&format!("/webhooks/{id}/test"), &key, json!({})).await;
        seen += 1;
        let log = received(&receiver, "rot", seen, 30).await;
        assert_eq!(log[seen - 1]["verified"], verified, "{}", log[seen - 1]);
    }
    let (status, answer) =
        stack.post(&format!("/webhooks/{id}/rotate-secret"), &key, json!({"grace_period_seconds": -1})).await;
    assert_eq!(assert_envelope(status, &answer, 400, "VALIDATION_FAILED")["field"], "grace_period_seconds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_and_addresses_that_reach_inside_are_refused() {
    // A deployed stack's policy: https only, public addresses only.
    let stack = TestStack::start_with_webhooks(false, |s| {
        fast(s);
        s.policy.allow_http_loopback = false;
    })
    .await
    .with_processor()
    .await;
    let receiver = Receiver::start().await;
    receiver.endpoint("inside", &[], json!([{"status": 200}])).await;
    let key = stack.key("acme").await;
    for (url, code) in [
        (receiver.url("inside"), "INVALID_URL"),
        ("http://hooks.example.com/".to_string(), "INVALID_URL"),
        ("https://127.0.0.1/".into(), "FORBIDDEN_ADDRESS"),
        ("https://localhost:8443/".into(), "FORBIDDEN_ADDRESS"),
        ("https://10.1.2.3/".into(), "FORBIDDEN_ADDRESS"),
        ("https://172.20.0.1/".into(), "FORBIDDEN_ADDRESS"),
        ("https://192.168.0.10/".into(), "FORBIDDEN_ADDRESS"),
        ("https://169.254.169.254/latest/meta-data/".into(), "FORBIDDEN_ADDRESS"),
        ("https://100.100.100.200/".into(), "FORBIDDEN_ADDRESS"),
        ("https://224.0.0.251/".into(), "FORBIDDEN_ADDRESS"),
        ("https://0.0.0.0/".into(), "FORBIDDEN_ADDRESS"),
        ("https://[::1]/".into(), "FORBIDDEN_ADDRESS"),
        ("https://[fe80::1]/".into(), "FORBIDDEN_ADDRESS"),
        ("https://[fd00:ec2::254]/".into(), "FORBIDDEN_ADDRESS"),
        ("https://[ff02::1]/".into(), "FORBIDDEN_ADDRESS"),
        ("https://[::]/".into(), "FORBIDDEN_ADDRESS"),
        ("https://[::ffff:169.254.169.254]/".into(), "FORBIDDEN_ADDRESS"),
        ("https://2130706433/".into(), "FORBIDDEN_ADDRESS"),
    ] {
        let (status, answer) =
            stack.post("/webhooks", &key, json!({"url": url, "events": ["batch.job.completed"]})).await;
        let details = assert_envelope(status, &answer, 400, "VALIDATION_FAILED");
        assert_eq!(
            (details["field"].clone(), details["fields"][0]["code"].clone()),
            (json!("url"), json!(code)),
            "{url}"
        );
    }
    // A URL that was acceptable when stored but now leads inside (as after a DNS change) is
    // refused at delivery, before any connection: the attempt says why.
    let webhook =
        create(&stack, &key, json!({"url": "https://hooks.example.com/in", "events": ["batch.job.completed"]})).await;
    let id = webhook["webhook_id"].as_str().unwrap();
    let inside = receiver.url("inside");
    argus_core::webhooks::store::modify(&stack.backend, "acme", &id.parse().unwrap(), |w| {
        w.url = inside.clone();
        Ok(true)
    })
    .await
    .unwrap();
    stack.post(&format!("/webhooks/{id}/test"), &key, json!({})).await;
    let items = eventually(30, "the attempt recorded", || async {
        let items = deliveries(&stack, &key, id).await;
        (items.first().is_some_and(|d| !d["attempts"].as_array().unwrap().is_empty())).then_some(items)
    })
    .await;
    let attempt = &items[0]["attempts"][0];
    assert_eq!(attempt["outcome"], "blocked", "{attempt}");
    assert!(attempt["error"].as_str().unwrap().contains("https"), "{attempt}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.log("inside").await.is_empty(), "nothing reached the inside address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_twice_concurrently_and_in_one_batch_calls_once() {
    // No background notifier: the test plays SQS, delivering each message several times.
    let stack = TestStack::start_with_webhooks(false, fast).await;
    let receiver = Receiver::start().await;
    receiver.endpoint("once", &[SECRET_A], json!([{"status": 200, "delay_ms": 300}])).await;
    let key = stack.key("acme").await;
    let webhook = create(
        &stack,
        &key,
        json!({"url": receiver.url("once"), "events": ["batch.job.completed"], "secret": SECRET_A}),
    )
    .await;
    let id: uuid::Uuid = webhook["webhook_id"].as_str().unwrap().parse().unwrap();
    let notifier = stack.function_backend("argus-notifier");

    // One notification, raised twice at once: one delivery.
    let notify = || {
        argus_core::webhooks::outbox::notify(
            &notifier,
            "acme",
            None,
            argus_models::webhook::EventType::JobCompleted,
            "job:twice",
            json!({"job_id": "twice"}),
            None,
        )
    };
    let (a, b) = tokio::join!(notify(), notify());
    assert!(a.is_ok() && b.is_ok());
    let items = deliveries(&stack, &key, &id.to_string()).await;
    assert_eq!(items.len(), 1, "{items:?}");

    // Its message, delivered twice in one batch and once more concurrently.
    let pk = argus_core::keys::deliveries_pk("acme", &id);
    let stored = stack
        .backend
        .dynamodb
        .query()
        .table_name(&stack.backend.table)
        .key_condition_expression("PK = :pk AND begins_with(SK, :d)")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(pk))
        .expression_attribute_values(":d", aws_sdk_dynamodb::types::AttributeValue::S("D#".into()))
        .send()
        .await
        .unwrap();
    let sk = stored.items()[0]["SK"].as_s().unwrap().clone();
    let message = serde_json::to_string(&NotifierMessage::Deliver {
        tenant: "acme".into(),
        webhook_id: id,
        delivery_sk: sk,
        attempt: 0,
    })
    .unwrap();
    let batch = sqs_event(&[message.clone(), message.clone()]);
    let single = sqs_event(std::slice::from_ref(&message));
    let (first, second) = tokio::join!(
        argus_api::notifier::handle(&notifier, batch, None),
        argus_api::notifier::handle(&notifier, single, None)
    );
    // Copies that met the claim come back (SQS would redeliver them): deliver those again.
    let again = first.batch_item_failures.len() + second.batch_item_failures.len();
    for _ in 0..again {
        let response = argus_api::notifier::handle(&notifier, sqs_event(std::slice::from_ref(&message)), None).await;
        assert!(response.batch_item_failures.is_empty(), "once recorded, a copy is dropped");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = receiver.log("once").await;
    assert_eq!(log.len(), 1, "one call for one delivery: {log:?}");
    assert_eq!(log[0]["verified"], true);
    // The same notification raised again later: still one delivery, not queued again.
    let queued = stack.queue_depth_of("WebhooksQueue").await;
    notify().await.unwrap();
    assert_eq!(deliveries(&stack, &key, &id.to_string()).await.len(), 1);
    assert_eq!(stack.queue_depth_of("WebhooksQueue").await, queued, "an attempted delivery is not queued again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_job_is_notified_once() {
    let stack = TestStack::start_with_webhooks(false, fast).await.with_processor().await;
    let receiver = Receiver::start().await;
    receiver.endpoint("jobs", &[SECRET_A], json!([{"status": 200}])).await;
    let key = stack.key("acme").await;
    create(&stack, &key, json!({"url": receiver.url("jobs"), "events": ["batch.job.completed"], "secret": SECRET_A}))
        .await;
    // Subscribed to something else: gets nothing.
    create(&stack, &key, json!({"url": receiver.url("other"), "events": ["stream.processing_error"]})).await;
    let session = stack.session(&key).await;
    let items: Vec<Value> = (0..30)
        .map(|i| {
            let data = if i % 10 == 0 { json!({}) } else { json!({"i": i}) };
            json!({"session_id": session, "category": "import", "name": "n", "data": data, "timestamp": "2021-06-15T00:00:00Z"})
        })
        .collect();
    let (status, accepted) =
        stack.post("/batch/jobs", &key, json!({"operation": "create_events", "items": items})).await;
    assert_eq!(status, 202, "{accepted}");
    let log = received(&receiver, "jobs", 1, 60).await;
    let body = &log[0]["json"];
    assert_eq!(log[0]["verified"], true);
    assert_eq!(body["event"], "batch.job.completed");
    assert_eq!(body["data"]["job_id"], accepted["job_id"]);
    assert_eq!((body["data"]["total"].clone(), body["data"]["failed"].clone()), (json!(30), json!(3)), "{body}");
    assert_eq!(body["data"]["status"], "completed_with_errors");
    // The completion raised again (a redelivered chunk, the sweeper): no second delivery.
    let notifier = stack.function_backend("argus-notifier");
    let message = serde_json::to_string(&NotifierMessage::JobCompleted {
        tenant: "acme".into(),
        job_id: accepted["job_id"].as_str().unwrap().parse().unwrap(),
    })
    .unwrap();
    let response = argus_api::notifier::handle(&notifier, sqs_event(&[message.clone(), message]), None).await;
    assert!(response.batch_item_failures.is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.log("jobs").await.len(), 1);
    assert!(receiver.log("other").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_errors_are_notified_once_per_stream_window() {
    let stack = TestStack::start_with_webhooks(true, fast).await.with_processor().await;
    let receiver = Receiver::start().await;
    receiver.endpoint("errs", &[SECRET_A], json!([{"status": 200}])).await;
    let key = stack.key("acme").await;
    create(
        &stack,
        &key,
        json!({"url": receiver.url("errs"), "events": ["stream.processing_error"], "stream_id": "pay", "secret": SECRET_A}),
    )
    .await;
    create(
        &stack,
        &key,
        json!({"url": receiver.url("elsewhere"), "events": ["stream.processing_error"], "stream_id": "other"}),
    )
    .await;
    let now = argus_models::time::format(&argus_models::time::now());
    let bad = |n: usize| {
        let stack = &stack;
        let key = &key;
        let now = now.clone();
        async move {
            for _ in 0..n {
                let event = json!({"stream_id": "pay", "event_type": "charge", "timestamp": now, "data": {}});
                let (status, answer) = stack.post("/ingest/events", key, event).await;
                assert_eq!(status, 202, "{answer}");
            }
        }
    };
    let affected =
        |log: &[Value]| log.iter().map(|c| c["json"]["data"]["affected_events"].as_u64().unwrap()).sum::<u64>();
    bad(4).await;
    let log = eventually(60, "4 errors notified", || async {
        stack.drain_changes().await;
        let log = receiver.log("errs").await;
        (affected(&log) >= 4).then_some(log)
    })
    .await;
    assert!(log.len() <= 2, "a burst is one notification, or a leading one and the rest at the window's end: {log:?}");
    let first = &log[0]["json"];
    assert_eq!(first["event"], "stream.processing_error");
    assert_eq!(first["stream_id"], "pay");
    assert!(first["data"]["error_message"].as_str().unwrap().contains("pay"));
    assert!(log.iter().all(|c| c["verified"] == true));

    // More errors right away: held to the window's end, then one notification for them.
    bad(3).await;
    let log = eventually(60, "7 errors notified", || async {
        stack.drain_changes().await;
        let log = receiver.log("errs").await;
        (affected(&log) >= 7).then_some(log)
    })
    .await;
    let at: Vec<f64> = log.iter().map(|c| c["received_at_ms"].as_f64().unwrap()).collect();
    for pair in at.windows(2) {
        assert!(pair[1] - pair[0] >= 2_500.0, "at most one per 3 s window: {at:?}");
    }
    // The whole change stream redelivered, twice at once: nothing new is notified.
    let (a, b) = tokio::join!(redeliver(&stack), redeliver(&stack));
    assert!(a > 0 && b > 0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = receiver.log("errs").await;
    assert_eq!(affected(&after), 7, "{after:?}");
    assert!(receiver.log("elsewhere").await.is_empty(), "another stream's webhook hears nothing");
}

/// A webhook that subscribes to a stream's errors by a PATCH hears of errors from then on, as
/// one created then would: not of the errors the stream had before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_that_subscribes_to_errors_counts_from_then() {
    let stack = TestStack::start_with_webhooks(true, fast).await.with_processor().await;
    let receiver = Receiver::start().await;
    receiver.endpoint("late", &[SECRET_A], json!([{"status": 200}])).await;
    let key = stack.key("acme").await;
    let webhook = create(
        &stack,
        &key,
        json!({"url": receiver.url("late"), "events": ["batch.job.completed"], "stream_id": "pay", "secret": SECRET_A}),
    )
    .await;
    let id = webhook["webhook_id"].as_str().unwrap().to_string();
    let now = argus_models::time::format(&argus_models::time::now());
    let bad = |n: usize| {
        let (stack, key, now) = (&stack, &key, now.clone());
        async move {
            for _ in 0..n {
                let event = json!({"stream_id": "pay", "event_type": "charge", "timestamp": now, "data": {}});
                let (status, answer) = stack.post("/ingest/events", key, event).await;
                assert_eq!(status, 202, "{answer}");
            }
        }
    };
    // The stream exists once the processor has handled its first event (404 until then).
    let stream_errors = || async {
        let (status, answer) = stack.get("/streams/pay/status", &key).await;
        assert!(status == 200 || status == 404, "{status} {answer}");
        answer["errors"]["total"].as_u64().unwrap_or(0)
    };
    // Three errors while the webhook listens to something else.
    bad(3).await;
    eventually(60, "3 errors counted", || async {
        stack.drain_changes().await;
        (stream_errors().await == 3).then_some(())
    })
    .await;
    let (status, patched) = stack
        .call(
            Method::PATCH,
            &format!("/webhooks/{id}"),
            Some(&key),
            Some(json!({"events": ["stream.processing_error"]}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    // The aggregator hears of the new subscription within a minute (its cache of who listens).
    tokio::time::sleep(Duration::from_secs(62)).await;
    bad(2).await;
    eventually(60, "a notification", || async {
        stack.drain_changes().await;
        (!receiver.log("late").await.is_empty()).then_some(())
    })
    .await;
    // Past the 3 s window: a second notification would have come by now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stack.drain_changes().await;
    let log = receiver.log("late").await;
    let affected: u64 = log.iter().map(|c| c["json"]["data"]["affected_events"].as_u64().unwrap()).sum();
    assert_eq!(affected, 2, "only the errors after the subscription: {log:?}");
    assert_eq!(stream_errors().await, 5);
    assert!(log.iter().all(|c| c["verified"] == true && c["json"]["event"] == "stream.processing_error"));
}

async fn redeliver(stack: &TestStack) -> usize {
    let (binary, source) = stack.template.stream_consumers.get_key_value("argus-aggregator").unwrap();
    let endpoint = std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").unwrap();
    let mut consumer =
        argus_local::table_stream::StreamConsumer::new(binary, &stack.provisioned.table, &endpoint, source);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_fire_on_crossing_not_on_every_minute_above() {
    let stack = TestStack::start_with_webhooks(true, fast).await.with_processor().await;
    let receiver = Receiver::start().await;
    receiver.endpoint("th", &[SECRET_A], json!([{"status": 200}])).await;
    let key = stack.key("acme").await;
    create(
        &stack,
        &key,
        json!({"url": receiver.url("th"), "events": ["stream.threshold_exceeded"], "stream_id": "pay", "secret": SECRET_A, "thresholds": {"events_per_minute": 3}}),
    )
    .await;
    let now = argus_models::time::format(&argus_models::time::now());
    let events: Vec<Value> =
        (0..5).map(|i| json!({"event_type": "charge", "timestamp": now, "data": {"i": i}})).collect();
    let (status, report) = stack.post("/ingest/batch", &key, json!({"stream_id": "pay", "events": events})).await;
    assert!(status == 200 || status == 201, "{report}");
    stack.drain_changes().await;
    // The aggregator queued the check of the minute, delayed to the minute's end.
    assert!(stack.queue_depth_of("WebhooksQueue").await >= 1, "a delayed thresholds_check");

    // The minutes the aggregator counted (normally one; two across a minute boundary).
    let stats_pk = argus_core::keys::stream_stats_pk("acme", "pay");
    let counted = stack
        .backend
        .dynamodb
        .query()
        .table_name(&stack.backend.table)
        .key_condition_expression("PK = :pk AND begins_with(SK, :m)")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(stats_pk.clone()))
        .expression_attribute_values(":m", aws_sdk_dynamodb::types::AttributeValue::S("M#".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let (minute, stored) = counted
        .items()
        .iter()
        .map(|item| {
            let text = item["SK"].as_s().unwrap().trim_start_matches("M#");
            let minute = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap().and_utc().timestamp();
            (minute, item["stored"].as_n().unwrap().parse::<u64>().unwrap())
        })
        .max_by_key(|(_, stored)| *stored)
        .unwrap();
    let notifier = stack.function_backend("argus-notifier");
    let check = |minute: i64| {
        let message = serde_json::to_string(&NotifierMessage::ThresholdsCheck {
            tenant: "acme".into(),
            stream: "pay".into(),
            minute,
        })
        .unwrap();
        argus_api::notifier::handle(&notifier, sqs_event(&[message.clone(), message]), None)
    };
    if stored > 3 {
        // Checked twice in one batch and twice concurrently: one notification.
        let (a, b) = tokio::join!(check(minute), check(minute));
        let mut failed = a.batch_item_failures.len() + b.batch_item_failures.len();
        // Under the steady-faults pass a copy may fail, retryable (its transaction contended
        // past its retries): SQS would deliver it again, and so does the test. Otherwise none.
        assert!(failed == 0 || argus_tests::steady_faults().is_some(), "{failed} copies failed");
        for _ in 0..5 {
            if failed == 0 {
                break;
            }
            failed = check(minute).await.batch_item_failures.len();
        }
        assert_eq!(failed, 0, "the copies SQS delivers again succeed");
        let log = received(&receiver, "th", 1, 30).await;
        let body = &log[0]["json"];
        assert_eq!(log[0]["verified"], true);
        assert_eq!(body["event"], "stream.threshold_exceeded");
        assert_eq!(body["stream_id"], "pay");
        assert_eq!(
            (body["data"]["metric"].clone(), body["data"]["threshold"].clone()),
            (json!("events_per_minute"), json!(3.0))
        );
        assert_eq!(body["data"]["value"], json!(stored as f64));
        // One notification: every copy, concurrent or redelivered, found it made. (An attempt
        // may reach the receiver twice, at least once as Standard Webhooks allows, but always
        // under the one webhook-id.)
        tokio::time::sleep(Duration::from_secs(2)).await;
        let ids: BTreeSet<String> = receiver
            .log("th")
            .await
            .iter()
            .map(|entry| entry["headers"]["webhook-id"].as_str().expect("a webhook-id").to_string())
            .collect();
        assert_eq!(ids.len(), 1, "one notification for the crossing: {ids:?}");
    }
    // The following minutes (their statistics written as the aggregator would): still above
    // → no new notification; below → re-armed; above again → a second one. Late checks are
    // ignored. (After a minute without arrivals a metric counts as below again.)
    let put_minute = |m: i64, stored: u64| {
        stack
            .backend
            .dynamodb
            .put_item()
            .table_name(&stack.backend.table)
            .item("PK", aws_sdk_dynamodb::types::AttributeValue::S(stats_pk.clone()))
            .item("SK", aws_sdk_dynamodb::types::AttributeValue::S(argus_core::keys::stream_stats_minute_sk(m)))
            .item("stored", aws_sdk_dynamodb::types::AttributeValue::N(stored.to_string()))
            .send()
    };
    let base = minute + 60;
    put_minute(base, 9).await.unwrap();
    put_minute(base + 60, 12).await.unwrap();
    put_minute(base + 120, 1).await.unwrap();
    put_minute(base + 180, 10).await.unwrap();
    let before = receiver.log("th").await.len();
    check(base).await;
    check(base + 60).await;
    check(base + 120).await;
    check(base + 180).await;
    check(base + 120).await; // late: ignored
    check(base + 60).await;
    let expected = before + usize::from(before == 0) + 1;
    let log = received(&receiver, "th", expected, 30).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log_after = receiver.log("th").await;
    assert_eq!(log_after.len(), log.len(), "one per crossing: {log_after:?}");
    let values: Vec<f64> = log_after.iter().map(|c| c["json"]["data"]["value"].as_f64().unwrap()).collect();
    assert_eq!(values.last(), Some(&10.0), "{values:?}");
}
