//! Async batch jobs: imports too big or too slow to wait for.
//!
//! `create` stores the job (`queued`) and fans its items out to SQS in chunks. The processor
//! handles each chunk with the bulk code (`bulk::prepare_creates` + the batch writer), stores
//! one result per item, then commits the chunk: a chunk marker (conditional on not existing)
//! and the counter increments in one transaction, so a chunk delivered twice counts once. The
//! chunk that brings `chunks_done` to `chunks_total` completes the job.

use crate::deadline::WithinDeadline;
use argus_models::ids::parse_uuid;
use argus_models::time;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::batch_writer::{write_all, BatchWriterConfig, Write, WriteOutcome};
use crate::bulk::{self, ItemError, ItemResult};
use crate::ddb::{get_meta, get_n, get_opt_s, s, Item};
use crate::keys::{EXPIRES_AT, GSI1PK, GSI1SK, META, PK, SK};
use crate::page::Page;
use crate::{cursor, Backend, ServiceError};

/// Items per job (the request's byte limit, `bulk::MAX_BYTES`, applies too).
pub const MAX_JOB_ITEMS: usize = 100_000;
/// Items per chunk message, and the largest serialized chunk (SQS allows 256 KiB a message and
/// 256 KiB per SendMessageBatch call).
const CHUNK_ITEMS: usize = 100;
const CHUNK_BYTES: usize = 200 * 1024;
const SEND_BATCH_BYTES: usize = 240 * 1024;
/// Jobs and their results are kept this long (DynamoDB TTL).
pub const RETENTION_DAYS: u64 = 7;
/// From this receive on (SQS moves a message to the DLQ after 5), items still unwritable are
/// recorded as failed instead of failing the message, so the job always completes.
const FINAL_RECEIVE: u32 = 4;

pub const OPERATIONS: [&str; 1] = ["create_events"];

/// One results page reads at most this many Query pages (a filter that matches few results
/// must not read a 100,000-item job in one request): fewer results, and a cursor to go on.
const MAX_RESULT_QUERY_CALLS: usize = 4;
const MAX_RESULTS_READ_PER_CALL: usize = 1000;

pub(crate) fn job_pk(tenant: &str, id: &Uuid) -> String {
    format!("T#{tenant}#JOB#{id}")
}

fn result_sk(index: usize) -> String {
    format!("R#{index:08}")
}

pub(crate) fn chunk_sk(chunk: usize) -> String {
    format!("C#{chunk:06}")
}

fn expires_at() -> AttributeValue {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    AttributeValue::N((secs + RETENTION_DAYS * 86_400).to_string())
}

/// The SQS message of one chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobChunk {
    pub kind: String,
    pub tenant: String,
    pub job_id: Uuid,
    pub chunk: usize,
    /// Index of the chunk's first item in the job.
    pub start: usize,
    pub items: Vec<Value>,
    /// Indexes (in this chunk) of items whose `id` the job assigned: the client did not choose
    /// them, so they cannot collide and skip the conditional create.
    #[serde(default)]
    pub server_ids: Vec<usize>,
}

pub const CHUNK_KIND: &str = "job_chunk";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Job {
    pub job_id: Uuid,
    pub operation: String,
    pub status: String,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Accepted {
    pub job_id: Uuid,
    pub status: &'static str,
    pub total: usize,
    pub status_url: String,
}

/// Checks a job request as [`create`] does, and each item as its chunk will (session lookups
/// included, `bulk::MAX_ITEMS` at a time), writing nothing: the per-item report.
pub async fn validate(backend: &Backend, tenant: &str, body: &Value) -> Result<bulk::BulkReport, ServiceError> {
    let (_, items) = check_request(body)?;
    let mut results = Vec::with_capacity(items.len());
    for (chunk, start) in items.chunks(bulk::MAX_ITEMS).zip((0..).step_by(bulk::MAX_ITEMS)) {
        let report = bulk::validate_events(backend, tenant, chunk, bulk::Dialect::Argus, None).await?;
        results.extend(report.results.into_iter().map(|mut r| {
            r.index += start;
            r
        }));
    }
    Ok(bulk::BulkReport::new(results))
}

/// Checks the request, stores the job and queues its chunks.
pub async fn create(backend: &Backend, tenant: &str, body: &Value) -> Result<Accepted, ServiceError> {
    let (operation, items) = check_request(body)?;
    create_checked(backend, tenant, operation, items).await
}

/// The request's items, once its shape and size are found right.
pub fn check_request(body: &Value) -> Result<(&str, &[Value]), ServiceError> {
    let mut errors = argus_models::ValidationError::default();
    let operation = body.get("operation").and_then(Value::as_str).unwrap_or_default();
    if !OPERATIONS.contains(&operation) {
        errors.push(argus_models::FieldError::new(
            "operation",
            "INVALID_OPERATION",
            format!("operation is one of {}", OPERATIONS.join(", ")),
        ));
    }
    let items = match body.get("items") {
        Some(Value::Array(items)) if !items.is_empty() => items.as_slice(),
        // The same answer as the bulk routes' for an empty list.
        Some(Value::Array(_)) => {
            errors.push(argus_models::FieldError::new("items", "EMPTY_BATCH", "send at least one item"));
            &[]
        }
        _ => {
            errors.push(argus_models::FieldError::new("items", "REQUIRED", "an array of items is required"));
            &[]
        }
    };
    // Items are checked one by one only when their chunk is processed, but each must already be
    // readable then: the depth limit of events, per field, applies here (see MAX_JSON_DEPTH).
    for (index, item) in items.iter().enumerate() {
        let too_deep = match item {
            Value::Object(fields) => fields.iter().find_map(|(name, value)| {
                argus_models::validation::check_depth(&format!("items.{index}.{name}"), value).err()
            }),
            other => argus_models::validation::check_depth(&format!("items.{index}"), other).err(),
        };
        if let Some(error) = too_deep {
            errors.push(error);
            if errors.errors.len() >= 20 {
                break;
            }
        }
    }
    errors.into_result()?;
    if items.len() > MAX_JOB_ITEMS {
        return Err(ServiceError::TooLarge {
            code: "BATCH_TOO_LARGE",
            message: format!("{} items; a job holds at most {MAX_JOB_ITEMS}", items.len()),
            details: Map::from_iter([
                ("max_items".into(), json!(MAX_JOB_ITEMS)),
                ("max_bytes".into(), json!(bulk::MAX_BYTES)),
            ]),
        });
    }
    Ok((operation, items))
}

async fn create_checked(
    backend: &Backend,
    tenant: &str,
    operation: &str,
    items: &[Value],
) -> Result<Accepted, ServiceError> {
    // Ids are fixed now, before fan-out: a redelivered chunk then finds its events already
    // stored with the same content (duplicates), instead of writing them again under new ids.
    let mut assigned = std::collections::HashSet::new();
    let items: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(fields) if !fields.contains_key("id") => {
                let mut fields = fields.clone();
                // Under an Idempotency-Key, derived from it: a rerun assigns the same ids.
                fields.insert("id".into(), json!(crate::keyed_ids::id_for(index as u64)));
                assigned.insert(index);
                Value::Object(fields)
            }
            other => other.clone(),
        })
        .collect();
    let chunks = chunk_items(&items);
    let job_id = crate::keyed_ids::id_for(crate::keyed_ids::JOB_ID_POSITION);
    let now = time::format(&time::now());
    let chunk_starts: Vec<AttributeValue> =
        chunks.iter().map(|(_, start, _)| AttributeValue::N(start.to_string())).collect();
    let stored = backend
        .dynamodb
        .put_item()
        .table_name(&backend.table)
        .item(PK, s(job_pk(tenant, &job_id)))
        .item(SK, s(META))
        .item("entity", s("job"))
        .item("job_id", s(job_id.to_string()))
        .item("tenant_id", s(tenant))
        .item("operation", s(operation))
        .item("status", s("queued"))
        .item("total", AttributeValue::N(items.len().to_string()))
        .item("succeeded", AttributeValue::N("0".into()))
        .item("failed", AttributeValue::N("0".into()))
        .item("chunks_total", AttributeValue::N(chunks.len().to_string()))
        .item("chunks_done", AttributeValue::N("0".into()))
        .item("chunk_starts", AttributeValue::L(chunk_starts))
        .item("created_at", s(&now))
        .item("updated_at", s(&now))
        // Listed as open until it completes: the sweeper finishes jobs that stall.
        .item(GSI1PK, s(open_jobs_pk(&job_id)))
        .item(GSI1SK, s(format!("{now}#{tenant}#{job_id}")))
        .item(EXPIRES_AT, expires_at())
        .condition_expression("attribute_not_exists(PK)")
        .send()
        .within_deadline()
        .await?;
    // The job exists already only when this is a rerun of the same keyed request (its id derives
    // from the Idempotency-Key): continue that job, sending every chunk again. A chunk is
    // counted once whatever its deliveries, so chunks the first run sent are harmless.
    let rerun = match stored {
        Ok(_) => false,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
            tracing::warn!(%tenant, %job_id, "continuing a job created by an earlier run of this request");
            true
        }
        Err(err) => return Err(ServiceError::from_sdk("dynamodb", err)),
    };

    let messages: Vec<(usize, String)> = chunks
        .iter()
        .map(|(chunk, start, items)| {
            let message = JobChunk {
                kind: CHUNK_KIND.into(),
                tenant: tenant.into(),
                job_id,
                chunk: *chunk,
                start: *start,
                items: items.to_vec(),
                server_ids: (0..items.len()).filter(|i| assigned.contains(&(start + i))).collect(),
            };
            (*chunk, serde_json::to_string(&message).unwrap_or_default())
        })
        .collect();
    let (unsent, maybe_sent) = send_all(backend, &messages).await;
    if unsent.len() == messages.len() && !rerun && !maybe_sent {
        let _ = crate::deadline::bounded(
            backend
                .dynamodb
                .delete_item()
                .table_name(&backend.table)
                .key(PK, s(job_pk(tenant, &job_id)))
                .key(SK, s(META))
                .send(),
        )
        .await?;
        return Err(ServiceError::Unavailable {
            component: "queue",
            message: "the job queue is unavailable, retry later".into(),
        });
    }
    // Chunks SQS would not take: their items are recorded as failed (retryable), never lost.
    // The job exists and some chunks are queued, so the client gets its id whatever happens
    // here: a chunk not recorded now is finished by the sweeper, and the status tells.
    for (chunk, start, items) in chunks.iter().filter(|(chunk, _, _)| unsent.contains(chunk)) {
        let results: Vec<ItemResult> = (0..items.len())
            .map(|i| with_item_id(bulk::retry_later(start + i, "the chunk could not be queued"), &items[i]))
            .collect();
        if let Err(err) = commit_chunk(backend, tenant, &job_id, *chunk, &results).await {
            tracing::warn!(%job_id, chunk, error = %err, "unqueued chunk not recorded; the sweeper will");
        }
    }
    Ok(Accepted { job_id, status: "queued", total: items.len(), status_url: format!("/batch/jobs/{job_id}") })
}

/// A 503 result names the item's id (fixed at job creation), to resend with.
fn with_item_id(mut result: ItemResult, item: &Value) -> ItemResult {
    result.id = item.get("id").and_then(Value::as_str).map(str::to_string);
    result
}

/// Open jobs are listed in GSI1 under a few shards (job creation is far below one
/// partition's 1,000 writes/s; shards keep a burst of creates off one partition).
pub(crate) const OPEN_JOB_SHARDS: u32 = 4;

pub(crate) fn open_jobs_pk(job_id: &Uuid) -> String {
    format!("OPENJOBS#{:02}", argus_models::ids::shard_of(job_id, OPEN_JOB_SHARDS))
}

/// (chunk number, index of its first item, its items), by count and serialized size.
fn chunk_items(items: &[Value]) -> Vec<(usize, usize, &[Value])> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0usize, 0usize);
    for (index, item) in items.iter().enumerate() {
        let size = item.to_string().len();
        if index > start && (index - start == CHUNK_ITEMS || bytes + size > CHUNK_BYTES) {
            chunks.push((chunks.len(), start, &items[start..index]));
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < items.len() {
        chunks.push((chunks.len(), start, &items[start..]));
    }
    chunks
}

/// Sends messages with SendMessageBatch (10 entries and `SEND_BATCH_BYTES` per call), retrying
/// every `Failed` entry. Returns the chunk numbers that could not be sent.
///
/// Also returns whether any unsent chunk *may* have been queued after all (a send cut off at
/// the deadline, or one whose answer was lost): resending such a chunk is harmless (it counts
/// once), but the job must then not be deleted.
async fn send_all(backend: &Backend, messages: &[(usize, String)]) -> (Vec<usize>, bool) {
    let mut pending: Vec<&(usize, String)> = messages.iter().collect();
    let mut maybe_sent = std::collections::HashSet::new();
    let config = BatchWriterConfig::default();
    for attempt in 1..=5u32 {
        let mut failed = Vec::new();
        let mut group: Vec<&(usize, String)> = Vec::new();
        let mut group_bytes = 0;
        let mut groups = Vec::new();
        for message in pending {
            if group.len() == 10 || group_bytes + message.1.len() > SEND_BATCH_BYTES {
                groups.push(std::mem::take(&mut group));
                group_bytes = 0;
            }
            group_bytes += message.1.len();
            group.push(message);
        }
        if !group.is_empty() {
            groups.push(group);
        }
        for group in groups {
            let entries: Vec<SendMessageBatchRequestEntry> = group
                .iter()
                .filter_map(|(chunk, body)| {
                    SendMessageBatchRequestEntry::builder().id(chunk.to_string()).message_body(body).build().ok()
                })
                .collect();
            // Past the deadline no send starts; one in flight is cut off at it.
            let sent = crate::deadline::bounded(
                backend.sqs.send_message_batch().queue_url(&backend.queue_url).set_entries(Some(entries)).send(),
            )
            .await;
            let Ok(sent) = sent else {
                maybe_sent.extend(group.iter().map(|(chunk, _)| *chunk));
                failed.extend(group);
                continue;
            };
            match sent {
                Ok(out) => {
                    for failure in out.failed {
                        tracing::warn!(chunk = %failure.id, code = %failure.code, sender_fault = failure.sender_fault, "chunk not queued");
                        if let Some(message) = group.iter().find(|(chunk, _)| chunk.to_string() == failure.id) {
                            failed.push(*message);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "SendMessageBatch failed");
                    // SQS answering an error means not sent; no answer (timeout, lost
                    // connection) may mean sent.
                    if !matches!(err, aws_sdk_sqs::error::SdkError::ServiceError(_)) {
                        maybe_sent.extend(group.iter().map(|(chunk, _)| *chunk));
                    }
                    failed.extend(group);
                }
            }
        }
        if failed.is_empty() {
            return (Vec::new(), false);
        }
        pending = failed;
        if attempt < 5 && !crate::deadline::sleep_within(crate::batch_writer::backoff(&config, attempt)).await {
            break;
        }
    }
    let unsent: Vec<usize> = pending.iter().map(|(chunk, _)| *chunk).collect();
    let ambiguous = unsent.iter().any(|chunk| maybe_sent.contains(chunk));
    (unsent, ambiguous)
}

/// Stores the chunk's per-item results, then counts the chunk exactly once. Returns false if
/// the chunk had been counted already (a redelivery).
pub(crate) async fn commit_chunk(
    backend: &Backend,
    tenant: &str,
    job_id: &Uuid,
    chunk: usize,
    results: &[ItemResult],
) -> Result<bool, ServiceError> {
    let pk = job_pk(tenant, job_id);
    let writes: Vec<Write> = results
        .iter()
        .map(|result| {
            let mut item: Item = crate::ddb::key(pk.clone(), &result_sk(result.index));
            item.insert("status".into(), AttributeValue::N(result.status.to_string()));
            item.insert("result".into(), s(serde_json::to_string(result).unwrap_or_default()));
            item.insert(EXPIRES_AT.into(), expires_at());
            Write::Put(item)
        })
        .collect();
    let (outcomes, _) = write_all(&backend.dynamodb, &backend.table, &writes, &BatchWriterConfig::default()).await;
    if !outcomes.iter().all(WriteOutcome::is_written) {
        return Err(ServiceError::Unavailable { component: "dynamodb", message: "job results not stored".into() });
    }
    let succeeded = results.iter().filter(|r| r.succeeded()).count();
    let failed = results.len() - succeeded;
    let now = time::format(&time::now());
    let marker = Put::builder()
        .table_name(&backend.table)
        .item(PK, s(&pk))
        .item(SK, s(chunk_sk(chunk)))
        .item(EXPIRES_AT, expires_at())
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let counters = Update::builder()
        .table_name(&backend.table)
        .key(PK, s(&pk))
        .key(SK, s(META))
        .update_expression("ADD succeeded :s, failed :f, chunks_done :one SET updated_at = :now, #status = :running")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":s", AttributeValue::N(succeeded.to_string()))
        .expression_attribute_values(":f", AttributeValue::N(failed.to_string()))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .expression_attribute_values(":now", s(&now))
        .expression_attribute_values(":running", s("running"))
        .condition_expression("attribute_exists(PK)")
        .build()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    // Every chunk of a job updates the job's one `#META` item, and up to 10 chunks of a job
    // arrive in one SQS batch: DynamoDB cancels concurrent transactions on one item with
    // `TransactionConflict` (the SDK does not retry it). Those are retried here, with backoff
    // and jitter, within the deadline. One token for this commit's attempts (never shared with
    // another commit of the chunk, whose parameters differ) makes a retry of an attempt that
    // did land a no-op.
    let token = argus_models::ids::new_id().simple().to_string();
    let config = BatchWriterConfig::default();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let committed = crate::deadline::bounded(
            backend
                .dynamodb
                .transact_write_items()
                .client_request_token(&token)
                .transact_items(TransactWriteItem::builder().put(marker.clone()).build())
                .transact_items(TransactWriteItem::builder().update(counters.clone()).build())
                .send(),
        )
        .await?;
        let err = match committed {
            Ok(_) => break,
            Err(err) => err,
        };
        let reasons: Vec<String> = match err.as_service_error() {
            Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
                c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_string()).collect()
            }
            _ => Vec::new(),
        };
        match (reasons.first().map(String::as_str), reasons.get(1).map(String::as_str)) {
            (Some("ConditionalCheckFailed"), _) => {
                // Counted before; its completion write may not have been (it failed, or the
                // function died): check it now, or the job could stay open forever.
                complete_if_done(backend, &pk).await?;
                return Ok(false);
            }
            (_, Some("ConditionalCheckFailed")) => {
                // The job itself is gone (expired, or deleted when nothing could be queued):
                // there is nothing to count into; redelivering cannot help.
                tracing::error!(%job_id, chunk, "job chunk for a job that does not exist; dropped");
                return Ok(false);
            }
            _ => {}
        }
        let contended = crate::error::only_contention(reasons.iter().map(String::as_str));
        let retryable = contended
            || crate::error::is_transient_sdk_error(&err)
            || err.as_service_error().is_some_and(|e| e.is_transaction_in_progress_exception());
        if !retryable
            || attempt >= config.max_attempts
            || !crate::deadline::sleep_within(crate::batch_writer::backoff(&config, attempt)).await
        {
            tracing::warn!(%job_id, chunk, attempts = attempt, ?reasons, "chunk commit failed");
            return Err(ServiceError::from_sdk("dynamodb", err));
        }
    }
    complete_if_done(backend, &pk).await?;
    Ok(true)
}

/// Sets the final status once every chunk is counted (the counters are final then), and
/// queues `batch.job.completed` for the job's webhooks. The queueing is retried by every later
/// call (a redelivered chunk, or the sweeper: the job leaves the open-jobs index only once
/// `webhook_queued_at` records it).
pub(crate) async fn complete_if_done(backend: &Backend, pk: &str) -> Result<(), ServiceError> {
    let job = get_meta(&backend.dynamodb, &backend.table, pk.to_string())
        .await?
        .ok_or_else(|| ServiceError::Internal("job vanished".into()))?;
    if get_n(&job, "chunks_done") < get_n(&job, "chunks_total") {
        return Ok(());
    }
    if !job.contains_key("completed_at") {
        let status = if get_n(&job, "failed") > 0 { "completed_with_errors" } else { "completed" };
        let now = time::format(&time::now());
        let result = crate::deadline::bounded(
            backend
                .dynamodb
                .update_item()
                .table_name(&backend.table)
                .key(PK, s(pk))
                .key(SK, s(META))
                // Stays in the open-jobs index (GSI1) until its webhook is queued: the sweeper
                // finishes that if every chunk message is gone.
                .update_expression("SET #status = :status, completed_at = :now, updated_at = :now")
                .condition_expression("chunks_done = chunks_total AND attribute_not_exists(completed_at)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status))
                .expression_attribute_values(":now", s(now))
                .send(),
        )
        .await?;
        // A failed condition: another call completed it.
        crate::ddb::condition_held(result)?;
    }
    if job.contains_key("webhook_queued_at") {
        return Ok(());
    }
    queue_completion_webhook(backend, pk).await
}

async fn queue_completion_webhook(backend: &Backend, pk: &str) -> Result<(), ServiceError> {
    let Some((tenant, id)) = pk.strip_prefix("T#").and_then(|rest| rest.split_once("#JOB#")) else {
        return Err(ServiceError::Internal(format!("unexpected job key {pk}")));
    };
    let job_id = Uuid::parse_str(id).map_err(|e| ServiceError::Internal(format!("job key {pk}: {e}")))?;
    let message = crate::webhooks::outbox::NotifierMessage::JobCompleted { tenant: tenant.to_string(), job_id };
    crate::webhooks::outbox::send(backend, &[(message, 0)]).await?;
    let result = crate::deadline::bounded(
        backend
            .dynamodb
            .update_item()
            .table_name(&backend.table)
            .key(PK, s(pk))
            .key(SK, s(META))
            .update_expression("SET webhook_queued_at = :now REMOVE GSI1PK, GSI1SK")
            .condition_expression("attribute_exists(completed_at)")
            .expression_attribute_values(":now", s(time::format(&time::now())))
            .send(),
    )
    .await?;
    crate::ddb::condition_held(result).map(|_| ())
}

/// Processes one chunk message. `Ok` means done (also: already counted, then with no counts);
/// an error means the message must be redelivered.
pub async fn process_chunk(
    backend: &Backend,
    chunk: &JobChunk,
    receive_count: u32,
    config: &BatchWriterConfig,
) -> Result<crate::metrics::EventCounts, ServiceError> {
    // Counted already (a redelivery, or the sweeper gave it up): only make sure the job's
    // completion was recorded. Writing results now could contradict the counters.
    let pk = job_pk(&chunk.tenant, &chunk.job_id);
    if crate::ddb::get_item(&backend.dynamodb, &backend.table, crate::ddb::key(pk.clone(), &chunk_sk(chunk.chunk)))
        .await?
        .is_some()
    {
        return complete_if_done(backend, &pk).await.map(|_| crate::metrics::EventCounts::default());
    }
    let server_ids: std::collections::HashSet<usize> = chunk.server_ids.iter().copied().collect();
    let (mut decided, ready) = bulk::prepare_creates(
        backend,
        &chunk.tenant,
        &chunk.items,
        &server_ids,
        bulk::Dialect::Argus,
        Default::default(),
    )
    .await?;
    let final_attempt = receive_count >= FINAL_RECEIVE;
    let (client_chosen, ready): (Vec<bulk::Ready>, Vec<bulk::Ready>) = ready.into_iter().partition(|r| r.client_id);
    for result in crate::client_ids::create(backend, client_chosen, config).await {
        if result.status == 503 && !final_attempt {
            // Redeliver the chunk: what was written is then a duplicate (200), not a double.
            return Err(ServiceError::Unavailable {
                component: "dynamodb",
                message: format!("item {} not written; the chunk will be redelivered", result.index),
            });
        }
        let index = result.index;
        decided[index] = Some(result);
    }
    let (placed, writes): (Vec<(usize, Uuid)>, Vec<Write>) =
        ready.into_iter().map(|r| ((r.index, r.id), Write::Put(r.item))).unzip();
    let (outcomes, _) = write_all(&backend.dynamodb, &backend.table, &writes, config).await;
    drop(writes);
    for ((index, id), outcome) in placed.into_iter().zip(outcomes) {
        decided[index] = Some(match outcome {
            WriteOutcome::Written => ItemResult::ok(index, 201, &id),
            WriteOutcome::NotWritten { reason, retryable: true } if !final_attempt => {
                // Redeliver the chunk: written items will then be duplicates (200), not doubles.
                return Err(ServiceError::Unavailable { component: "dynamodb", message: reason });
            }
            WriteOutcome::NotWritten { reason, retryable: true } => bulk::retry_later(index, &reason),
            WriteOutcome::NotWritten { reason, .. } => {
                ItemResult::failed(index, 400, ItemError::new("NOT_WRITABLE", reason))
            }
        });
    }
    // Results carry job-wide indexes.
    let results: Vec<ItemResult> = decided
        .into_iter()
        .flatten()
        .map(|mut r| {
            r.index += chunk.start;
            r
        })
        .collect();
    let counts = crate::metrics::EventCounts::from_results(&results);
    commit_chunk(backend, &chunk.tenant, &chunk.job_id, chunk.chunk, &results).await.map(|_| counts)
}

pub async fn get(backend: &Backend, tenant: &str, raw_id: &str) -> Result<Job, ServiceError> {
    let id = parse_uuid("id", raw_id).map_err(|_| ServiceError::not_found("job", raw_id))?;
    let item = get_meta(&backend.dynamodb, &backend.table, job_pk(tenant, &id))
        .await?
        .ok_or_else(|| ServiceError::not_found("job", raw_id))?;
    let text = |name: &str| get_opt_s(&item, name).unwrap_or_default().to_string();
    Ok(Job {
        job_id: id,
        operation: text("operation"),
        status: text("status"),
        total: get_n(&item, "total"),
        succeeded: get_n(&item, "succeeded"),
        failed: get_n(&item, "failed"),
        created_at: text("created_at"),
        updated_at: text("updated_at"),
        completed_at: get_opt_s(&item, "completed_at").map(str::to_string),
    })
}

#[derive(Serialize, Deserialize)]
struct ResultPosition {
    after: String,
}

/// Per-item results in index order, optionally only `failed` or `succeeded` ones.
pub async fn results(
    backend: &Backend,
    tenant: &str,
    raw_id: &str,
    status: Option<&str>,
    limit: usize,
    cursor_raw: Option<&str>,
) -> Result<Page<ItemResult>, ServiceError> {
    // The request is checked before anything is read.
    let position = cursor_raw.map(|c| cursor::decode::<ResultPosition>("job-results", c)).transpose()?;
    if position.as_ref().is_some_and(|p| !p.after.starts_with("R#")) {
        return Err(ServiceError::bad_request("INVALID_CURSOR", "cursor is not one this listing returned"));
    }
    let filter = match status {
        None => None,
        Some("failed") => Some("#status >= :bound"),
        Some("succeeded") => Some("#status < :bound"),
        Some(_) => {
            let errors = argus_models::ValidationError::single(argus_models::FieldError::new(
                "status",
                "INVALID_FILTER",
                "status is failed or succeeded",
            ));
            return Err(ServiceError::BadRequest {
                code: "INVALID_FILTER",
                message: errors.message(),
                details: errors.details(),
            });
        }
    };
    let job = get(backend, tenant, raw_id).await?;
    let pk = job_pk(tenant, &job.job_id);
    let mut items = Vec::new();
    let mut start_key = position.map(|p| crate::ddb::key(pk.clone(), &p.after));
    let mut has_more = false;
    let mut calls = 0usize;
    // Where reading stopped at the call cap, when fewer than `limit` results matched.
    let mut stopped_after: Option<String> = None;
    let mut bytes = 0usize;
    loop {
        // With a filter, `Limit` counts results *read*: read in big steps, then keep `limit`.
        let read = if filter.is_some() { MAX_RESULTS_READ_PER_CALL } else { limit + 1 - items.len() };
        let mut query = backend
            .dynamodb
            .query()
            .table_name(&backend.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :r)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":r", s("R#"))
            .limit(i32::try_from(read).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start_key.take());
        if let Some(filter) = filter {
            query = query
                .filter_expression(filter)
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":bound", AttributeValue::N("400".into()));
        }
        let out = query.send().within_deadline().await?.map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
        calls += 1;
        for item in out.items.unwrap_or_default() {
            bytes += crate::ddb::response_bytes(&item);
            let result: ItemResult = serde_json::from_str(get_opt_s(&item, "result").unwrap_or("{}"))
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            items.push(result);
        }
        if items.len() > limit || bytes > crate::ddb::MAX_PAGE_RESPONSE_BYTES {
            has_more = true;
            items.truncate(limit);
            break;
        }
        match out.last_evaluated_key {
            Some(key) if calls >= MAX_RESULT_QUERY_CALLS => {
                stopped_after = get_opt_s(&key, SK).map(str::to_string);
                break;
            }
            Some(key) => start_key = Some(key),
            None => break,
        }
    }
    let next_cursor = if has_more {
        items.last().map(|r| cursor::encode("job-results", &ResultPosition { after: result_sk(r.index) }))
    } else {
        stopped_after.map(|after| cursor::encode("job-results", &ResultPosition { after }))
    };
    Ok(Page { items, next_cursor })
}

/// Whether a queue message body is a job chunk (vs. a single event).
pub fn decode_chunk(body: &str) -> Option<JobChunk> {
    if !body.contains(CHUNK_KIND) {
        return None;
    }
    serde_json::from_str::<JobChunk>(body).ok().filter(|c| c.kind == CHUNK_KIND)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job chunk holding the deepest item a job accepts is a message the processor reads.
    #[test]
    fn the_deepest_accepted_item_is_a_readable_chunk() {
        let mut deep = json!("leaf");
        for _ in 0..argus_models::validation::MAX_JSON_DEPTH {
            deep = json!([deep]);
        }
        let item = json!({"data": deep, "name": "n"});
        let (chunk, start, chunk_items) = chunk_items(std::slice::from_ref(&item)).remove(0);
        let chunk = JobChunk {
            kind: CHUNK_KIND.into(),
            tenant: "t1".into(),
            job_id: Uuid::nil(),
            chunk,
            start,
            items: chunk_items.to_vec(),
            server_ids: vec![0],
        };
        let body = serde_json::to_string(&chunk).unwrap();
        assert_eq!(decode_chunk(&body).map(|c| c.items), Some(vec![item]));
    }

    #[test]
    fn chunks_respect_count_and_size() {
        let small: Vec<Value> = (0..250).map(|i| json!({"i": i})).collect();
        let chunks = chunk_items(&small);
        assert_eq!(chunks.iter().map(|c| c.2.len()).collect::<Vec<_>>(), [100, 100, 50]);
        assert_eq!(chunks.iter().map(|c| c.1).collect::<Vec<_>>(), [0, 100, 200]);
        let big: Vec<Value> = (0..10).map(|_| json!({"blob": "x".repeat(60_000)})).collect();
        let chunks = chunk_items(&big);
        assert!(chunks.iter().all(|c| c.2.iter().map(|v| v.to_string().len()).sum::<usize>() <= CHUNK_BYTES));
        assert_eq!(chunks.iter().map(|c| c.2.len()).sum::<usize>(), 10);
    }
}
