//! `argus-admin dlq`: listing the dead-letter queue without taking from it, and redriving it to
//! the events queue, against the local SQS endpoint, with the processor draining the queue.

use argus_core::dlq;
use argus_core::pipeline::QueuedEvent;
use argus_models::event::EventInput;
use argus_tests::{eventually, TestStack};
use serde_json::{json, Value};

fn message(tenant: &str, session: &str, id: &str, data: Value) -> String {
    let payload = json!({"id": id, "session_id": session, "category": "c", "name": "n", "data": data, "timestamp": "2021-06-15 00:00:00"});
    let event = EventInput::parse(&payload).unwrap();
    let queued = QueuedEvent {
        v: 1,
        tenant: tenant.into(),
        received_at: "2026-01-01T00:00:00.000Z".into(),
        event,
        payload,
        client_id: true,
    };
    serde_json::to_string(&queued).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_in_place_and_redriven_once() {
    let stack = TestStack::start_with_processor().await;
    let tenant = "dlq-tenant";
    let key = stack.key(tenant).await;
    let session = stack.session(&key).await;
    // An event that failed its content check has an error record: the listing shows it.
    let (status, accepted) = stack
        .post("/events", &key, json!({"session_id": session, "category": "c", "name": "n", "data": {}, "timestamp": "2021-06-15 00:00:00"}))
        .await;
    assert_eq!(status, 202);
    let failed_id = accepted["id"].as_str().unwrap().to_string();
    eventually(10, "the error record", || async {
        let (_, body) = stack.get(&format!("/errors?event_id={failed_id}"), &key).await;
        body["items"].as_array().is_some_and(|i| i.len() == 1).then_some(())
    })
    .await;

    let dlq_url = dlq::dead_letter_queue_url(&stack.backend, &stack.backend.queue_url).await.unwrap();
    let ids = ["0190f0a2-5f5e-7c3a-9a1b-000000000001", "0190f0a2-5f5e-7c3a-9a1b-000000000002"];
    let bodies = [
        message(tenant, &session, &failed_id, json!({})),
        message(tenant, &session, ids[0], json!({"k": 1})),
        message(tenant, &session, ids[1], json!({"k": 2})),
    ];
    // The second copy of one event: what a redrive that died between send and delete leaves.
    for body in bodies.iter().chain(std::iter::once(&bodies[1])) {
        stack.backend.sqs.send_message().queue_url(&dlq_url).message_body(body).send().await.unwrap();
    }

    for _ in 0..2 {
        let letters = dlq::list(&stack.backend, &dlq_url, 100).await.unwrap();
        assert_eq!(letters.len(), 4, "listing leaves the messages in place: {letters:?}");
        assert!(letters.iter().all(|l| l.kind == "event" && l.tenant.as_deref() == Some(tenant)));
        let failed = letters.iter().find(|l| l.event_id.as_deref() == Some(failed_id.as_str())).unwrap();
        assert_eq!(failed.first_error.as_ref().unwrap()["code"], "DATA_EMPTY");
        assert!(letters
            .iter()
            .filter(|l| l.event_id.as_deref() != Some(failed_id.as_str()))
            .all(|l| l.first_error.is_none()));
    }

    // One by hand (the copy path), then the rest.
    let first = dlq::redrive(&stack.backend, &dlq_url, &stack.backend.queue_url, Some(1)).await.unwrap();
    assert_eq!((first.method, first.moved, first.left_in_dlq), ("copy", 1, 0));
    let rest = dlq::redrive(&stack.backend, &dlq_url, &stack.backend.queue_url, None).await.unwrap();
    assert_eq!(rest.moved, 3, "{rest:?}");
    assert!(dlq::list(&stack.backend, &dlq_url, 100).await.unwrap().is_empty());
    let again = dlq::redrive(&stack.backend, &dlq_url, &stack.backend.queue_url, None).await.unwrap();
    assert_eq!(again.moved, 0);

    // The processor takes them: the two events stored once (the copy is a duplicate), the
    // failed one still one record.
    for id in ids {
        eventually(15, "the redriven event", || async {
            (stack.get(&format!("/events/{id}"), &key).await.0 == 200).then_some(())
        })
        .await;
    }
    eventually(15, "the queue drained", || async { (stack.queue_depth().await == 0).then_some(()) }).await;
    let (_, records) = stack.get(&format!("/errors?event_id={failed_id}"), &key).await;
    assert_eq!(records["items"].as_array().unwrap().len(), 1, "{records}");
    let (_, listed) = stack.get(&format!("/events?session={session}"), &key).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "each event once: {listed}");
}

/// Large messages (a job chunk is up to 200 KiB) are redriven in batches within SQS's batch
/// size, not refused ten at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_dead_letters_are_redriven_within_the_batch_size() {
    let stack = TestStack::start().await;
    let dlq_url = dlq::dead_letter_queue_url(&stack.backend, &stack.backend.queue_url).await.unwrap();
    for i in 0..3 {
        let body = json!({"n": i, "blob": "x".repeat(200 * 1024)}).to_string();
        stack.backend.sqs.send_message().queue_url(&dlq_url).message_body(body).send().await.unwrap();
    }
    assert_eq!(dlq::depth(&stack.backend, &dlq_url).await.unwrap(), 3);
    let report = dlq::redrive(&stack.backend, &dlq_url, &stack.backend.queue_url, Some(10)).await.unwrap();
    assert_eq!((report.moved, report.left_in_dlq), (3, 0));
    assert_eq!(dlq::depth(&stack.backend, &dlq_url).await.unwrap(), 0);
    assert_eq!(stack.queue_depth().await, 3);
}
