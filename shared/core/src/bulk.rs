//! Bulk operations on events: create, update, soft delete, restore. Free of HTTP types: the
//! batch Lambda (and later the batch jobs and `POST /batch`) call these.
//!
//! Every item gets its own result, in request order. In `partial` mode each item succeeds or
//! fails on its own; in `atomic` mode everything is validated first and written in one
//! `TransactWriteItems`, or nothing is written.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use argus_models::error_record::codes;
use argus_models::event::{content_violations, EventChanges, EventInput};
use argus_models::ids::parse_uuid;
use argus_models::{time, FieldError, ValidationError};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::batch_writer::{write_all, Write, WriteOutcome};
use crate::ddb::{key, s, Item};
use crate::keys::{event_pk, META};
use crate::{events, sessions, Backend, ServiceError};

/// Items per bulk request.
pub const MAX_ITEMS: usize = 10_000;
/// Bytes per bulk request body. Lambda's synchronous limit (6 MB) is on the whole invoke
/// payload, in which API Gateway puts the body as a JSON string: every `"` of the body becomes
/// `\"`. 5 MiB leaves room for that escaping and the event envelope, so any accepted body fits.
pub const MAX_BYTES: usize = 5 * 1024 * 1024;
/// DynamoDB's TransactWriteItems limits.
pub const MAX_ATOMIC_ITEMS: usize = 100;
pub const MAX_ATOMIC_BYTES: usize = 4 * 1024 * 1024;
/// Distinct streams one bulk create may name: each new one is a write to the tenant's one
/// stream listing partition, and a request is not how streams are meant to be made by thousands.
pub const MAX_STREAMS_PER_REQUEST: usize = 100;
/// Concurrent single-item calls for bulk update/delete/restore.
const ITEM_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Partial,
    Atomic,
}

impl Mode {
    pub fn parse(raw: Option<&Value>) -> Result<Self, ServiceError> {
        match raw {
            None | Some(Value::Null) => Ok(Mode::Partial),
            Some(Value::String(m)) if m == "partial" => Ok(Mode::Partial),
            Some(Value::String(m)) if m == "atomic" => Ok(Mode::Atomic),
            Some(_) => Err(ServiceError::Validation(
                FieldError::new("mode", "INVALID_MODE", "mode is \"partial\" or \"atomic\"").into(),
            )),
        }
    }
}

/// One item's error, in the envelope's shape.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ItemError {
    pub code: String,
    pub message: String,
    pub details: Map<String, Value>,
}

impl ItemError {
    fn validation(err: &ValidationError) -> Self {
        Self { code: "VALIDATION_FAILED".into(), message: err.message(), details: err.details() }
    }

    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), details: Map::new() }
    }
}

/// One item's result: `{"index", "status", "id"?, "duplicate"?, "error"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ItemResult {
    pub index: usize,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ItemError>,
}

impl ItemResult {
    pub(crate) fn ok(index: usize, status: u16, id: &Uuid) -> Self {
        Self { index, status, id: Some(id.to_string()), duplicate: false, error: None }
    }

    pub(crate) fn failed(index: usize, status: u16, error: ItemError) -> Self {
        Self { index, status, id: None, duplicate: false, error: Some(error) }
    }

    pub fn succeeded(&self) -> bool {
        self.status < 400
    }
}

/// The partial-mode answer.
#[derive(Debug, Serialize)]
pub struct BulkReport {
    pub succeeded: usize,
    pub failed: usize,
    pub results: Vec<ItemResult>,
}

impl BulkReport {
    pub fn new(results: Vec<ItemResult>) -> Self {
        let succeeded = results.iter().filter(|r| r.succeeded()).count();
        Self { succeeded, failed: results.len() - succeeded, results }
    }

    /// A report must fit in Lambda's 6 MB answer (escaped once more inside it). Past
    /// `max_bytes`, failed items keep their index, status, id and error code, and lose the
    /// error's message and details (`details.compacted: true` says so); 10,000 such entries are
    /// about 1 MB. Without this, 10,000 items each failing on many fields answer tens of MB,
    /// which API Gateway turns into a 500.
    pub fn fit(mut self, max_bytes: usize) -> Self {
        let size = serde_json::to_vec(&self).map(|v| v.len()).unwrap_or(usize::MAX);
        if size <= max_bytes / 2 {
            return self;
        }
        for result in &mut self.results {
            if let Some(error) = &mut result.error {
                error.message = "details omitted: the whole report was too large".into();
                error.details = Map::from_iter([("compacted".to_string(), json!(true))]);
            }
        }
        self
    }

    /// Keeps only the failed entries (indexes keep their meaning).
    pub fn only_failures(mut self) -> Self {
        self.results.retain(|r| !r.succeeded());
        self
    }
}

/// What a bulk call produced: a per-item report (partial) or all ids (atomic success).
#[derive(Debug)]
pub enum BulkOutcome {
    Report(BulkReport),
    Atomic { ids: Vec<String> },
}

/// 503 for an item not done: retry it. A create's carries the id it was given, to resend with.
pub(crate) fn retry_later(index: usize, reason: &str) -> ItemResult {
    let mut error = ItemError::new("RETRY_LATER", format!("not written, retry this item: {reason}"));
    error.details.insert("retryable".into(), json!(true));
    ItemResult::failed(index, 503, error)
}

/// Failures of an atomic request, as the envelope's `details.failures`.
fn failures_details(results: &[ItemResult]) -> Map<String, Value> {
    let failures: Vec<Value> = results
        .iter()
        .filter(|r| !r.succeeded())
        .map(|r| json!({"index": r.index, "status": r.status, "error": r.error}))
        .collect();
    Map::from_iter([("failures".to_string(), Value::Array(failures))])
}

/// How the items of a create are spelled: Argus's own event shape (the_eye's, sessions
/// required) or DataStream Pro's (`crate::datastream`), with the batch's `stream_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect<'a> {
    Argus,
    DataStream { stream: &'a str },
}

impl Dialect<'_> {
    /// The body's field holding the items.
    fn list_field(&self) -> &'static str {
        match self {
            Dialect::Argus => "items",
            Dialect::DataStream { .. } => "events",
        }
    }
    fn parse(&self, raw: &Value, received: &chrono::DateTime<chrono::Utc>) -> Result<EventInput, ValidationError> {
        match self {
            Dialect::Argus => EventInput::parse(raw),
            Dialect::DataStream { stream } => argus_models::datastream::parse_event(raw, Some(stream), received),
        }
    }
}

/// The content rules every new event meets, wherever it arrives (single, bulk, job): the_eye's
/// rules, its session's existence (when it names one), and its stream's retention at `now` (the
/// time it is stored: a queued event that expired while it waited becomes an error record, not
/// an event stored already invisible).
pub(crate) fn new_event_violations(
    input: &EventInput,
    received: &chrono::DateTime<chrono::Utc>,
    now: &chrono::DateTime<chrono::Utc>,
    sessions_found: &HashSet<Uuid>,
    retention: &crate::streams::WriteSettings,
) -> Vec<FieldError> {
    let mut violations = content_violations(&input.data, &input.timestamp, received);
    if let Some(session) = input.session_id {
        if !sessions_found.contains(&session) {
            violations.push(FieldError::new(
                "session_id",
                codes::SESSION_NOT_FOUND,
                format!("session {session} does not exist"),
            ));
        }
    }
    violations.extend(argus_models::stream::retention_violation(&input.timestamp, retention.days(&input.stream), now));
    violations
}

/// The distinct stream ids among some events', for `streams::retention_days`.
pub(crate) fn distinct_streams<'a>(streams: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut streams: Vec<&str> = streams.collect();
    streams.sort_unstable();
    streams.dedup();
    streams
}

/// An item that passed every check, ready to write.
pub(crate) struct Ready {
    pub(crate) index: usize,
    pub(crate) id: Uuid,
    pub(crate) item: Item,
    /// The client chose the id: written conditionally (`events::create_if_absent`).
    pub(crate) client_id: bool,
}

/// How a bulk create runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// The client's clock when it sent the request: corrects each item's timestamp
    /// (`EventInput::apply_sent_at`), for items that carry one.
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Every check, session lookups included, and nothing written (not even a new stream).
    pub validate_only: bool,
}

/// Validates every item (shape, content, session, id reuse) and returns per-item results for
/// the ones already decided (failures, duplicates) plus the items to write.
/// `server_ids`: indexes whose `id` the server itself assigned earlier (a job's fan-out), which
/// cannot collide with anyone's and are written unconditionally.
pub(crate) async fn prepare_creates(
    backend: &Backend,
    tenant: &str,
    items: &[Value],
    server_ids: &HashSet<usize>,
    dialect: Dialect<'_>,
    options: CreateOptions,
) -> Result<(Vec<Option<ItemResult>>, Vec<Ready>), ServiceError> {
    let received = time::now();
    let received_at = time::format(&received);
    let mut results: Vec<Option<ItemResult>> = vec![None; items.len()];
    let mut parsed: Vec<(usize, EventInput)> = Vec::with_capacity(items.len());
    for (index, raw) in items.iter().enumerate() {
        let corrected = dialect.parse(raw, &received).and_then(|mut input| match options.sent_at {
            // Only a timestamp the client gave is on its clock (a missing one is the receipt).
            Some(sent_at) if raw.get("timestamp").is_some_and(|t| !t.is_null()) => {
                input.apply_sent_at(&sent_at, &received).map_err(argus_models::ValidationError::single)?;
                Ok(input)
            }
            _ => Ok(input),
        });
        match corrected {
            Ok(input) => parsed.push((index, input)),
            Err(err) => results[index] = Some(ItemResult::failed(index, 400, ItemError::validation(&err))),
        }
    }
    // One BatchGetItem per 100 distinct sessions, per 100 client-supplied ids, and per 100
    // streams not in the settings cache.
    let session_ids: Vec<Uuid> =
        parsed.iter().filter_map(|(_, e)| e.session_id).collect::<HashSet<_>>().into_iter().collect();
    let client_ids: Vec<Uuid> = parsed.iter().filter_map(|(_, e)| e.id).collect::<HashSet<_>>().into_iter().collect();
    let streams = distinct_streams(parsed.iter().map(|(_, e)| e.stream.as_str()));
    if streams.len() > MAX_STREAMS_PER_REQUEST {
        return Err(ServiceError::BadRequest {
            code: "TOO_MANY_STREAMS",
            message: format!(
                "the items name {} streams; one request may name at most {MAX_STREAMS_PER_REQUEST}",
                streams.len()
            ),
            details: Map::from_iter([
                ("max_streams".to_string(), json!(MAX_STREAMS_PER_REQUEST)),
                ("streams".to_string(), json!(streams.len())),
            ]),
        });
    }
    let (found_sessions, existing, retention) = tokio::join!(
        sessions::existing(backend, tenant, &session_ids),
        events::existing_hashes(backend, tenant, &client_ids),
        crate::streams::write_settings_of(backend, tenant, &streams, !options.validate_only)
    );
    let found_sessions: HashSet<Uuid> = found_sessions?.into_iter().collect();
    let existing = existing?;
    let retention = retention?;

    let now = received_at.clone();
    let mut seen_in_request: HashMap<Uuid, String> = HashMap::new();
    let mut ready = Vec::with_capacity(parsed.len());
    for (index, mut input) in parsed {
        // A retry of a stored event is a duplicate whatever changed since (the processor decides
        // in the same order): identity first, then the content rules.
        let hash = events::content_hash(&input);
        if let Some(id) = input.id {
            let previous = existing.get(&id).or_else(|| seen_in_request.get(&id));
            match previous {
                Some(stored) if *stored == hash => {
                    results[index] = Some(ItemResult { duplicate: true, ..ItemResult::ok(index, 200, &id) });
                    continue;
                }
                Some(_) => {
                    let mut error =
                        ItemError::new(codes::ID_CONFLICT, format!("event {id} already exists with different content"));
                    error.details.insert("id".into(), json!(id));
                    results[index] = Some(ItemResult::failed(index, 409, error));
                    continue;
                }
                None => {}
            }
        }
        let violations = new_event_violations(&input, &received, &received, &found_sessions, &retention);
        if !violations.is_empty() {
            let err = ValidationError { errors: violations };
            results[index] = Some(ItemResult::failed(index, 400, ItemError::validation(&err)));
            continue;
        }
        if let Some(id) = input.id {
            seen_in_request.insert(id, hash);
        }
        let client_id = input.id.is_some() && !server_ids.contains(&index);
        let id = *input.id.get_or_insert_with(|| crate::keyed_ids::id_for(index as u64));
        let (days, shards) = (retention.days(&input.stream), retention.index_shards(&input.stream));
        let mut item = events::event_item(tenant, &id, &input, &received_at, &now, Some(days), shards)?;
        events::stamp_summed_fields(&mut item, retention.summed_fields(&input.stream));
        ready.push(Ready { index, id, item, client_id });
    }
    Ok((results, ready))
}

/// `POST /batch/events` (`Dialect::Argus`) and `POST /ingest/batch` (`Dialect::DataStream`).
/// Atomic mode's verdict on the items decided so far: any invalid one is 400, any other
/// failure 409, each with every failure by index; nothing is written after either.
pub fn check_atomic(decided: &[ItemResult], total: usize) -> Result<(), ServiceError> {
    let failures: Vec<ItemResult> = decided.iter().filter(|r| !r.succeeded()).cloned().collect();
    if failures.iter().any(|r| r.status == 400) {
        return Err(ServiceError::BadRequest {
            code: "VALIDATION_FAILED",
            message: format!("{} of {total} items are invalid; nothing was written", failures.len()),
            details: failures_details(&failures),
        });
    }
    if !failures.is_empty() {
        return Err(ServiceError::Conflict {
            code: "ATOMIC_CONFLICT",
            message: format!("{} of {total} items conflict; nothing was written", failures.len()),
            details: failures_details(&failures),
        });
    }
    Ok(())
}

/// Checks `items` as [`create_events`] would, session lookups included, and writes nothing: one
/// result per item, in order; 200 for an item that would be created (with its id when the client
/// chose one), 200 `duplicate` for a retry of a stored event, 400 and 409 as at creation.
pub async fn validate_events(
    backend: &Backend,
    tenant: &str,
    items: &[Value],
    dialect: Dialect<'_>,
    sent_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<BulkReport, ServiceError> {
    check_count(items.len(), dialect.list_field())?;
    let options = CreateOptions { sent_at, validate_only: true };
    let (mut results, ready) = prepare_creates(backend, tenant, items, &HashSet::new(), dialect, options).await?;
    for r in ready {
        results[r.index] = Some(ItemResult {
            index: r.index,
            status: 200,
            id: r.client_id.then(|| r.id.to_string()),
            duplicate: false,
            error: None,
        });
    }
    Ok(BulkReport::new(results.into_iter().flatten().collect()))
}

pub async fn create_events(
    backend: &Backend,
    tenant: &str,
    items: &[Value],
    mode: Mode,
    deadline: Option<Instant>,
    dialect: Dialect<'_>,
    sent_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<BulkOutcome, ServiceError> {
    check_count(items.len(), dialect.list_field())?;
    if mode == Mode::Atomic && items.len() > MAX_ATOMIC_ITEMS {
        return Err(atomic_limit(items.len()));
    }
    let options = CreateOptions { sent_at, validate_only: false };
    let (mut results, ready) = prepare_creates(backend, tenant, items, &HashSet::new(), dialect, options).await?;
    match mode {
        Mode::Partial => {
            let config = backend.writer_for(deadline, std::time::Duration::from_secs(2));
            // Client-chosen ids: conditional, so a concurrent create of the same id cannot also win.
            let (client_chosen, ready): (Vec<Ready>, Vec<Ready>) = ready.into_iter().partition(|r| r.client_id);
            for result in crate::client_ids::create(backend, client_chosen, &config).await {
                let index = result.index;
                results[index] = Some(result);
            }
            // The items move into the writes (10,000 of them are tens of MB): no copies.
            let (placed, writes): (Vec<(usize, Uuid)>, Vec<Write>) =
                ready.into_iter().map(|r| ((r.index, r.id), Write::Put(r.item))).unzip();
            let (outcomes, stats) = write_all(&backend.dynamodb, &backend.table, &writes, &config).await;
            drop(writes);
            tracing::info!(items = items.len(), calls = stats.calls, retries = stats.retries, "bulk create written");
            for ((index, id), outcome) in placed.into_iter().zip(outcomes) {
                results[index] = Some(match outcome {
                    WriteOutcome::Written => ItemResult::ok(index, 201, &id),
                    // With the id it was given: a retry sending it again is a duplicate at worst
                    // (a write cut off at the deadline may have landed).
                    WriteOutcome::NotWritten { reason, retryable: true } => {
                        let mut result = retry_later(index, &reason);
                        result.id = Some(id.to_string());
                        result
                    }
                    WriteOutcome::NotWritten { reason, retryable: false } => {
                        ItemResult::failed(index, 400, ItemError::new("NOT_WRITABLE", reason))
                    }
                });
            }
            Ok(BulkOutcome::Report(BulkReport::new(results.into_iter().flatten().collect())))
        }
        Mode::Atomic => {
            let decided: Vec<ItemResult> = results.iter().flatten().cloned().collect();
            check_atomic(&decided, items.len())?;
            let puts: Vec<(usize, Item)> = ready.iter().map(|r| (r.index, r.item.clone())).collect();
            // An expired item that TTL has not deleted yet is gone for every read: its id is free.
            transact_puts(backend, &puts, "attribute_not_exists(PK) OR #expires <= :epoch", &[]).await?;
            let mut ids: Vec<Option<String>> = results.iter().map(|r| r.as_ref().and_then(|r| r.id.clone())).collect();
            for r in &ready {
                ids[r.index] = Some(r.id.to_string());
            }
            Ok(BulkOutcome::Atomic { ids: ids.into_iter().flatten().collect() })
        }
    }
}

/// `list_field`: the body's field holding the items, named in the error.
pub fn check_count(count: usize, list_field: &str) -> Result<(), ServiceError> {
    if count == 0 {
        return Err(FieldError::new(list_field, "EMPTY_BATCH", "send at least one item").into());
    }
    if count > MAX_ITEMS {
        return Err(ServiceError::TooLarge {
            code: "BATCH_TOO_LARGE",
            message: format!("{count} items; the limit is {MAX_ITEMS} per request"),
            details: Map::from_iter([
                ("max_items".to_string(), json!(MAX_ITEMS)),
                ("max_bytes".to_string(), json!(MAX_BYTES)),
                ("items".to_string(), json!(count)),
            ]),
        });
    }
    Ok(())
}

/// The limits of `mode` for `count` items (atomic: `MAX_ATOMIC_ITEMS`), before any work.
pub fn check_mode(mode: Mode, count: usize) -> Result<(), ServiceError> {
    if mode == Mode::Atomic && count > MAX_ATOMIC_ITEMS {
        return Err(atomic_limit(count));
    }
    Ok(())
}

fn atomic_limit(count: usize) -> ServiceError {
    ServiceError::BadRequest {
        code: "ATOMIC_LIMIT_EXCEEDED",
        message: format!(
            "atomic batches hold at most {MAX_ATOMIC_ITEMS} items (DynamoDB's transaction limit); got {count}. Use partial mode or split the batch"
        ),
        details: Map::from_iter([("max_items".to_string(), json!(MAX_ATOMIC_ITEMS)), ("items".to_string(), json!(count))]),
    }
}

/// One `TransactWriteItems` of conditional puts; `(index, item)` pairs keep request indexes for
/// the cancellation reasons. `values` are the condition's placeholders, per item. Every
/// condition tests the stored item's expiry, as `#expires` against `:epoch` (now): an expired
/// item is gone for creates and updates alike.
async fn transact_puts(
    backend: &Backend,
    puts: &[(usize, Item)],
    condition: &str,
    values: &[(usize, &str, String)],
) -> Result<(), ServiceError> {
    let size: usize = puts.iter().map(|(_, item)| crate::batch_writer::item_size(item)).sum();
    if size > MAX_ATOMIC_BYTES {
        return Err(ServiceError::BadRequest {
            code: "ATOMIC_LIMIT_EXCEEDED",
            message: format!(
                "atomic batches hold at most {MAX_ATOMIC_BYTES} bytes (DynamoDB's transaction limit); got {size}"
            ),
            details: Map::from_iter([
                ("max_bytes".to_string(), json!(MAX_ATOMIC_BYTES)),
                ("bytes".to_string(), json!(size)),
            ]),
        });
    }
    if puts.is_empty() {
        return Ok(());
    }
    // Cancelled only by contention (another transaction on an item, throttling): retried with
    // backoff within the deadline, under one token so a retry of an attempt that landed is a
    // no-op rather than a condition failure.
    let token = argus_models::ids::new_id().simple().to_string();
    let config = crate::batch_writer::BatchWriterConfig::default();
    let mut attempt = 0u32;
    let answer = loop {
        attempt += 1;
        let mut request = backend.dynamodb.transact_write_items().client_request_token(&token);
        for (position, (_, item)) in puts.iter().enumerate() {
            let mut put =
                Put::builder().table_name(&backend.table).set_item(Some(item.clone())).condition_expression(condition);
            put = put
                .expression_attribute_names("#expires", crate::keys::EXPIRES_AT)
                .expression_attribute_values(":epoch", events::epoch_now());
            for (_, placeholder, value) in values.iter().filter(|(p, _, _)| *p == position) {
                put = put.expression_attribute_values(*placeholder, s(value));
            }
            let put = put.build().map_err(|e| ServiceError::Internal(e.to_string()))?;
            request = request.transact_items(TransactWriteItem::builder().put(put).build());
        }
        let answer = crate::deadline::bounded(request.send()).await?;
        let contended = answer.as_ref().err().and_then(|e| e.as_service_error()).is_some_and(|e| match e {
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                crate::error::only_contention(c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")))
            }
            _ => false,
        });
        if contended
            && attempt < config.max_attempts
            && crate::deadline::sleep_within(crate::batch_writer::backoff(&config, attempt)).await
        {
            continue;
        }
        break answer;
    };
    match answer {
        Ok(_) => Ok(()),
        Err(err) => {
            let reasons: Option<Vec<Option<String>>> = err.as_service_error().and_then(|e| match e {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                    Some(c.cancellation_reasons().iter().map(|r| r.code().map(str::to_string)).collect())
                }
                _ => None,
            });
            let Some(reasons) = reasons else {
                return Err(ServiceError::from_sdk("dynamodb", err));
            };
            let failures: Vec<Value> = reasons
                .iter()
                .zip(puts)
                .filter(|(reason, _)| reason.as_deref().is_some_and(|r| r != "None"))
                .map(|(reason, (index, _))| {
                    let reason = reason.as_deref().unwrap_or_default();
                    let (code, message) = match reason {
                        "ConditionalCheckFailed" => (codes::ID_CONFLICT, "the item's condition failed (it exists, or it changed)"),
                        _ => ("TRANSACTION_CANCELLED", "the transaction was cancelled"),
                    };
                    json!({"index": index, "status": 409, "error": {"code": code, "message": message, "details": {"reason": reason}}})
                })
                .collect();
            if failures.iter().all(|f| f["error"]["details"]["reason"] != "ConditionalCheckFailed") {
                // Throttling or a conflicting transaction: nothing was written, retry the whole.
                return Err(ServiceError::Unavailable {
                    component: "dynamodb",
                    message: "the transaction was cancelled by contention; nothing was written, retry".into(),
                });
            }
            Err(ServiceError::Conflict {
                code: "ATOMIC_CONFLICT",
                message: format!("{} items conflict; nothing was written", failures.len()),
                details: Map::from_iter([("failures".to_string(), Value::Array(failures))]),
            })
        }
    }
}

/// `PATCH /batch/events`: `items` are `{"id", "changes"}`. Per item 200 / 400 / 404.
pub async fn update_events(
    backend: &Backend,
    tenant: &str,
    items: &[Value],
    mode: Mode,
) -> Result<BulkOutcome, ServiceError> {
    check_count(items.len(), "items")?;
    if mode == Mode::Atomic && items.len() > MAX_ATOMIC_ITEMS {
        return Err(atomic_limit(items.len()));
    }
    let mut results: Vec<Option<ItemResult>> = vec![None; items.len()];
    let mut wanted: Vec<(usize, Uuid, String, EventChanges)> = Vec::new();
    let mut seen = HashSet::new();
    for (index, raw) in items.iter().enumerate() {
        let raw_id = raw.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let Ok(id) = parse_uuid("id", &raw_id) else {
            results[index] = Some(not_found(index, &raw_id));
            continue;
        };
        if !seen.insert(id) {
            let err =
                ValidationError::single(FieldError::new("id", "DUPLICATE_ID", "this id appears earlier in the batch"));
            results[index] = Some(ItemResult::failed(index, 400, ItemError::validation(&err)));
            continue;
        }
        match raw.get("changes").map(|c| EventChanges::parse(c, false)) {
            Some(Ok(changes)) => wanted.push((index, id, raw_id, changes)),
            Some(Err(err)) => results[index] = Some(ItemResult::failed(index, 400, ItemError::validation(&err))),
            None => {
                let err = ValidationError::single(FieldError::new("changes", "REQUIRED", "changes is required"));
                results[index] = Some(ItemResult::failed(index, 400, ItemError::validation(&err)));
            }
        }
    }
    let keys = wanted.iter().map(|(_, id, _, _)| key(event_pk(tenant, id), META)).collect();
    let stored = crate::ddb::batch_get(&backend.dynamodb, &backend.table, keys, None).await?;
    let mut current: HashMap<Uuid, argus_models::event::Event> = HashMap::new();
    // Events stored before streams had settings: they never expire, and a change keeps it so.
    let mut without_expiry: HashSet<Uuid> = HashSet::new();
    let read_at = time::now();
    for item in &stored {
        if !events::is_visible(item, false, &read_at) {
            continue;
        }
        let event = events::event_from_item(item)?;
        if !item.contains_key(crate::keys::EXPIRES_AT) {
            without_expiry.insert(event.id);
        }
        current.insert(event.id, event);
    }
    let streams = distinct_streams(current.values().map(|e| e.stream.as_str()));
    let settings = crate::streams::write_settings(backend, tenant, &streams).await?;
    let mut changed: Vec<(usize, Uuid, Item, String)> = Vec::new();
    let now = time::format(&time::now());
    for (index, id, raw_id, changes) in &wanted {
        let Some(event) = current.get(id) else {
            results[*index] = Some(not_found(*index, raw_id));
            continue;
        };
        // The single PATCH's own path: same content rules, same size limit.
        let days = (!without_expiry.contains(id)).then(|| settings.days(&event.stream));
        match events::changed_event(tenant, event, changes, &now, days, settings.index_shards(&event.stream)) {
            Ok((_, mut item)) => {
                events::stamp_summed_fields(&mut item, settings.summed_fields(&event.stream));
                changed.push((*index, *id, item, event.updated_at.clone()))
            }
            Err(err) => results[*index] = Some(item_failure(*index, err)),
        }
    }
    match mode {
        Mode::Atomic => {
            let failures: Vec<ItemResult> = results.iter().flatten().cloned().collect();
            if !failures.is_empty() {
                let status_404_only = failures.iter().all(|f| f.status == 404);
                let details = failures_details(&failures);
                let message = format!("{} of {} items failed; nothing was written", failures.len(), items.len());
                return Err(if status_404_only {
                    ServiceError::BadRequest { code: "ITEMS_NOT_FOUND", message, details }
                } else {
                    ServiceError::BadRequest { code: "VALIDATION_FAILED", message, details }
                });
            }
            let puts: Vec<(usize, Item)> = changed.iter().map(|(i, _, item, _)| (*i, item.clone())).collect();
            let values: Vec<(usize, &str, String)> = changed
                .iter()
                .enumerate()
                .map(|(position, (_, _, _, seen))| (position, ":seen", seen.clone()))
                .collect();
            let condition =
                format!("updated_at = :seen AND attribute_not_exists(deleted_at) AND {}", events::NOT_EXPIRED);
            transact_puts(backend, &puts, &condition, &values).await?;
            Ok(BulkOutcome::Atomic { ids: changed.iter().map(|(_, id, _, _)| id.to_string()).collect() })
        }
        Mode::Partial => {
            let written: Vec<(usize, Uuid, Result<(), ServiceError>)> = stream::iter(changed)
                .map(|(index, id, item, seen)| async move {
                    let put = backend
                        .dynamodb
                        .put_item()
                        .table_name(&backend.table)
                        .set_item(Some(item))
                        .condition_expression(format!(
                            "updated_at = :seen AND attribute_not_exists(deleted_at) AND {}",
                            events::NOT_EXPIRED
                        ))
                        .expression_attribute_names("#expires", crate::keys::EXPIRES_AT)
                        .expression_attribute_values(":seen", s(seen))
                        .expression_attribute_values(":epoch", events::epoch_now())
                        .send();
                    let Ok(result) = crate::deadline::bounded(put).await else {
                        return (index, id, Err(crate::deadline::out_of_time()));
                    };
                    let result = result.map(|_| ()).map_err(|e| {
                        if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) {
                            ServiceError::Conflict {
                                code: "CONCURRENT_UPDATE",
                                message: "the event changed meanwhile; read it and retry".into(),
                                details: Map::new(),
                            }
                        } else {
                            ServiceError::from_sdk("dynamodb", e)
                        }
                    });
                    (index, id, result)
                })
                .buffer_unordered(ITEM_CONCURRENCY)
                .collect()
                .await;
            for (index, id, result) in written {
                results[index] = Some(match result {
                    Ok(()) => ItemResult::ok(index, 200, &id),
                    Err(err) => item_failure(index, err),
                });
            }
            Ok(BulkOutcome::Report(BulkReport::new(results.into_iter().flatten().collect())))
        }
    }
}

fn not_found(index: usize, raw_id: &str) -> ItemResult {
    let mut error = ItemError::new("NOT_FOUND", format!("event {raw_id} not found"));
    error.details.insert("id".into(), json!(raw_id));
    ItemResult::failed(index, 404, error)
}

/// A service error as one item's result.
fn item_failure(index: usize, err: ServiceError) -> ItemResult {
    match err {
        ServiceError::NotFound { id, .. } => not_found(index, &id),
        ServiceError::Validation(v) => ItemResult::failed(index, 400, ItemError::validation(&v)),
        ServiceError::BadRequest { code, message, details } | ServiceError::TooLarge { code, message, details } => {
            ItemResult::failed(index, 400, ItemError { code: code.into(), message, details })
        }
        ServiceError::Conflict { code, message, details } => {
            ItemResult::failed(index, 409, ItemError { code: code.into(), message, details })
        }
        ServiceError::Unavailable { message, .. } => retry_later(index, &message),
        ServiceError::Internal(_) => ItemResult::failed(index, 500, ItemError::new("INTERNAL_ERROR", "internal error")),
    }
}

/// Parses `{"ids": [...]}` entries; duplicates are reported, not applied twice.
fn ids_of(items: &[Value]) -> (Vec<Option<ItemResult>>, Vec<(usize, String)>) {
    let mut results = vec![None; items.len()];
    let mut wanted = Vec::new();
    let mut seen = HashSet::new();
    for (index, raw) in items.iter().enumerate() {
        let raw_id = raw.as_str().unwrap_or_default().to_string();
        // One UUID in any spelling (case, hyphens) is one id.
        let canonical = parse_uuid("ids", &raw_id).map(|id| id.to_string()).unwrap_or_else(|_| raw_id.clone());
        if !raw.is_string() {
            let err = ValidationError::single(FieldError::new("ids", "INVALID_TYPE", "ids are UUID strings"));
            results[index] = Some(ItemResult::failed(index, 400, ItemError::validation(&err)));
        } else if !seen.insert(canonical) {
            let err =
                ValidationError::single(FieldError::new("ids", "DUPLICATE_ID", "this id appears earlier in the batch"));
            results[index] = Some(ItemResult::failed(index, 400, ItemError::validation(&err)));
        } else {
            wanted.push((index, raw_id));
        }
    }
    (results, wanted)
}

/// `DELETE /batch/events` (`restore == false`: 204 / 404) and `POST /batch/events/restore`
/// (200 / 404), partial: each id independently.
pub async fn delete_or_restore(
    backend: &Backend,
    tenant: &str,
    ids: &[Value],
    restore: bool,
) -> Result<BulkReport, ServiceError> {
    check_count(ids.len(), "ids")?;
    let (mut results, wanted) = ids_of(ids);
    let done: Vec<(usize, ItemResult)> = stream::iter(wanted)
        .map(|(index, raw_id)| async move {
            // Each item's calls are bounded by the deadline (see `events`): an item not done
            // in time is reported 503 RETRY_LATER.
            let result = if restore {
                events::restore(backend, tenant, &raw_id).await.map(|e| e.id)
            } else {
                events::soft_delete(backend, tenant, &raw_id).await.and_then(|()| {
                    Uuid::try_parse(&raw_id).map_err(|_| ServiceError::not_found("event", raw_id.clone()))
                })
            };
            let item = match result {
                Ok(id) => ItemResult::ok(index, if restore { 200 } else { 204 }, &id),
                Err(err) => item_failure(index, err),
            };
            (index, item)
        })
        .buffer_unordered(ITEM_CONCURRENCY)
        .collect()
        .await;
    for (index, result) in done {
        results[index] = Some(result);
    }
    Ok(BulkReport::new(results.into_iter().flatten().collect()))
}
