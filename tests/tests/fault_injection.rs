//! The batch writer under injected faults, through the batch endpoint. A proxy between the SDK
//! and DynamoDB Local holds back random BatchWriteItem items as UnprocessedItems and injects
//! throttling errors and 500s (seeded). Over many seeds and thousands of items, every item must
//! end either stored and reported 201, or reported 503 (retryable) and absent; none reported
//! written but missing, none written twice, and retries stop within the budget.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use argus_core::ddb::{batch_get, key};
use argus_core::keys::{event_pk, META};
use argus_tests::fault_proxy::{FaultProxy, Faults};
use argus_tests::{Method, TestStack};
use serde_json::{json, Value};
use uuid::Uuid;

const ITEMS_PER_SEED: usize = 1_500;

/// Event ids that exist, read straight from DynamoDB Local (not through the proxy).
async fn stored_ids(stack: &TestStack, tenant: &str, ids: &[Uuid]) -> HashSet<Uuid> {
    let keys = ids.iter().map(|id| key(event_pk(tenant, id), META)).collect();
    let items = batch_get(&stack.backend.dynamodb, &stack.backend.table, keys, Some("id")).await.unwrap();
    items.iter().map(|item| Uuid::parse_str(argus_core::ddb::get_s(item, "id").unwrap()).unwrap()).collect()
}

/// Items without ids: the server assigns them, so they go through the batch writer
/// (client-chosen ids are written conditionally, see `client_ids`).
fn items(session: &str, seed: u64) -> Vec<Value> {
    (0..ITEMS_PER_SEED)
        .map(|i| json!({"session_id": session, "category": "load", "name": format!("s{seed}-{i}"), "data": {"i": i}, "timestamp": "2021-06-15T00:00:00Z"}))
        .collect()
}

/// The id each result names: 201s and 503s both carry the id the server gave the item.
fn result_ids(report: &Value) -> Vec<Uuid> {
    report["results"].as_array().unwrap().iter().map(|r| Uuid::parse_str(r["id"].as_str().unwrap()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_is_stored_and_reported_or_reported_503_and_absent() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let upstream = std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").unwrap();
    let (mut total_written, mut total_retry_later, mut total_retries) = (0, 0, 0);

    for seed in 1..=8u64 {
        let faults = Faults {
            seed,
            unprocessed_rate: 0.3,
            throttle_rate: 0.08,
            server_error_rate: 0.04,
            targets: vec!["BatchWriteItem".into()],
            ..Faults::default()
        };
        let proxy = FaultProxy::start(&upstream, faults).await;
        let mut backend = stack.backend.clone();
        backend.dynamodb = proxy.dynamodb_client();
        // Odd seeds give up early, so some items must come back 503; even seeds persist.
        backend.writer.max_attempts = if seed % 2 == 1 { 2 } else { 12 };
        backend.writer.base_delay = Duration::from_millis(5);
        backend.writer.max_delay = Duration::from_millis(80);
        // Persistent seeds get room to finish on a loaded machine; either way the answer must
        // come within the budget (plus one answer's margin).
        let budget = Duration::from_secs(if seed % 2 == 1 { 10 } else { 24 });
        backend.write_budget = budget;
        let api = TestStack::serve(backend, stack.provisioned.clone(), stack.template.clone()).await;

        let items = items(&session, seed);
        let started = Instant::now();
        let (status, report) =
            api.call(Method::POST, "/batch/events", Some(&key), Some(json!(items).to_string())).await;
        let elapsed = started.elapsed();
        assert_eq!(status, 200, "seed {seed}: {report}");
        // The margin covers building and sending the answer on a loaded 2-core CI machine: a
        // fresh-clone run, with the analytics tests beside it, answered 3 s after a 10 s budget.
        assert!(elapsed < budget + Duration::from_secs(5), "seed {seed}: retries ran past the budget ({elapsed:?})");

        let ids = result_ids(&report);
        let stored = stored_ids(&stack, "acme", &ids).await;
        let results = report["results"].as_array().unwrap();
        assert_eq!(results.len(), ITEMS_PER_SEED);
        let mut written = 0;
        for (index, result) in results.iter().enumerate() {
            assert_eq!(result["index"], index);
            match result["status"].as_u64().unwrap() {
                201 => {
                    assert_eq!(result["id"], ids[index].to_string());
                    assert!(stored.contains(&ids[index]), "seed {seed}: item {index} reported 201 but missing");
                    written += 1;
                }
                503 => {
                    assert_eq!(result["error"]["code"], "RETRY_LATER");
                    assert_eq!(result["error"]["details"]["retryable"], true);
                    assert!(!stored.contains(&ids[index]), "seed {seed}: item {index} reported 503 but stored");
                    total_retry_later += 1;
                }
                other => panic!("seed {seed}: item {index} got {other}: {result}"),
            }
        }
        assert_eq!(stored.len(), written, "seed {seed}: nothing stored that was not reported");
        let stats = proxy.stats();
        assert_eq!(
            stats.writes_forwarded as usize, written,
            "seed {seed}: every stored item reached DynamoDB exactly once"
        );
        if seed % 2 == 0 {
            assert_eq!(written, ITEMS_PER_SEED, "seed {seed}: a persistent writer stores everything");
        }
        assert!(
            stats.writes_held_back > 0 && stats.throttles + stats.server_errors > 0,
            "seed {seed}: faults were injected: {stats:?}"
        );
        total_written += written;
        total_retries += stats.batch_write_calls;
        eprintln!("seed {seed}: {written} written, {} retry later, {stats:?}, {elapsed:?}", ITEMS_PER_SEED - written);
    }
    assert!(total_retry_later > 0, "the early-giving-up seeds produced 503s");
    assert!(total_written > 0 && total_retries > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_within_the_budget_when_nothing_gets_through() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let proxy = FaultProxy::start(
        &std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").unwrap(),
        Faults { seed: 3, unprocessed_rate: 1.0, ..Faults::default() },
    )
    .await;
    let mut backend = stack.backend.clone();
    backend.dynamodb = proxy.dynamodb_client();
    backend.writer.max_attempts = 1_000;
    backend.write_budget = Duration::from_secs(2);
    let api = TestStack::serve(backend, stack.provisioned.clone(), stack.template.clone()).await;
    let items = items(&session, 99);
    let started = Instant::now();
    let (status, report) =
        api.call(Method::POST, "/batch/events", Some(&key), Some(json!(items[..300]).to_string())).await;
    let ids = result_ids(&report);
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    assert!(elapsed < Duration::from_secs(5), "stopped at the budget, not after 1,000 attempts: {elapsed:?}");
    assert_eq!(report["failed"], 300);
    assert!(report["results"].as_array().unwrap().iter().all(|r| r["status"] == 503));
    assert!(stored_ids(&stack, "acme", &ids[..300]).await.is_empty());
    assert_eq!(proxy.stats().writes_forwarded, 0);
}

/// Issue 9, defect 3: every bulk path answers by its deadline when DynamoDB throttles every
/// write and answers slowly: nothing starts after the deadline, calls in flight (with the SDK's
/// own retries) are cut off at it, and every item is accounted for (503, retryable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bulk_path_answers_by_its_deadline_under_throttling_and_latency() {
    use argus_core::bulk::{self, BulkOutcome, Mode};
    use argus_core::deadline::scope;
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let existing = items(&session, 1);
    let (status, created) =
        stack.call(Method::POST, "/batch/events", Some(&key), Some(json!(existing[..40]).to_string())).await;
    assert_eq!(status, 200, "{created}");
    let ids: Vec<Value> = created["results"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect();

    let proxy = FaultProxy::start(
        &std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").unwrap(),
        Faults {
            seed: 11,
            throttle_rate: 1.0,
            targets: ["BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"]
                .map(String::from)
                .to_vec(),
            latency: Duration::from_millis(80),
            ..Faults::default()
        },
    )
    .await;
    let mut backend = stack.backend.clone();
    backend.dynamodb = proxy.dynamodb_client();
    backend.writer.max_attempts = 1_000;
    let deadline_in = Duration::from_millis(300);
    // The deadline, plus what one last answer needs on a loaded 2-core machine.
    let margin = Duration::from_millis(250);
    let within = |started: Instant, what: &str| {
        let elapsed = started.elapsed();
        assert!(elapsed < deadline_in + margin, "{what} answered after {elapsed:?}");
    };
    let all_503 = |outcome: Result<BulkOutcome, argus_core::ServiceError>, count: usize, what: &str| match outcome {
        Ok(BulkOutcome::Report(report)) => {
            assert_eq!(report.results.len(), count, "{what}: every item accounted for");
            assert!(report.results.iter().all(|r| r.status == 503), "{what}: {:?}", report.results);
        }
        Ok(BulkOutcome::Atomic { .. }) => panic!("{what}: atomic success under total throttling"),
        Err(err) => assert!(matches!(err, argus_core::ServiceError::Unavailable { .. }), "{what}: {err:?}"),
    };

    // With client-chosen ids: conditional transactions; without: the batch writer. Both bounded.
    let mut fresh = items(&session, 2);
    for item in &mut fresh[..100] {
        item["id"] = json!(Uuid::now_v7());
    }
    let started = Instant::now();
    let deadline = Some(started + deadline_in);
    let outcome = scope(
        deadline,
        bulk::create_events(&backend, "acme", &fresh[..200], Mode::Partial, deadline, bulk::Dialect::Argus, None),
    )
    .await;
    within(started, "create");
    all_503(outcome, 200, "create");

    let patch: Vec<Value> = ids.iter().map(|id| json!({"id": id, "changes": {"name": "renamed"}})).collect();
    let started = Instant::now();
    let outcome =
        scope(Some(started + deadline_in), bulk::update_events(&backend, "acme", &patch, Mode::Partial)).await;
    within(started, "update");
    all_503(outcome, ids.len(), "update");

    for restore in [false, true] {
        let started = Instant::now();
        let report =
            scope(Some(started + deadline_in), bulk::delete_or_restore(&backend, "acme", &ids, restore)).await.unwrap();
        within(started, if restore { "restore" } else { "delete" });
        assert_eq!(report.results.len(), ids.len());
        assert!(report.results.iter().all(|r| r.status == 503), "{:?}", report.results);
    }

    let started = Instant::now();
    let fingerprint = argus_core::idempotency::fingerprint("POST /sessions?", b"");
    let taken =
        scope(Some(started + deadline_in), argus_core::idempotency::begin(&backend, "acme", "k", &fingerprint)).await;
    within(started, "idempotency");
    assert!(matches!(taken, Err(argus_core::ServiceError::Unavailable { .. })), "{taken:?}");

    let chunk = argus_core::jobs::JobChunk {
        kind: argus_core::jobs::CHUNK_KIND.into(),
        tenant: "acme".into(),
        job_id: Uuid::now_v7(),
        chunk: 0,
        start: 0,
        items: fresh[200..300].to_vec(),
        server_ids: Vec::new(),
    };
    let started = Instant::now();
    let config = backend.writer_for(Some(started + deadline_in), Duration::ZERO);
    let processed =
        scope(Some(started + deadline_in), argus_core::jobs::process_chunk(&backend, &chunk, 1, &config)).await;
    within(started, "job chunk");
    assert!(processed.is_err(), "the chunk is redelivered, not half-counted");

    // Nothing was written by any of them.
    assert_eq!(proxy.stats().writes_forwarded, 0);
    let (_, page) = stack.get(&format!("/events/{}", ids[0].as_str().unwrap()), &key).await;
    assert_eq!(page["name"], "s1-0", "no update went through");
}
