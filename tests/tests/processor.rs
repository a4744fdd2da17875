//! The SQS-triggered processor, invoked with SQS events as Lambda would: redelivery, poison
//! messages, partial batch failures under injected write failures, and the DLQ.

use std::time::{Duration, Instant};

use argus_core::pipeline::QueuedEvent;
use argus_models::event::EventInput;
use argus_tests::fault_proxy::{FaultProxy, Faults};
use argus_tests::TestStack;
use aws_lambda_events::sqs::SqsEvent;
use serde_json::{json, Value};

fn queued(tenant: &str, session: &str, data: Value) -> (String, QueuedEvent) {
    let payload =
        json!({"session_id": session, "category": "c", "name": "n", "data": data, "timestamp": "2021-06-15 00:00:00"});
    let mut input = EventInput::parse(&payload).unwrap();
    let id = argus_models::ids::new_id();
    input.id = Some(id);
    let message = QueuedEvent {
        v: 1,
        tenant: tenant.into(),
        received_at: argus_models::time::format(&argus_models::time::now()),
        event: input,
        payload,
        client_id: false,
    };
    (id.to_string(), message)
}

fn sqs_event(messages: &[(String, String)]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| json!({"messageId": id, "receiptHandle": format!("rh-{id}"), "body": body, "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q", "awsRegion": "us-east-1"}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn failures(response: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_never_duplicates_and_poison_is_recorded_once() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let (event_id, message) = queued("acme", &session, json!({"a": 1}));
    let (bad_id, bad) = queued("acme", &session, json!({}));
    let body = serde_json::to_string(&message).unwrap();
    let batch = vec![
        ("m1".to_string(), body.clone()),
        ("m2".to_string(), serde_json::to_string(&bad).unwrap()),
        ("m3".to_string(), "this is not json".to_string()),
        ("m4".to_string(), json!({"tenant": "acme", "event": 5}).to_string()),
    ];
    for delivery in 0..3 {
        let response =
            argus_api::processor::handle(&stack.function_backend("argus-processor"), sqs_event(&batch), None).await;
        assert_eq!(failures(&response), Vec::<String>::new(), "delivery {delivery}: nothing is retried");
    }
    // Delivered again in another message (a client retry re-sent it with the same id).
    let response = argus_api::processor::handle(
        &stack.function_backend("argus-processor"),
        sqs_event(&[("m5".into(), body)]),
        None,
    )
    .await;
    assert!(failures(&response).is_empty());

    let (_, events) = stack.get(&format!("/events?session={session}"), &key).await;
    assert_eq!(events["items"].as_array().unwrap().len(), 1);
    assert_eq!(events["items"][0]["id"], event_id.as_str());
    let errors = stack.all_pages("/errors", &key, 10).await;
    let mut codes: Vec<&str> = errors.iter().map(|e| e["code"].as_str().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, ["DATA_EMPTY", "MALFORMED_MESSAGE"], "one record each, whatever the deliveries");
    assert!(errors.iter().any(|e| e["event_id"] == bad_id.as_str()));
    let malformed = errors.iter().find(|e| e["code"] == "MALFORMED_MESSAGE").unwrap();
    assert_eq!(malformed["details"]["message_id"], "m4");
    assert_eq!(malformed["payload"], json!({"tenant": "acme", "event": 5}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_id_with_other_content_is_an_id_conflict_record() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let (id, first) = queued("acme", &session, json!({"a": 1}));
    let mut second = first.clone();
    second.event.data = json!({"a": 2});
    for (message_id, message) in [("m1", &first), ("m2", &second)] {
        let body = serde_json::to_string(message).unwrap();
        let response = argus_api::processor::handle(
            &stack.function_backend("argus-processor"),
            sqs_event(&[(message_id.into(), body)]),
            None,
        )
        .await;
        assert!(failures(&response).is_empty());
    }
    let (_, stored) = stack.get(&format!("/events/{id}"), &key).await;
    assert_eq!(stored["data"], json!({"a": 1}), "the first write stands");
    let (_, errors) = stack.get(&format!("/errors?event_id={id}"), &key).await;
    assert_eq!(errors["items"][0]["code"], "ID_CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failure_fails_exactly_its_message() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let messages: Vec<(String, QueuedEvent)> = (0..5).map(|_| queued("acme", &session, json!({"a": 1}))).collect();
    let doomed = messages[2].0.clone();
    let proxy = FaultProxy::start(
        &std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").unwrap(),
        Faults { seed: 7, always_unprocessed_marker: Some(format!("EVENT#{doomed}")), ..Faults::default() },
    )
    .await;
    let mut through_proxy = stack.backend.clone();
    through_proxy.dynamodb = proxy.dynamodb_client();
    let batch: Vec<(String, String)> = messages
        .iter()
        .enumerate()
        .map(|(i, (_, m))| (format!("msg-{i}"), serde_json::to_string(m).unwrap()))
        .collect();

    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    let response = argus_api::processor::handle(&through_proxy, sqs_event(&batch), Some(deadline)).await;
    assert_eq!(failures(&response), vec!["msg-2".to_string()]);
    assert!(started.elapsed() < Duration::from_secs(5), "retries stop within the deadline");
    let stats = proxy.stats();
    assert!(stats.batch_write_calls >= 2, "the unprocessed write was retried: {stats:?}");

    for (i, (id, _)) in messages.iter().enumerate() {
        let (status, _) = stack.get(&format!("/events/{id}"), &key).await;
        assert_eq!(status, if i == 2 { 404 } else { 200 }, "event {i}");
    }
    // Redelivered once the fault is gone, the failed message is stored, the others not doubled.
    proxy.set_faults(Faults::default());
    let response = argus_api::processor::handle(&through_proxy, sqs_event(&batch), None).await;
    assert!(failures(&response).is_empty());
    let (_, listed) = stack.get(&format!("/events?session={session}"), &key).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_failing_five_receives_goes_to_the_dlq() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let (doomed, message) = queued("acme", &session, json!({"a": 1}));
    let proxy = FaultProxy::start(
        &std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").unwrap(),
        Faults { seed: 1, always_unprocessed_marker: Some(format!("EVENT#{doomed}")), ..Faults::default() },
    )
    .await;
    let mut through_proxy = stack.backend.clone();
    through_proxy.dynamodb = proxy.dynamodb_client();
    // A short visibility timeout so redeliveries come quickly.
    stack
        .backend
        .sqs
        .set_queue_attributes()
        .queue_url(&stack.backend.queue_url)
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap();
    stack
        .backend
        .sqs
        .send_message()
        .queue_url(&stack.backend.queue_url)
        .message_body(serde_json::to_string(&message).unwrap())
        .send()
        .await
        .unwrap();
    let consumer = argus_local::drain::Consumer::new(&through_proxy, "argus-processor", &stack.backend.queue_url, 10)
        .await
        .unwrap();
    let dlq = stack.provisioned.queue_url("EventsDeadLetterQueue").unwrap().to_string();
    let processor = argus_local::functions::Functions::new(&through_proxy, &stack.template, &stack.provisioned)
        .function("argus-processor")
        .unwrap()
        .clone();
    let mut receives = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let report = consumer.drain_once(&through_proxy, &processor, 1).await.unwrap();
        receives += report.received;
        assert_eq!(report.deleted, 0, "a failed message is never deleted");
        let attrs = stack
            .backend
            .sqs
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap();
        let in_dlq: usize =
            attrs.attributes.unwrap()[&QueueAttributeName::ApproximateNumberOfMessages].parse().unwrap();
        if in_dlq == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not in the DLQ after {receives} receives");
    }
    assert_eq!(receives, 5, "maxReceiveCount from template.yaml");
    assert_eq!(stack.get(&format!("/events/{doomed}"), &key).await.0, 404);
}

/// Issue 9, defect 1: a client or SDK retry puts one event id in two messages of one SQS batch.
/// DynamoDB refuses a BatchGetItem or BatchWriteItem that names one key twice, which used to
/// fail (and finally dead-letter) every message of that tenant in the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_twice_in_one_batch_is_stored_once_and_fails_nothing() {
    let stack = TestStack::start().await;
    let processor = stack.functions.function("argus-processor").unwrap().backend.clone();
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let (event_id, message) = queued("acme", &session, json!({"a": 1}));
    let mut other_content = message.clone();
    other_content.event.data = json!({"a": 2});
    let (bad_id, bad) = queued("acme", &session, json!({}));
    let (other_id, other) = queued("acme", &session, json!({"b": 1}));
    let body = serde_json::to_string(&message).unwrap();
    let bad_body = serde_json::to_string(&bad).unwrap();
    let batch = vec![
        ("m1".to_string(), body.clone()),
        ("m2".to_string(), body.clone()),
        ("m3".to_string(), serde_json::to_string(&other_content).unwrap()),
        ("m4".to_string(), bad_body.clone()),
        ("m5".to_string(), bad_body),
        ("m6".to_string(), serde_json::to_string(&other).unwrap()),
    ];
    for delivery in 0..2 {
        let response = argus_api::processor::handle(&processor, sqs_event(&batch), None).await;
        assert_eq!(failures(&response), Vec::<String>::new(), "delivery {delivery}: nothing is retried");
    }
    let events = stack.all_pages(&format!("/events?session={session}"), &key, 10).await;
    let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = vec![event_id.as_str(), other_id.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "each event once");
    let stored = events.iter().find(|e| e["id"] == event_id.as_str()).unwrap();
    assert_eq!(stored["data"], json!({"a": 1}), "the first delivery's content wins");
    let errors = stack.all_pages("/errors", &key, 10).await;
    let mut codes: Vec<(&str, &str)> =
        errors.iter().map(|e| (e["code"].as_str().unwrap(), e["event_id"].as_str().unwrap_or(""))).collect();
    codes.sort();
    let mut expected = vec![("DATA_EMPTY", bad_id.as_str()), ("ID_CONFLICT", event_id.as_str())];
    expected.sort();
    assert_eq!(codes, expected, "one record per failed event id");
}

/// Issue 9, defect 8, on the queue path: two `POST /events` with one client-chosen id and other
/// content, processed by two concurrent invocations. Each checks the id is free; before, both
/// wrote and the last silently replaced the first. Now exactly one is stored and the other
/// becomes an `ID_CONFLICT` error record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_id_in_two_invocations_stores_one_and_records_the_conflict() {
    let stack = TestStack::start().await;
    let processor = stack.function_backend("argus-processor");
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let (event_id, mut first) = queued("acme", &session, json!({"v": 1}));
    first.client_id = true;
    let mut second = first.clone();
    second.event.data = json!({"v": 2});
    second.payload["data"] = json!({"v": 2});
    let bodies = [serde_json::to_string(&first).unwrap(), serde_json::to_string(&second).unwrap()];
    let (a, b) = tokio::join!(
        argus_api::processor::handle(&processor, sqs_event(&[("m1".into(), bodies[0].clone())]), None),
        argus_api::processor::handle(&processor, sqs_event(&[("m2".into(), bodies[1].clone())]), None),
    );
    assert!(failures(&a).is_empty() && failures(&b).is_empty());
    let (status, stored) = stack.get(&format!("/events/{event_id}"), &key).await;
    assert_eq!(status, 200);
    let errors = stack.all_pages("/errors", &key, 10).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["code"], "ID_CONFLICT");
    let loser = if stored["data"] == json!({"v": 1}) { json!({"v": 2}) } else { json!({"v": 1}) };
    assert_eq!(errors[0]["payload"]["data"], loser, "the record keeps the content that lost");
}
